//! The unicast layer's DT path in a worker (issue 15 item 4): PDUs arriving on a DT N-1
//! flow are decided by [`crate::packet_path::classify_eth`] (through
//! [`crate::dt::decide_from`]) and here forwarded on the next hop's N-1 flow (TTL
//! decremented, ECN byte kept), delivered to an N+1 flow's ring, or left in the N-1 flow's
//! ring for o7sd (flow allocator and directory, eids below 64); SDUs of N+1 flows get a DT
//! PCI and go out on the next hop's N-1 flow. o7sd sends the tables
//! ([`ToDp::UniTable`]); nothing here waits for it.

use super::eth_path::{build_frame, eth_dest};
use super::*;
use crate::dt::{DtAction, DtDrop, PCI_LEN};
use crate::handoff::{Handed, HandedPdu};
use crate::packet_path::{self as path, Egress};
use std::ops::Range;

/// A unicast IPCP as a worker knows it (its address, next hops and N+1 flows are in the
/// packet path's tables, [`crate::packet_path::Tables::unis`]).
#[derive(Debug, Default)]
pub(super) struct UniState {
    /// Its DT N-1 flows (as the last table named them).
    n1: Vec<u64>,
    /// Counters.
    pub(super) stats: UniStats,
}

impl UniState {
    pub(super) fn new(ipcp: u32) -> Self {
        Self {
            stats: UniStats {
                ipcp,
                ..UniStats::default()
            },
            ..Self::default()
        }
    }
}

/// Sends `frame` (built for `d`, N-1 flow `n1`): into the port's queue when the port has an
/// egress cap (a full queue drops it, counted), else at once. Whether it was taken.
pub(super) fn out_frame(
    shapers: &mut HashMap<u32, crate::shaper::Shaper>,
    ports: &mut HashMap<u32, Port>,
    uports: &mut HashMap<u32, UPort>,
    n1: u64,
    d: &Egress,
    frame: &[u8],
    flush: bool,
) -> bool {
    let port = d.port();
    let Some(s) = shapers.get_mut(&port).filter(|s| s.capped()) else {
        return send_n1(ports, uports, d, frame, flush) == N1Sent::Yes;
    };
    if s.push(n1, frame) {
        return true;
    }
    if let Some(p) = ports.get_mut(&port) {
        p.stats.drop_queue_full += 1;
    } else if let Some(u) = uports.get_mut(&port) {
        u.stats.drop_queue_full += 1;
    }
    false
}

/// Builds the frame or datagram of a PDU of `len` bytes that `write` appends; whether it
/// could be built.
pub(super) fn build_n1(
    frame: &mut Vec<u8>,
    dest: &Egress,
    len: usize,
    write: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    match dest {
        Egress::Eth { d, .. } => build_frame(frame, d, len, write),
        Egress::Udp { remote, .. } => {
            frame.clear();
            frame.extend_from_slice(&remote.to_be_bytes());
            len <= crate::udp::MAX_DATAGRAM && write(frame)
        }
    }
}

/// What became of a frame handed to a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum N1Sent {
    /// Taken (queued on the tx ring or sent).
    Yes,
    /// Not now: the tx ring or the socket's buffer is full. Try again later.
    Busy,
    /// Never: larger than the port's frames, a port without a tx queue or gone, a socket
    /// error that is no back-pressure (EMSGSIZE, ENETDOWN, a destination it cannot reach).
    /// A queue that put it back at its head would never move again.
    Never,
}

