//! The OAP replay window: request ids seen within the last 20 s, bounded in number, pruned
//! in arrival order (no scan of the whole set per request), and shrunk after a burst so
//! that a flood does not keep its memory. Time is passed in.
//!
//! A request is looked up before it is checked ([`ReplayWindow::seen`]) and recorded only
//! once it passed ([`ReplayWindow::record`]): requests that fail their certificate or
//! signature take no room, so a flood of forged ones cannot fill the window and get every
//! later request refused. Unsigned requests (open names) take at most half of it, so that a
//! flood of them leaves room for the requests of certificate holders, and each source (a
//! MAC, an IP address, a member's address) at most [`MAX_UNSIGNED_PER_SOURCE`] of that
//! half, so that one host cannot fill it alone. Beyond its share an unsigned request is not
//! recorded, and o7sd lets it pass unchecked (counted `oap_replay_unchecked`): it proves
//! nothing, so its replay gives nothing a new request would not, and refusing it would let
//! one host stop every allocation of an open layer.

use std::collections::{HashMap, HashSet, VecDeque};

/// How old a request may be, in ns (the reference refuses older requests).
pub const WINDOW_NS: u64 = 20_000_000_000;
/// How far in the future a request's time stamp may be, in ns (clocks differ a little).
pub const MAX_AHEAD_NS: u64 = 100_000_000;
/// How long an id is remembered after it came, in ns: as long as its request can pass as
/// fresh (a time stamp up to [`MAX_AHEAD_NS`] ahead stays fresh that much longer than
/// [`WINDOW_NS`] after it came).
pub const KEEP_NS: u64 = WINDOW_NS + MAX_AHEAD_NS;
/// Most ids remembered; requests beyond are refused until older ones age out.
pub const MAX_IDS: usize = 65_536;
/// Most ids of unsigned requests remembered.
pub const MAX_UNSIGNED: usize = MAX_IDS / 2;
/// Most ids of unsigned requests remembered from one source.
pub const MAX_UNSIGNED_PER_SOURCE: usize = 1024;

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
    /// The unsigned requests' half of the window is full (a flood of them).
    #[error("too many unsigned OAP requests within 20 s ({MAX_UNSIGNED})")]
    FullUnsigned,
    /// This source's share of the unsigned half is full.
    #[error(
        "too many unsigned OAP requests from this source within 20 s ({MAX_UNSIGNED_PER_SOURCE})"
    )]
    FullSource,
}

/// Ids seen recently.
#[derive(Debug, Default)]
pub struct ReplayWindow {
    /// Ids in arrival order: (id, arrival in ns, the source of an unsigned one).
    order: VecDeque<([u8; 16], u64, Option<u64>)>,
    seen: HashSet<[u8; 16]>,
    /// Ids of unsigned requests remembered.
    unsigned: usize,
    /// Ids of unsigned requests remembered, by source (no entry at 0).
    by_source: HashMap<u64, usize>,
}

impl ReplayWindow {
    /// Whether `id`, arrived at `now` (ns), was seen within the window (refused as a
    /// replay); records nothing.
    pub fn seen(&mut self, id: [u8; 16], now: u64) -> Result<(), ReplayError> {
        self.prune(now);
        if self.seen.contains(&id) {
            return Err(ReplayError::Replayed);
        }
        Ok(())
    }

    /// Records the `id` of a request that passed its checks, arrived at `now` (ns):
    /// `unsigned` is `None` for a request whose certificate was verified, else its source
    /// (a key for its MAC, IP address or member address). Refused if seen within the
    /// window, or when the window (for an unsigned one: its half, or its source's share) is
    /// full.
    pub fn record(
        &mut self,
        id: [u8; 16],
        now: u64,
        unsigned: Option<u64>,
    ) -> Result<(), ReplayError> {
        self.seen(id, now)?;
        if self.seen.len() >= MAX_IDS {
            return Err(ReplayError::Full);
        }
        if let Some(src) = unsigned {
            if self.unsigned >= MAX_UNSIGNED {
                return Err(ReplayError::FullUnsigned);
            }
            let n = self.by_source.entry(src).or_insert(0);
            if *n >= MAX_UNSIGNED_PER_SOURCE {
                return Err(ReplayError::FullSource);
            }
            *n += 1;
            self.unsigned += 1;
        }
        self.seen.insert(id);
        self.order.push_back((id, now, unsigned));
        Ok(())
    }

