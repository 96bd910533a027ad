//! The OAP replay window: request ids seen within the last 20 s, bounded in number, pruned
//! in arrival order (no scan of the whole set per request), and shrunk after a burst so
//! that a flood does not keep its memory. Time is passed in.

use std::collections::{HashSet, VecDeque};

/// How long an id is remembered, in ns (the reference refuses older requests anyway).
pub const WINDOW_NS: u64 = 20_000_000_000;
/// Most ids remembered; requests beyond are refused until older ones age out.
pub const MAX_IDS: usize = 65_536;

/// Why a request id is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Seen within the window.
    #[error("replayed OAP request")]
    Replayed,
    /// The window is full (a flood): refused rather than forgetting ids early.
    #[error("too many OAP requests within 20 s ({MAX_IDS})")]
    Full,
}

/// Ids seen recently.
#[derive(Debug, Default)]
pub struct ReplayWindow {
    order: VecDeque<([u8; 16], u64)>,
    seen: HashSet<[u8; 16]>,
}

impl ReplayWindow {
    /// Records `id`, arrived at `now` (ns); refused if seen within the window or full.
    pub fn check(&mut self, id: [u8; 16], now: u64) -> Result<(), ReplayError> {
        self.prune(now);
        if self.seen.contains(&id) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= MAX_IDS {
            return Err(ReplayError::Full);
        }
        self.seen.insert(id);
        self.order.push_back((id, now));
        Ok(())
    }

    /// Forgets ids older than the window at `now` (ns), and gives memory back after a burst.
    pub fn prune(&mut self, now: u64) {
        while let Some(&(old, t)) = self.order.front() {
            if now.saturating_sub(t) <= WINDOW_NS {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.capacity() > 4 * self.seen.len() + 1024 {
            self.seen.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&n.to_be_bytes());
        b
    }

    #[test]
    fn replays_within_the_window_are_refused_and_old_ids_forgotten() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(id(1), 0), Ok(()));
        assert_eq!(w.check(id(1), WINDOW_NS), Err(ReplayError::Replayed));
        assert_eq!(w.check(id(2), WINDOW_NS), Ok(()));
        // Past the window id 1 is forgotten, id 2 (seen later) is not yet.
        assert_eq!(w.check(id(1), WINDOW_NS + 1), Ok(()));
        assert_eq!(w.check(id(2), WINDOW_NS + 2), Err(ReplayError::Replayed));
    }

    #[test]
    fn a_flood_is_bounded_and_its_memory_given_back() {
        let mut w = ReplayWindow::default();
        for n in 0..(MAX_IDS as u32) {
            w.check(id(n), 1).unwrap();
        }
        assert_eq!(w.check(id(u32::MAX), 2), Err(ReplayError::Full));
        let cap = w.seen.capacity();
        // A minute later everything has aged out and the set is small again.
        w.check(id(u32::MAX), 60_000_000_000).unwrap();
        assert_eq!(w.len(), 1);
        assert!(
            w.seen.capacity() < cap / 8,
            "{} vs {cap}",
            w.seen.capacity()
        );
    }
}
