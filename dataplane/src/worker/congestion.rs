//! Congestion in the worker (issue 22): the egress cap and queue of a port
//! ([`crate::shaper`]), MB-ECN marking at every hop, and each flow's MB-ECN ends
//! ([`o7s_proto::mbecn`]): the receiver echoes the congestion its PDUs met in FLOW_UPDATEs
//! (DT eid 0, the flow allocator's message with code 2), the sender's window per slot
//! decides when the next SDU may leave its ring. Nothing here goes through o7sd.

use super::dt_path::{build_n1, out_frame, send_n1, N1Sent};
use super::*;
use crate::dt::PCI_LEN;
use crate::packet_path::Egress;
use crate::shaper::Shaper;
use o7s_abi::msg::CaStats;
use o7s_proto::mbecn::{self, Receiver, Sender};
use o7s_wire::code::FaCode;
use o7s_wire::field::Writer;
use o7s_wire::qos::QosSpec;
use o7s_wire::unicast::fa::{FaMsg, MSG_LEN};

/// How far a writer may run ahead of its window's rate: a writer whose worker woke late
/// (two CPUs shared with the apps) may catch up this much. The window is spread over its
/// slot rather than sent at the slot's start (`Sender::paced`): a whole window at once
/// queues at a capped port by itself and marks ECN for congestion no other flow made. The
/// loop wakes a held writer to the microsecond (ppoll), so it sends as its pace allows
/// rather than a millisecond's PDUs at once (proto/tests/mbecn_sim.rs shows both).
/// (200 us was tried: the experiment's utilisation fell from 96 % to 92 %.)
pub(super) const PACE_NS: u64 = 1_000_000;

/// A flow's MB-ECN ends.
#[derive(Debug)]
pub(super) struct FlowCa {
    rx: Receiver,
    tx: Sender,
    /// The writer waits until then (its window is spent).
    hold_until: Option<Instant>,
    pub(super) stats: CaStats,
}

impl FlowCa {
    pub(super) fn new(now_ns: u64) -> Self {
        let mut c = Self {
            rx: Receiver::default(),
            tx: Sender::paced(now_ns, PACE_NS),
            hold_until: None,
            stats: CaStats::default(),
        };
        c.refresh();
        c
    }

    /// Copies the machines' state into the counters `o7sctl flow list` shows.
    pub(super) fn refresh(&mut self) {
        let s = &mut self.stats;
        s.rate_bps = self.tx.rate_bps();
        s.window_bytes = self.tx.window();
        s.slot_ns = self.tx.slot_ns();
        s.cav = self.tx.cav;
        s.tx_ece = self.tx.ece;
        s.rx_ece = self.rx.ece;
        s.updates_in = self.tx.updates;
        s.updates_refused = self.tx.refused;
    }

    /// Whether the writer waits at `now`.
    pub(super) fn held(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| t > now)
    }

    /// An SDU of `len` bytes left at `now` (`now_ns` on the slots' clock): the window
    /// counts it; when it is spent the writer is held until the next slot. Whether it is.
    pub(super) fn on_sent(&mut self, now: Instant, now_ns: u64, len: usize) -> bool {
        let wait = self.tx.on_send(now_ns, len);
        if wait == 0 {
            self.hold_until = None;
            return false;
        }
        self.hold_until = Some(now + Duration::from_nanos(wait));
        self.stats.waits += 1;
        true
    }
}

/// The FLOW_UPDATE PDU for the peer at `dst` whose endpoint id is `r_eid`: a DT PCI to
/// eid 0 (the flow allocator) and the 61-byte message with only `r_eid`, `ece` and code 2
/// set (unicast facts §7.1).
pub(super) fn flow_update_pdu(out: &mut Vec<u8>, dst: u32, ttl: u8, ecn: u8, r_eid: u64, ece: u16) {
    crate::dt::write_pci(out, dst, ttl, 0);
    if let Some(b) = out.get_mut(6) {
        *b = ecn;
    }
    let msg = FaMsg {
        s_addr: 0,
        r_eid,
        s_eid: 0,
        response: 0,
        qos: QosSpec::ZERO,
        ece,
        code: FaCode::FlowUpdate,
    };
    let mut w = Writer(Vec::with_capacity(MSG_LEN));
    msg.write(&mut w);
    out.extend_from_slice(&w.0);
}

