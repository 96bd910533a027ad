//! Impairments of a port, for tests and experiments (issue 27): the data frames a port
//! receives (endpoint id not 0: management passes, so flows are still allocated) are lost,
//! duplicated, delayed, reordered or corrupted (one bit of the SDU flipped) at the rates
//! `o7sctl port set PORT loss 1% dup 0.1% reorder 1% delay 5ms corrupt 0.1%` (or the
//! layer's `loss`/`dup`/`reorder`/`delay`/`corrupt` keys) gives. A
//! reordered frame is held `REORDER_GAP` longer than the delay, so the frames behind it
//! overtake it. Applied as the frame arrives, before anything reads it, as netem would on
//! the receiving side (this machine has no netem).
//!
//! Pure: time comes in as an [`Instant`], the draws from a seeded generator; held frames are
//! copies in a bounded queue (`MAX_HELD` frames, `MAX_HELD_BYTES` bytes; beyond either a
//! frame is dropped and counted: a frame is held before its flow is looked up, so large
//! datagrams with made-up endpoint ids must not hold half a gigabyte).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Most frames held (delayed or reordered) per port.
pub const MAX_HELD: usize = 8192;
/// Most bytes held per port (8,192 frames of 4 KiB).
pub const MAX_HELD_BYTES: usize = 32 << 20;
/// How much longer than the delay a reordered frame is held.
pub const REORDER_GAP: Duration = Duration::from_millis(2);
pub use o7s_abi::impair::PPM;

/// What a port does to the data frames it receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairConf {
    /// Lost, per million frames.
    pub loss_ppm: u32,
    /// Duplicated (delivered twice), per million.
    pub dup_ppm: u32,
    /// Held `REORDER_GAP` beyond the delay, per million.
    pub reorder_ppm: u32,
    /// Every frame waits this long.
    pub delay: Duration,
    /// One bit of the SDU flipped, per million.
    pub corrupt_ppm: u32,
}

impl ImpairConf {
    /// Whether it does anything.
    pub fn active(&self) -> bool {
        self.loss_ppm > 0
            || self.dup_ppm > 0
            || self.reorder_ppm > 0
            || !self.delay.is_zero()
            || self.corrupt_ppm > 0
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Frames dropped as lost.
    pub lost: u64,
    /// Frames delivered a second time (both copies went on: [`Impair::count`]).
    pub duplicated: u64,
    /// Frames held for the delay (a copy was held).
    pub delayed: u64,
    /// Frames held back behind later ones (a copy was held).
    pub reordered: u64,
    /// Frames dropped because `MAX_HELD` were held.
    pub held_full: u64,
    /// Frames with a bit of their SDU flipped ([`Impair::corrupt_sdu`]; an empty SDU has
    /// none to flip).
    pub corrupted: u64,
}

/// What to do with a frame that just came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// How many times it is delivered: 0 (lost), 1, or 2 (duplicated).
    pub copies: u8,
    /// When: now (`None`) or held until then.
    pub at: Option<Instant>,
    /// Corrupt it: which bit of its SDU to flip ([`corrupt`]).
    pub corrupt: Option<u32>,
    /// Held back behind later frames (`at` then lies past the delay).
    pub reordered: bool,
}

/// Flips one bit of `sdu`, chosen by `pick` (a draw): byte `pick / 8` modulo its length,
/// bit `pick % 8`. An empty SDU stays as it is.
pub fn corrupt(sdu: &mut [u8], pick: u32) {
    let len = sdu.len();
    if let Some(b) = len
        .checked_sub(1)
        .and_then(|_| sdu.get_mut((pick as usize >> 3) % len))
    {
        *b ^= 1 << (pick & 7);
    }
}

/// A port's impairments and the frames they hold.
#[derive(Debug)]
pub struct Impair {
    conf: ImpairConf,
    /// splitmix64 state.
    rng: u64,
    /// Held frames by release time (then arrival order).
    held: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    /// Bytes of the frames held.
    held_bytes: usize,
    seq: u64,
    free: Vec<Vec<u8>>,
    /// Counters.
    pub stats: ImpairStats,
}

