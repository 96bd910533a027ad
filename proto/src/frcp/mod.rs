//! FRCP (the reference's FRCT, `src/lib/frct.c`; facts §1.8.8): in-order delivery over a
//! flow, with retransmission when the QoS cube asks for no loss, and flow control with a
//! rendez-vous when the receiver's window closes. The 12-byte header is the wire crate's
//! [`FrctRepr`]: `flags | rwe (24 bit) | seqno | ackno`.
//!
//! One machine per flow end, both directions (it sends and receives), in the shape of the
//! others: `send(now, sdu)`, `handle_pdu(now, pdu)`, `handle_timeout(now)` in;
//! `poll_transmit` (PDUs for the flow), `poll_deliver` (SDUs for the app, in order, once),
//! `poll_timeout` out. No clock, no thread: the caller passes the time and the initial
//! sequence numbers' randomness.
//!
//! What it does, as the facts give the reference's constants:
//! - A run starts with `DRF` on its first packet, at a random sequence number, when the
//!   sender was idle longer than `inact` (nothing unacknowledged).
//! - The receiver delivers in order. With retransmission (`rtx`) it holds up to `reorder`
//!   packets beyond a gap and acknowledges cumulatively (`ackno` = the next it expects),
//!   delayed by `ack_delay`, at once when a gap shows or a quarter of the window came
//!   since the last ACK (an o7s choice: the facts give only the delay), or piggy-backed
//!   on data. Without
//!   retransmission a gap is skipped: a later packet is delivered at once and what comes
//!   after it late is dropped (counted), so the order still holds.
//! - The sender keeps what is unacknowledged and sends it again after the RTO
//!   (`srtt + 4 mdev`, the Linux estimator: 1 s at first, at least 250 µs; doubled per
//!   retry of a packet; samples only from packets sent once, as Karn says).
//! - Flow control: the receiver's window edge (`rwe`, `FC`) is `window` packets past what
//!   the app has taken; a sender at the edge gets "would block", sends `RDVS` every
//!   `rdv_interval`, and after `rdv_timeout` closed the write fails (reset). The receiver
//!   answers an `RDVS` with its window at once.

use o7s_wire::field::Writer;
use o7s_wire::frct::{flags, FrctRepr, HEADER_LEN};
use o7s_wire::qos::QosSpec;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The machine's settings (the reference's constants by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrcpConfig {
    /// Retransmit what is not acknowledged (the cube's `loss` is 0: `qos_data`).
    pub rtx: bool,
    /// Packets the receiver lets the sender have in flight beyond what its app took.
    pub window: u32,
    /// Packets held beyond a gap.
    pub reorder: u32,
    /// RTO before any sample.
    pub rto_init: Duration,
    /// Smallest RTO.
    pub rto_min: Duration,
    /// Largest RTO (after doubling).
    pub rto_max: Duration,
    /// How long an acknowledgement may wait for data to ride on.
    pub ack_delay: Duration,
    /// `RDVS` every so often while the window is closed.
    pub rdv_interval: Duration,
    /// A write fails after the window was closed this long.
    pub rdv_timeout: Duration,
    /// A sender idle this long (nothing unacknowledged) starts a new run.
    pub inact: Duration,
}

impl Default for FrcpConfig {
    /// o7s's: the reference's ([`FrcpConfig::reference`]) but for the window its receiver
    /// offers, 768 packets instead of 64, and the reorder queue that holds them, 1024
    /// instead of 256 (a sender still starts a run assuming 64, until the receiver's first
    /// `FC`). Both are the receiver's to choose (the edge is on the wire; a reference
    /// sender honours it, and never has more than its own 256 out of order). On a veth pair
    /// at 1 % loss a window of 64 gave 919 Mbit/s, 192 gave 1,349 to 1,502, 768 gave 3,764
    /// (docs/BENCHMARKS.md "FRCP"): while a hole is repaired the sender goes on up to the
    /// window. What it costs: a receiver whose app does not read holds at most a window of
    /// SDUs (768 x the MTU: 1.1 MiB on Ethernet, 6.6 MiB on a local flow), in the app.
    fn default() -> Self {
        Self {
            window: 768,
            reorder: 1024,
            ..Self::reference()
        }
    }
}

