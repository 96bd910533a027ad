//! Members that leave a unicast layer, and come back: when the directory drops the values
//! that name a member gone from the forwarding table, and when it rejoins the members it
//! lost (a partition that healed, a link that came back, a member that restarted).
//!
//! A destination that leaves the table is given a grace (tables lose destinations for a
//! moment while they converge); still gone after it, its directory values and contacts are
//! dropped (`Dht::forget_address`: lookups stop answering a dead address). That leaves a
//! healed partition with two directories that know nothing of each other: every contact
//! and every value of the other side was dropped, and Kademlia learns contacts only from
//! messages, which nothing sends across. So when a forgotten address is back in the table
//! (after the same grace, for routes to settle), the directory looks its own id up through
//! that member (its buckets learn the other side, the other side learns it), and a grace
//! later stores its own names again (at the k closest of the whole layer). Without this
//! the names stayed unreachable across the healed cut until their republication, 22.75 h
//! later with the reference's timers (proto/tests/layer_sim.rs, the partition that heals).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// What the IPCP is to do with its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Drop the values and the contact of this address: it left the table.
    Forget(u64),
    /// Look our own id up through this member (one we had forgotten, back in the table).
    Rejoin(u64),
    /// Store our own names again.
    Republish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ask(u64),
    Republish,
}

/// The departures and returns of one IPCP's forwarding-table destinations.
#[derive(Debug)]
pub struct Departures {
    grace: Duration,
    max: usize,
    /// The destinations of the last table.
    dests: BTreeSet<u64>,
    /// Destinations that left it, since when.
    left: BTreeMap<u64, Instant>,
    /// Addresses forgotten (at most `max`, the oldest dropped first).
    forgotten: BTreeSet<u64>,
    order: VecDeque<u64>,
    /// After a forgotten address came back: what to do next, and when.
    rejoin: Option<(Instant, Step)>,
}

impl Departures {
    /// Destinations are forgotten `grace` after they leave the table; at most `max`
    /// forgotten addresses are remembered (for a return).
    pub fn new(grace: Duration, max: usize) -> Self {
        Self {
            grace,
            max,
            dests: BTreeSet::new(),
            left: BTreeMap::new(),
            forgotten: BTreeSet::new(),
            order: VecDeque::new(),
            rejoin: None,
        }
    }

    /// The forwarding table's destinations are now `dests`. Returns the forgotten
    /// addresses that are back (for the directory's [`crate::dht::Dht::returned`]).
    pub fn table_changed(
        &mut self,
        now: Instant,
        dests: impl IntoIterator<Item = u64>,
    ) -> Vec<u64> {
        let cur: BTreeSet<u64> = dests.into_iter().collect();
        for a in self.dests.difference(&cur) {
            self.left.entry(*a).or_insert(now);
        }
        self.left.retain(|a, _| !cur.contains(a));
        let back: Vec<u64> = self.forgotten.intersection(&cur).copied().collect();
        for a in &back {
            self.forgotten.remove(a);
        }
        self.order.retain(|a| !cur.contains(a));
        if let Some(first) = back.first() {
            if self.rejoin.is_none() {
                self.rejoin = Some((now + self.grace, Step::Ask(*first)));
            }
        }
        self.dests = cur;
        back
    }