/// A FLOW_UPDATE's receiver endpoint id and level, when `pdu` (with its PCI) is one.
pub(super) fn parse_flow_update(pdu: &[u8]) -> Option<(u64, u16)> {
    let msg = pdu.get(PCI_LEN..)?;
    if msg.len() < MSG_LEN {
        return None;
    }
    let (m, _) = FaMsg::parse(msg).ok()?;
    (m.code == FaCode::FlowUpdate).then_some((m.r_eid, m.ece))
}

impl Dataplane {
    /// Nanoseconds of the worker's monotonic clock at the start of this turn.
    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// ToDp::PortSet: the port's cap and queue bound.
    pub(super) fn set_port_shaping(&mut self, port: u32, rate: Option<u64>, queue: Option<u32>) {
        if !self.ports.contains_key(&port) && !self.uports.contains_key(&port) {
            tracing::warn!("port {port}: no such port to shape");
            return;
        }
        let now = Instant::now();
        let s = self.shapers.entry(port).or_insert_with(|| Shaper::new(now));
        s.set(rate, queue, now);
        tracing::info!(
            "port {port}: egress cap {} bit/s, queue {} PDUs per N-1 flow",
            s.rate_bps(),
            s.limit()
        );
    }

    /// ToDp::PortSet's impairments: `None` keeps a value as it is; all zero removes them
    /// (what is held is handed on at once).
    pub(super) fn set_port_impair(
        &mut self,
        port: u32,
        loss_ppm: Option<u32>,
        dup_ppm: Option<u32>,
        reorder_ppm: Option<u32>,
        delay_us: Option<u32>,
        corrupt_ppm: Option<u32>,
    ) {
        if [loss_ppm, dup_ppm, reorder_ppm, delay_us, corrupt_ppm]
            .iter()
            .all(Option::is_none)
        {
            return;
        }
        if !self.ports.contains_key(&port) && !self.uports.contains_key(&port) {
            tracing::warn!("port {port}: no such port to impair");
            return;
        }
        let cur = self
            .impairs
            .get(&port)
            .map(|i| i.conf())
            .unwrap_or_default();
        let ppm = |v: Option<u32>, was: u32| v.map_or(was, |v| v.min(crate::impair::PPM));
        let conf = crate::impair::ImpairConf {
            loss_ppm: ppm(loss_ppm, cur.loss_ppm),
            dup_ppm: ppm(dup_ppm, cur.dup_ppm),
            reorder_ppm: ppm(reorder_ppm, cur.reorder_ppm),
            delay: delay_us.map_or(cur.delay, |d| {
                Duration::from_micros(u64::from(d)).min(o7s_abi::impair::MAX_DELAY)
            }),
            corrupt_ppm: ppm(corrupt_ppm, cur.corrupt_ppm),
        };
        if !conf.active() {
            let stats = match self.ports.get_mut(&port) {
                Some(p) => Some(&mut p.stats),
                None => self.uports.get_mut(&port).map(|u| &mut u.stats),
            };
            if let Some(st) = stats {
                st.impair_loss_ppm = 0;
                st.impair_dup_ppm = 0;
                st.impair_reorder_ppm = 0;
                st.impair_delay_us = 0;
                st.impair_corrupt_ppm = 0;
            }
        }
        let seed = self.now_ns() ^ (u64::from(port) << 48) ^ u64::from(std::process::id());
        self.impairs
            .entry(port)
            .or_insert_with(|| crate::impair::Impair::new(conf, seed))
            .set(conf);
        tracing::info!(
            "port {port}: received data frames impaired: loss {} ppm, dup {} ppm, reorder {} ppm, delay {:?}, corrupt {} ppm",
            conf.loss_ppm,
            conf.dup_ppm,
            conf.reorder_ppm,
            conf.delay,
            conf.corrupt_ppm
        );
    }

