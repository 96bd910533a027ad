//! The Ethernet packet path: frames from a port (AF_XDP batch or AF_PACKET) parsed and
//! delivered to their flow or to o7sd; SDUs from a flow framed (eth-dix/eth-llc) and sent.

use super::dt_path::FastForward;
use super::*;
use crate::packet_path::{self as path, Action, EthDest, PortView, Step};
use crate::xdp::RxSlot;

/// Where flow `f`'s frames go on its Ethernet port `p`.
pub(super) fn eth_dest(p: &Port, f: &Flow) -> EthDest {
    EthDest {
        kind: p.kind,
        src: p.mac,
        dst: f.peer,
        remote: f.remote,
        local: f.local,
    }
}

/// Where an SDU to send comes from: a flow's ring in shared memory, or our own bytes.
enum SduSource<'a> {
    Shared(o7s::ring::SharedSdu<'a>),
    Local(&'a [u8]),
}

impl SduSource<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Shared(s) => s.len(),
            Self::Local(b) => b.len(),
        }
    }
    fn append_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Shared(s) => s.append_to(out),
            Self::Local(b) => out.extend_from_slice(b),
        }
    }
}

/// Builds the frame of SDU `plain` for `d` into `frame`, sealed straight into it (IV |
/// ciphertext | tag after the header) when the flow is encrypted; the SDU's length on the
/// wire, or None when it cannot be framed.
fn frame_sdu(
    frame: &mut Vec<u8>,
    d: &EthDest,
    crypt: &mut Option<crate::crypt::Crypt>,
    plain: SduSource<'_>,
) -> Option<usize> {
    let len = match crypt {
        Some(_) => plain.len() + crate::crypt::OVERHEAD,
        None => plain.len(),
    };
    let write = |o: &mut Vec<u8>| match crypt {
        Some(c) => c.seal_appending(o, |o| plain.append_to(o)).is_ok(),
        None => {
            plain.append_to(o);
            true
        }
    };
    build_frame(frame, d, len, write).then_some(len)
}

/// Builds the frame for `d` whose SDU of `len` bytes `write` appends; whether it could be
/// framed and written.
pub(super) fn build_frame(
    frame: &mut Vec<u8>,
    d: &EthDest,
    len: usize,
    write: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    let built = match d.kind {
        PortKind::Dix { ethertype } => {
            build_dix_with(frame, d.dst, d.src, ethertype, d.remote as u16, len, write)
        }
        PortKind::Llc => build_llc_with(
            frame,
            d.dst,
            d.src,
            d.remote as u8,
            d.local as u8,
            len,
            write,
        ),
        PortKind::Udp { .. } => Err(frames::SduTooLong(len)),
    };
    matches!(built, Ok(true))
}

impl Dataplane {
    pub(super) fn send_mgmt(&mut self, port: u32, dst: [u8; 6], payload: &[u8]) {
        let Some(p) = self.ports.get_mut(&port) else {
            return;
        };
        let built = match p.kind {
            PortKind::Dix { ethertype } => {
                build_dix(&mut self.frame, dst, p.mac, ethertype, 0, payload)
            }
            PortKind::Llc => build_llc(
                &mut self.frame,
                dst,
                p.mac,
                llc::MGMT_SAP,
                llc::MGMT_SAP,
                payload,
            ),
            PortKind::Udp { .. } => Err(frames::SduTooLong(payload.len())),
        };
        if built.is_err() {
            p.stats.tx_errors += 1;
            return;
        }
        for t in &mut p.taps {
            t.take(&self.frame, true, 0);
        }
        match p.sock.send(&self.frame) {
            Ok(()) => p.stats.tx_frames += 1,
            Err(e) => {
                p.stats.tx_errors += 1;
                tracing::warn!("port {}: send: {e}", p.dev);
            }
        }
    }