impl Impair {
    /// Impairments `conf`, drawing from `seed`.
    pub fn new(conf: ImpairConf, seed: u64) -> Self {
        Self {
            conf,
            rng: seed,
            held: BinaryHeap::new(),
            held_bytes: 0,
            seq: 0,
            free: Vec::new(),
            stats: ImpairStats::default(),
        }
    }

    /// The impairments.
    pub fn conf(&self) -> ImpairConf {
        self.conf
    }

    /// Changes them (what is held stays held until its time).
    pub fn set(&mut self, conf: ImpairConf) {
        self.conf = conf;
    }

    /// One draw in 0..PPM.
    fn draw(&mut self) -> u32 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        u32::try_from(z % u64::from(PPM)).unwrap_or(0)
    }

    /// Decides the fate of a frame that came at `now` (a loss counted; the rest is counted
    /// by [`Impair::count`] and [`Impair::corrupt_sdu`] once it is carried out).
    pub fn decide(&mut self, now: Instant) -> Verdict {
        if self.draw() < self.conf.loss_ppm {
            self.stats.lost += 1;
            return Verdict {
                copies: 0,
                at: None,
                corrupt: None,
                reordered: false,
            };
        }
        let copies = if self.draw() < self.conf.dup_ppm {
            2
        } else {
            1
        };
        let reordered = self.draw() < self.conf.reorder_ppm;
        let at = if reordered {
            Some(now + self.conf.delay + REORDER_GAP)
        } else if !self.conf.delay.is_zero() {
            Some(now + self.conf.delay)
        } else {
            None
        };
        // Drawn only when asked for: the other impairments' draws stay as they were.
        let corrupt =
            (self.conf.corrupt_ppm > 0 && self.draw() < self.conf.corrupt_ppm).then(|| self.draw());
        Verdict {
            copies,
            at,
            corrupt,
            reordered,
        }
    }

    /// Counts what became of a frame decided by `v`: `went` of its copies went on (held,
    /// or handed on at once); the others the held queue refused (`held_full`).
    pub fn count(&mut self, v: &Verdict, went: u8) {
        if went == 0 {
            return;
        }
        if v.at.is_some() {
            if v.reordered {
                self.stats.reordered += 1;
            } else {
                self.stats.delayed += 1;
            }
        }
        if went >= 2 {
            self.stats.duplicated += 1;
        }
    }

    /// Flips the bit `pick` chooses of `sdu` ([`corrupt`]), counted when it has one.
    pub fn corrupt_sdu(&mut self, sdu: &mut [u8], pick: u32) {
        if !sdu.is_empty() {
            corrupt(sdu, pick);
            self.stats.corrupted += 1;
        }
    }

    /// Holds a copy of `frame` until `at`; `false` (counted) when `MAX_HELD` frames or
    /// `MAX_HELD_BYTES` bytes are held.
    pub fn hold(&mut self, at: Instant, frame: &[u8]) -> bool {
        if self.held.len() >= MAX_HELD || self.held_bytes + frame.len() > MAX_HELD_BYTES {
            self.stats.held_full += 1;
            return false;
        }
        self.held_bytes += frame.len();
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.seq += 1;
        self.held.push(Reverse((at, self.seq, buf)));
        true
    }

    /// A held frame whose time has come at `now`, if any (give its buffer back with
    /// [`Impair::recycle`]).
    pub fn due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self
            .held
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            let buf = self.held.pop().map(|Reverse((_, _, buf))| buf);
            self.held_bytes -= buf.as_ref().map_or(0, Vec::len);
            return buf;
        }
        None
    }

    /// Gives a released frame's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.free.len() < 64 {
            self.free.push(buf);
        }
    }

    /// Buffers kept for reuse.
    #[cfg(test)]
    fn spare(&self) -> usize {
        self.free.len()
    }

    /// Frames held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// How long until the next held frame is due (`None`: none held).
    pub fn next_in(&self, now: Instant) -> Option<Duration> {
        self.held
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `n` frames decided, and counted as a worker counts them when every copy goes on
    /// (each corrupt one with a bit to flip).
    fn run(conf: ImpairConf, n: u32) -> (Impair, Vec<Verdict>) {
        let now = Instant::now();
        let mut i = Impair::new(conf, 7);
        let v = (0..n)
            .map(|_| {
                let v = i.decide(now);
                i.count(&v, v.copies);
                if let Some(pick) = v.corrupt {
                    i.corrupt_sdu(&mut [0u8; 8], pick);
                }
                v
            })
            .collect();
        (i, v)
    }

    #[test]
    fn any_one_impairment_makes_it_active() {
        let one = [
            ImpairConf {
                loss_ppm: 1,
                ..ImpairConf::default()
            },
            ImpairConf {
                dup_ppm: 1,
                ..ImpairConf::default()
            },
            ImpairConf {
                reorder_ppm: 1,
                ..ImpairConf::default()
            },
            ImpairConf {
                delay: Duration::from_micros(1),
                ..ImpairConf::default()
            },
            ImpairConf {
                corrupt_ppm: 1,
                ..ImpairConf::default()
            },
        ];
        assert!(!ImpairConf::default().active());
        for c in one {
            assert!(c.active(), "{c:?}");
        }
    }

    /// The draws are splitmix64's (values computed outside, modulo a million): seed 7
    /// gives 374487, 955804, 609346 for one frame's loss, dup and reorder draws. A rate
    /// equal to its draw does not hit; one above it does.
    #[test]
    fn draws_are_splitmix64_and_a_rate_hits_below_it() {
        let now = Instant::now();
        let conf = ImpairConf {
            loss_ppm: 374_487,
            dup_ppm: 955_804,
            reorder_ppm: 609_346,
            delay: Duration::ZERO,
            corrupt_ppm: 0,
        };
        let mut i = Impair::new(conf, 7);
        assert_eq!(
            i.decide(now),
            Verdict {
                copies: 1,
                at: None,
                corrupt: None,
                reordered: false,
            }
        );
        assert_eq!([i.draw(), i.draw(), i.draw()], [472_203, 723_674, 548_305]);
        let mut i = Impair::new(
            ImpairConf {
                loss_ppm: 374_488,
                ..conf
            },
            7,
        );
        assert_eq!(i.decide(now).copies, 0);
        let mut i = Impair::new(
            ImpairConf {
                loss_ppm: 0,
                dup_ppm: 955_805,
                reorder_ppm: 609_347,
                delay: Duration::from_millis(5),
                corrupt_ppm: 0,
            },
            7,
        );
        let v = i.decide(now);
        assert_eq!(
            v,
            Verdict {
                copies: 2,
                at: Some(now + Duration::from_millis(5) + REORDER_GAP),
                corrupt: None,
                reordered: true,
            }
        );
        // Counted once carried out: both copies held.
        assert_eq!(i.stats, ImpairStats::default());
        i.count(&v, 2);
        assert_eq!(
            (i.stats.reordered, i.stats.delayed, i.stats.duplicated),
            (1, 0, 1)
        );
        let mut j = Impair::new(ImpairConf::default(), 1);
        assert_eq!([j.draw(), j.draw(), j.draw()], [822_465, 428_519, 890_590]);
    }

    /// Seed 7's fourth draw is 472203 (see above): a corrupt rate above it hits and the
    /// fifth, 723674, picks the bit: byte 90459 of the SDU (modulo its length), bit 2.
    #[test]
    fn a_corrupted_frame_has_one_bit_of_its_sdu_flipped_and_is_counted() {
        let now = Instant::now();
        let conf = ImpairConf {
            corrupt_ppm: 472_204,
            ..ImpairConf::default()
        };
        let mut i = Impair::new(conf, 7);
        let v = i.decide(now);
        assert_eq!((v.copies, v.at, v.corrupt), (1, None, Some(723_674)));
        assert_eq!(i.stats.corrupted, 0, "counted when flipped");
        // An empty SDU has no bit to flip: not counted.
        i.corrupt_sdu(&mut [], 723_674);
        assert_eq!(i.stats.corrupted, 0);
        let mut sdu = [0u8; 10];
        i.corrupt_sdu(&mut sdu, 723_674);
        assert_eq!(i.stats.corrupted, 1);
        corrupt(&mut sdu, 723_674);
        assert_eq!(sdu, [0; 10]);
        corrupt(&mut sdu, 723_674);
        // 723674 / 8 = 90459, modulo 10 = 9; 723674 % 8 = 2.
        assert_eq!(sdu, [0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
        corrupt(&mut sdu, 723_674);
        assert_eq!(sdu, [0; 10], "the same pick flips it back");
        corrupt(&mut [], 5);
        // At the draw itself it does not hit, and nothing more is drawn for it.
        let mut i = Impair::new(
            ImpairConf {
                corrupt_ppm: 472_203,
                ..ImpairConf::default()
            },
            7,
        );
        assert_eq!(i.decide(now).corrupt, None);
        assert_eq!(i.draw(), 723_674);
        // Over many frames the share is about the rate.
        let (i, v) = run(
            ImpairConf {
                corrupt_ppm: 100_000,
                ..ImpairConf::default()
            },
            20_000,
        );
        let n = v.iter().filter(|x| x.corrupt.is_some()).count();
        assert!((1_700..2_300).contains(&n), "{n}");
        assert_eq!(i.stats.corrupted, n as u64);
        assert!(v.iter().all(|x| x.copies == 1 && x.at.is_none()));
    }

    #[test]
    fn new_impairments_apply_from_the_next_frame() {
        let now = Instant::now();
        let mut i = Impair::new(ImpairConf::default(), 5);
        assert_eq!(i.decide(now).copies, 1);
        let all = ImpairConf {
            loss_ppm: PPM,
            ..ImpairConf::default()
        };
        i.set(all);
        assert_eq!(i.conf(), all);
        assert_eq!(i.decide(now).copies, 0);
        i.set(ImpairConf::default());
        assert_eq!(i.decide(now).copies, 1);
    }

    #[test]
    fn frames_held_until_one_instant_leave_in_arrival_order_and_buffers_are_reused() {
        let t0 = Instant::now();
        let mut i = Impair::new(ImpairConf::default(), 2);
        for f in [b"b", b"a", b"c"] {
            assert!(i.hold(t0, f));
        }
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| i.due(t0)).collect();
        assert_eq!(out, [b"b".to_vec(), b"a".to_vec(), b"c".to_vec()]);
        // A released buffer is used again; at most 64 are kept.
        let mut big = Vec::with_capacity(4096);
        big.extend_from_slice(b"x");
        let ptr = big.as_ptr();
        i.recycle(big);
        assert!(i.hold(t0, b"y"));
        let again = i.due(t0).unwrap();
        assert_eq!(again.as_ptr(), ptr);
        for _ in 0..70 {
            i.recycle(Vec::new());
        }
        assert_eq!(i.spare(), 64);
    }

    #[test]
    fn nothing_set_passes_everything_at_once() {
        let (i, v) = run(ImpairConf::default(), 10_000);
        assert!(v.iter().all(|v| *v
            == Verdict {
                copies: 1,
                at: None,
                corrupt: None,
                reordered: false,
            }));
        assert_eq!(i.stats, ImpairStats::default());
        assert!(!ImpairConf::default().active());
    }

    #[test]
    fn rates_come_out_as_set_and_are_counted() {
        let conf = ImpairConf {
            loss_ppm: 50_000,
            dup_ppm: 10_000,
            reorder_ppm: 10_000,
            delay: Duration::ZERO,
            corrupt_ppm: 0,
        };
        assert!(conf.active());
        let (i, v) = run(conf, 100_000);
        let lost = v.iter().filter(|v| v.copies == 0).count() as u64;
        let dup = v.iter().filter(|v| v.copies == 2).count() as u64;
        let held = v.iter().filter(|v| v.at.is_some()).count() as u64;
        assert_eq!(
            (i.stats.lost, i.stats.duplicated, i.stats.reordered),
            (lost, dup, held)
        );
        // 5 % +- 0.4, 1 % of the rest +- 0.2 (100,000 draws: a few standard deviations).
        assert!((4_600..=5_400).contains(&lost), "{lost}");
        assert!((750..=1_150).contains(&dup), "{dup}");
        assert!((750..=1_150).contains(&held), "{held}");
        assert_eq!(i.stats.delayed, 0);
    }

    #[test]
    fn delayed_frames_come_out_in_order_and_reordered_ones_after_later_ones() {
        let t0 = Instant::now();
        let d = Duration::from_millis(5);
        let mut i = Impair::new(
            ImpairConf {
                delay: d,
                ..ImpairConf::default()
            },
            1,
        );
        let v = i.decide(t0);
        assert_eq!(
            v,
            Verdict {
                copies: 1,
                at: Some(t0 + d),
                corrupt: None,
                reordered: false,
            }
        );
        assert!(i.hold(t0 + d, b"one"));
        i.count(&v, 1);
        // A reordered frame (held REORDER_GAP more), then one that overtakes it.
        assert!(i.hold(t0 + Duration::from_millis(1) + d + REORDER_GAP, b"two"));
        assert!(i.hold(t0 + Duration::from_millis(2) + d, b"three"));
        assert_eq!(i.held(), 3);
        assert_eq!(i.next_in(t0), Some(d));
        assert_eq!(i.due(t0 + d - Duration::from_micros(1)), None);
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| i.due(t0 + Duration::from_secs(1))).collect();
        assert_eq!(out, [b"one".to_vec(), b"three".to_vec(), b"two".to_vec()]);
        assert_eq!(i.next_in(t0), None);
        assert_eq!(i.stats.delayed, 1);
    }

    #[test]
    fn the_held_queue_is_bounded_and_counts_what_it_refuses() {
        let t0 = Instant::now();
        let mut i = Impair::new(ImpairConf::default(), 3);
        for _ in 0..MAX_HELD {
            assert!(i.hold(t0, &[0u8; 64]));
        }
        assert!(!i.hold(t0, &[0u8; 64]));
        assert_eq!((i.held(), i.stats.held_full), (MAX_HELD, 1));
        let b = i.due(t0).unwrap();
        i.recycle(b);
        assert!(i.hold(t0, b"again"));
    }

    #[test]
    fn the_held_queue_is_bounded_in_bytes_too() {
        let t0 = Instant::now();
        let mut i = Impair::new(ImpairConf::default(), 3);
        let big = vec![0u8; 65_000];
        let fit = MAX_HELD_BYTES / big.len();
        for _ in 0..fit {
            assert!(i.hold(t0, &big));
        }
        assert!(!i.hold(t0, &big));
        assert_eq!((i.held(), i.stats.held_full), (fit, 1));
        // A frame of exactly the room left fits; one byte more would not.
        let left = MAX_HELD_BYTES - i.held_bytes;
        assert!(!i.hold(t0, &vec![0u8; left + 1]));
        assert!(i.hold(t0, &vec![0u8; left]));
        assert_eq!(i.held_bytes, MAX_HELD_BYTES);
        let b = i.due(t0).unwrap();
        assert_eq!(i.held_bytes, MAX_HELD_BYTES - b.len());
        // What leaves makes room again.
        let b = i.due(t0).unwrap();
        i.recycle(b);
        assert!(i.hold(t0, &big));
        while let Some(b) = i.due(t0) {
            i.recycle(b);
        }
        assert_eq!(i.held_bytes, 0);
    }

    /// A frame the held queue refuses is not counted as delayed, reordered or duplicated
    /// (only in `held_full`): the counters say what happened, not what was decided.
    #[test]
    fn what_the_held_queue_refuses_is_counted_as_refused_only() {
        let t0 = Instant::now();
        let conf = ImpairConf {
            delay: Duration::from_millis(5),
            dup_ppm: PPM,
            ..ImpairConf::default()
        };
        let mut i = Impair::new(conf, 3);
        let v = i.decide(t0);
        assert_eq!((v.copies, v.reordered), (2, false));
        i.count(&v, 0);
        assert_eq!((i.stats.delayed, i.stats.duplicated), (0, 0));
        // One copy of two held: delayed, not duplicated.
        i.count(&v, 1);
        assert_eq!((i.stats.delayed, i.stats.duplicated), (1, 0));
        i.count(&v, 2);
        assert_eq!((i.stats.delayed, i.stats.duplicated), (2, 1));
        // Handed on at once (no delay): duplicated when both went, never delayed.
        let now = Verdict {
            copies: 2,
            at: None,
            corrupt: None,
            reordered: false,
        };
        i.count(&now, 2);
        assert_eq!((i.stats.delayed, i.stats.duplicated), (2, 2));
    }
}
