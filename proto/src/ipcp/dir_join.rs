//! When a member's directory joins the layer (its first lookup of its own id), and when its
//! names may be published: the decision the IPCP machine and o7sd both make
//! ([`super::unicast::UnicastIpcp`], control/src/daemon/unicast/dt.rs).
//!
//! The directory joins through the layer's DHT peer (the enroller, from the configuration
//! it handed out) as soon as a route to it exists (a quick first allocation), is asked
//! again every `retry` while it knows no one, and looks its id up once more `again` after
//! the first time: while a layer's routes still converge the first lookup loses answers
//! (no route yet, loops) and the buckets stay thin (a layer of 100 IPCPs joining every
//! 50 ms with a link-state hold-down lost 4 lookups in 100 without it). Names are
//! published once the directory knows someone (or there is no one to join through: the
//! first member).

use std::time::{Duration, Instant};

/// A directory's joining.
#[derive(Debug, Clone)]
pub struct DirJoin {
    peer: u64,
    retry: Duration,
    again_after: Duration,
    asked: Option<Instant>,
    again: Option<Instant>,
}

impl DirJoin {
    /// Joining through `peer` (0: none, the first member), asked again every `retry`,
    /// once more `again` after the first time.
    pub fn new(peer: u64, retry: Duration, again: Duration) -> Self {
        Self {
            peer,
            retry,
            again_after: again,
            asked: None,
            again: None,
        }
    }

    /// The peer it joins through (0: none).
    pub fn peer(&self) -> u64 {
        self.peer
    }

    /// When it last asked the peer.
    pub fn asked(&self) -> Option<Instant> {
        self.asked
    }

    /// When it asks once more (after the first time).
    pub fn again(&self) -> Option<Instant> {
        self.again
    }

    /// Whether the directory is to look its id up through the peer now (the peer's
    /// address; noted as asked), given how many contacts it has and whether the peer is
    /// reachable.
    pub fn due(&mut self, now: Instant, contacts: usize, reachable: bool) -> Option<u64> {
        if self.peer != 0
            && contacts == 0
            && reachable
            && self
                .asked
                .is_none_or(|t| now.saturating_duration_since(t) >= self.retry)
        {
            self.asked = Some(now);
            self.again = Some(now + self.again_after);
            return Some(self.peer);
        }
        if self.again.is_some_and(|t| t <= now) {
            self.again = None;
            return Some(self.peer);
        }
        None
    }

    /// Whether names may be published: the directory knows someone, or there is no one
    /// to join through.
    pub fn can_publish(&self, contacts: usize) -> bool {
        self.peer == 0 || contacts > 0
    }

    /// When [`DirJoin::due`] may next say yes (the retry counts only while the peer is
    /// reachable: a table that changes wakes the driver anyway).
    pub fn poll_timeout(&self, contacts: usize, reachable: bool) -> Option<Instant> {
        let retry = (self.peer != 0 && contacts == 0 && reachable)
            .then_some(self.asked)
            .flatten()
            .map(|t| t + self.retry);
        retry.into_iter().chain(self.again).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn it_joins_once_the_peer_is_reachable_again_after_a_retry_and_once_more_later() {
        let t0 = Instant::now();
        let mut j = DirJoin::new(7, S, 2 * S);
        assert_eq!(j.peer(), 7);
        assert!(!j.can_publish(0));
        assert!(j.can_publish(1));
        // No route to the peer: nothing, and no timer.
        assert_eq!(j.due(t0, 0, false), None);
        assert_eq!(j.poll_timeout(0, false), None);
        assert_eq!(j.due(t0, 0, true), Some(7));
        assert_eq!((j.asked(), j.again()), (Some(t0), Some(t0 + 2 * S)));
        assert_eq!(j.poll_timeout(0, true), Some(t0 + S));
        assert_eq!(j.poll_timeout(0, false), Some(t0 + 2 * S));
        // Nobody answered: again after the retry, not before.
        let ms = Duration::from_millis(1);
        assert_eq!(j.due(t0 + S - ms, 0, true), None);
        assert_eq!(j.due(t0 + S, 0, true), Some(7));
        assert_eq!(j.again(), Some(t0 + 3 * S));
        // Someone answered: no more retries; once more at the time set.
        assert_eq!(j.poll_timeout(3, true), Some(t0 + 3 * S));
        assert_eq!(j.due(t0 + 3 * S - ms, 3, true), None);
        assert_eq!(j.due(t0 + 3 * S, 3, true), Some(7));
        assert_eq!(j.again(), None);
        assert_eq!(j.due(t0 + 10 * S, 3, true), None);
        assert_eq!(j.poll_timeout(3, true), None);
    }

    #[test]
    fn the_first_member_has_no_one_to_join_through_and_publishes_at_once() {
        let t0 = Instant::now();
        let mut j = DirJoin::new(0, S, 2 * S);
        assert!(j.can_publish(0));
        assert_eq!(j.due(t0, 0, true), None);
        assert_eq!(j.poll_timeout(0, true), None);
    }
}
