//! A token bucket: what one source may send, on average and in a burst. Pure: the time
//! comes in. The data plane polices management frames per source with it
//! (dataplane/src/police.rs); o7sd bounds what each neighbour in a unicast layer may make
//! it do (LSAs, directory and flow allocator messages: issue 26 item 3).

use std::time::Instant;

/// `rate` tokens a second, at most `rate` kept (a second's worth of burst).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A bucket holding a second's worth.
    pub fn full(rate: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Whether it is full at `now` (its source has been quiet for a second).
    pub fn is_full(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate)
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        // A `now` older than the last one (a caller's stale clock) refills nothing and
        // does not move the bucket's time back.
        if let Some(dt) = now.checked_duration_since(self.last) {
            self.tokens = (self.tokens + dt.as_secs_f64() * f64::from(rate)).min(f64::from(rate));
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
        assert!(b.is_full(10, t2 + Duration::from_secs(1)));
    }
}
