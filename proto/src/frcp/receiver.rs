//! The receiving side: a run started by DRF, data placed in the reorder queue and delivered in
//! order (late packets dropped without retransmission), and the ACKs and flow-control updates
//! it sends.

use super::{before, Frcp, Tx, ACK_FC, GAP_ACKS};
use o7s_wire::frct::flags;
use std::time::Instant;

impl Frcp {
    pub(super) fn deliver(&mut self, sdu: Vec<u8>) {
        self.delivered.push_back(sdu);
        self.counters.delivered += 1;
    }

    pub(super) fn start_run(&mut self, now: Instant, seqno: u32) {
        self.run = true;
        self.last_in_run = Some(now);
        self.rcv_lwe = seqno;
        self.rcv_advertised = seqno.wrapping_add(self.start_window());
        self.held.clear();
    }

    pub(super) fn on_data(&mut self, now: Instant, seqno: u32, drf: bool, payload: &[u8]) {
        if !self.run {
            if drf || !self.cfg.rtx {
                self.start_run(now, seqno);
                // What came before the DRF and belongs to the run is placed.
                let early = std::mem::take(&mut self.early);
                self.place(now, seqno, payload);
                for (s, p) in early {
                    self.place(now, s, &p);
                }
            } else if self.early.len() < self.cfg.reorder as usize {
                self.early.push((seqno, payload.to_vec()));
            } else {
                self.counters.out_of_window += 1;
            }
            return;
        }
        let reach = self.cfg.reorder.max(self.cfg.window);
        let in_reach = !before(seqno, self.rcv_lwe.wrapping_sub(reach))
            && before(seqno, self.rcv_lwe.wrapping_add(reach));
        if in_reach {
            // Only what is news keeps the run alive: a packet delivered already (a
            // replayed sealed SDU, say) did not, or it could keep an idle run going for
            // ever and make the sender's next run (its DRF) look out of reach.
            if !before(seqno, self.rcv_lwe) {
                self.last_in_run = Some(now);
            }
        } else if drf
            && self
                .last_in_run
                .is_none_or(|t| now.saturating_duration_since(t) > self.cfg.inact)
        {
            // The sender started over (idle, or restarted) and the old run has been
            // quiet for `inact`: a new run. (A DRF packet of the old run sent again and
            // arriving late is not one: the run goes on.)
            self.start_run(now, seqno);
        }
        self.place(now, seqno, payload);
    }

    /// A data packet of the current run.
    pub(super) fn place(&mut self, now: Instant, seqno: u32, payload: &[u8]) {
        if before(seqno, self.rcv_lwe) {
            let reach = self.cfg.reorder.max(self.cfg.window);
            if self.rcv_lwe.wrapping_sub(seqno) > reach {
                // Far behind: no packet of ours could be that old. Not answered.
                self.counters.out_of_window += 1;
                return;
            }
            if self.cfg.rtx {
                // Delivered already: our ACK was lost; say again where we are.
                self.counters.duplicates += 1;
                self.send_ack();
            } else {
                self.counters.late += 1;
            }
            return;
        }
        let off = seqno.wrapping_sub(self.rcv_lwe);
        // Beyond the reorder queue, or beyond any window edge we told (what the app has
        // not taken counts against it): a sender that ignores our window cannot make us
        // hold more than a window for an app that does not read.
        let waiting = u32::try_from(self.delivered.len()).unwrap_or(u32::MAX);
        if off >= self.cfg.reorder || off.saturating_add(waiting) >= self.cfg.window {
            self.counters.out_of_window += 1;
            return;
        }
        if !self.cfg.rtx {
            // No retransmission: a gap is skipped, in order all the same.
            self.deliver(payload.to_vec());
            self.rcv_lwe = seqno.wrapping_add(1);
            return;
        }
        // Slot i holds `rcv_lwe + i`.
        let i = off as usize;
        if self.held.len() <= i {
            self.held.resize_with(i + 1, || None);
        }
        match self.held.get_mut(i) {
            Some(slot @ None) => *slot = Some(payload.to_vec()),
            _ => {
                self.counters.duplicates += 1;
                self.send_ack();
                return;
            }
        }
        let mut taken = 0u32;
        while let Some(Some(_)) = self.held.front() {
            if let Some(Some(p)) = self.held.pop_front() {
                self.deliver(p);
                self.rcv_lwe = self.rcv_lwe.wrapping_add(1);
                self.rx_unacked = self.rx_unacked.saturating_add(1);
                taken += 1;
            }
        }
        // A repair that filled a gap (it let packets held behind it go) is acknowledged
        // at once too: the sender is waiting for it.
        if off != 0 {
            // A gap: the first packets beyond it say so at once (the sender's third
            // duplicate ACK repairs it); after those, one in a quarter window (more
            // duplicates would tell the sender nothing new and cost both ends a packet
            // each).
            self.gap_acks = self.gap_acks.saturating_add(1);
            if self.gap_acks <= GAP_ACKS || self.gap_acks % self.quarter() == 0 {
                self.send_ack();
            } else {
                self.ack_due.get_or_insert(now + self.cfg.ack_delay);
            }
            return;
        }
        self.gap_acks = 0;
        if taken == 1 && self.rx_unacked < self.quarter() {
            self.ack_due.get_or_insert(now + self.cfg.ack_delay);
        } else {
            // A quarter of the window since our last ACK, or a gap filled.
            self.send_ack();
        }
    }

    /// Our window edge, on its own (answering an `RDVS`, or the app made room in a full
    /// window). Not before a run started: there is no edge to tell yet.
    pub(super) fn send_fc(&mut self) {
        if !self.run {
            return;
        }
        let (f, ackno) = if self.cfg.rtx {
            // It acknowledges too: no delayed ACK is owed any more.
            self.ack_due = None;
            self.rx_unacked = 0;
            (ACK_FC, self.rcv_lwe)
        } else {
            (flags::FC, 0)
        };
        let next = self.next;
        let pdu = self.header(f, next, ackno).0;
        self.queue(Tx::Ctl(pdu));
        self.counters.fc_sent += 1;
    }

    /// An ACK-only packet, as the reference's: flags ACK, nothing else but the ackno; with
    /// our window edge too (FC) once it moved a quarter window past what the peer heard,
    /// so that a one-way sender is not held to its first window.
    pub(super) fn send_ack(&mut self) {
        self.ack_due = None;
        self.rx_unacked = 0;
        let moved = self.rcv_rwe().wrapping_sub(self.rcv_advertised);
        let f = if before(self.rcv_advertised, self.rcv_rwe()) && moved >= self.quarter() {
            ACK_FC
        } else {
            flags::ACK
        };
        let lwe = self.rcv_lwe;
        let pdu = self.header(f, 0, lwe).0;
        self.queue(Tx::Ctl(pdu));
        self.counters.acks_sent += 1;
    }
}