    /// The next action due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        let due = self
            .left
            .iter()
            .find(|(_, since)| **since + self.grace <= now)
            .map(|(a, _)| *a);
        if let Some(a) = due {
            self.left.remove(&a);
            if self.forgotten.insert(a) {
                self.order.push_back(a);
            }
            while self.order.len() > self.max {
                if let Some(old) = self.order.pop_front() {
                    self.forgotten.remove(&old);
                }
            }
            return Some(Action::Forget(a));
        }
        match self.rejoin {
            Some((t, Step::Ask(a))) if t <= now => {
                self.rejoin = Some((now + self.grace, Step::Republish));
                Some(Action::Rejoin(a))
            }
            Some((t, Step::Republish)) if t <= now => {
                self.rejoin = None;
                Some(Action::Republish)
            }
            _ => None,
        }
    }

    /// When [`Departures::poll`] next has something.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.left
            .values()
            .map(|t| *t + self.grace)
            .chain(self.rejoin.map(|(t, _)| t))
            .min()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn drain(d: &mut Departures, now: Instant) -> Vec<Action> {
        std::iter::from_fn(|| d.poll(now)).take(100).collect()
    }

    #[test]
    fn a_destination_is_forgotten_a_grace_after_it_left_unless_it_came_back() {
        let t0 = Instant::now();
        let mut d = Departures::new(S, 16);
        d.table_changed(t0, [5, 6, 7]);
        assert_eq!(d.poll_timeout(), None);
        d.table_changed(t0, [5]);
        assert_eq!(d.poll_timeout(), Some(t0 + S));
        // Back within the grace: never forgotten, and nothing to rejoin.
        d.table_changed(t0 + S / 2, [5, 6]);
        assert_eq!(drain(&mut d, t0 + S - Duration::from_millis(1)), []);
        assert_eq!(drain(&mut d, t0 + S), [Action::Forget(7)]);
        assert_eq!(drain(&mut d, t0 + 10 * S), []);
        assert_eq!(d.poll_timeout(), None);
        // Leaving again later restarts the grace from then.
        d.table_changed(t0 + 2 * S, [5]);
        assert_eq!(d.poll_timeout(), Some(t0 + 3 * S));
    }

    #[test]
    fn a_forgotten_member_back_makes_the_directory_rejoin_through_it_then_republish() {
        let t0 = Instant::now();
        let mut d = Departures::new(S, 16);
        d.table_changed(t0, [5, 6, 7]);
        d.table_changed(t0, [5]);
        assert_eq!(
            drain(&mut d, t0 + S),
            [Action::Forget(6), Action::Forget(7)]
        );
        // 7 and 6 back at 5 s: a grace later, a lookup through the lowest, a grace after
        // that, our names again; once.
        let t = t0 + 5 * S;
        assert_eq!(d.table_changed(t, [5, 7, 6]), [6, 7]);
        assert_eq!(d.poll_timeout(), Some(t + S));
        assert_eq!(drain(&mut d, t + S - Duration::from_millis(1)), []);
        assert_eq!(drain(&mut d, t + S), [Action::Rejoin(6)]);
        assert_eq!(d.poll_timeout(), Some(t + 2 * S));
        assert_eq!(drain(&mut d, t + 2 * S - Duration::from_millis(1)), []);
        assert_eq!(drain(&mut d, t + 2 * S), [Action::Republish]);
        assert_eq!(d.poll_timeout(), None);
        // Another table with them: no second rejoin (they are no longer forgotten).
        d.table_changed(t + 3 * S, [5, 6, 7, 8]);
        assert_eq!(drain(&mut d, t + 10 * S), []);
    }

    #[test]
    fn a_return_during_a_rejoin_starts_no_second_one() {
        let t0 = Instant::now();
        let mut d = Departures::new(S, 16);
        d.table_changed(t0, [5, 6]);
        d.table_changed(t0, []);
        assert_eq!(drain(&mut d, t0 + S).len(), 2);
        d.table_changed(t0 + 2 * S, [5]);
        d.table_changed(t0 + 2 * S + S / 2, [5, 6]);
        assert_eq!(drain(&mut d, t0 + 3 * S), [Action::Rejoin(5)]);
        assert_eq!(drain(&mut d, t0 + 4 * S), [Action::Republish]);
        assert_eq!(drain(&mut d, t0 + 9 * S), []);
    }

    #[test]
    fn only_the_latest_forgotten_addresses_are_remembered() {
        let t0 = Instant::now();
        let mut d = Departures::new(S, 2);
        d.table_changed(t0, [1, 2, 3]);
        d.table_changed(t0, []);
        assert_eq!(drain(&mut d, t0 + S).len(), 3);
        // 1 (the oldest forgotten) is no longer remembered: its return is a new member.
        d.table_changed(t0 + 2 * S, [1]);
        assert_eq!(d.poll_timeout(), None);
        // 2 and 3 are.
        d.table_changed(t0 + 2 * S, [1, 2]);
        assert_eq!(drain(&mut d, t0 + 3 * S), [Action::Rejoin(2)]);
        assert_eq!(drain(&mut d, t0 + 4 * S), [Action::Republish]);
        d.table_changed(t0 + 5 * S, [1, 2, 3]);
        assert_eq!(drain(&mut d, t0 + 6 * S), [Action::Rejoin(3)]);
    }

    #[test]
    fn an_address_back_leaves_the_order_of_forgotten_ones() {
        let t0 = Instant::now();
        let mut d = Departures::new(S, 2);
        d.table_changed(t0, [1, 2]);
        d.table_changed(t0, []);
        assert_eq!(drain(&mut d, t0 + S).len(), 2);
        // 1 back, then 3 and 4 forgotten: the two latest are 3 and 4 (2 is dropped, not
        // 1, which is no longer forgotten).
        d.table_changed(t0 + 2 * S, [1, 3, 4]);
        assert_eq!(drain(&mut d, t0 + 3 * S), [Action::Rejoin(1)]);
        assert_eq!(drain(&mut d, t0 + 4 * S), [Action::Republish]);
        d.table_changed(t0 + 5 * S, [1]);
        assert_eq!(drain(&mut d, t0 + 6 * S).len(), 2);
        d.table_changed(t0 + 7 * S, [1, 2]);
        assert_eq!(d.poll_timeout(), None, "2 was the oldest: dropped");
        d.table_changed(t0 + 7 * S, [1, 2, 4]);
        assert_eq!(drain(&mut d, t0 + 8 * S), [Action::Rejoin(4)]);
    }
}