impl FrcpConfig {
    /// The reference's constants (facts §1.8.8): window 64, reorder queue 256, RTO 1 s at
    /// first and at least 250 µs, delayed ACKs, rendez-vous every 100 ms, reset after 1 s.
    pub fn reference() -> Self {
        Self {
            rtx: false,
            window: 64,
            reorder: 256,
            rto_init: Duration::from_secs(1),
            rto_min: Duration::from_micros(250),
            rto_max: Duration::from_secs(60),
            ack_delay: Duration::from_millis(1),
            rdv_interval: Duration::from_millis(100),
            rdv_timeout: Duration::from_secs(1),
            inact: Duration::from_secs(1),
        }
    }

    /// The machine a QoS cube asks for: none unless `in_order`; retransmission when
    /// `loss` is 0 (facts §1.4).
    pub fn for_qos(q: &QosSpec) -> Option<Self> {
        (q.in_order != 0).then(|| Self {
            rtx: q.loss == 0,
            ..Self::default()
        })
    }
}

/// Why an SDU was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
// Exhaustive on purpose: the library decides per outcome (wait, fail), and a new one
// must make it decide again.
pub enum SendError {
    /// The receiver's window is closed: try again when [`Frcp::writable`].
    #[error("the receiver's window is closed")]
    WouldBlock,
    /// The window stayed closed for `rdv_timeout`: the peer is gone or stuck.
    #[error("the receiver's window stayed closed (no answer to the rendez-vous)")]
    Reset,
}

/// A PDU that is not FRCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an FRCP PDU: {0} bytes, the header is 12")]
pub struct Malformed(pub usize);

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Data packets sent the first time.
    pub sent: u64,
    /// Data packets sent again (RTO or fast retransmit).
    pub retransmits: u64,
    /// Of those, sent again on the third duplicate ACK.
    pub fast_retransmits: u64,
    /// ACK-only packets sent.
    pub acks_sent: u64,
    /// Window updates sent on their own (`FC`, after an `RDVS`).
    pub fc_sent: u64,
    /// `RDVS` sent.
    pub rdvs_sent: u64,
    /// The run's first packet (`DRF`) sent again with a rendez-vous that went unanswered
    /// (the receiver lost it, so it had no run to answer from).
    pub drf_resent: u64,
    /// SDUs handed to the app.
    pub delivered: u64,
    /// Data packets received again (already delivered or held).
    pub duplicates: u64,
    /// Data packets beyond the reorder queue, dropped.
    pub out_of_window: u64,
    /// Without retransmission: packets that came after a later one, dropped.
    pub late: u64,
    /// PDUs shorter than the header.
    pub malformed: u64,
    /// Acknowledgements of nothing we sent.
    pub bad_acks: u64,
    /// PDUs dropped from a full transmit queue (the driver took none for long).
    pub transmits_dropped: u64,
    /// Window edges far from anything we sent, ignored.
    pub bad_windows: u64,
}

/// An acknowledgement that also carries the window edge.
const ACK_FC: u8 = 0x0c;

/// Sequence order with wrap: whether `a` comes before `b`.
fn before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// A packet sent and not yet acknowledged.
#[derive(Debug)]
struct Unacked {
    seqno: u32,
    pdu: Vec<u8>,
    sent: Instant,
    retries: u32,
    deadline: Instant,
}

/// A PDU waiting to go: its bytes, or an unacknowledged data packet named by its
/// sequence number (sent from the copy kept for retransmission, not from another one; one
/// acknowledged meanwhile does not go at all).
#[derive(Debug)]
enum Tx {
    Pdu(Vec<u8>),
    Data(u32),
    /// An ACK, a window update or a rendez-vous: says again what a later one says too, so
    /// it gives way to data in a full queue ([`Frcp::queue`]).
    Ctl(Vec<u8>),
}

/// Packets beyond a gap acknowledged at once each (then one in a quarter window): three
/// make the sender's fast retransmit, one more in case one is lost.
const GAP_ACKS: u32 = 4;

/// The reference's start window (facts §1.8.8), what a sender assumes at a run's start.
const START_WINDOW: u32 = 64;

/// PDUs queued to go at most (data, ACKs, window updates): beyond, the oldest is dropped
/// and counted (the driver is not taking them: its ring is full); retransmission and the
/// next cumulative ACK make up for it.
const MAX_TRANSMITS: usize = 4096;

