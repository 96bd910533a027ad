//! MB-ECN, the unicast layer's congestion avoidance (facts §1.10, unicast facts §7.4), as
//! pure machines: no clock, no socket. The data-plane worker runs them where the packets
//! are; the time comes in as nanoseconds of a monotonic clock.
//!
//! - [`mark`]: every hop, the source included, ORs the congestion level of the outgoing
//!   N-1 flow's queue into the PCI's ECN byte (one level per 16 queued packets).
//! - [`Receiver`]: per flow, folds the ECN bytes that arrive into a 16-bit congestion
//!   level (ECE) and says when to send it back in a FLOW_UPDATE.
//! - [`Sender`]: per flow, a byte window per time slot: slow start until the first
//!   FLOW_UPDATE, then additive increase / multiplicative decrease by the echoed level;
//!   the slot is scaled so that 8 to 64 packets fall in one. When the window is spent the
//!   writer waits until the next slot (at most 1 s).
//!
//! Where o7s bounds what the reference leaves open (each one a way a peer or a long queue
//! could stall or wrap a flow): the level from a queue saturates at 255 instead of wrapping
//! at 4096 packets; a decrease by an ECE above 8191 leaves the window at 0 instead of
//! wrapping to a huge one; the slot's exponent stays within [`MUL_MIN`]..=[`MUL_MAX`].

/// The shift of the receiver's decay and of the decrease (`CA_SHFT`).
pub const CA_SHFT: u32 = 5;
/// The highest level a [`Receiver`] can echo: ECN bytes of 255 without end settle where
/// the decay (`ece >> CA_SHFT`) takes back the 255 each adds, below 256 << CA_SHFT.
pub const MAX_ECE: u16 = (256 << CA_SHFT) - 1;
/// Packets without feedback after which the sender forgets the echoed level (`CA_WND`).
pub const CA_WND: u64 = 1 << CA_SHFT;
/// Congested packets between two FLOW_UPDATEs (`CA_UPD`).
pub const CA_UPD: u64 = 1 << (CA_SHFT - 2);
/// The initial slot: 2^24 ns, about 16.8 ms (`CA_SLOT`).
pub const CA_SLOT: u32 = 24;
/// Additive increase per slot, bytes (`CA_INC`).
pub const CA_INC: u64 = 1 << 16;
/// Initial window per slot, bytes (`CA_IWL`): about 3.9 MB/s.
pub const CA_IWL: u64 = 1 << 16;
/// Fewest packets a slot should hold before it is made longer (`CA_MINPS`).
pub const CA_MINPS: u64 = 8;
/// Most packets a slot should hold before it is made shorter (`CA_MAXPS`).
pub const CA_MAXPS: u64 = 64;
/// Queued packets per level of the ECN byte, as a shift (`ECN_Q_SHFT`).
pub const ECN_Q_SHFT: u32 = 4;
/// The longest a writer waits for one slot (the reference sleeps at most 1 s).
pub const MAX_WAIT_NS: u64 = 1_000_000_000;
/// o7s's sender adds 2^-AI_SHIFT of the reference's additive increase (per time).
pub const AI_SHIFT: u32 = 3;
/// How long o7s's sender keeps an echoed level without news (the reference: 32 packets).
pub const ECE_HOLD_NS: u64 = 50_000_000;
/// The shortest slot: 2^10 ns (o7s's bound).
pub const MUL_MIN: u32 = 10;
/// o7s's decrease per slot is the reference's in a slot of 2^CUT_SLOT ns (about 4.2 ms,
/// a 50 Mbit/s flow's), in proportion to the slot's length otherwise.
pub const CUT_SLOT: u32 = 22;
/// o7s's proportional part: a level of 2^P_SHIFT / 8 takes an eighth of the window.
pub const P_SHIFT: u32 = 10;
/// The longest slot: 2^30 ns, about 1.07 s (o7s's bound).
pub const MUL_MAX: u32 = 30;

/// The ECN byte of a PDU about to be queued behind `queued` packets: `ecn | queued >> 4`,
/// saturating at 255.
pub fn mark(ecn: u8, queued: usize) -> u8 {
    let level = u8::try_from(queued >> ECN_Q_SHFT).unwrap_or(u8::MAX);
    ecn | level
}

/// The receiving end of a flow: the congestion level it echoes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receiver {
    /// The congestion level (ECE) as last computed.
    pub ece: u16,
    /// Congested packets since congestion started.
    ctr: u64,
}

impl Receiver {
    /// Takes the ECN byte of a PDU that arrived on the flow; `Some(ece)` when a FLOW_UPDATE
    /// with that level is due (the reference's `ctx_update_rcv`): when congestion starts,
    /// on the 2nd, 10th, 18th, ... congested packet after that one, and when the level has
    /// decayed to 0 again (each uncongested packet divides it by 4).
    pub fn on_packet(&mut self, ecn: u8) -> Option<u16> {
        if self.ece == 0 && ecn == 0 {
            return None;
        }
        let update = if ecn == 0 {
            self.ece >>= 2;
            self.ece == 0
        } else if self.ece == 0 {
            self.ece = u16::from(ecn);
            self.ctr = 0;
            true
        } else {
            self.ece -= self.ece >> CA_SHFT;
            self.ece = self.ece.saturating_add(u16::from(ecn));
            let due = self.ctr & (CA_UPD - 1) == 1;
            self.ctr = self.ctr.wrapping_add(1);
            due
        };
        update.then_some(self.ece)
    }
}