    /// Hands on the held frames whose time has come (all of them on a port whose
    /// impairments were removed); how many.
    pub(super) fn release_impaired(&mut self) -> usize {
        if self.impairs.values().all(|i| i.held() == 0) {
            if !self.impairs.values().all(|i| i.conf().active()) {
                self.impairs.retain(|_, i| i.conf().active());
            }
            return 0;
        }
        let now = self.now;
        let far = now + o7s_abi::impair::MAX_DELAY * 2;
        let ids: Vec<u32> = self.impairs.keys().copied().collect();
        let mut done = 0;
        for port in ids {
            while let Some(imp) = self.impairs.get_mut(&port) {
                let at = if imp.conf().active() { now } else { far };
                let Some(mut buf) = imp.due(at) else { break };
                self.reinjecting = true;
                if self.uports.contains_key(&port) {
                    self.held_udp(port, &mut buf);
                } else {
                    self.handle_frame(port, &mut buf, None);
                }
                self.reinjecting = false;
                done += 1;
                if let Some(imp) = self.impairs.get_mut(&port) {
                    imp.recycle(buf);
                }
            }
        }
        self.impairs
            .retain(|_, i| i.conf().active() || i.held() > 0);
        done
    }

    /// Packets waiting to leave on N-1 flow `n1` when this turn began (`queued(out)` of
    /// MB-ECN; `Shaper::queued_at_turn` says why not the queue of the moment).
    pub(super) fn queued_on(&self, n1: u64) -> usize {
        self.flows
            .get(&n1)
            .and_then(|f| self.shapers.get(&f.port))
            .map_or(0, |s| s.queued_at_turn(n1))
    }

    /// Raises the ECN byte of `pdu` (leaving on N-1 flow `n1`) by that flow's queue; counted
    /// on the port when it did.
    pub(super) fn mark_ecn(&mut self, pdu: &mut [u8], n1: u64) {
        let q = self.queued_on(n1);
        if q < 1 << mbecn::ECN_Q_SHFT {
            return;
        }
        if let Some(b) = pdu.get_mut(6) {
            *b = mbecn::mark(*b, q);
        }
        if let Some(port) = self.flows.get(&n1).map(|f| f.port) {
            self.count_marked(port);
        }
    }

