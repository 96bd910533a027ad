//! The machine's time and its transmit queue: the retransmission and ACK timers, the rendezvous
//! of a closed window, the reset after a second closed, and what leaves for the peer.

use super::{Frcp, Tx, Unacked, MAX_TRANSMITS};
use o7s_wire::frct::flags;
use std::collections::VecDeque;
use std::time::Instant;

impl Frcp {
    /// Runs the timers due at `now`: delayed ACKs, retransmissions, rendez-vous.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ack_due.is_some_and(|t| t <= now) {
            self.send_ack();
        }
        // The RTO: the oldest packet goes again (doubling its timer); the others wait one
        // more RTO for the acknowledgements it brings (not all at once: cumulative ACKs
        // would make every one behind a loss go again).
        if self.unacked.front().is_some_and(|u| u.deadline <= now) {
            let rto = self.rto_timer();
            let max = self.cfg.rto_max;
            if let Some(u) = self.unacked.front_mut() {
                u.retries += 1;
                u.deadline = now + rto.saturating_mul(1u32 << u.retries.min(6)).min(max);
                let seqno = u.seqno;
                self.queue(Tx::Data(seqno));
                self.counters.retransmits += 1;
                self.last_rtx = Some(now);
            }
            for u in self.unacked.iter_mut().skip(1) {
                u.deadline = u.deadline.max(now + rto);
            }
        }
        if self.next_rdv.is_some_and(|t| t <= now) {
            // A receiver that lost the run's first packet (DRF) has no run: it holds what
            // came after it unanswered and cannot answer a rendez-vous either. So once a
            // rendez-vous went unanswered, the DRF packet goes again with each one (before
            // this, a lost DRF with the window full reset the write after a second, the
            // RTO's first retry racing the rendez-vous' timeout).
            let unanswered = self
                .closed_since
                .is_some_and(|s| now.saturating_duration_since(s) >= self.cfg.rdv_interval);
            let drf_unacked = self
                .unacked
                .front()
                .is_some_and(|u| u.pdu.first().is_some_and(|f| f & flags::DRF != 0));
            if unanswered && drf_unacked {
                self.resend_front(now, false);
                self.counters.drf_resent += 1;
            }
            let next = self.next;
            let pdu = self.header(flags::RDVS, next, 0).0;
            self.queue(Tx::Ctl(pdu));
            self.counters.rdvs_sent += 1;
            self.next_rdv = Some(now + self.cfg.rdv_interval);
        }
    }

    /// When [`Frcp::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // The RTO runs on the oldest unacknowledged packet only.
        self.unacked
            .front()
            .map(|u| u.deadline)
            .into_iter()
            .chain(self.ack_due)
            .chain(self.next_rdv)
            .min()
    }

    /// Sends the delayed ACK owed, now, if one is (an end that goes away says what it got
    /// instead of leaving its peer to retransmit into the void).
    pub fn ack_now(&mut self) {
        if self.ack_due.is_some() {
            self.send_ack();
        }
    }

    /// Queues `t`; in a full queue the oldest goes, but data never for a control packet
    /// (a peer sending duplicates or rendez-vous faster than the flow drains would make
    /// us answer over our own data): a control packet replaces the oldest control packet,
    /// or is dropped; data makes the oldest control packet, or else the oldest entry, go.
    /// Every drop is counted.
    pub(super) fn queue(&mut self, t: Tx) {
        if self.transmits.len() >= MAX_TRANSMITS {
            let ctl = self.transmits.iter().position(|x| matches!(x, Tx::Ctl(_)));
            self.counters.transmits_dropped += 1;
            match (ctl, &t) {
                (Some(i), _) => {
                    self.transmits.remove(i);
                }
                (None, Tx::Ctl(_)) => return,
                (None, _) => {
                    self.transmits.pop_front();
                }
            }
        }
        self.transmits.push_back(t);
    }

    /// The bytes of a queued PDU; `None` for a data packet acknowledged meanwhile.
    pub(super) fn tx_bytes<'a>(unacked: &'a VecDeque<Unacked>, t: &'a Tx) -> Option<&'a [u8]> {
        match t {
            Tx::Pdu(p) | Tx::Ctl(p) => Some(p),
            Tx::Data(seqno) => {
                let first = unacked.front()?.seqno;
                let u = unacked.get(seqno.wrapping_sub(first) as usize)?;
                (u.seqno == *seqno).then_some(u.pdu.as_slice())
            }
        }
    }

    /// PDUs waiting to go ([`Frcp::poll_transmit`], [`Frcp::transmit_with`]).
    pub fn pending_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// The next PDU for the flow.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        while let Some(t) = self.transmits.pop_front() {
            match t {
                Tx::Pdu(p) | Tx::Ctl(p) => return Some(p),
                t @ Tx::Data(_) => {
                    if let Some(b) = Self::tx_bytes(&self.unacked, &t) {
                        return Some(b.to_vec());
                    }
                }
            }
        }
        None
    }

    /// Offers the PDUs waiting to go to `take`, in order, without copying them; stops at
    /// the first it does not take (it stays first in line). Returns how many it took.
    pub fn transmit_with(&mut self, mut take: impl FnMut(&[u8]) -> bool) -> usize {
        let mut n = 0;
        while let Some(t) = self.transmits.front() {
            if let Some(b) = Self::tx_bytes(&self.unacked, t) {
                if !take(b) {
                    break;
                }
                n += 1;
            }
            self.transmits.pop_front();
        }
        n
    }
}