/// The sending end of a flow: its window per time slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// The level the receiver last echoed (0: none, or forgotten).
    pub ece: u16,
    /// Packets sent since the last FLOW_UPDATE.
    ctr: u64,
    /// Bytes sent in the current slot.
    pub wbc: u64,
    /// The window: bytes allowed per slot.
    pub wbl: u64,
    /// In congestion avoidance (left slow start at the first FLOW_UPDATE).
    pub cav: bool,
    /// The slot is 2^mul ns.
    pub mul: u32,
    /// Packets sent in the current slot.
    pub wpc: u64,
    /// Additive increase per slot, bytes.
    pub inc: u64,
    /// The current slot (time >> mul).
    pub slot: u64,
    /// FLOW_UPDATEs taken.
    pub updates: u64,
    /// PDUs sent (the most FLOW_UPDATEs a real receiver can have sent).
    pub sent: u64,
    /// FLOW_UPDATEs ignored: more than the PDUs sent.
    pub refused: u64,
    /// Pacing: the window is spread over its slot, at most this many ns ahead of its
    /// rate (0: the reference's way, the whole window at the start of the slot).
    pub pace_ns: u64,
    /// Paced: when the bytes sent so far are due at the window's rate.
    pub paced_until: u64,
    /// The echoed level is forgotten after [`CA_WND`] packets without feedback and, when
    /// this is not 0, at least this many ns since the last FLOW_UPDATE.
    pub ece_hold_ns: u64,
    /// When the last FLOW_UPDATE came ([`Sender::on_update_at`]).
    pub update_at: u64,
    /// Additive increase per time, not per slot: a slot shorter than 2^[`CA_SLOT`] ns adds
    /// `inc` scaled down by as much again.
    pub ai_per_time: bool,
    /// Proportional: while a level is echoed, the window in use is `wbl` less
    /// `wbl * ece / 2^`[`P_SHIFT`], at once (not from the next slot on), and comes back as
    /// the level falls; `wbl` itself still decreases by the level each slot.
    pub proportional: bool,
    /// With [`Sender::proportional`]: the decrease is per time, not per slot
    /// ([`CUT_SLOT`]).
    pub cut_per_time: bool,
    /// The writer was held in this slot: its window or its pace limited it, not the app.
    limited: bool,
}

impl Sender {
    /// A sender starting at `now_ns` in slow start, with the reference's initial window.
    pub fn new(now_ns: u64) -> Self {
        Self {
            ece: 0,
            ctr: 0,
            wbc: 0,
            wbl: CA_IWL,
            cav: false,
            mul: CA_SLOT,
            wpc: 0,
            inc: CA_INC,
            slot: now_ns >> CA_SLOT,
            updates: 0,
            sent: 0,
            refused: 0,
            pace_ns: 0,
            paced_until: 0,
            ece_hold_ns: 0,
            update_at: 0,
            ai_per_time: false,
            proportional: false,
            cut_per_time: false,
            limited: false,
        }
    }

    /// o7s's sender: the window's arithmetic is the reference's, with four changes that
    /// keep a capped link full, shared and from overflowing when feedback comes late or
    /// in bursts (as it does when the workers share two CPUs with the apps;
    /// proto/tests/mbecn_sim.rs):
    /// - paced: the window is spread over its slot, at most `quantum_ns` ahead of its rate
    ///   (a writer that fell behind gets `quantum_ns` of burst, not the window it missed).
    ///   The reference sends each slot's window at once: 16 PDUs of it queue at the next
    ///   capped port by themselves, mark ECN, and the flow slows for congestion it made alone;
    /// - the echoed level is kept until [`ECE_HOLD_NS`] has passed as well as 32 packets:
    ///   the receiver says when congestion ends (a FLOW_UPDATE with 0). The reference forgets
    ///   it after 32 packets, less than a millisecond at 100 Mbit/s, so a FLOW_UPDATE a few ms
    ///   late lets the window grow into a full queue;
    /// - additive increase per time, an eighth of the reference's ([`AI_SHIFT`]), from the
    ///   window when the writer was held: the reference adds `inc` per slot and halves the
    ///   slot as the rate doubles, so its increase per second grows with the rate
    ///   (exponential) and swings two flows' shares by a third each slot; here a slot shorter
    ///   than 2^24 ns adds `inc` scaled down by as much again;
    /// - proportional ([`Sender::proportional`]): the echoed level takes its part of the
    ///   window at once ([`Sender::window`]) and gives it back as it falls, and each slot
    ///   both decreases by the level and adds the increase. The reference decreases only
    ///   at a slot's end and increases only when no level is echoed: the level, a running
    ///   sum at the receiver, lags the queue by tens of ms, so two flows overshoot the link
    ///   together, back off by a third and overshoot again every 200 ms or so (in 100 ms
    ///   bins each flow swings by 5 Mbit/s and more). Here the queue settles where the
    ///   decrease balances the increase, which is the same window for every flow that
    ///   sees the same level: two flows share within 1 % and converge within 1 s, with
    ///   FLOW_UPDATEs 0.5-5 ms late.
    pub fn paced(now_ns: u64, quantum_ns: u64) -> Self {
        Self {
            pace_ns: quantum_ns,
            ece_hold_ns: ECE_HOLD_NS,
            ai_per_time: true,
            proportional: true,
            cut_per_time: true,
            ..Self::new(now_ns)
        }
    }

    /// A FLOW_UPDATE from the wire, at `now_ns`: taken as [`Sender::on_update_at`] unless
    /// more have come than PDUs were sent. A receiver sends at most one update per PDU it
    /// gets; updates beyond are forged (the endpoint id is in clear) and are ignored,
    /// counted in [`Sender::refused`]: a flood cannot outnumber the flow's own PDUs. Within
    /// that bound a forger is still believed (a real receiver sends about one per 8
    /// congested PDUs, so a forger sending one per PDU goes unnoticed, as in the
    /// reference). Whether it was taken.
    pub fn take_update_at(&mut self, now_ns: u64, ece: u16) -> bool {
        if self.updates >= self.sent {
            self.refused = self.refused.saturating_add(1);
            return false;
        }
        self.on_update_at(now_ns, ece);
        true
    }

    /// A FLOW_UPDATE with level `ece` at `now_ns` (as [`Sender::on_update`], its time kept
    /// for [`Sender::ece_hold_ns`]).
    pub fn on_update_at(&mut self, now_ns: u64, ece: u16) {
        self.update_at = now_ns;
        self.on_update(ece);
    }