    pub(super) fn count_marked(&mut self, port: u32) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.stats.ecn_marked += 1;
        } else if let Some(u) = self.uports.get_mut(&port) {
            u.stats.ecn_marked += 1;
        }
    }

    /// Sends `self.frame` (built for `d`, N-1 flow `n1`) through the port's queue when it
    /// has a cap, else at once. Whether it was taken.
    fn out_n1(&mut self, n1: u64, d: &Egress, flush: bool) -> bool {
        out_frame(
            &mut self.shapers,
            &mut self.ports,
            &mut self.uports,
            n1,
            d,
            &self.frame,
            flush,
        )
    }

    /// Sends what the ports' caps let leave now; how many.
    pub(super) fn drain_shapers(&mut self) -> usize {
        let sent = self.send_shaped();
        // What the next turn's frames are marked by (`Shaper::queued_at_turn`).
        for s in self.shapers.values_mut() {
            s.new_turn();
        }
        sent
    }

    /// Sends what the ports' caps let leave now; how many.
    fn send_shaped(&mut self) -> usize {
        if self.shapers.values().all(Shaper::is_empty) {
            return 0;
        }
        let now = self.now;
        let mut sent = 0;
        let ids: Vec<u32> = self.shapers.keys().copied().collect();
        for port in ids {
            let mut flush = false;
            while let Some((n1, buf)) = self.shapers.get_mut(&port).and_then(|s| s.pop(now)) {
                let Some(d) = self.n1_dest(n1) else {
                    // The N-1 flow is gone: what waited for it goes too, counted.
                    let mut gone = 0;
                    if let Some(s) = self.shapers.get_mut(&port) {
                        s.recycle(buf);
                        gone = 1 + s.forget(n1) as u64;
                    }
                    if let Some(st) = self
                        .ports
                        .get_mut(&port)
                        .map(|p| &mut p.stats)
                        .or_else(|| self.uports.get_mut(&port).map(|u| &mut u.stats))
                    {
                        st.drop_flow_gone += gone;
                    }
                    continue;
                };
                match send_n1(&mut self.ports, &mut self.uports, &d, &buf, false) {
                    N1Sent::Yes => {
                        sent += 1;
                        flush = true;
                        if let Some(s) = self.shapers.get_mut(&port) {
                            s.recycle(buf);
                        }
                    }
                    // The port is full (its tx ring): try again next turn.
                    N1Sent::Busy => {
                        if let Some(s) = self.shapers.get_mut(&port) {
                            s.unpop(n1, buf);
                        }
                        break;
                    }
                    // It can never leave (counted in `tx_errors`): the next one may.
                    N1Sent::Never => {
                        if let Some(s) = self.shapers.get_mut(&port) {
                            s.recycle(buf);
                        }
                    }
                }
            }
            if flush {
                if let Some(x) = self.ports.get_mut(&port).and_then(|p| p.xdp.as_mut()) {
                    x.flush();
                }
            }
        }
        sent
    }

    /// How long the loop may sleep for the caps and the held writers: `None` when nothing
    /// waits on time.
    pub(super) fn time_deadline(&self) -> Option<Duration> {
        let shaped = self
            .shapers
            .values()
            .filter_map(|s| s.next_in(self.now))
            .min();
        // A hold already over is no reason to wake (the writer, if it had an SDU, sent it
        // this turn; a writer that stopped writing leaves its last hold behind, which would
        // otherwise make every sleep a zero one: the worker spinning a CPU until the flow
        // sends again or closes).
        let held = self
            .flows
            .values()
            .filter_map(|f| f.ca.as_ref()?.hold_until)
            .filter(|t| *t > self.now)
            .map(|t| t.saturating_duration_since(self.now))
            .min();
        let impaired = self
            .impairs
            .values()
            .filter_map(|i| i.next_in(self.now))
            .min();
        [shaped, held, impaired].into_iter().flatten().min()
    }

    /// A PDU with ECN byte `ecn` was delivered to flow `id`: its receiver end folds it in
    /// and sends a FLOW_UPDATE to the peer when one is due.
    pub(super) fn ca_received(&mut self, id: u64, ecn: u8) {
        let Some(f) = self.flows.get_mut(&id) else {
            return;
        };
        let (Some(c), Some(spec)) = (f.ca.as_mut(), f.uni) else {
            return;
        };
        if ecn > 0 {
            c.stats.rx_marked += 1;
        }
        let Some(ece) = c.rx.on_packet(ecn) else {
            return;
        };
        if self.send_flow_update(&spec, ece) {
            if let Some(c) = self.flows.get_mut(&id).and_then(|f| f.ca.as_mut()) {
                c.stats.updates_out += 1;
            }
            if let Some(u) = self.unis.get_mut(&spec.ipcp) {
                u.stats.ca_updates_out += 1;
            }
        }
    }

    /// Sends a FLOW_UPDATE with level `ece` to the peer of the flow `spec` describes, on
    /// the next hop's N-1 flow (handed to its worker when another's).
    fn send_flow_update(&mut self, spec: &UniFlowSpec, ece: u16) -> bool {
        let Some(n1) = self.tab.uni(spec.ipcp).and_then(|u| u.route(spec.dst)) else {
            return false;
        };
        let mut pdu = Vec::with_capacity(PCI_LEN + MSG_LEN);
        let ecn = mbecn::mark(0, self.queued_on(n1));
        flow_update_pdu(&mut pdu, spec.dst, spec.ttl, ecn, spec.remote_eid, ece);
        if let Some(w) = self.remote_owner(n1) {
            self.hand_off(
                w,
                crate::handoff::HandedPdu {
                    ipcp: spec.ipcp,
                    what: crate::handoff::Handed::Send { n1, transit: false },
                    pdu,
                },
            );
            return true;
        }
        let Some(d) = self.n1_dest(n1) else {
            return false;
        };
        let mut frame = std::mem::take(&mut self.frame);
        let built = build_n1(&mut frame, &d, pdu.len(), |o| {
            o.extend_from_slice(&pdu);
            true
        });
        self.frame = frame;
        let sent = built && self.out_n1(n1, &d, true);
        if sent {
            self.count_n1_tx(n1, 1, pdu.len() as u64);
        }
        sent
    }

    /// A PDU for IPCP `ipcp`'s flow allocator (eid 0): a FLOW_UPDATE for one of this
    /// worker's flows is taken here (`true`); one for another worker's flow is handed to
    /// that worker (`true`, unless `handed`: it came from another worker and is not handed
    /// on again); one for an endpoint id the IPCP does not have is dropped and counted
    /// (`true`); anything else goes to o7sd (`false`).
    pub(super) fn ca_take_update(&mut self, ipcp: u32, pdu: &[u8], handed: bool) -> bool {
        let Some((r_eid, ece)) = parse_flow_update(pdu) else {
            return false;
        };
        let flow = self
            .tab
            .uni(ipcp)
            .and_then(|u| u.local.get(&r_eid).copied());
        let Some(flow) = flow else {
            let owner = self
                .handoff
                .as_ref()
                .and_then(|(_, me)| self.owners.owner_of_eid(ipcp, r_eid).filter(|w| w != me));
            if let Some(w) = owner.filter(|_| !handed) {
                self.hand_off(
                    w,
                    crate::handoff::HandedPdu {
                        ipcp,
                        what: crate::handoff::Handed::FlowUpdate { ipcp },
                        pdu: self.handed_buf(pdu),
                    },
                );
                return true;
            }
            if let Some(u) = self.unis.get_mut(&ipcp) {
                u.stats.ca_updates_unknown += 1;
            }
            return true;
        };
        let now_ns = self.now_ns();
        let Some(f) = self.flows.get_mut(&flow) else {
            return false;
        };
        match f.ca.as_mut() {
            Some(c) => {
                // (One beyond the PDUs sent is forged: counted in the flow's
                // `updates_refused`, not taken.)
                if c.tx.take_update_at(now_ns, ece) {
                    if let Some(u) = self.unis.get_mut(&ipcp) {
                        u.stats.ca_updates_in += 1;
                    }
                }
            }
            None => {
                if let Some(u) = self.unis.get_mut(&ipcp) {
                    u.stats.ca_updates_ignored += 1;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The FLOW_UPDATE as the facts lay it out: PCI (dst LE, qc 0, ttl, ecn, eid 0 LE),
    /// then 61 big-endian bytes with only r_eid, ece and code 2 set.
    #[test]
    fn a_flow_update_is_laid_out_byte_for_byte_as_the_reference_sends_it() {
        let mut pdu = Vec::new();
        flow_update_pdu(&mut pdu, 0x6c8a_0ce2, 60, 0, 0xbc63_5910_0000_0042, 297);
        let want = hex_bytes(concat!(
            "e20c8a6c",
            "00",
            "3c",
            "00",
            "0000000000000000", // PCI
            "0000000000000000", // s_addr
            "bc63591000000042", // r_eid
            "0000000000000000", // s_eid
            "0000000000000000", // bandwidth
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "0129", // ece 297
            "02",   // FLOW_UPDATE
            "00",
            "00",
        ));
        assert_eq!(pdu, want);
        assert_eq!(pdu.len(), PCI_LEN + 61);
        assert_eq!(parse_flow_update(&pdu), Some((0xbc63_5910_0000_0042, 297)));
        // A FLOW_REPLY is none; nor is a short message.
        let mut reply = pdu.clone();
        reply[PCI_LEN + 58] = 1;
        assert_eq!(parse_flow_update(&reply), None);
        assert_eq!(parse_flow_update(&pdu[..PCI_LEN + 60]), None);
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