/// The RTT estimator (Linux's, as the reference's).
#[derive(Debug, Clone, Copy)]
struct Rtt {
    srtt: Option<Duration>,
    mdev: Duration,
    rto: Duration,
}

impl Rtt {
    fn sample(&mut self, r: Duration, cfg: &FrcpConfig) {
        let ns = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
        let back = |n: i128| Duration::from_nanos(u64::try_from(n.max(0)).unwrap_or(u64::MAX));
        let r = ns(r);
        let (srtt, mdev) = match self.srtt {
            None => (r, r / 2),
            Some(s) => {
                // srtt += (r - srtt) / 8; mdev += (|r - srtt| - mdev) / 4.
                let (s, m) = (ns(s), ns(self.mdev));
                (s + (r - s) / 8, m + ((r - s).abs() - m) / 4)
            }
        };
        self.srtt = Some(back(srtt));
        self.mdev = back(mdev);
        self.rto = (back(srtt) + back(mdev) * 4).clamp(cfg.rto_min, cfg.rto_max);
    }
}

/// One flow end's FRCP.
#[derive(Debug)]
pub struct Frcp {
    cfg: FrcpConfig,
    // Sending.
    next: u32,
    /// The receiver's window edge: we may send while `next` is before it.
    snd_rwe: u32,
    last_send: Option<Instant>,
    unacked: VecDeque<Unacked>,
    closed_since: Option<Instant>,
    /// ACKs in a row that named the oldest unacknowledged packet.
    dup_acks: u32,
    /// After a fast retransmit: the sequence number sent next at the time. Until an ACK
    /// reaches it, an ACK that moves but stops short names the next hole, which goes again
    /// at once (NewReno's partial acknowledgement; no three duplicates needed again, which
    /// a sender held by the window would never get).
    recover: Option<u32>,
    /// When a packet was last sent again.
    last_rtx: Option<Instant>,
    next_rdv: Option<Instant>,
    rtt: Rtt,
    /// Draws for a new run's first sequence number (splitmix64; seeded by the caller).
    rng: u64,
    // Receiving.
    run: bool,
    /// The next sequence number the receiver expects.
    rcv_lwe: u32,
    /// Held beyond a gap: slot i is `rcv_lwe + 1 + i`.
    held: VecDeque<Option<Vec<u8>>>,
    /// When a packet of the current run last came.
    last_in_run: Option<Instant>,
    /// The window edge the peer last heard from us (at a run's start, what it assumes).
    rcv_advertised: u32,
    /// With retransmission, before a run starts: packets that came before its DRF.
    early: Vec<(u32, Vec<u8>)>,
    ack_due: Option<Instant>,
    /// Data packets taken in order since we last acknowledged: at a quarter of the window
    /// the ACK goes at once (a one-way sender is not held for `ack_delay` per window).
    rx_unacked: u32,
    /// Packets taken beyond a gap since the edge last moved.
    gap_acks: u32,
    fc_due: bool,
    delivered: VecDeque<Vec<u8>>,
    transmits: VecDeque<Tx>,
    counters: Counters,
}