    /// The receiver echoed congestion level `ece` (a FLOW_UPDATE; `ctx_update_ece`): the
    /// sender leaves slow start and decreases by it from the next slot on. A level above
    /// what a receiver can reach ([`MAX_ECE`]) is taken as that: a forged FLOW_UPDATE (its
    /// endpoint id is in clear in every PDU) cannot cut the window below what the worst real
    /// congestion would.
    pub fn on_update(&mut self, ece: u16) {
        self.ece = ece.min(MAX_ECE);
        self.ctr = 0;
        self.cav = true;
        self.updates = self.updates.saturating_add(1);
    }

    /// A packet of `len` bytes is sent at `now_ns` (`ctx_update_snd`): counted in the
    /// slot's window; at a new slot the window grows or shrinks and the slot is scaled.
    /// Returns how long the writer waits before its next packet, in ns (0: none; at most
    /// [`MAX_WAIT_NS`]).
    pub fn on_send(&mut self, now_ns: u64, len: usize) -> u64 {
        let slot = now_ns >> self.mul;
        self.sent = self.sent.saturating_add(1);
        self.ctr = self.ctr.saturating_add(1);
        self.wpc = self.wpc.saturating_add(1);
        self.wbc = self.wbc.saturating_add(len as u64);
        if self.ctr > CA_WND && now_ns.saturating_sub(self.update_at) >= self.ece_hold_ns {
            self.ece = 0;
        }
        if slot > self.slot {
            self.next_slot(now_ns);
        }
        // Paced (`pace_ns` > 0; the reference's sender keeps the account but [`Sender::wait`]
        // ignores it): at the window's rate from now, or from when the last one was due if
        // that is later: a writer that fell behind (idle, or not scheduled) gets `pace_ns` of
        // burst, not the whole window it missed.
        let gap = (u128::from(len as u64) << self.mul) / u128::from(self.window().max(1));
        let gap = u64::try_from(gap).unwrap_or(u64::MAX);
        self.paced_until = self.paced_until.max(now_ns).saturating_add(gap);
        let wait = self.wait(now_ns);
        self.limited |= wait > 0;
        wait
    }

    /// How long a writer that would send now waits, in ns (0: the window has room).
    pub fn wait(&self, now_ns: u64) -> u64 {
        let next = self.slot.saturating_add(1).checked_shl(self.mul);
        let to_next = next.map_or(MAX_WAIT_NS, |t| t.saturating_sub(now_ns).min(MAX_WAIT_NS));
        if self.wbc > self.window() {
            return to_next;
        }
        if self.pace_ns == 0 {
            return 0;
        }
        // Paced: the bytes sent are due at `paced_until`; the writer may run `pace_ns`
        // ahead of that.
        self.paced_until
            .saturating_sub(now_ns.saturating_add(self.pace_ns))
            .min(to_next)
    }

    /// The window in use, bytes per slot: `wbl`, less the proportional part while a level
    /// is echoed ([`Sender::proportional`]).
    pub fn window(&self) -> u64 {
        if !self.proportional {
            return self.wbl;
        }
        // At most half of it: a level the window cannot balance (a saturated queue) must
        // still let packets through, or the level would never be forgotten.
        let less = (u128::from(self.wbl) * u128::from(self.ece)) >> P_SHIFT;
        let less = u64::try_from(less).unwrap_or(u64::MAX).min(self.wbl / 2);
        self.wbl - less
    }

    /// The window's rate, bits per second ([`Sender::window`] bytes per 2^mul ns).
    pub fn rate_bps(&self) -> u64 {
        let bits = u128::from(self.window()) * 8 * 1_000_000_000;
        u64::try_from(bits >> self.mul).unwrap_or(u64::MAX)
    }

    /// The slot's length, ns.
    pub fn slot_ns(&self) -> u64 {
        1u64 << self.mul
    }

    /// o7s's additive increase for this slot ([`Sender::ai_per_time`]). A slot shorter
    /// than 2^24 ns adds inc scaled down once more: the rate grows by the same bit/s per
    /// second however short the slot (longer slots keep the reference's inc: scaled up
    /// again they would grow without bound), and by 2^-AI_SHIFT of the reference's: 64 KiB
    /// per 2^24 ns slot is some 1.9 Gbit/s per second, which on a 100 Mbit/s link swings
    /// the shares by a third each slot.
    fn inc_per_time(&self) -> u64 {
        (self.inc >> (CA_SLOT.saturating_sub(self.mul) + AI_SHIFT)).max(1)
    }

    /// o7s's decrease by the level for this slot, of window `w`: the reference's
    /// `w * ece / 2^13` in a slot of 2^[`CUT_SLOT`] ns, in proportion to the slot's length
    /// otherwise (twice that in a slot twice as long). So a flow loses the same share of its
    /// rate per second whatever its slot, and two flows that see the same level settle at
    /// the same rate also when their slots differ (with the reference's per slot, the one
    /// with the longer slot would settle at twice the other's rate).
    fn cut_per_time(&self, w: u64) -> u64 {
        let cut = u128::from(w) * u128::from(self.ece);
        let cut = if !self.cut_per_time {
            cut
        } else if self.mul >= CUT_SLOT {
            cut << (self.mul - CUT_SLOT).min(32)
        } else {
            cut >> (CUT_SLOT - self.mul)
        };
        u64::try_from(cut >> (CA_SHFT + 8))
            .unwrap_or(u64::MAX)
            .min(w)
    }

    /// What o7s's window grows from: the window when the writer was held (paced, it sends
    /// a little less than its window in a slot, and bytes sent + a small inc would never
    /// grow it), what was sent when the app sent less.
    fn grown_from(&self) -> u64 {
        if self.limited {
            self.wbc.max(self.wbl)
        } else {
            self.wbc
        }
    }