    pub(super) fn rx_port(&mut self, id: u32) -> usize {
        let mut buf = std::mem::take(&mut self.buf);
        let mut done = 0;
        for _ in 0..256 {
            let Some(p) = self.ports.get_mut(&id) else {
                break;
            };
            let n = match p.sock.recv(&mut buf) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("port {}: recv: {e}", p.dev);
                    break;
                }
            };
            done += 1;
            if let Some(frame) = buf.get_mut(..n) {
                self.handle_frame(id, frame, None);
            }
            if done % 32 == 0 {
                self.kick_apps();
            }
        }
        self.kick_apps();
        self.buf = buf;
        done
    }

    /// Receives a batch of frames from a port's AF_XDP socket.
    pub(super) fn rx_xdp(&mut self, id: u32) -> usize {
        let Some(mut x) = self.ports.get_mut(&id).and_then(|p| p.xdp.take()) else {
            return 0;
        };
        let mut done = 0;
        for _ in 0..16 {
            let n = x.recv(|frame, slot| self.handle_frame(id, frame, Some(slot)));
            self.kick_tx_due();
            self.kick_apps();
            done += n;
            if n == 0 {
                break;
            }
        }
        if let Some(p) = self.ports.get_mut(&id) {
            p.xdp = Some(x);
        }
        done
    }

    /// Kicks the AF_XDP ports frames were forwarded onto in place during the last batch.
    pub(super) fn kick_tx_due(&mut self) {
        // (The list keeps its room: no allocation per batch.)
        let mut due = std::mem::take(&mut self.tx_kick_due);
        for port in due.drain(..) {
            if let Some(x) = self.ports.get_mut(&port).and_then(|p| p.xdp.as_mut()) {
                x.flush();
            }
        }
        self.tx_kick_due = due;
    }

    /// Handles one Ethernet frame of port `id`: through the port's impairments when it has
    /// any and the frame carries data (`crate::impair`: lost, held for later, delivered
    /// twice), else at once. `slot`: the frame's AF_XDP slot, when it lies in a UMEM (it can
    /// then be forwarded in place).
    pub(super) fn handle_frame(&mut self, id: u32, frame: &mut [u8], slot: Option<&mut RxSlot>) {
        if self.reinjecting || !self.impairs.contains_key(&id) {
            return self.handle_frame_now(id, frame, slot);
        }
        let Some(p) = self.ports.get_mut(&id) else {
            return;
        };
        let (eid, at) = match frames::parse(p.kind, frame) {
            Parsed::Sdu { eid, sdu, .. } if eid != 0 => {
                let off = sdu.as_ptr() as usize - frame.as_ptr() as usize;
                (eid, off..off + sdu.len())
            }
            _ => return self.handle_frame_now(id, frame, slot),
        };
        // What arrived is captured, whatever the impairments make of it.
        for t in &mut p.taps {
            t.take(frame, false, eid);
        }
        let Some(imp) = self.impairs.get_mut(&id) else {
            return;
        };
        // The clock of the moment: `self.now` is the loop's, which may be from before a
        // sleep, and a delay counted from it would be cut short.
        let v = imp.decide(std::time::Instant::now());
        if let (Some(pick), Some(sdu)) = (v.corrupt, frame.get_mut(at)) {
            imp.corrupt_sdu(sdu, pick);
        }
        if let Some(at) = v.at {
            let held = (0..v.copies).filter(|_| imp.hold(at, frame)).count();
            imp.count(&v, u8::try_from(held).unwrap_or(u8::MAX));
            return;
        }
        imp.count(&v, v.copies);
        // Handled now: a duplicate is copied first (handling may rewrite the frame).
        let dup = (v.copies == 2).then(|| frame.to_vec());
        if v.copies > 0 {
            self.reinjecting = true;
            self.handle_frame_now(id, frame, slot);
            if let Some(mut d) = dup {
                // Not in place: the copy is in no ring.
                self.handle_frame_now(id, &mut d, None);
            }
            self.reinjecting = false;
        }
    }

    /// One Ethernet frame of port `id`: decided by [`path::step_eth`] over the worker's
    /// tables, and the decision carried out here (a PDU forwarded in place at once, else
    /// counters, o7sd, a flow's ring, the DT path).
    fn handle_frame_now(&mut self, id: u32, frame: &mut [u8], mut slot: Option<&mut RxSlot>) {
        let Some(p) = self.ports.get_mut(&id) else {
            return;
        };
        // Captures see the frame as it arrived, before a forwarded PDU's TTL changes (a
        // frame handled again after its impairments was captured as it arrived).
        if !self.reinjecting && !p.taps.is_empty() {
            if let Parsed::Sdu { eid, .. } = frames::parse(p.kind, frame) {
                for t in &mut p.taps {
                    t.take(frame, false, eid);
                }
            }
        }
        let port = PortView {
            id,
            kind: p.kind,
            mac: p.mac,
        };
        let step = path::step_eth(port, frame, &self.tab);
        if !matches!(step, Step::Decided(Action::NotOurs | Action::Malformed)) {
            p.stats.rx_frames += 1;
        }
        let action = match step {
            Step::Forward(f) => {
                let fast = match slot.as_deref_mut() {
                    Some(s) => self.forward_fast(&f, frame, s),
                    None => FastForward::Untouched,
                };
                match fast {
                    FastForward::Sent => return,
                    // The ring took none: copied, not tried in place again.
                    FastForward::Applied => slot = None,
                    FastForward::Untouched => f.decrement_ttl(frame),
                }
                // Not in place: the full path's action, the TTL decremented as it has it.
                f.action()
            }
            Step::Decided(a) => a,
        };
        let Some(p) = self.ports.get_mut(&id) else {
            return;
        };
        match action {
            // (UdpMgmt: not from an Ethernet port.)
            Action::NotOurs | Action::UdpMgmt => {}
            Action::Malformed => p.stats.drop_malformed += 1,
            Action::MgmtBadSource => p.stats.drop_mgmt_bad_source += 1,
            Action::Mgmt { src, dst, sdu } => {
                if !policed(p.police.check(Source::Mac(src), self.now), &mut p.stats) {
                    return;
                }
                p.stats.rx_mgmt += 1;
                let msg = FromDp::Mgmt {
                    port: id,
                    src,
                    dst,
                    payload: frame.get(sdu).unwrap_or(&[]).to_vec(),
                };
                self.mgmt_to_o7sd(msg, id);
            }
            Action::UnknownEid { .. } => p.stats.drop_unknown_eid += 1,
            Action::WrongPeer { .. } => p.stats.drop_wrong_peer += 1,
            flow_action => self.apply_flow(frame, flow_action, slot),
        }
    }

    /// Carries out the decision on an SDU of one of this worker's flows, lying in `frame`
    /// (where a DT PDU can be forwarded in place): into the flow's ring (opened first when
    /// sealed), a keepalive noted, or the DT path's action.
    pub(super) fn apply_flow(
        &mut self,
        frame: &mut [u8],
        action: Action,
        slot: Option<&mut RxSlot>,
    ) {
        let now = self.now;
        match action {
            Action::Keepalive { flow } => {
                if let Some(f) = self.flows.get_mut(&flow) {
                    f.deliver_mut(&mut [], now);
                }
            }
            Action::Deliver { flow, sdu } | Action::Sealed { flow, sdu } => {
                if let (Some(f), Some(s)) = (self.flows.get_mut(&flow), frame.get_mut(sdu)) {
                    f.deliver_mut(s, now);
                }
            }
            Action::Dt {
                ipcp,
                from,
                pdu,
                dt,
            } => {
                let len = pdu.len() as u64;
                self.count_dt_rx(from, len);
                if self.dt_apply(ipcp, frame, pdu.clone(), dt, slot) {
                    return;
                }
                // For o7sd: into the N-1 flow's ring (counted there).
                if let (Some(f), Some(s)) = (self.flows.get_mut(&from), frame.get_mut(pdu)) {
                    f.stats.rx_sdus -= 1;
                    f.stats.rx_bytes -= len;
                    f.deliver_mut(s, now);
                }
            }
            Action::NotOurs
            | Action::Malformed
            | Action::Mgmt { .. }
            | Action::MgmtBadSource
            | Action::UdpMgmt
            | Action::UnknownEid { .. }
            | Action::WrongPeer { .. } => {}
        }
    }

    pub(super) fn tx_flow(&mut self, id: u64) -> usize {
        let Some(f) = self.flows.get_mut(&id) else {
            return 0;
        };
        let Some(p) = self.ports.get_mut(&f.port) else {
            return 0;
        };
        let dest = eth_dest(p, f);
        let ring = f.mem.ring(Dir::Tx);
        let mut done = 0;
        for _ in 0..TX_BATCH {
            done += 1;
            let frame = &mut self.frame;
            let crypt = &mut f.crypt;
            let r = ring.pop_with(|plain| {
                frame_sdu(frame, &dest, crypt, SduSource::Shared(plain)).ok_or(())
            });
            match r {
                Ok(None) => {
                    done -= 1;
                    break;
                }
                Ok(Some(Ok(len))) => {
                    let sent = match &mut p.xdp {
                        Some(x) => x.send(frame),
                        None => p.sock.send(frame).is_ok(),
                    };
                    if sent {
                        // Captured as sent only when it was (the frame is still ours:
                        // the ring took a copy).
                        for t in &mut p.taps {
                            t.take(frame, true, dest.local);
                        }
                        f.stats.tx_sdus += 1;
                        f.stats.tx_bytes += len as u64;
                        p.stats.tx_frames += 1;
                    } else {
                        p.stats.tx_errors += 1;
                    }
                }
                Ok(Some(Err(_))) => p.stats.tx_errors += 1,
                Err(_) => {
                    // No SDU was taken: not work (the flow goes at the next look at the apps).
                    done -= 1;
                    f.stats.drop_ring_corrupt += 1;
                    break;
                }
            }
        }
        if let Some(x) = &mut p.xdp {
            if done > 0 || x.tx_pending() {
                x.flush();
            }
        }
        if done > 0 {
            f.last_tx = self.now;
        }
        done
    }

    /// Sends a keepalive (an empty SDU) on an Ethernet flow; whether the port took it.
    pub(super) fn keepalive_eth(&mut self, id: u64) -> bool {
        let Some(f) = self.flows.get_mut(&id) else {
            return false;
        };
        let Some(p) = self.ports.get_mut(&f.port) else {
            return false;
        };
        let dest = eth_dest(p, f);
        if frame_sdu(&mut self.frame, &dest, &mut f.crypt, SduSource::Local(&[])).is_none() {
            return false;
        }
        let sent = match &mut p.xdp {
            Some(x) => {
                let sent = x.send(&self.frame);
                x.flush();
                sent
            }
            None => p.sock.send(&self.frame).is_ok(),
        };
        if sent {
            for t in &mut p.taps {
                t.take(&self.frame, true, dest.local);
            }
            p.stats.tx_frames += 1;
        } else {
            p.stats.tx_errors += 1;
        }
        sent
    }
}