    /// Forgets ids older than the window at `now` (ns), and gives memory back after a burst.
    pub fn prune(&mut self, now: u64) {
        while let Some(&(old, t, unsigned)) = self.order.front() {
            if now.saturating_sub(t) <= KEEP_NS {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
            if let Some(src) = unsigned {
                self.unsigned -= 1;
                if let Some(n) = self.by_source.get_mut(&src) {
                    *n -= 1;
                    if *n == 0 {
                        self.by_source.remove(&src);
                    }
                }
            }
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
        assert_eq!(w.record(id(1), 0, None), Ok(()));
        assert_eq!(w.seen(id(1), WINDOW_NS), Err(ReplayError::Replayed));
        // A request stamped up to MAX_AHEAD_NS in the future stays fresh until WINDOW_NS
        // after its stamp: its id is kept that long after it came.
        assert_eq!(
            w.seen(id(1), WINDOW_NS + MAX_AHEAD_NS / 2),
            Err(ReplayError::Replayed)
        );
        assert_eq!(w.record(id(1), WINDOW_NS, None), Err(ReplayError::Replayed));
        assert_eq!(w.record(id(2), WINDOW_NS, Some(1)), Ok(()));
        // Past the window id 1 is forgotten, id 2 (seen later) is not yet.
        assert_eq!(w.seen(id(1), KEEP_NS + 1), Ok(()));
        assert_eq!(w.record(id(1), WINDOW_NS + 1, None), Ok(()));
        assert_eq!(w.seen(id(2), KEEP_NS + 2), Err(ReplayError::Replayed));
    }

    #[test]
    fn looking_up_records_nothing() {
        let mut w = ReplayWindow::default();
        for n in 0..1000 {
            assert_eq!(w.seen(id(n), 1), Ok(()));
        }
        assert!(w.is_empty());
        assert_eq!(w.seen(id(5), 2), Ok(()), "a failed request may come again");
    }

    #[test]
    fn unsigned_requests_take_half_the_window_and_leave_room_for_signed_ones() {
        let mut w = ReplayWindow::default();
        // Many sources, each within its share.
        for n in 0..(MAX_UNSIGNED as u32) {
            let src = u64::from(n) / MAX_UNSIGNED_PER_SOURCE as u64;
            w.record(id(n), 1, Some(src)).unwrap();
        }
        assert_eq!(
            w.record(id(u32::MAX), 2, Some(9999)),
            Err(ReplayError::FullUnsigned)
        );
        // A certificate holder still gets in, up to the whole window.
        for n in 0..(MAX_IDS - MAX_UNSIGNED) as u32 {
            w.record(id(0x8000_0000 + n), 2, None).unwrap();
        }
        assert_eq!(w.record(id(u32::MAX - 1), 3, None), Err(ReplayError::Full));
        // Once the unsigned ones age out, unsigned requests get in again, the counts with them.
        w.prune(KEEP_NS + 2);
        assert_eq!(w.len(), MAX_IDS - MAX_UNSIGNED);
        assert_eq!(w.unsigned, 0);
        assert!(w.by_source.is_empty());
        assert_eq!(w.record(id(u32::MAX), KEEP_NS + 2, Some(1)), Ok(()));
        assert_eq!(w.unsigned, 1);
    }

    #[test]
    fn one_source_takes_at_most_its_share_of_the_unsigned_half() {
        let mut w = ReplayWindow::default();
        for n in 0..MAX_UNSIGNED_PER_SOURCE as u32 {
            w.record(id(n), 1, Some(7)).unwrap();
        }
        assert_eq!(
            w.record(id(u32::MAX), 1, Some(7)),
            Err(ReplayError::FullSource)
        );
        // Another source, and a signed request from anyone, are not affected.
        assert_eq!(w.record(id(u32::MAX), 1, Some(8)), Ok(()));
        assert_eq!(w.record(id(u32::MAX - 1), 1, None), Ok(()));
        w.prune(KEEP_NS + 2);
        assert_eq!(w.record(id(u32::MAX - 2), KEEP_NS + 2, Some(7)), Ok(()));
    }

    #[test]
    fn a_flood_is_bounded_and_its_memory_given_back() {
        let mut w = ReplayWindow::default();
        for n in 0..(MAX_IDS as u32) {
            w.record(id(n), 1, None).unwrap();
        }
        assert_eq!(w.record(id(u32::MAX), 2, None), Err(ReplayError::Full));
        let cap = w.seen.capacity();
        // A minute later everything has aged out and the set is small again.
        w.record(id(u32::MAX), 60_000_000_000, None).unwrap();
        assert_eq!(w.len(), 1);
        assert!(
            w.seen.capacity() < cap / 8,
            "{} vs {cap}",
            w.seen.capacity()
        );
    }
}