    /// The window at the start of a new slot, and the slot's scale.
    fn next_slot(&mut self, now_ns: u64) {
        if !self.cav {
            if self.wbc > self.wbl {
                self.wbl = self.wbl.saturating_mul(2);
            }
        } else if self.proportional {
            // The additive increase goes on under congestion and the level decreases each
            // slot as well: a flow settles where the two balance, and that is the same
            // window for every flow that sees the same level (with [`Sender::window`]'s
            // proportional part, which damps the queue, proto/tests/mbecn_sim.rs).
            let base = self.grown_from();
            let base = base.saturating_sub(self.cut_per_time(base));
            self.wbl = base.saturating_add(self.inc_per_time());
        } else if self.ece > 0 {
            let cut = (u128::from(self.wbl) * u128::from(self.ece)) >> (CA_SHFT + 8);
            self.wbl = self
                .wbl
                .saturating_sub(u64::try_from(cut).unwrap_or(u64::MAX));
        } else if self.ai_per_time {
            self.wbl = self.grown_from().saturating_add(self.inc_per_time());
        } else {
            self.wbl = self.wbc.saturating_add(self.inc);
        }
        // Too few packets in the slot: 2^up times longer; too many: 2^down times shorter
        // (at most one of them is not 0; within 8..64 packets both are).
        let up = doublings_to(self.wpc, CA_MINPS).min(MUL_MAX - self.mul.min(MUL_MAX));
        self.mul += up;
        self.wbl = self.wbl.saturating_mul(1 << up);
        self.inc = self.inc.saturating_mul(1 << up);
        let down = halvings_to(self.wpc, CA_MAXPS).min(self.mul.saturating_sub(MUL_MIN));
        self.mul -= down;
        self.wbl >>= down;
        self.inc = (self.inc >> down).max(1);
        self.slot = now_ns >> self.mul;
        self.wbc = 0;
        self.wpc = 0;
        self.limited = false;
    }
}

/// How many doublings take `n` to at least `min` (0 when it is already there).
fn doublings_to(n: u64, min: u64) -> u32 {
    let (mut n, mut f) = (n.max(1), 0);
    while n < min {
        n <<= 1;
        f += 1;
    }
    f
}

