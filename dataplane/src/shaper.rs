//! A port's egress cap (issue 22): what a worker sends on the port's N-1 flows of a
//! unicast layer waits in a queue per N-1 flow and leaves at most at the port's rate, so
//! that a 100 Mbit/s link can be made on any veth (AF_XDP transmits bypass the qdiscs, so
//! tbf cannot do it). The queue's length is what MB-ECN marks by (`queued(out)`).
//!
//! Pure: time comes in as an [`Instant`]; frames come in as bytes and go out as buffers
//! the caller sends and gives back. Bounded: at most `limit` frames per N-1 flow, a
//! frame beyond that is dropped and counted; buffers are reused.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Default most frames waiting per N-1 flow: the reference's rbuff holds 1024 (facts §1.1
/// `SSM_RBUFF_SIZE`), so ECN reaches the same levels (up to 64) before anything is dropped.
pub const DEFAULT_QUEUE: u32 = 1024;
pub use o7s_abi::rate::MAX_QUEUE;
/// A burst after an idle spell: this long at the rate (and at least two large frames).
const BURST: Duration = Duration::from_millis(2);
/// While frames wait, time the worker was not scheduled is made up for, up to this long at
/// the rate: a NIC's transmit ring keeps the wire busy while the CPU is elsewhere (256
/// frames of 1000 bytes are 20 ms at 100 Mbit/s). Without it a worker that shares two
/// CPUs with the apps lost a tenth of a 100 Mbit/s cap (docs/EXPERIMENTS.md).
const CATCH_UP: Duration = Duration::from_millis(20);
/// Bytes of two 9000-byte frames: the smallest burst.
const MIN_BURST: u64 = 2 * 9216;

/// A fast non-cryptographic hash: keys are N-1 flow ids from o7sd.
type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Counters of a port's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperStats {
    /// Frames that went through the queue.
    pub shaped: u64,
    /// Frames dropped: their N-1 flow's queue was full.
    pub drop_full: u64,
    /// The most that ever waited on one N-1 flow.
    pub queued_max: u64,
}

/// One port's cap and its queues.
#[derive(Debug)]
pub struct Shaper {
    /// Bits per second; 0: no cap (nothing is queued).
    rate_bps: u64,
    /// Most frames waiting per N-1 flow.
    limit: u32,
    /// Bytes that may leave now (negative: owed by a frame that already left).
    tokens: i64,
    /// When the tokens were last counted.
    last: Instant,
    /// The queue was empty when the tokens were last counted.
    idle: bool,
    /// Frames in the order they came, with their N-1 flow.
    fifo: VecDeque<(u64, Vec<u8>)>,
    /// Frames waiting per N-1 flow.
    per_flow: Map<u64, u32>,
    /// Frames waiting per N-1 flow when the worker's turn began ([`Shaper::new_turn`]).
    at_turn: Map<u64, u32>,
    /// Buffers to reuse.
    free: Vec<Vec<u8>>,
    /// Counters.
    pub stats: ShaperStats,
}

impl Shaper {
    /// A port without a cap.
    pub fn new(now: Instant) -> Self {
        Self {
            rate_bps: 0,
            limit: DEFAULT_QUEUE,
            tokens: 0,
            last: now,
            idle: true,
            fifo: VecDeque::new(),
            per_flow: Map::default(),
            at_turn: Map::default(),
            free: Vec::new(),
            stats: ShaperStats::default(),
        }
    }

    /// The cap, bit/s (0: none).
    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// Most frames waiting per N-1 flow.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether frames wait here (a cap is set).
    pub fn capped(&self) -> bool {
        self.rate_bps > 0
    }

    /// Sets the cap (0: none; what waits still leaves, at once) and the queue bound
    /// (1..=[`MAX_QUEUE`]).
    pub fn set(&mut self, rate_bps: Option<u64>, limit: Option<u32>, now: Instant) {
        if let Some(r) = rate_bps {
            self.refill(now);
            let was = self.rate_bps;
            self.rate_bps = r;
            // A new cap starts with a full bucket (one burst).
            self.tokens = if was == 0 {
                self.burst()
            } else {
                self.tokens.min(self.burst())
            };
        }
        if let Some(l) = limit {
            self.limit = l.clamp(1, MAX_QUEUE);
        }
    }

    /// Frames waiting on N-1 flow `n1`.
    pub fn queued(&self, n1: u64) -> usize {
        self.per_flow.get(&n1).map_or(0, |n| *n as usize)
    }

