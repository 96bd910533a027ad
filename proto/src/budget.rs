//! A token bucket: what one source may send, on average and in a burst. Pure: the time
//! comes in. The data plane polices management frames per source with it
//! (dataplane/src/police.rs); o7sd bounds what each neighbour in a unicast layer may make
//! it do (LSAs, directory and flow allocator messages: issue 26 item 3).

use std::time::Instant;

/// `rate` tokens a second, at most a burst kept (a second's worth unless told).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    burst: f64,
}

impl Bucket {
    /// A bucket holding a second's worth.
    pub fn full(rate: u32, now: Instant) -> Self {
        Self::with_burst(rate, now)
    }

    /// A bucket holding `burst` tokens (at most that many kept).
    pub fn with_burst(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
            burst: f64::from(burst),
        }
    }

    /// Whether it is full at `now` (its source has been quiet long enough to refill it).
    pub fn is_full(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= self.burst
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        // A `now` older than the last one (a caller's stale clock) refills nothing and
        // does not move the bucket's time back.
        if let Some(dt) = now.checked_duration_since(self.last) {
            self.tokens = (self.tokens + dt.as_secs_f64() * f64::from(rate)).min(self.burst);
            self.last = now;
        }
    }

    /// Takes a token if one is there at `now` (refilled at `rate` a second).
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_rate_then_rate_a_second() {
        let t0 = Instant::now();
        let mut b = Bucket::full(10, t0);
        assert_eq!((0..20).filter(|_| b.take(10, t0)).count(), 10);
        // 100 ms later: one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(10, t1));
        assert!(!b.take(10, t1));
        // A long pause refills a second's worth, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(10, t2)).count(), 10);
        // Time going backwards takes nothing and gives nothing.
        assert!(!b.take(10, t0));
        assert!(!b.is_full(10, t2));
        // A burst of its own: 50 at once, then 10 a second, refilled to 50 at most.
        let mut c = Bucket::with_burst(50, t0);
        assert!(c.is_full(10, t0));
        assert_eq!((0..80).filter(|_| c.take(10, t0)).count(), 50);
        assert!(!c.is_full(10, t0 + Duration::from_secs(4)));
        let t3 = t0 + Duration::from_secs(100);
        assert!(c.is_full(10, t3));
        assert_eq!((0..80).filter(|_| c.take(10, t3)).count(), 50);
        assert!(b.is_full(10, t2 + Duration::from_secs(1)));
    }
}