/// How many halvings take `n` to at most `max` (0 when it is already there).
fn halvings_to(n: u64, max: u64) -> u32 {
    let (mut n, mut f) = (n, 0);
    while n > max {
        n >>= 1;
        f += 1;
    }
    f
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A FLOW_UPDATE from the wire is taken only while fewer have come than PDUs were sent:
    /// a flood of them (level 8191, or 0) is ignored and counted.
    #[test]
    fn flow_updates_beyond_the_pdus_sent_are_refused() {
        let mut s = Sender::paced(0, 1_000_000);
        assert!(!s.take_update_at(0, MAX_ECE), "nothing sent yet");
        let _ = s.on_send(0, 1000);
        assert!(s.take_update_at(1, MAX_ECE));
        for i in 0..1000 {
            assert!(!s.take_update_at(2 + i, MAX_ECE));
        }
        assert_eq!((s.updates, s.refused, s.ece), (1, 1001, MAX_ECE));
        // A flood of level 0 cannot switch a flow's congestion avoidance back off either.
        for i in 0..1000 {
            assert!(!s.take_update_at(2000 + i, 0));
        }
        assert_eq!(s.ece, MAX_ECE);
        let _ = s.on_send(3000, 1000);
        assert!(s.take_update_at(3001, 3));
        assert_eq!((s.updates, s.ece), (2, 3));
    }

    #[test]
    fn a_receiver_never_echoes_above_max_ece_and_a_sender_takes_no_more() {
        let mut r = Receiver::default();
        let mut top = 0;
        for _ in 0..100_000 {
            if let Some(e) = r.on_packet(255) {
                top = top.max(e);
            }
            top = top.max(r.ece);
        }
        assert!(top <= MAX_ECE && top > MAX_ECE - 64, "{top}");
        let mut s = Sender::new(0);
        s.on_update(u16::MAX);
        assert_eq!(s.ece, MAX_ECE);
        s.on_update(100);
        assert_eq!(s.ece, 100);
    }

    #[test]
    fn marking_adds_one_level_per_16_queued_packets_and_saturates() {
        assert_eq!(mark(0, 0), 0);
        assert_eq!(mark(0, 15), 0);
        assert_eq!(mark(0, 16), 1);
        assert_eq!(mark(0, 47), 2);
        // OR, not add: an upstream level 2 and a local level 1 give 3; 4 | 1 = 5.
        assert_eq!(mark(2, 16), 3);
        assert_eq!(mark(4, 16), 5);
        // A level already set upstream stays set (OR, not XOR): 1 | 1 = 1, 3 | 2 = 3.
        assert_eq!(mark(1, 16), 1);
        assert_eq!(mark(3, 32), 3);
        assert_eq!(mark(0, 176), 11);
        assert_eq!(mark(0, 4095), 255);
        // The reference's (uint8_t) cast wraps 4096 queued to 0; o7s saturates.
        assert_eq!(mark(0, 4096), 255);
        assert_eq!(mark(0, usize::MAX), 255);
    }

    /// The receiver's cadence, packet by packet: (ECN in, update out, level after).
    #[test]
    fn receiver_updates_at_the_start_then_every_eighth_congested_packet_and_at_the_end() {
        let mut r = Receiver::default();
        // Uncongested packets: nothing.
        for _ in 0..5 {
            assert_eq!(r.on_packet(0), None);
        }
        // 20 congested packets with level 4: updates on the 1st (start), then on the 2nd,
        // 10th and 18th packet after it (the 3rd, 11th and 19th in all).
        let mut ups = Vec::new();
        let mut levels = Vec::new();
        for i in 1..=20 {
            if let Some(e) = r.on_packet(4) {
                ups.push((i, e));
            }
            levels.push(r.ece);
        }
        assert_eq!(
            ups.iter().map(|u| u.0).collect::<Vec<_>>(),
            vec![1, 3, 11, 19]
        );
        // Level: 4, then ece -= ece >> 5; ece += 4 (4+4=8, 12, ..., 32+4-1=35 ...).
        assert_eq!(&levels[..4], &[4, 8, 12, 16]);
        let mut e: u16 = 4;
        for l in &levels[1..] {
            e = e - (e >> 5) + 4;
            assert_eq!(*l, e);
        }
        assert_eq!(ups[3].1, levels[18]);
        // Congestion ends: each clean packet divides by 4; the update comes when it is 0.
        let mut end = Vec::new();
        let mut n = 0;
        while r.ece != 0 {
            n += 1;
            end.push(r.on_packet(0));
        }
        assert_eq!(end.last().copied().flatten(), Some(0));
        assert!(end[..end.len() - 1].iter().all(Option::is_none));
        let (mut e, mut want) = (levels[19], 0);
        while e != 0 {
            e >>= 2;
            want += 1;
        }
        assert_eq!(n, want);
        assert_eq!(r.on_packet(0), None);
        // A new episode starts with an update and the count from zero.
        assert_eq!(r.on_packet(9), Some(9));
        assert_eq!(r.on_packet(9), None);
        assert_eq!(r.on_packet(9), Some(27));
    }

    #[test]
    fn receiver_level_saturates_instead_of_wrapping() {
        let mut r = Receiver::default();
        for _ in 0..10_000 {
            r.on_packet(255);
        }
        // Steady state of e - e/32 + 255 is about 32 * 255.
        assert!(r.ece > 8000 && r.ece < 8200, "{}", r.ece);
    }

    const SLOT: u64 = 1 << CA_SLOT;

    #[test]
    fn slow_start_doubles_the_window_each_slot_it_was_exceeded() {
        let t0 = 100 * SLOT;
        let mut s = Sender::new(t0);
        assert_eq!(s.wbl, CA_IWL);
        // 40 packets of 2000 B in the first slot: 80,000 B > 65,536 after the 33rd.
        let mut waits = Vec::new();
        for i in 0..40u64 {
            waits.push(s.on_send(t0 + i * 1000, 2000));
        }
        assert!(waits[..32].iter().all(|w| *w == 0));
        assert_eq!(waits[32], SLOT - 32_000); // until the next slot
        assert!(waits[33] > 0);
        // The first packet of the next slot: the window doubles (it was exceeded), 40
        // packets were in the slot (8..64: no scaling), the counts restart.
        let w = s.on_send(t0 + SLOT, 2000);
        assert_eq!(s.wbl, 2 * CA_IWL);
        assert_eq!(s.mul, CA_SLOT);
        assert_eq!((s.wbc, s.wpc), (0, 0));
        assert_eq!(w, 0);
        assert!(!s.cav);
        // A slot that did not exceed it keeps it.
        for i in 1..20u64 {
            s.on_send(t0 + SLOT + i * 1000, 1000);
        }
        s.on_send(t0 + 2 * SLOT, 1000);
        assert_eq!(s.wbl, 2 * CA_IWL);
    }

    #[test]
    fn a_flow_update_leaves_slow_start_and_decreases_by_the_level_each_slot() {
        let t0 = 100 * SLOT;
        let mut s = Sender::new(t0);
        s.wbl = 1 << 20;
        s.on_update(297);
        assert!(s.cav);
        assert_eq!(s.ece, 297);
        for i in 0..20u64 {
            s.on_send(t0 + i * 1000, 1000);
        }
        s.on_send(t0 + SLOT, 1000);
        // wbl -= wbl * ece >> 13.
        let want = (1u64 << 20) - (((1u64 << 20) * 297) >> 13);
        assert_eq!(s.wbl, want);
        // Without feedback for more than 32 packets the level is forgotten: additive
        // increase then (window = bytes sent in the slot + inc).
        for i in 1..=20u64 {
            s.on_send(t0 + SLOT + i * 1000, 1000);
        }
        assert_eq!(s.ece, 0); // 42 packets since the update
        s.on_send(t0 + 2 * SLOT, 1000);
        assert_eq!(s.wbl, 21 * 1000 + CA_INC); // the closing packet counts in its slot
    }

    #[test]
    fn the_level_is_forgotten_after_the_33rd_packet_and_a_paced_sender_also_waits_50_ms() {
        let t0 = 100 * SLOT;
        // The reference's: 32 packets after the update keep it, the 33rd forgets it.
        let mut s = Sender::new(t0);
        s.on_update(100);
        for i in 0..32u64 {
            s.on_send(t0 + i, 10);
        }
        assert_eq!(s.ece, 100, "kept through 32 packets");
        s.on_send(t0 + 32, 10);
        assert_eq!(s.ece, 0, "forgotten at the 33rd");
        // o7s's paced sender: 40 packets within 10 ms keep it; after 50 ms they do not.
        let mut p = Sender::paced(t0, 1_000_000);
        p.on_update_at(t0, 100);
        for i in 0..40u64 {
            p.on_send(t0 + i * 250_000, 10);
        }
        assert_eq!(p.ece, 100, "40 packets in 10 ms: kept");
        p.on_send(t0 + ECE_HOLD_NS, 10);
        assert_eq!(p.ece, 0, "50 ms and 41 packets: forgotten");
    }

    /// A fresh reference sender's state after one slot of `n` packets of `len` bytes (the
    /// last one, sent at the next slot's start, counts in the slot it closes).
    fn after_one_slot(n: u64, len: usize) -> Sender {
        let t0 = 100 * SLOT;
        let mut s = Sender::new(t0);
        for i in 0..n - 1 {
            s.on_send(t0 + i * 1000, len);
        }
        s.on_send(t0 + SLOT, len);
        s
    }

    #[test]
    fn window_scaling_and_slow_start_at_their_exact_boundaries() {
        // 8 and 64 packets a slot are in range: no scaling.
        assert_eq!(after_one_slot(8, 100).mul, CA_SLOT);
        assert_eq!(after_one_slot(64, 100).mul, CA_SLOT);
        // 7 or 4 packets: twice as long (4 -> 8 is one doubling, not two).
        assert_eq!(after_one_slot(7, 100).mul, CA_SLOT + 1);
        assert_eq!(after_one_slot(4, 100).mul, CA_SLOT + 1);
        assert_eq!(after_one_slot(3, 100).mul, CA_SLOT + 2);
        // 65 or 128 packets: half as long (128 -> 64 is one halving).
        assert_eq!(after_one_slot(65, 100).mul, CA_SLOT - 1);
        assert_eq!(after_one_slot(128, 100).mul, CA_SLOT - 1);
        assert_eq!(after_one_slot(130, 100).mul, CA_SLOT - 2); // 130 -> 65 -> 32
                                                               // Slow start doubles only a window that was exceeded, not one just filled.
        assert_eq!(after_one_slot(8, 8192).wbl, CA_IWL);
        assert_eq!(after_one_slot(8, 8193).wbl, 2 * CA_IWL);
    }

    #[test]
    fn sends_within_one_slot_add_up_and_a_window_just_filled_does_not_hold() {
        let t0 = 100 * SLOT;
        let mut s = Sender::new(t0);
        // Two sends in the same slot add up (no new slot between them).
        assert_eq!(s.on_send(t0, 1000), 0);
        assert_eq!(s.on_send(t0 + 10, 1000), 0);
        assert_eq!((s.wbc, s.wpc), (2000, 2));
        // Filling the window exactly does not hold the writer; a byte more does.
        let rest = usize::try_from(CA_IWL - 2000).unwrap();
        assert_eq!(s.on_send(t0 + 20, rest), 0);
        assert_eq!(s.wbc, s.wbl);
        assert_eq!(s.wait(t0 + 30), 0);
        assert!(s.on_send(t0 + 30, 1) > 0);
    }

    #[test]
    fn a_paced_sender_that_the_app_kept_below_its_window_grows_from_what_it_sent() {
        let t0 = 100 * SLOT;
        let mut s = Sender::paced(t0, 1_000_000);
        s.on_update_at(t0, 0); // congestion avoidance, no level
        s.wbl = 1 << 20;
        // 10 packets of 1000 B over the slot, far below the window: never held.
        for i in 0..10u64 {
            assert_eq!(s.on_send(t0 + i * (SLOT / 10), 1000), 0);
        }
        s.on_send(t0 + SLOT, 1000);
        // From the 10,000 B sent, not from the 1 MiB window: inc at 2^24 ns is CA_INC / 8.
        // (the closing packet counts in its slot: 11 of them)
        assert_eq!(s.wbl, 11_000 + (CA_INC >> AI_SHIFT));
    }

    #[test]
    fn a_paced_sender_held_by_its_pace_grows_from_its_window() {
        let t0 = 100 * SLOT;
        let mut s = Sender::paced(t0, 1_000_000);
        s.on_update_at(t0, 0);
        s.wbl = 100_000;
        // Back to back at the slot's start: some 167 us a packet at this window, so the
        // pace holds the writer within a few packets (its 1 ms quantum spent).
        assert!(!s.limited);
        let waits: Vec<u64> = (0..10).map(|_| s.on_send(t0, 1000)).collect();
        assert_eq!(waits[0], 0);
        assert!(waits[9] > 0, "{waits:?}");
        assert!(s.limited);
        s.on_send(t0 + SLOT, 1000);
        // From the window (100,000 B), not from the 11,000 B sent; the flag starts over.
        assert_eq!(s.wbl, 100_000 + (CA_INC >> AI_SHIFT));
        assert!(!s.limited);
        // A sender never held keeps it clear.
        let mut r = Sender::paced(t0, 1_000_000);
        r.on_update_at(t0, 0);
        r.wbl = 1 << 20;
        assert_eq!(r.on_send(t0, 1000), 0);
        assert!(!r.limited);
    }

    #[test]
    fn the_paced_sender_has_all_four_of_o7s_s_changes_and_the_reference_s_none() {
        let p = Sender::paced(5 * SLOT, 1_234);
        assert_eq!((p.pace_ns, p.ece_hold_ns), (1_234, ECE_HOLD_NS));
        assert!(p.ai_per_time && p.proportional && p.cut_per_time);
        assert_eq!((p.wbl, p.mul, p.slot), (CA_IWL, CA_SLOT, 5));
        let r = Sender::new(5 * SLOT);
        assert_eq!((r.pace_ns, r.ece_hold_ns), (0, 0));
        assert!(!r.ai_per_time && !r.proportional && !r.cut_per_time);
    }

    #[test]
    fn the_level_takes_its_part_of_a_paced_window_at_once_and_at_most_half() {
        let t0 = 100 * SLOT;
        let mut s = Sender::paced(t0, 1_000_000);
        let mut r = Sender::new(t0);
        for x in [&mut s, &mut r] {
            x.on_update_at(t0, 0);
            x.wbl = 1 << 20;
        }
        assert_eq!(s.window(), 1 << 20);
        // 128 / 2^10: an eighth, exactly, at once (no slot has ended).
        s.on_update_at(t0 + 1, 128);
        assert_eq!(s.window(), (1 << 20) - (1 << 17));
        assert_eq!(
            s.rate_bps(),
            ((((1u64 << 20) - (1 << 17)) * 8 * 1_000_000_000) >> CA_SLOT)
        );
        // 512: half; beyond that still half.
        s.on_update_at(t0 + 2, 512);
        assert_eq!(s.window(), 1 << 19);
        s.on_update_at(t0 + 3, 513);
        assert_eq!(s.window(), 1 << 19);
        s.on_update_at(t0 + 4, 0xffff);
        assert_eq!(s.window(), 1 << 19);
        // The level gone, all of it is back.
        s.on_update_at(t0 + 5, 0);
        assert_eq!(s.window(), 1 << 20);
        // The reference's window does not change until a slot ends.
        r.on_update_at(t0 + 1, 128);
        assert_eq!(r.window(), 1 << 20);
        assert_eq!(r.rate_bps(), ((1u64 << 20) * 8 * 1_000_000_000) >> CA_SLOT);
    }

    #[test]
    fn a_writer_is_held_by_the_window_less_the_level_s_part() {
        let t0 = 100 * SLOT;
        let mut s = Sender::paced(t0, SLOT); // pacing never holds within the slot
        s.on_update_at(t0, 256); // a quarter
        s.wbl = 100_000;
        // 75,000 bytes may go; the packet that passes them holds the writer to the slot's end.
        for i in 0..75u64 {
            assert_eq!(s.on_send(t0 + i, 1000), 0, "packet {i}");
        }
        assert_eq!(s.on_send(t0 + 75, 1000), SLOT - 75);
    }

    #[test]
    fn a_paced_slot_decreases_by_the_level_and_still_adds_the_increase() {
        let t0 = 100 * SLOT;
        let mut s = Sender::paced(t0, 1_000_000);
        let mut r = Sender::new(t0);
        for x in [&mut s, &mut r] {
            x.on_update_at(t0, 64);
            x.wbl = 1 << 20;
            for i in 0..10u64 {
                x.on_send(t0 + i * (SLOT / 10), 1000);
            }
            x.on_send(t0 + SLOT, 1000);
        }
        // o7s: from the 11,000 bytes sent, less 11,000 * 64 / 2^13 four times over (a slot
        // of 2^24 ns is four of 2^22: 343), plus inc / 8.
        assert_eq!(s.wbl, 11_000 - 343 + (CA_INC >> AI_SHIFT));
        // The reference: the window less its 64 / 2^13, no increase.
        assert_eq!(r.wbl, (1 << 20) - (1 << 13));
    }

    /// A paced sender at level `ece` with a slot of 2^m ns, after 11 packets of 1000 B in
    /// one slot (the last one opens the next).
    fn paced_slot(m: u32, ece: u16, per_time: bool) -> Sender {
        let t0 = 100 * SLOT;
        let mut s = Sender::paced(t0, 1_000_000);
        s.cut_per_time = per_time;
        s.on_update_at(t0, ece);
        s.mul = m;
        s.slot = t0 >> m;
        s.wbl = 1 << 20;
        for i in 0..10u64 {
            s.on_send(t0 + i * ((1 << m) / 10), 1000);
        }
        s.on_send(t0 + (1 << m), 1000);
        s
    }

    #[test]
    fn the_decrease_is_per_time_whatever_the_slot() {
        // 11,000 bytes at level 64: the decrease is 11,000 * 64 / 2^13 (85) in a slot of
        // 2^22 ns, half that in one half as long, twice that in one twice as long; the
        // increase is 2^16 >> (24 - m + 3).
        // (2^20 too: there 22 - 20 and 22 / 20 differ, at 2^21 they do not.)
        for (m, cut, inc) in [
            (20, 21, 512),
            (21, 42, 1024),
            (22, 85, 2048),
            (23, 171, 4096),
        ] {
            assert_eq!(paced_slot(m, 64, true).wbl, 11_000 - cut + inc, "2^{m} ns");
            // Per slot instead: 85 whatever the slot.
            assert_eq!(
                paced_slot(m, 64, false).wbl,
                11_000 - 85 + inc,
                "per slot, 2^{m} ns"
            );
        }
        // The highest level a receiver echoes takes all but 2 bytes of it (11,000 * 8191 /
        // 2^13), and the increase starts again from there; a forged higher one the same.
        assert_eq!(paced_slot(22, MAX_ECE, true).wbl, 2 + 2048);
        assert_eq!(paced_slot(22, 0xffff, true).wbl, 2 + 2048);
    }

    #[test]
    fn a_paced_sender_spreads_its_window_over_the_slot() {
        let t0 = 100 * SLOT;
        let q = 1_000_000;
        let mut s = Sender::paced(t0, q);
        let mut r = Sender::new(t0);
        // A writer with a backlog, following the waits: 1000-byte SDUs.
        let (mut t, mut sent_by_half, mut waits) = (t0, 0u64, 0);
        while t < t0 + SLOT {
            let w = s.on_send(t, 1000);
            if t < t0 + SLOT / 2 {
                sent_by_half += 1000;
            }
            if w > 0 {
                waits += 1;
                // Never past the next slot, never more than a poll ahead of the rate.
                assert!(t + w <= t0 + SLOT, "{w}");
                if s.wbc <= s.wbl {
                    // Due at the window's rate (less a ns per packet of rounding).
                    let due = t0 + ((s.wbc << s.mul) / s.wbl);
                    assert!((t + w + q).abs_diff(due) <= s.wpc, "{} vs {due}", t + w + q);
                } else {
                    assert_eq!(t + w, t0 + SLOT); // spent: the next slot
                }
            }
            t += w.max(1);
        }
        // Half the slot carried about half the window (plus the poll's worth ahead), not
        // all of it; the unpaced reference sends the whole window at the start.
        let ahead = (CA_IWL * q) >> CA_SLOT;
        assert!(sent_by_half <= CA_IWL / 2 + ahead + 1000, "{sent_by_half}");
        assert!(sent_by_half >= CA_IWL / 2 - 1000, "{sent_by_half}");
        assert!(waits > 10, "{waits}");
        let mut n = 0;
        while r.on_send(t0, 1000) == 0 {
            n += 1;
        }
        assert_eq!(n, CA_IWL / 1000);
        // The window's arithmetic is the reference's: both doubled it (it was exceeded) and
        // halved the slot (more than 64 packets in it).
        let rate = s.rate_bps();
        s.on_send(t0 + SLOT, 1000);
        r.on_send(t0 + SLOT, 1000);
        assert_eq!((s.wbl, s.mul), (CA_IWL, CA_SLOT - 1));
        assert_eq!((r.wbl, r.mul), (s.wbl, s.mul));
        assert_eq!(s.rate_bps(), 2 * rate);
    }

    #[test]
    fn a_paced_sender_that_fell_behind_gets_one_quantum_of_burst_not_the_missed_window() {
        let t0 = 100 * SLOT;
        let q = 1_000_000;
        let mut s = Sender::paced(t0, q);
        s.wbl = 1 << 20; // ~500 Mbit/s: a 1000-byte SDU every 16 us
        assert_eq!(s.on_send(t0, 1000), 0);
        // Not scheduled for 8 ms: half the slot's window is "missed"; at most about 1 ms
        // of it (~62 SDUs) leaves at once, then the writer waits.
        let t = t0 + 8_000_000;
        let mut burst = 0;
        while s.on_send(t, 1000) == 0 {
            burst += 1;
        }
        // 1 ms at 2^20 B per 2^24 ns is 62.5 SDUs of 1000 B.
        assert!((60..=64).contains(&burst), "{burst}");
        // The reference-style (unpaced) sender would send the whole rest of the window.
        let mut r = Sender::new(t0);
        r.wbl = 1 << 20;
        let mut n = 0;
        while r.on_send(t, 1000) == 0 {
            n += 1;
        }
        assert!(n > 1000, "{n}");
    }

    #[test]
    fn an_ece_of_0xffff_empties_the_window_but_never_wraps_or_stalls() {
        let t0 = 100 * SLOT;
        let mut s = Sender::new(t0);
        for _ in 0..100 {
            s.on_update(0xffff);
        }
        let mut t = t0;
        let mut sent = 0;
        // 5 s of a writer that always has something to send: every wait is at most 1 s
        // and it keeps sending.
        while t < t0 + 5_000_000_000 {
            let w = s.on_send(t, 1000);
            sent += 1;
            assert!(w <= MAX_WAIT_NS);
            assert!(s.wbl < 1 << 40, "window wrapped: {}", s.wbl);
            assert!((MUL_MIN..=MUL_MAX).contains(&s.mul));
            t += w.max(1000);
            if sent % 3 == 0 {
                s.on_update(0xffff);
            }
        }
        assert!(sent >= 5, "{sent}");
    }

    #[test]
    fn window_scaling_keeps_8_to_64_packets_per_slot_both_ways() {
        let t0 = 1000 * SLOT;
        // Too many: 200 packets in one slot -> slot / 4 (200 -> 100 -> 50), window / 4.
        let mut s = Sender::new(t0);
        s.wbl = 1 << 30;
        for i in 0..200u64 {
            s.on_send(t0 + i * 100, 100);
        }
        s.on_send(t0 + SLOT, 100);
        assert_eq!(s.mul, CA_SLOT - 2);
        assert_eq!(s.wbl, 1 << 28);
        assert_eq!(s.inc, CA_INC >> 2);
        assert_eq!(s.slot, (t0 + SLOT) >> (CA_SLOT - 2));
        // Too few: 3 packets in a slot (2 and the one that closes it) -> slot x 4
        // (3 -> 6 -> 12), window and inc x 4.
        let mut s = Sender::new(t0);
        for i in 0..2u64 {
            s.on_send(t0 + i * 100, 100);
        }
        s.on_send(t0 + SLOT, 100);
        assert_eq!(s.mul, CA_SLOT + 2);
        assert_eq!(s.wbl, CA_IWL << 2);
        assert_eq!(s.inc, CA_INC << 2);
        assert_eq!(s.slot_ns(), SLOT << 2);
        // The rate shown is the window per slot.
        assert_eq!(
            s.rate_bps(),
            ((CA_IWL << 2) * 8 * 1_000_000_000) >> (CA_SLOT + 2)
        );
    }

    /// A table of a sender's life, slot by slot, against the reference's arithmetic:
    /// (packets of 2000 B in the slot, ECE of a FLOW_UPDATE just before it or 0). The model
    /// beside it is the reference's rule written out: the level is forgotten after 32
    /// packets without feedback, slow start doubles an exceeded window, congestion
    /// avoidance decreases by `wbl * ece >> 13` or sets `wbc + inc`.
    #[test]
    fn a_senders_window_follows_the_reference_slot_by_slot() {
        let t0 = 1000 * SLOT;
        let mut s = Sender::new(t0);
        let (mut wbl, mut cav, mut ece, mut ctr) = (CA_IWL, false, 0u64, 0u64);
        let rows: &[(u64, u16)] = &[
            (40, 0),
            (40, 0),
            (60, 0),
            (20, 300),
            (20, 0),
            (20, 150),
            (30, 0),
            (30, 0),
        ];
        let mut seen = Vec::new();
        for (k, &(pkts, upd)) in rows.iter().enumerate() {
            let start = t0 + k as u64 * SLOT;
            if upd > 0 {
                s.on_update(upd);
                (cav, ece, ctr) = (true, u64::from(upd), 0);
            }
            for i in 0..pkts {
                s.on_send(start + 1 + i * 1000, 2000);
            }
            // The first packet of the next slot closes this one: it is counted in this
            // slot's bytes and packets, not in the next one's.
            s.on_send(start + SLOT, 2000);
            ctr += pkts + 1;
            if ctr > CA_WND {
                ece = 0;
            }
            let wbc = (pkts + 1) * 2000;
            if !cav {
                if wbc > wbl {
                    wbl *= 2;
                }
            } else if ece > 0 {
                wbl -= (wbl * ece) >> 13;
            } else {
                wbl = wbc + CA_INC;
            }
            assert_eq!(s.wbl, wbl, "slot {k}");
            assert_eq!(s.mul, CA_SLOT, "slot {k}");
            seen.push(s.wbl);
        }
        // Slow start, kept, kept, decrease, additive (bytes sent + inc), decrease,
        // additive (21 + 31 packets since the update: forgotten), additive.
        assert_eq!(&seen[..3], &[2 * CA_IWL; 3]);
        assert_eq!(seen[3], 2 * CA_IWL - ((2 * CA_IWL * 300) >> 13));
        assert_eq!(seen[4], 21 * 2000 + CA_INC);
        assert_eq!(seen[5], seen[4] - ((seen[4] * 150) >> 13));
        assert_eq!(&seen[6..], &[31 * 2000 + CA_INC; 2]);
    }
}