    /// Frames waiting on N-1 flow `n1` when the worker's turn began: what MB-ECN marks by.
    /// A worker takes each port's received frames in turn, so a frame's place in the queue
    /// within one turn says only which port was read first; marked by the queue of the
    /// moment, the frames of the port read second would always be marked higher (by as
    /// many as the first port brought), and their flows would keep less.
    pub fn queued_at_turn(&self, n1: u64) -> usize {
        self.at_turn.get(&n1).map_or(0, |n| *n as usize)
    }

    /// A new turn of the worker: [`Shaper::queued_at_turn`] is the queue from now.
    pub fn new_turn(&mut self) {
        self.at_turn.clone_from(&self.per_flow);
    }

    /// Frames waiting on every N-1 flow.
    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    /// Queues a copy of `frame` for N-1 flow `n1`; `false` (counted) when its queue is full.
    pub fn push(&mut self, n1: u64, frame: &[u8]) -> bool {
        let n = self.per_flow.entry(n1).or_insert(0);
        if *n >= self.limit {
            self.stats.drop_full += 1;
            return false;
        }
        *n += 1;
        self.stats.queued_max = self.stats.queued_max.max(u64::from(*n));
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.fifo.push_back((n1, buf));
        true
    }

    /// The next frame that may leave at `now` (its N-1 flow and bytes), if any: the caller
    /// sends it and gives the buffer back with [`Shaper::recycle`], or puts it back in
    /// front with [`Shaper::unpop`] when the port could not take it.
    pub fn pop(&mut self, now: Instant) -> Option<(u64, Vec<u8>)> {
        if self.fifo.is_empty() {
            return None;
        }
        if self.capped() {
            self.refill(now);
            if self.tokens < 0 {
                return None;
            }
        }
        let (n1, buf) = self.fifo.pop_front()?;
        self.tokens -= i64::try_from(buf.len()).unwrap_or(i64::MAX);
        if self.fifo.is_empty() {
            // Caught up: the wire idles from here, and idle time earns a burst only.
            self.tokens = self.tokens.min(self.burst());
            self.idle = true;
        }
        self.stats.shaped += 1;
        if let Some(n) = self.per_flow.get_mut(&n1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_flow.remove(&n1);
            }
        }
        Some((n1, buf))
    }

    /// Puts back a frame [`Shaper::pop`] gave (the port was full): it leaves first next
    /// time, and its bytes are not spent.
    pub fn unpop(&mut self, n1: u64, buf: Vec<u8>) {
        self.tokens += i64::try_from(buf.len()).unwrap_or(i64::MAX);
        self.stats.shaped = self.stats.shaped.saturating_sub(1);
        *self.per_flow.entry(n1).or_insert(0) += 1;
        self.fifo.push_front((n1, buf));
    }

    /// Gives a sent frame's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.free.len() < 64 {
            self.free.push(buf);
        }
    }

    /// Drops what waits on N-1 flow `n1` (it is gone); how many.
    pub fn forget(&mut self, n1: u64) -> usize {
        let before = self.fifo.len();
        self.fifo.retain(|(f, _)| *f != n1);
        self.per_flow.remove(&n1);
        self.at_turn.remove(&n1);
        before - self.fifo.len()
    }

    /// How long until the next frame may leave (`None`: nothing waits).
    pub fn next_in(&self, now: Instant) -> Option<Duration> {
        if self.fifo.is_empty() {
            return None;
        }
        if !self.capped() {
            return Some(Duration::ZERO);
        }
        let elapsed = now.saturating_duration_since(self.last);
        let have = self.tokens.saturating_add(self.earned(elapsed));
        if have >= 0 {
            return Some(Duration::ZERO);
        }
        let owed = u128::from(have.unsigned_abs()) * 8 * 1_000_000_000;
        let ns = owed.div_ceil(u128::from(self.rate_bps));
        Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
    }

    /// Bytes the rate earns in `d`.
    fn earned(&self, d: Duration) -> i64 {
        let b = d.as_nanos() * u128::from(self.rate_bps) / 8 / 1_000_000_000;
        i64::try_from(b).unwrap_or(i64::MAX)
    }

    /// Most tokens kept through an idle spell.
    fn burst(&self) -> i64 {
        self.earned(BURST).max(MIN_BURST as i64)
    }

    /// Most tokens kept while frames wait (the time made up for, [`CATCH_UP`]).
    fn catch_up(&self) -> i64 {
        self.earned(CATCH_UP).max(self.burst())
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        let earned = self.earned(elapsed);
        // Count whole bytes only; the time past them stays for the next call (setting
        // `last = now` threw away up to a byte's time per count: a worker counting every
        // 1.5 us kept a 10 Mbit/s cap at about 5.3 Mbit/s). The time the counted bytes
        // took is rounded up: never more than the cap.
        self.last = match u128::from(self.rate_bps) {
            0 => now,
            rate => {
                let ns = (u128::from(earned.unsigned_abs()) * 8 * 1_000_000_000).div_ceil(rate);
                self.last
                    .checked_add(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
                    .map_or(now, |t| t.min(now))
            }
        };
        // Since the last count frames waited all along (not idle before it): the wire's
        // lost time is made up for, to a limit. The first count of a backlog takes the
        // idle spell's burst (the worker counts at once after a push).
        let most = if self.idle || self.fifo.is_empty() {
            self.burst()
        } else {
            self.catch_up()
        };
        self.tokens = self.tokens.saturating_add(earned).min(most);
        // (Uncounted, less than a byte's time: it goes with the next count.)
        self.idle = self.fifo.is_empty();
    }
}

