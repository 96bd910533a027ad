//! The sending side: SDUs into sequenced PDUs within the window, acknowledgements taken (the
//! RTT estimator, NewReno's partial ACKs), retransmission (fast on the third duplicate ACK, on
//! the RTO timer) and the peer's window.

use super::{before, Frcp, SendError, Tx, Unacked};
use o7s_wire::frct::flags;
use std::time::Instant;

impl Frcp {
    /// Takes SDU `sdu` to send: a PDU goes to [`Frcp::poll_transmit`].
    pub fn send(&mut self, now: Instant, sdu: &[u8]) -> Result<(), SendError> {
        let idle = self.unacked.is_empty()
            && self
                .last_send
                .is_none_or(|t| now.saturating_duration_since(t) > self.cfg.inact);
        if !idle && !before(self.next, self.snd_rwe) {
            let since = *self.closed_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.cfg.rdv_timeout {
                return Err(SendError::Reset);
            }
            if self.next_rdv.is_none() {
                self.next_rdv = Some(now);
                self.handle_timeout(now);
            }
            return Err(SendError::WouldBlock);
        }
        self.closed_since = None;
        self.next_rdv = None;
        let mut f = flags::DATA;
        if idle {
            // A new run: a fresh sequence number, the receiver told by DRF.
            self.next = self.draw();
            self.snd_rwe = self.next.wrapping_add(self.start_window());
            f |= flags::DRF;
        }
        let ackno = if self.run && self.cfg.rtx {
            f |= flags::ACK;
            self.ack_due = None;
            self.rx_unacked = 0;
            self.rcv_lwe
        } else {
            0
        };
        if self.run {
            f |= flags::FC;
        }
        let next = self.next;
        let mut w = self.header(f, next, ackno);
        w.0.reserve_exact(sdu.len());
        w.put(sdu);
        let pdu = w.0;
        if self.cfg.rtx {
            self.unacked.push_back(Unacked {
                seqno: next,
                pdu,
                sent: now,
                retries: 0,
                deadline: now + self.rto_timer(),
            });
            self.queue(Tx::Data(next));
        } else {
            self.queue(Tx::Pdu(pdu));
        }
        self.counters.sent += 1;
        self.next = self.next.wrapping_add(1);
        self.last_send = Some(now);
        Ok(())
    }

    pub(super) fn on_ack(&mut self, now: Instant, ackno: u32) {
        if !self.cfg.rtx {
            return;
        }
        // The peer expects `ackno` next: everything before it arrived.
        if before(self.next, ackno) {
            self.counters.bad_acks += 1;
            return;
        }
        // The same ackno again while packets are out: the peer has a gap there. The third
        // time, the first of them goes again at once (fast retransmit).
        if self.unacked.front().is_some_and(|u| u.seqno == ackno) {
            self.dup_acks = self.dup_acks.saturating_add(1);
            if self.dup_acks == 3 {
                self.recover = Some(self.next);
                self.resend_front(now, true);
            }
            return;
        }
        self.dup_acks = 0;
        // An RTT sample from the newest packet acknowledged, if it was sent once (Karn)
        // and after the last retransmission: a packet that waited at the receiver behind a
        // gap being repaired would measure the repair, not the path.
        let mut sample = None;
        while self.unacked.front().is_some_and(|u| before(u.seqno, ackno)) {
            if let Some(u) = self.unacked.pop_front() {
                let clean = u.retries == 0 && self.last_rtx.is_none_or(|r| u.sent > r);
                sample = clean.then(|| now.saturating_duration_since(u.sent));
            }
        }
        if let Some(r) = sample {
            self.rtt.sample(r, &self.cfg);
        }
        if let Some(r) = self.recover {
            if before(ackno, r) {
                // A partial ACK: the next hole of the same window, if its own ACK is late
                // (sent a smoothed RTT ago or more: a packet merely reordered behind the
                // repair is not sent again) and it was not sent again already.
                let srtt = self.rtt.srtt.unwrap_or(self.rtt.rto);
                if self.unacked.front().is_some_and(|u| {
                    u.retries == 0 && now.saturating_duration_since(u.sent) >= srtt
                }) {
                    self.resend_front(now, true);
                }
            } else {
                self.recover = None;
            }
        }
    }

    /// Sends the oldest unacknowledged packet again now (a fast retransmission: on
    /// duplicate or partial ACKs) with its timer restarted.
    pub(super) fn resend_front(&mut self, now: Instant, fast: bool) {
        let timer = self.rto_timer();
        if let Some(u) = self.unacked.front_mut() {
            u.retries += 1;
            u.deadline = now + timer;
            let seqno = u.seqno;
            self.queue(Tx::Data(seqno));
            self.counters.retransmits += 1;
            self.counters.fast_retransmits += u64::from(fast);
            self.last_rtx = Some(now);
        }
    }

    /// A window edge of 24 bits: the full sequence number nearest to the edge we had.
    pub(super) fn on_window(&mut self, rwe24: u32) {
        let had = self.snd_rwe;
        let c = (had & 0xff00_0000).wrapping_add(rwe24 & 0x00ff_ffff);
        let dist = |x: u32| {
            let d = x.wrapping_sub(had);
            d.min(d.wrapping_neg())
        };
        let full = [c.wrapping_sub(0x0100_0000), c, c.wrapping_add(0x0100_0000)]
            .into_iter()
            .min_by_key(|x| dist(*x))
            .unwrap_or(c);
        // An edge further than the peer's reorder queue from where we are is not of this
        // run (a window from before the peer's run started, or garbage): ignored.
        let reach = self.cfg.reorder.max(self.cfg.window);
        if dist(full) > reach.saturating_mul(2) {
            self.counters.bad_windows += 1;
            return;
        }
        // Never more in flight than the reorder queue: an edge further than that past the
        // oldest packet not yet acknowledged is held there (a receiver could not keep
        // what it let us send; a liar could keep opening it).
        let base = self.unacked.front().map_or(self.next, |u| u.seqno);
        let most = base.wrapping_add(reach);
        let full = if before(most, full) {
            self.counters.bad_windows += 1;
            most
        } else {
            full
        };
        self.snd_rwe = full;
        if before(self.next, self.snd_rwe) {
            self.closed_since = None;
            self.next_rdv = None;
        }
    }
}