impl Frcp {
    /// A flow end with settings `cfg`; `seed` draws the runs' first sequence numbers.
    pub fn new(cfg: FrcpConfig, seed: u64) -> Self {
        Self {
            cfg,
            next: 0,
            snd_rwe: 0,
            last_send: None,
            unacked: VecDeque::new(),
            closed_since: None,
            dup_acks: 0,
            recover: None,
            last_rtx: None,
            next_rdv: None,
            rtt: Rtt {
                srtt: None,
                mdev: Duration::ZERO,
                rto: cfg.rto_init,
            },
            rng: seed,
            run: false,
            rcv_lwe: 0,
            held: VecDeque::new(),
            rcv_advertised: 0,
            last_in_run: None,
            early: Vec::new(),
            ack_due: None,
            rx_unacked: 0,
            gap_acks: 0,
            fc_due: false,
            delivered: VecDeque::new(),
            transmits: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    fn draw(&mut self) -> u32 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u32
    }

    /// The settings.
    pub fn config(&self) -> FrcpConfig {
        self.cfg
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The current retransmission timeout, as the facts' estimator gives it
    /// (`srtt + 4 mdev`).
    pub fn rto(&self) -> Duration {
        self.rtt.rto
    }

    /// How long a packet waits for its ACK before it goes again: the RTO plus the delay a
    /// receiver may hold its ACK for (`ack_delay`, as QUIC's probe timeout adds the peer's
    /// `max_ack_delay`). With the bare RTO (a fraction of a millisecond on a LAN) every
    /// delayed ACK of a slow one-way flow came too late: 332 of 2,002 packets of an operf
    /// uni test at 2000 packets/s were sent twice.
    pub fn rto_timer(&self) -> Duration {
        self.rtt.rto + self.cfg.ack_delay
    }

    /// The smoothed RTT, once sampled.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt
    }

    /// Packets sent and not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// Packets the receiver's window lets us send now (before a run starts: the window a
    /// new run assumes).
    pub fn send_window(&self) -> u32 {
        if self.last_send.is_none() {
            self.start_window()
        } else if before(self.next, self.snd_rwe) {
            self.snd_rwe.wrapping_sub(self.next)
        } else {
            0
        }
    }

    /// Whether the receiver's window lets another SDU go now.
    pub fn writable(&self) -> bool {
        self.last_send.is_none() || before(self.next, self.snd_rwe)
    }

    /// The window a sender assumes when it starts a run, until the receiver's `FC` says
    /// more: the reference's start window (64), or ours if smaller; a receiver takes the
    /// sender to assume as much.
    fn start_window(&self) -> u32 {
        self.cfg.window.min(START_WINDOW)
    }

    /// A quarter of the window (at least 1): the receiver acknowledges at once after this
    /// many packets, and an ACK carries the window edge once it moved this far.
    fn quarter(&self) -> u32 {
        (self.cfg.window / 4).max(1)
    }

    /// Our receiver's window edge: `window` past what the app has taken.
    fn rcv_rwe(&self) -> u32 {
        let waiting = u32::try_from(self.delivered.len()).unwrap_or(u32::MAX);
        self.rcv_lwe
            .wrapping_add(self.cfg.window.saturating_sub(waiting))
    }

    /// A header; one with `FC` tells the peer our window edge, remembered as advertised.
    fn header(&mut self, flags: u8, seqno: u32, ackno: u32) -> Writer {
        let rwe = if flags & flags::FC != 0 {
            self.rcv_advertised = self.rcv_rwe();
            self.rcv_advertised
        } else {
            0
        };
        let mut w = Writer(Vec::with_capacity(HEADER_LEN));
        FrctRepr {
            flags,
            rwe,
            seqno,
            ackno,
        }
        .write(&mut w);
        w
    }

    /// Takes a PDU from the flow.
    pub fn handle_pdu(&mut self, now: Instant, pdu: &[u8]) -> Result<(), Malformed> {
        let Ok((h, payload)) = FrctRepr::parse(pdu) else {
            self.counters.malformed += 1;
            return Err(Malformed(pdu.len()));
        };
        if h.flags & flags::ACK != 0 {
            self.on_ack(now, h.ackno);
        }
        if h.flags & flags::FC != 0 {
            self.on_window(h.rwe);
        }
        if h.flags & flags::RDVS != 0 {
            self.fc_due = true;
        }
        if h.flags & flags::DATA != 0 {
            self.on_data(now, h.seqno, h.flags & flags::DRF != 0, payload);
        }
        if self.fc_due {
            self.fc_due = false;
            self.send_fc();
        }
        Ok(())
    }

    /// SDUs waiting for the app ([`Frcp::poll_deliver`]).
    pub fn deliverable(&self) -> usize {
        self.delivered.len()
    }

    /// The next SDU for the app, in order. Taking it opens the window by one; when the
    /// window had been full, the sender hears of it at once.
    pub fn poll_deliver(&mut self) -> Option<Vec<u8>> {
        let full = self.delivered.len() >= self.cfg.window as usize;
        let sdu = self.delivered.pop_front()?;
        if full && self.run {
            self.send_fc();
        }
        Some(sdu)
    }
}

/// FRCP's events are the SDUs it delivers in order ([`Frcp::poll_deliver`]).
impl crate::machine::Machine for Frcp {
    type Transmit = Vec<u8>;
    type Event = Vec<u8>;
    fn handle_timeout(&mut self, now: Instant) {
        Frcp::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Frcp::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        Frcp::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<Vec<u8>> {
        Frcp::poll_deliver(self)
    }
}

mod receiver;
mod sender;
mod timers;

#[cfg(test)]
mod tests;