pub use o7s_abi::rate::parse_rate;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_cap_and_the_queue_bound_read_as_set_within_their_range() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        assert_eq!(
            (s.rate_bps(), s.limit(), s.capped()),
            (0, DEFAULT_QUEUE, false)
        );
        s.set(Some(100_000_000), Some(37), t0);
        assert_eq!(
            (s.rate_bps(), s.limit(), s.capped()),
            (100_000_000, 37, true)
        );
        s.set(None, Some(0), t0);
        assert_eq!((s.rate_bps(), s.limit()), (100_000_000, 1), "at least one");
        s.set(Some(0), Some(u32::MAX), t0);
        assert_eq!((s.rate_bps(), s.limit(), s.capped()), (0, MAX_QUEUE, false));
    }

    #[test]
    fn a_capped_port_lets_frames_leave_at_its_rate() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(8_000_000), None, t0); // 1 MB/s: a 1000-byte frame per ms
        for _ in 0..100 {
            assert!(s.push(7, &[0u8; 1000]));
        }
        assert_eq!(s.queued(7), 100);
        // Over 50 ms, polled every 100 us: a burst at once (18,432 B: 19 frames), then one
        // a millisecond.
        let mut sent = 0;
        for i in 0..=500u64 {
            let now = t0 + Duration::from_micros(i * 100);
            while let Some((n1, b)) = s.pop(now) {
                assert_eq!(n1, 7);
                sent += 1;
                s.recycle(b);
            }
        }
        assert!((68..=70).contains(&sent), "{sent}");
        assert_eq!(s.queued(7), 100 - sent);
        // The next frame's time is told.
        let now = t0 + Duration::from_millis(50);
        let wait = s.next_in(now).unwrap();
        assert!(wait <= Duration::from_millis(1), "{wait:?}");
        assert_eq!(s.stats.shaped, sent as u64);
    }

    /// A worker that counts every 1.5 us (busy poll, a spinning loop) earns less than two
    /// bytes a count at 10 Mbit/s: the fraction is kept, so the port carries its cap.
    #[test]
    fn frequent_counts_keep_the_fraction_of_a_byte_and_the_cap() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(10_000_000), Some(4096), t0);
        for _ in 0..2000 {
            assert!(s.push(7, &[0u8; 100]));
        }
        let mut bytes = 0usize;
        let mut k = 0u64;
        loop {
            let now = t0 + Duration::from_nanos(k * 1500);
            if now > t0 + Duration::from_millis(100) {
                break;
            }
            bytes += 100 * pop_all(&mut s, now);
            k += 1;
        }
        // The first burst (the idle spell's 2 ms, at least MIN_BURST) and 100 ms at
        // 1.25 MB/s: 125,000 B.
        let want = MIN_BURST as usize + 125_000;
        assert!(bytes.abs_diff(want) <= 300, "{bytes} B, want about {want}");
    }

    /// Pops what may leave at `now`; how many.
    fn pop_all(s: &mut Shaper, now: Instant) -> usize {
        let mut n = 0;
        while let Some((_, b)) = s.pop(now) {
            s.recycle(b);
            n += 1;
        }
        n
    }

    #[test]
    fn time_lost_while_frames_waited_is_made_up_to_20_ms_but_idle_time_earns_2_ms() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(80_000_000), None, t0); // 10 MB/s: ten 1000-byte frames a ms
        for _ in 0..1000 {
            assert!(s.push(1, &[0u8; 1000]));
        }
        // A full bucket of 2 ms (20,000 B) and the frame that overdraws it.
        assert_eq!(pop_all(&mut s, t0), 21);
        // The worker was not scheduled for 50 ms while 979 frames waited: 20 ms of it are
        // made up for (200,000 B, and the frame that overdraws it), the rest is lost as
        // on a NIC whose ring ran dry.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(pop_all(&mut s, t1), 201);
        // Then the rate again: 1 ms, 10 frames.
        assert_eq!(pop_all(&mut s, t1 + Duration::from_millis(1)), 10);
        // Drained, then idle for 50 ms: a backlog that starts then gets the 2 ms burst only.
        let mut t2 = t1 + Duration::from_millis(1);
        while !s.is_empty() {
            t2 += Duration::from_millis(1);
            pop_all(&mut s, t2);
        }
        let t3 = t2 + Duration::from_millis(50);
        for _ in 0..500 {
            assert!(s.push(1, &[0u8; 1000]));
        }
        assert_eq!(pop_all(&mut s, t3), 21);
        assert_eq!(s.stats.shaped, 1000 + 21);
    }

    #[test]
    fn frames_of_one_turn_are_marked_by_the_queue_as_the_turn_began() {
        let now = Instant::now();
        let mut s = Shaper::new(now);
        s.set(Some(1_000_000), None, now);
        for _ in 0..20 {
            assert!(s.push(1, &[0; 100]));
        }
        assert!(s.push(2, &[0; 100]));
        // The turn began with nothing waiting.
        assert_eq!((s.queued_at_turn(1), s.queued_at_turn(2)), (0, 0));
        s.new_turn();
        assert_eq!((s.queued_at_turn(1), s.queued_at_turn(2)), (20, 1));
        // What comes in this turn is marked by the queue it began with, whatever its order.
        for _ in 0..5 {
            assert!(s.push(2, &[0; 100]));
        }
        assert_eq!((s.queued(2), s.queued_at_turn(2)), (6, 1));
        assert_eq!(s.forget(1), 20);
        assert_eq!(s.queued_at_turn(1), 0);
        s.new_turn();
        assert_eq!((s.queued_at_turn(1), s.queued_at_turn(2)), (0, 6));
    }

    #[test]
    fn a_full_queue_drops_and_counts_only_that_flows_frames() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(10_000_000), Some(16), t0);
        for _ in 0..20 {
            s.push(1, &[1u8; 100]);
        }
        assert_eq!(s.queued(1), 16);
        assert_eq!(s.stats.drop_full, 4);
        assert_eq!(s.stats.queued_max, 16);
        // Another N-1 flow has its own bound.
        assert!(s.push(2, &[2u8; 100]));
        assert_eq!((s.queued(2), s.len()), (1, 17));
        assert_eq!(s.forget(1), 16);
        assert_eq!((s.queued(1), s.len()), (0, 1));
    }

    #[test]
    fn a_frame_put_back_gives_its_bytes_back_exactly() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(100_000_000), None, t0);
        s.push(1, &[7u8; 300]);
        let (n1, buf) = s.pop(t0).unwrap();
        let spent = s.tokens;
        s.unpop(n1, buf);
        assert_eq!(s.tokens, spent + 300);
    }

    #[test]
    fn sent_buffers_are_kept_for_reuse_up_to_64() {
        let mut s = Shaper::new(Instant::now());
        s.recycle(Vec::with_capacity(10));
        assert_eq!(s.free.len(), 1);
        for _ in 0..70 {
            s.recycle(Vec::new());
        }
        assert_eq!(s.free.len(), 64);
    }

    #[test]
    fn a_frame_put_back_leaves_first_and_costs_nothing() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(100_000_000), None, t0);
        s.push(1, b"first");
        s.push(1, b"second");
        let (n1, b) = s.pop(t0).unwrap();
        assert_eq!(b, b"first");
        s.unpop(n1, b);
        assert_eq!(s.queued(1), 2);
        assert_eq!(s.pop(t0).unwrap().1, b"first");
        assert_eq!(s.pop(t0).unwrap().1, b"second");
        // 100 kB more: a burst leaves, the rest waits for its time.
        for _ in 0..10 {
            s.push(1, &[0u8; 10_000]);
        }
        let mut n = 0;
        while s.pop(t0).is_some() {
            n += 1;
        }
        assert_eq!(n, 3); // the burst: 2 ms at the rate, 25,000 B
        assert!(s.next_in(t0).unwrap() > Duration::ZERO);
        assert!(s.pop(t0 + Duration::from_millis(2)).is_some());
        assert!(s.stats.shaped >= 3);
    }

    #[test]
    fn without_a_cap_everything_leaves_at_once_and_removing_it_flushes() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        assert!(!s.capped());
        s.set(Some(8_000), None, t0);
        for _ in 0..50 {
            s.push(3, &[0u8; 1000]);
        }
        let mut n = 0;
        while s.pop(t0).is_some() {
            n += 1;
        }
        assert!(n < 50);
        s.set(Some(0), Some(0), t0);
        assert_eq!(s.limit(), 1);
        assert_eq!(s.next_in(t0), Some(Duration::ZERO));
        while s.pop(t0).is_some() {
            n += 1;
        }
        assert_eq!(n, 50);
        assert_eq!(s.next_in(t0), None);
    }

    #[test]
    fn the_wait_told_is_exactly_the_time_the_rate_takes_to_earn_the_deficit() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(8_000_000), None, t0); // a byte a microsecond; a burst of 18,432 B
        assert!(s.push(1, &[0u8; 18_432]));
        assert!(s.push(1, &[0u8; 1000]));
        assert!(s.push(1, &[0u8; 1]));
        // The burst, then the 1000 bytes on no tokens: 1000 owed.
        assert_eq!(pop_all(&mut s, t0), 2);
        assert_eq!(s.next_in(t0), Some(Duration::from_millis(1)));
        // 400 us later 600 bytes are owed.
        let t1 = t0 + Duration::from_micros(400);
        assert_eq!(s.next_in(t1), Some(Duration::from_micros(600)));
        // At 24 Mbit/s (3 bytes a microsecond) 1000 bytes take 333.33 us: rounded up.
        let mut s = Shaper::new(t0);
        s.set(Some(24_000_000), None, t0);
        // The burst: the minimum (2 ms at this rate is 6,000 B).
        assert!(s.push(1, &[0u8; 18_432]));
        assert!(s.push(1, &[0u8; 1000]));
        assert!(s.push(1, &[0u8; 1]));
        assert_eq!(pop_all(&mut s, t0), 2);
        assert_eq!(s.next_in(t0), Some(Duration::from_nanos(333_334)));
    }

    #[test]
    fn a_count_that_earned_less_than_a_byte_keeps_the_time_for_the_next_one() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(8_000_000), None, t0); // a byte a microsecond
        assert!(s.push(1, &[0u8; 18_433])); // the burst and one byte more
        assert!(s.push(1, &[0u8; 1]));
        assert_eq!(pop_all(&mut s, t0), 1);
        // Half a microsecond earns nothing yet; a whole one (counted from t0) earns the byte.
        assert_eq!(pop_all(&mut s, t0 + Duration::from_nanos(500)), 0);
        assert_eq!(pop_all(&mut s, t0 + Duration::from_nanos(1000)), 1);
    }

    #[test]
    fn a_rate_too_slow_to_earn_a_byte_restarts_its_count_only_after_more_than_a_second() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0);
        s.set(Some(1), None, t0); // a byte every 8 s; the minimum burst
        assert!(s.push(1, &vec![0u8; 18_433]));
        assert_eq!(pop_all(&mut s, t0), 1); // one byte owed
        assert!(s.push(1, &[0u8; 1]));
        // At exactly 1 s nothing was earned and the count still runs from t0 ...
        assert_eq!(pop_all(&mut s, t0 + Duration::from_secs(1)), 0);
        // ... so at 8 s the byte is earned.
        assert_eq!(pop_all(&mut s, t0 + Duration::from_secs(8)), 1);
        // Past a second without a byte the count restarts: 8 s after that, not before.
        assert!(s.push(1, &vec![0u8; 18_433]));
        assert_eq!(pop_all(&mut s, t0 + Duration::from_secs(8)), 0);
    }
}