/// Whether a socket's error is back-pressure (try again) rather than a refusal.
fn busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.kind() == std::io::ErrorKind::Interrupted
        || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Sends the frame or datagram built for `dest` now: what became of it (a frame not taken
/// is counted in the port's `tx_errors`). An AF_XDP port's tx ring is flushed when `flush`.
pub(super) fn send_n1(
    ports: &mut HashMap<u32, Port>,
    uports: &mut HashMap<u32, UPort>,
    dest: &Egress,
    frame: &[u8],
    flush: bool,
) -> N1Sent {
    match dest {
        Egress::Eth { port, d } => {
            let Some(p) = ports.get_mut(port) else {
                return N1Sent::Never;
            };
            // The port being read has lent its AF_XDP socket to the batch: AF_PACKET then.
            let sent = match &mut p.xdp {
                Some(x) if !x.can_ever_send(frame.len()) => N1Sent::Never,
                Some(x) => {
                    let sent = x.send(frame);
                    if flush {
                        x.flush();
                    }
                    if sent {
                        N1Sent::Yes
                    } else {
                        N1Sent::Busy
                    }
                }
                None => match p.sock.send(frame) {
                    Ok(()) => N1Sent::Yes,
                    Err(e) if busy(&e) => N1Sent::Busy,
                    Err(_) => N1Sent::Never,
                },
            };
            if sent == N1Sent::Yes {
                // Captured as sent only when it was (a busy ring's frame is sent later,
                // and captured then).
                for t in &mut p.taps {
                    t.take(frame, true, d.local);
                }
                p.stats.tx_frames += 1;
            } else {
                p.stats.tx_errors += 1;
            }
            sent
        }
        Egress::Udp { port, dst, .. } => {
            let Some(u) = uports.get_mut(port) else {
                return N1Sent::Never;
            };
            let sent = match u.sock.send_batch(dst, &[frame]) {
                Ok(1) => N1Sent::Yes,
                Ok(_) => N1Sent::Busy,
                Err(e) if busy(&e) => N1Sent::Busy,
                Err(_) => N1Sent::Never,
            };
            if sent == N1Sent::Yes {
                u.stats.tx_frames += 1;
            } else {
                u.stats.tx_errors += 1;
            }
            sent
        }
    }
}

/// The PCI of what flow `s` sends (facts §5.1: dst, qos cube 0, TTL, ECN 0, eid).
fn pci_of(s: &UniFlowSpec) -> [u8; PCI_LEN] {
    let mut p = [0u8; PCI_LEN];
    p[..4].copy_from_slice(&s.dst.to_le_bytes());
    p[5] = s.ttl;
    p[7..].copy_from_slice(&s.remote_eid.to_le_bytes());
    p
}

impl Dataplane {
    /// Installs IPCP `ipcp`'s forwarding state between two turns (ToDp::UniTable).
    pub(super) fn set_uni_table(
        &mut self,
        ipcp: u32,
        own: u32,
        next_hop: &[(u32, u64)],
        n1: &[u64],
    ) {
        let u = self.unis.entry(ipcp).or_insert_with(|| UniState::new(ipcp));
        self.tab.set_routes(ipcp, own, next_hop);
        let old = std::mem::replace(&mut u.n1, n1.to_vec());
        let tab = &mut self.tab;
        let mut mark = |id: &u64, dt_of: Option<u32>| {
            if let Some(e) = self
                .flows
                .get(id)
                .and_then(|f| tab.flow_mut(f.port, f.local))
                .filter(|e| e.flow == *id)
            {
                // A flow that is no longer this IPCP's N-1 flow leaves the DT path (one
                // another IPCP took since is left as it is).
                if dt_of.is_some() || e.dt_of == Some(ipcp) {
                    e.dt_of = dt_of;
                }
            }
        };
        for id in &old {
            mark(id, None);
        }
        for id in n1 {
            mark(id, Some(ipcp));
        }
        tracing::debug!(
            "unicast IPCP {ipcp}: address {own:#010x}, {} routes, {} N-1 flows",
            next_hop.len(),
            n1.len()
        );
    }

    /// Where N-1 flow `n1` sends: `None` when it is not on this worker or is encrypted (an
    /// N-1 flow of a unicast IPCP is not; such PDUs are counted and dropped).
    pub(super) fn n1_dest(&self, n1: u64) -> Option<Egress> {
        self.tab.egress(n1).copied()
    }

    /// Where flow `f` sends, for the packet path's tables: `None` for an encrypted flow,
    /// a flow over a unicast IPCP, or one whose port is not this worker's.
    pub(super) fn egress_of(&self, f: &Flow) -> Option<Egress> {
        if f.crypt.is_some() || f.uni.is_some() {
            return None;
        }
        if let Some(p) = self.ports.get(&f.port) {
            return Some(Egress::Eth {
                port: f.port,
                d: eth_dest(p, f),
            });
        }
        self.uports.contains_key(&f.port).then_some(())?;
        Some(Egress::Udp {
            port: f.port,
            dst: f.peer_addr?,
            remote: f.remote,
        })
    }

    /// Carries out `action`, decided for a PDU (not a keepalive) that arrived on a DT N-1
    /// flow of IPCP `ipcp`: forwarded, delivered or dropped and counted here, or `false` to
    /// put it in the N-1 flow's ring for o7sd (its components' PDUs). The PDU is
    /// `frame[at]` (a frame of an AF_XDP port can be forwarded in place).
    pub(super) fn dt_apply(
        &mut self,
        ipcp: u32,
        frame: &mut [u8],
        at: Range<usize>,
        action: DtAction,
        slot: Option<&mut crate::xdp::RxSlot>,
    ) -> bool {
        let Some(pdu) = frame.get_mut(at.clone()) else {
            return true;
        };
        if !self.unis.contains_key(&ipcp) {
            return false;
        }
        if action == DtAction::Drop(DtDrop::UnknownEid) && self.hand_off_delivery(ipcp, pdu) {
            return true;
        }
        // MB-ECN feedback for a flow of this worker is taken here, not by o7sd.
        if action == (DtAction::Control { eid: 0 }) && self.ca_take_update(ipcp, pdu, false) {
            return true;
        }
        if let DtAction::Deliver { flow, ecn } = action {
            let Some(u) = self.unis.get_mut(&ipcp) else {
                return false;
            };
            match (self.flows.get_mut(&flow), pdu.get_mut(PCI_LEN..)) {
                (Some(f), Some(sdu)) => {
                    // A sealed SDU that did not open (forged: the PCI is in clear) is
                    // counted by the flow, not delivered, and its ECN byte not believed.
                    if !f.deliver_mut(sdu, self.now) {
                        return true;
                    }
                    u.stats.delivered += 1;
                }
                _ => {
                    u.stats.drop_n1 += 1;
                    return true;
                }
            }
            self.ca_received(flow, ecn);
            return true;
        }
        let Some(u) = self.unis.get_mut(&ipcp) else {
            return false;
        };
        match action {
            DtAction::Control { .. } => {
                u.stats.to_o7sd += 1;
                false
            }
            DtAction::Drop(why) => {
                let s = &mut u.stats;
                *match why {
                    DtDrop::Short => &mut s.drop_short,
                    DtDrop::TtlExpired => &mut s.drop_ttl,
                    DtDrop::NoRoute => &mut s.drop_no_route,
                    DtDrop::UnknownEid => &mut s.drop_unknown_eid,
                    DtDrop::ReservedEid => &mut s.drop_reserved_eid,
                    DtDrop::Loop => &mut s.drop_loop,
                } += 1;
                true
            }
            // Taken above.
            DtAction::Deliver { .. } => true,
            DtAction::Forward { n1, .. } if !self.flows.contains_key(&n1) => {
                // The next hop's N-1 flow is another worker's: handed to it; without a
                // known owner (a data plane of one worker, or a table ahead of its
                // flows), o7sd forwards it (a slow path, counted), with the TTL as it
                // came.
                let owner = self
                    .handoff
                    .as_ref()
                    .and_then(|_| self.owners.owner_of_flow(n1));
                if let Some(w) = owner {
                    self.hand_off(
                        w,
                        HandedPdu {
                            ipcp,
                            what: Handed::Send { n1, transit: true },
                            pdu: self.handed_buf(pdu),
                        },
                    );
                    return true;
                }
                let Some(u) = self.unis.get_mut(&ipcp) else {
                    return false;
                };
                u.stats.via_o7sd += 1;
                if let Some(t) = pdu.get_mut(5) {
                    *t = t.saturating_add(1);
                }
                false
            }
            DtAction::Forward { n1, hop } => {
                if self.forward_in_place(ipcp, (n1, hop), frame, &at, slot) {
                    return true;
                }
                if let Some(pdu) = frame.get_mut(at.clone()) {
                    self.mark_ecn(pdu, n1);
                }
                let pdu = frame.get(at).unwrap_or(&[]);
                let sent = self.n1_dest(n1).is_some_and(|d| {
                    build_n1(&mut self.frame, &d, pdu.len(), |o| {
                        o.extend_from_slice(pdu);
                        true
                    }) && out_frame(
                        &mut self.shapers,
                        &mut self.ports,
                        &mut self.uports,
                        n1,
                        &d,
                        &self.frame,
                        true,
                    )
                });
                if let Some(u) = self.unis.get_mut(&ipcp) {
                    if sent {
                        u.stats.forwarded += 1;
                    } else {
                        u.stats.drop_n1 += 1;
                    }
                }
                if sent {
                    self.count_n1_tx(n1, 1, pdu.len() as u64);
                }
                true
            }
        }
    }

    /// Forwards the PDU `frame[at]` of the AF_XDP frame being handled on N-1 flow `n1`
    /// without copying it, when `n1` is an eth-dix flow of an AF_XDP port of the same UMEM
    /// ([`crate::xdp_umem`]): its header is rewritten in place and the frame itself goes on
    /// that port's tx ring. Whether it went (else nothing was queued: the caller copies).
    fn forward_in_place(
        &mut self,
        ipcp: u32,
        (n1, hop): (u64, u32),
        frame: &mut [u8],
        at: &Range<usize>,
        slot: Option<&mut crate::xdp::RxSlot>,
    ) -> bool {
        let Some(slot) = slot.filter(|_| !self.worker.forward_copy) else {
            return false;
        };
        // An unencrypted eth-dix flow of an AF_XDP port of the same UMEM.
        let Some((&Egress::Eth { port, d }, head)) = self.tab.hop_out(ipcp, n1, hop) else {
            return false;
        };
        // Made when the tables changed; made here for a hop whose slot went stale.
        let Some(head) = head.copied().or_else(|| path::DixHead::new(&d)) else {
            return false;
        };
        if !self.in_place_ok(port, slot) {
            return false;
        }
        let Some(wire) = path::rewrite_dix_with(frame, at, &head) else {
            return false;
        };
        let out = InPlace {
            ipcp,
            n1,
            port,
            local: d.local,
        };
        self.sent_in_place(&out, frame, wire, at.len(), slot)
    }

    /// A PDU [`path::step_eth`] found to forward to a next hop with a made header
    /// ([`path::Step::Forward`]): re-headed by [`path::Fwd::apply`] and sent in place,
    /// counted as the full path counts it (the N-1 flow it came on, the IPCP, the ports),
    /// when the next hop's flow is this worker's and its port can take the frame as it is.
    pub(super) fn forward_fast(
        &mut self,
        f: &path::Fwd,
        frame: &mut [u8],
        slot: &mut crate::xdp::RxSlot,
    ) -> FastForward {
        if self.worker.forward_copy
            || !self.unis.contains_key(&f.ipcp)
            || !self.flows.contains_key(&f.n1)
            || !self.in_place_ok(f.port, slot)
        {
            return FastForward::Untouched;
        }
        let Some(wire) = f.apply(frame) else {
            return FastForward::Untouched;
        };
        let out = InPlace {
            ipcp: f.ipcp,
            n1: f.n1,
            port: f.port,
            local: f.local,
        };
        let len = usize::from(f.pdu_len);
        if !self.sent_in_place(&out, frame, wire, len, slot) {
            return FastForward::Applied;
        }
        self.count_dt_rx(f.from, len as u64);
        if let Some(u) = self.unis.get_mut(&f.ipcp) {
            u.stats.forwarded_one_pass += 1;
        }
        FastForward::Sent
    }

    /// A DT PDU of `len` bytes received on N-1 flow `from`, counted by the flow.
    pub(super) fn count_dt_rx(&mut self, from: u64, len: u64) {
        if let Some(f) = self.flows.get_mut(&from) {
            f.last_rx = self.now;
            f.stats.rx_sdus += 1;
            f.stats.rx_bytes += len;
        }
    }

    /// Whether port `port` can send a frame of `slot`'s UMEM in place: an AF_XDP port of
    /// that UMEM, not capped (a capped port's PDUs wait in its queue: copied there).
    fn in_place_ok(&self, port: u32, slot: &crate::xdp::RxSlot) -> bool {
        !self.shapers.get(&port).is_some_and(|s| s.capped())
            && self
                .ports
                .get(&port)
                .and_then(|p| p.xdp.as_ref())
                .is_some_and(|x| x.umem_id() == slot.umem())
    }

    /// The frame of `slot`, re-headed for `out` (`wire` bytes on the wire, a PDU of
    /// `pdu_len` bytes), put on its port's tx ring ([`Self::in_place_ok`] said it can) and
    /// counted. Whether it went (else the caller copies the PDU out).
    fn sent_in_place(
        &mut self,
        out: &InPlace,
        frame: &[u8],
        wire: usize,
        pdu_len: usize,
        slot: &mut crate::xdp::RxSlot,
    ) -> bool {
        let InPlace {
            ipcp,
            n1,
            port,
            local,
        } = *out;
        let Some(p) = self.ports.get_mut(&port) else {
            return false;
        };
        let Some(x) = p.xdp.as_mut() else {
            return false;
        };
        let Ok(wire32) = u32::try_from(wire) else {
            return false;
        };
        if !x.send_in_place(slot, wire32) {
            return false;
        }
        // The captures only read the frame on the tx ring (the kernel reads it too, and
        // nothing writes it until it completes).
        let sent = frame.get(..wire).unwrap_or(&[]);
        for t in &mut p.taps {
            t.take(sent, true, local);
        }
        // One kick per received batch ([`Dataplane::kick_tx_due`]), not per frame: in copy
        // mode each kick is a sendto(2).
        if !self.tx_kick_due.contains(&port) {
            self.tx_kick_due.push(port);
        }
        p.stats.tx_frames += 1;
        if let Some(u) = self.unis.get_mut(&ipcp) {
            u.stats.forwarded += 1;
            u.stats.forwarded_in_place += 1;
        }
        self.count_n1_tx(n1, 1, pdu_len as u64);
        true
    }

    /// A PDU for IPCP `ipcp` at an endpoint id this worker does not have: handed to the
    /// worker that has it, if one does.
    fn hand_off_delivery(&mut self, ipcp: u32, pdu: &[u8]) -> bool {
        let eid = pdu
            .get(7..PCI_LEN)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let owner = self
            .handoff
            .as_ref()
            .and_then(|(_, me)| self.owners.owner_of_eid(ipcp, eid).filter(|w| w != me));
        let Some(w) = owner else {
            return false;
        };
        self.hand_off(
            w,
            HandedPdu {
                ipcp,
                what: Handed::Deliver { ipcp, eid },
                pdu: self.handed_buf(pdu),
            },
        );
        true
    }

    /// A buffer for a PDU to hand to another worker, holding `bytes`: from the hand-off's
    /// pool (the receiver gives it back), so handing PDUs over allocates nothing once the
    /// pool is warm.
    pub(super) fn handed_buf(&self, bytes: &[u8]) -> Vec<u8> {
        let mut b = match &self.handoff {
            Some((h, _)) => h.buffer(),
            None => Vec::new(),
        };
        b.extend_from_slice(bytes);
        b
    }

    /// Pushes `p` into worker `w`'s inbox, counted (a full inbox drops it).
    pub(super) fn hand_off(&mut self, w: usize, p: HandedPdu) -> bool {
        let ipcp = p.ipcp;
        let took = self.handoff.as_ref().is_some_and(|(h, _)| h.push(w, p));
        if let Some(u) = self.unis.get_mut(&ipcp) {
            if took {
                u.stats.handed_off += 1;
            } else {
                u.stats.drop_handoff += 1;
            }
        }
        took
    }

    /// PDUs other workers handed us (a batch): sent on our N-1 flow or delivered to our
    /// N+1 flow; what is no longer ours is dropped and counted, never handed on again.
    pub(super) fn drain_handoff(&mut self) -> usize {
        let Some((h, w)) = self.handoff.as_ref().filter(|(h, w)| !h.is_empty(*w)) else {
            return 0;
        };
        let (h, w) = (h.clone(), *w);
        let mut n = 0;
        while n < TX_BATCH {
            let Some(mut p) = h.pop(w) else {
                break;
            };
            n += 1;
            // A frame that arrived on one of our ports' RX queues at another worker.
            if let Handed::Frame { port } = p.what {
                self.handle_frame(port, &mut p.pdu, None);
                h.recycle(p.pdu);
                continue;
            }
            // A handed SDU for a flow here that did not decrypt: the flow counted it.
            let mut forged = false;
            let done = match p.what {
                Handed::Send { n1, .. } => {
                    self.mark_ecn(&mut p.pdu, n1);
                    let sent = self.n1_dest(n1).is_some_and(|d| {
                        build_n1(&mut self.frame, &d, p.pdu.len(), |o| {
                            o.extend_from_slice(&p.pdu);
                            true
                        }) && out_frame(
                            &mut self.shapers,
                            &mut self.ports,
                            &mut self.uports,
                            n1,
                            &d,
                            &self.frame,
                            true,
                        )
                    });
                    if sent {
                        self.count_n1_tx(n1, 1, p.pdu.len() as u64);
                    }
                    sent
                }
                Handed::FlowUpdate { ipcp } => self.ca_take_update(ipcp, &p.pdu, true),
                // (Handled above.)
                Handed::Frame { .. } => false,
                Handed::Deliver { ipcp, eid } => {
                    let flow = self.tab.uni(ipcp).and_then(|u| u.local.get(&eid).copied());
                    // The PCI's ECN byte, as the path that delivers directly reads it.
                    let ecn = p.pdu.get(6).copied().unwrap_or(0);
                    let delivered = match (
                        flow.and_then(|f| self.flows.get_mut(&f)),
                        p.pdu.get_mut(PCI_LEN..),
                    ) {
                        (Some(f), Some(sdu)) => {
                            forged = !f.deliver_mut(sdu, self.now);
                            !forged
                        }
                        _ => false,
                    };
                    // Its MB-ECN receiver folds the level in and sends FLOW_UPDATEs, as
                    // for PDUs that arrive on this worker's own ports (before, PDUs handed
                    // from another worker were never counted and the sender never slowed).
                    if let Some(f) = flow.filter(|_| delivered) {
                        self.ca_received(f, ecn);
                    }
                    delivered
                }
            };
            let u = self
                .unis
                .entry(p.ipcp)
                .or_insert_with(|| UniState::new(p.ipcp));
            match (done, p.what) {
                (true, Handed::Send { transit, .. }) => {
                    u.stats.handed_in += 1;
                    if transit {
                        u.stats.forwarded += 1;
                    }
                }
                (true, Handed::Deliver { .. }) => {
                    u.stats.handed_in += 1;
                    u.stats.delivered += 1;
                }
                (false, Handed::Send { .. }) => u.stats.drop_n1 += 1,
                (false, Handed::Deliver { .. }) if forged => u.stats.handed_in += 1,
                (false, Handed::Deliver { .. }) => u.stats.drop_unknown_eid += 1,
                (true, Handed::FlowUpdate { .. }) => u.stats.handed_in += 1,
                // Not a FLOW_UPDATE after all (the first worker parsed it): dropped.
                (false, Handed::FlowUpdate { .. }) => u.stats.drop_unknown_eid += 1,
                (_, Handed::Frame { .. }) => {}
            }
            // The buffer goes back to the pool for the next PDU handed over.
            h.recycle(p.pdu);
        }
        n
    }

    /// Sends a batch of flow `id`'s SDUs (a flow over a unicast IPCP) in DT PDUs on the
    /// next hop's N-1 flow (handed to its worker when it is another's); without a route
    /// they are taken and counted as dropped.
    pub(super) fn tx_uni(&mut self, id: u64) -> usize {
        let Some(spec) = self.flows.get(&id).and_then(|f| f.uni) else {
            return 0;
        };
        let dest = self.tab.uni(spec.ipcp).and_then(|u| u.route(spec.dst));
        if let Some(w) = dest.and_then(|n1| self.remote_owner(n1)) {
            return self.tx_uni_handed(id, &spec, dest.unwrap_or(0), w);
        }
        let routed = dest.is_some();
        let n1_flow = dest;
        let dest = dest.and_then(|n1| self.n1_dest(n1));
        let mut pci = pci_of(&spec);
        let (now, now_ns) = (self.now, self.now_ns());
        let Some(f) = self.flows.get_mut(&id) else {
            return 0;
        };
        // The writer's MB-ECN window is spent: it waits for its next slot.
        if f.ca.as_ref().is_some_and(|c| c.held(now)) {
            return 0;
        }
        let ring = f.mem.ring(Dir::Tx);
        let (mut done, mut sent, mut failed, mut n1_bytes) = (0usize, 0u64, 0u64, 0u64);
        let mut marked = 0u64;
        for _ in 0..TX_BATCH {
            // MB-ECN marks at the source too: by the queue of the N-1 flow it leaves on.
            let queued = n1_flow.map_or(0, |n1| {
                dest.as_ref()
                    .and_then(|d| self.shapers.get(&d.port()))
                    .map_or(0, |s| s.queued_at_turn(n1))
            });
            pci[6] = o7s_proto::mbecn::mark(0, queued);
            let frame = &mut self.frame;
            let crypt = &mut f.crypt;
            let r = ring.pop_with(|sdu| {
                let Some(d) = &dest else {
                    return Err(());
                };
                let len = PCI_LEN
                    + sdu.len()
                    + if crypt.is_some() {
                        crate::crypt::OVERHEAD
                    } else {
                        0
                    };
                let built = build_n1(frame, d, len, |o| {
                    o.extend_from_slice(&pci);
                    match crypt {
                        Some(c) => c.seal_appending(o, |o| sdu.append_to(o)).is_ok(),
                        None => {
                            sdu.append_to(o);
                            true
                        }
                    }
                });
                if built {
                    Ok(sdu.len())
                } else {
                    Err(())
                }
            });
            match r {
                Ok(None) => break,
                Ok(Some(Ok(len))) => {
                    done += 1;
                    let took = match (dest.as_ref(), n1_flow) {
                        (Some(d), Some(n1)) => out_frame(
                            &mut self.shapers,
                            &mut self.ports,
                            &mut self.uports,
                            n1,
                            d,
                            frame,
                            false,
                        ),
                        _ => false,
                    };
                    if took {
                        sent += 1;
                        marked += u64::from(pci[6] > 0);
                        n1_bytes += (PCI_LEN + len) as u64;
                        f.stats.tx_sdus += 1;
                        f.stats.tx_bytes += len as u64;
                    } else {
                        failed += 1;
                    }
                    // The SDU counts in the window (sent or lost on the way); a spent
                    // window holds the writer until its next slot.
                    if let Some(c) = f.ca.as_mut() {
                        if c.on_sent(now, now_ns, len) {
                            break;
                        }
                    }
                }
                Ok(Some(Err(()))) => {
                    done += 1;
                    failed += 1;
                }
                Err(_) => {
                    f.stats.drop_ring_corrupt += 1;
                    break;
                }
            }
        }
        if let Some(Egress::Eth { port, .. }) = &dest {
            if let Some(x) = self.ports.get_mut(port).and_then(|p| p.xdp.as_mut()) {
                if done > 0 || x.tx_pending() {
                    x.flush();
                }
            }
        }
        if done > 0 {
            f.last_tx = self.now;
        }
        if let Some(n1) = n1_flow {
            self.count_n1_tx(n1, sent, n1_bytes);
        }
        if let (Some(d), true) = (dest.as_ref(), marked > 0) {
            for _ in 0..marked {
                self.count_marked(d.port());
            }
        }
        if let Some(u) = self.unis.get_mut(&spec.ipcp) {
            u.stats.sent += sent;
            if routed {
                u.stats.drop_n1 += failed;
            } else {
                u.stats.drop_no_route += failed;
            }
        }
        done
    }

    /// The other worker that owns N-1 flow `n1`, when it is not ours.
    pub(super) fn remote_owner(&self, n1: u64) -> Option<usize> {
        if self.flows.contains_key(&n1) {
            return None;
        }
        let (_, me) = self.handoff.as_ref()?;
        self.owners.owner_of_flow(n1).filter(|w| w != me)
    }

    /// [`Dataplane::tx_uni`] when the next hop's N-1 flow `n1` is worker `w`'s: each SDU
    /// gets its PCI (sealed when the flow is encrypted) here and is handed to `w`.
    fn tx_uni_handed(&mut self, id: u64, spec: &UniFlowSpec, n1: u64, w: usize) -> usize {
        let pci = pci_of(spec);
        let pool = self.handoff.as_ref().map(|(h, _)| h.clone());
        let mut handed = Vec::new();
        let mut done = 0usize;
        let (now, now_ns) = (self.now, self.now_ns());
        // The writer's MB-ECN window holds here too: the next hop's port being another
        // worker's changes nothing for the flow's sender (before, it escaped its window).
        if let Some(f) = self
            .flows
            .get_mut(&id)
            .filter(|f| !f.ca.as_ref().is_some_and(|c| c.held(now)))
        {
            let ring = f.mem.ring(Dir::Tx);
            for _ in 0..TX_BATCH {
                let crypt = &mut f.crypt;
                let r = ring.pop_with(|sdu| {
                    let mut o = pool.as_ref().map_or_else(Vec::new, |h| h.buffer());
                    o.extend_from_slice(&pci);
                    let ok = match crypt {
                        Some(c) => c.seal_appending(&mut o, |o| sdu.append_to(o)).is_ok(),
                        None => {
                            sdu.append_to(&mut o);
                            true
                        }
                    };
                    (ok, o, sdu.len())
                });
                match r {
                    Ok(None) => break,
                    Ok(Some((ok, pdu, len))) => {
                        done += 1;
                        if ok {
                            f.stats.tx_sdus += 1;
                            f.stats.tx_bytes += len as u64;
                            handed.push(pdu);
                        }
                        if f.ca.as_mut().is_some_and(|c| c.on_sent(now, now_ns, len)) {
                            break;
                        }
                    }
                    Err(_) => {
                        f.stats.drop_ring_corrupt += 1;
                        break;
                    }
                }
            }
            if done > 0 {
                f.last_tx = self.now;
            }
        }
        let failed = done - handed.len();
        let mut sent = 0u64;
        for pdu in handed {
            // One a full inbox dropped is counted there (drop_handoff), not sent.
            sent += u64::from(self.hand_off(
                w,
                HandedPdu {
                    ipcp: spec.ipcp,
                    what: Handed::Send { n1, transit: false },
                    pdu,
                },
            ));
        }
        if let Some(u) = self.unis.get_mut(&spec.ipcp) {
            u.stats.sent += sent;
            u.stats.drop_n1 += failed as u64;
        }
        done
    }

    /// Sends a keepalive (an empty SDU, sealed when the flow is encrypted) in a DT PDU on a
    /// flow over a unicast IPCP, as on Ethernet and UDP flows: the peer's end stays up while
    /// we live and goes down by its time-out once we are gone.
    pub(super) fn keepalive_uni(&mut self, id: u64) -> bool {
        let Some(spec) = self.flows.get(&id).and_then(|f| f.uni) else {
            return false;
        };
        let n1 = self.tab.uni(spec.ipcp).and_then(|u| u.route(spec.dst));
        if let Some((n1, w)) = n1.and_then(|n1| Some((n1, self.remote_owner(n1)?))) {
            let pci = pci_of(&spec);
            let mut o = self.handed_buf(&pci);
            let Some(f) = self.flows.get_mut(&id) else {
                return false;
            };
            if let Some(c) = &mut f.crypt {
                if c.seal_appending(&mut o, |_| {}).is_err() {
                    return false;
                }
            }
            // A full inbox drops it (counted there): not sent.
            return self.hand_off(
                w,
                HandedPdu {
                    ipcp: spec.ipcp,
                    what: Handed::Send { n1, transit: false },
                    pdu: o,
                },
            );
        }
        let dest = n1.and_then(|n1| self.n1_dest(n1));
        let (Some(d), Some(f)) = (dest, self.flows.get_mut(&id)) else {
            return false;
        };
        let pci = pci_of(&spec);
        let crypt = &mut f.crypt;
        let len = PCI_LEN + crypt.as_ref().map_or(0, |_| crate::crypt::OVERHEAD);
        let built = build_n1(&mut self.frame, &d, len, |o| {
            o.extend_from_slice(&pci);
            match crypt {
                Some(c) => c.seal_appending(o, |_| {}).is_ok(),
                None => true,
            }
        });
        built
            && n1.is_some_and(|n1| {
                out_frame(
                    &mut self.shapers,
                    &mut self.ports,
                    &mut self.uports,
                    n1,
                    &d,
                    &self.frame,
                    true,
                )
            })
    }

    /// PDUs the worker wrote on N-1 flow `n1` (forwarded or of an N+1 flow), on its
    /// counters (`o7sctl neighbour list`).
    pub(super) fn count_n1_tx(&mut self, n1: u64, pdus: u64, bytes: u64) {
        if let Some(f) = self.flows.get_mut(&n1) {
            f.stats.tx_sdus += pdus;
            f.stats.tx_bytes += bytes;
        }
    }
}

/// Where a PDU forwarded in place goes: the IPCP forwarding it, the next hop's N-1 flow,
/// its port and our endpoint id on it (for captures).
#[derive(Debug, Clone, Copy)]
struct InPlace {
    ipcp: u32,
    n1: u64,
    port: u32,
    local: u32,
}

/// What [`Dataplane::forward_fast`] did with a PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FastForward {
    /// Sent in place and counted.
    Sent,
    /// Not taken, the frame as it was: the full path decides.
    Untouched,
    /// Re-headed (its TTL decremented) but the ring took none: the full path copies it
    /// (given no slot, it does not try in place again).
    Applied,
}
