//! The routes of a unicast IPCP as the workers look them up: destination address (32 bits)
//! to next hop (an index into [`crate::dt::DtTables::hops`]), in one flat array with
//! open addressing, made whole each time o7sd sends a table.
//!
//! Why not a `HashMap`: the lookup is on every forwarded PDU and the table changes only when
//! o7sd recomputes routes. A multiply-shift hash with a random seed and linear probing in an
//! array at most half full costs a multiplication, a shift and one or two compares; the
//! general map paid about 35 instructions a lookup (docs/BENCHMARKS.md, perf gate).
//!
//! Bounds: the array has a power-of-two length of at least twice the routes, so a probe
//! always meets an empty slot and stops. The seed is drawn when the table is made: a
//! member that picks its address cannot know which slot it falls in, so it cannot make
//! others' addresses probe far.

/// A slot's hop when the slot is empty (no route's hop: 2^32 - 1 distinct N-1 flows do not
/// fit in memory).
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    dst: u32,
    hop: u32,
}

const FREE: Slot = Slot { dst: 0, hop: EMPTY };

/// Destination address to next hop, read-only once made.
#[derive(Debug, Clone)]
pub struct RouteMap {
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: the hash's top bits index the array.
    shift: u32,
    seed: u64,
    len: usize,
}

impl Default for RouteMap {
    fn default() -> Self {
        Self::with_seed(0, &[])
    }
}

impl RouteMap {
    /// The map of `routes` (destination, hop); a destination given twice keeps the last
    /// of its hops. A hop of `u32::MAX` is no hop: left out (no table has that many N-1
    /// flows).
    pub fn new(routes: &[(u32, u32)]) -> Self {
        Self::with_seed(rand::random(), routes)
    }

    /// As [`RouteMap::new`] with the hash's seed given (tests choose it).
    pub fn with_seed(seed: u64, routes: &[(u32, u32)]) -> Self {
        // At least twice the routes, at least 2: a probe always ends at an empty slot. (A
        // slice of 8-byte pairs has fewer than 2^61 of them: no overflow.)
        let size = routes.len().saturating_mul(2).max(2).next_power_of_two();
        let mut m = Self {
            slots: vec![FREE; size].into_boxed_slice(),
            shift: 64 - size.trailing_zeros(),
            seed,
            len: 0,
        };
        for &(dst, hop) in routes {
            if hop != EMPTY {
                m.insert(dst, hop);
            }
        }
        m
    }

    fn home(&self, dst: u32) -> usize {
        // Multiply-shift: the top bits of the product with an odd constant (a bijection of
        // u64, so distinct keys differ before the shift).
        let h = (u64::from(dst) ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // `shift` is at least 1 (the array has at least two slots): fits in usize.
        (h >> self.shift) as usize
    }

    fn insert(&mut self, dst: u32, hop: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(dst);
        // The array is never more than half full: the loop ends within it.
        for _ in 0..self.slots.len() {
            let Some(s) = self.slots.get_mut(i) else {
                return;
            };
            if s.hop == EMPTY {
                *s = Slot { dst, hop };
                self.len += 1;
                return;
            }
            if s.dst == dst {
                s.hop = hop;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The hop towards `dst`.
    #[inline(always)]
    pub fn get(&self, dst: u32) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(dst);
        // An empty slot ends the probe: the array is never more than half full (made whole
        // in `with_seed`, nothing added after). A counted loop cost 12 instructions per
        // forwarded PDU (the perf gate), for a bound the construction already gives.
        loop {
            let s = self.slots.get(i)?;
            if s.hop == EMPTY {
                return None;
            }
            if s.dst == dst {
                return Some(s.hop);
            }
            i = (i + 1) & mask;
        }
    }

    /// Routes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots of the array (twice the routes or more, a power of two).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// (destination, hop of it) for each destination.
    fn pairs(dsts: impl Iterator<Item = u32>, hop: impl Fn(u32) -> u32) -> Vec<(u32, u32)> {
        dsts.map(|d| (d, hop(d))).collect()
    }

    #[test]
    fn an_empty_map_finds_nothing() {
        let m = RouteMap::default();
        assert!(m.is_empty());
        assert_eq!(m.len(), 0);
        assert_eq!(m.capacity(), 2);
        for dst in [0, 1, 0x41dc_5e0b, u32::MAX] {
            assert_eq!(m.get(dst), None);
        }
    }

    #[test]
    fn routes_are_found_and_others_are_not() {
        let routes = [(0x41dc_5e0b, 0), (0xe30f_5e97, 1), (0x275b_9eac, 0), (0, 2)];
        let m = RouteMap::new(&routes);
        assert_eq!(m.len(), 4);
        assert!(!m.is_empty());
        assert_eq!(m.capacity(), 8);
        for (dst, hop) in routes {
            assert_eq!(m.get(dst), Some(hop), "{dst:#x}");
        }
        assert_eq!(m.get(0x275b_9ead), None);
        assert_eq!(m.get(u32::MAX), None);
    }

    #[test]
    fn a_destination_given_twice_keeps_its_last_hop() {
        let m = RouteMap::new(&[(7, 1), (9, 2), (7, 3)]);
        assert_eq!(m.get(7), Some(3));
        assert_eq!(m.get(9), Some(2));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_hop_of_all_ones_is_left_out() {
        let m = RouteMap::new(&[(7, u32::MAX), (9, 4)]);
        assert_eq!(m.get(7), None);
        assert_eq!(m.get(9), Some(4));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn keys_that_share_a_home_slot_are_all_found() {
        // Find keys of one home slot for this seed, then make a map of them alone.
        // 20 routes: 64 slots, as the map made of the 20 found below.
        let probe = RouteMap::with_seed(5, &pairs(0..20, |_| 0));
        let home = probe.home(0);
        let same: Vec<u32> = (0..100_000u32)
            .filter(|&d| probe.home(d) == home)
            .take(20)
            .collect();
        assert_eq!(same.len(), 20);
        let m = RouteMap::with_seed(5, &pairs(same.iter().copied(), |d| d % 7));
        assert_eq!(m.capacity(), probe.capacity());
        for &d in &same {
            assert_eq!(m.get(d), Some(d % 7));
        }
        // A key absent that shares their home probes the whole run and misses.
        let absent = (100_000u32..)
            .find(|&d| m.home(d) == m.home(same[0]))
            .unwrap();
        assert_eq!(m.get(absent), None);
    }

    #[test]
    fn a_probe_wraps_round_the_end_of_the_array() {
        // Keys whose home is the last slot: the second lives in slot 0.
        // Two routes: four slots, as the map of the two keys found below.
        let m0 = RouteMap::with_seed(11, &pairs(0..2, |_| 0));
        let last = m0.capacity() - 1;
        let keys: Vec<u32> = (0..1_000_000u32)
            .filter(|&d| m0.home(d) == last)
            .take(2)
            .collect();
        let m = RouteMap::with_seed(11, &pairs(keys.iter().copied(), |_| 9));
        assert_eq!(m.capacity(), m0.capacity());
        assert_eq!(m.slots[0].dst, keys[1], "the second key wrapped to slot 0");
        for &d in &keys {
            assert_eq!(m.get(d), Some(9));
        }
    }

    #[test]
    fn the_seed_spreads_keys_whatever_its_bits() {
        // 64 consecutive addresses in 128 slots land on many homes for any seed (a hash
        // that lost the key to the seed would put them all on one).
        for seed in [0, u64::MAX, 0x5555_5555_5555_5555, 0xdead_beef_0000_0001] {
            let m = RouteMap::with_seed(seed, &pairs(0..64, |_| 0));
            let homes: std::collections::HashSet<usize> = (0..64u32).map(|d| m.home(d)).collect();
            assert!(homes.len() >= 20, "seed {seed:#x}: {} homes", homes.len());
        }
        // Another seed, other homes.
        let (a, b) = (
            RouteMap::with_seed(1, &pairs(0..64, |_| 0)),
            RouteMap::with_seed(2, &pairs(0..64, |_| 0)),
        );
        assert!((0..64u32).any(|d| a.home(d) != b.home(d)));
    }

    proptest! {
        #[test]
        fn it_answers_as_a_hash_map_does(
            seed in any::<u64>(),
            routes in proptest::collection::vec((any::<u32>(), 0u32..16), 0..300),
            others in proptest::collection::vec(any::<u32>(), 0..50),
        ) {
            let m = RouteMap::with_seed(seed, &routes);
            let want: HashMap<u32, u32> = routes.iter().copied().collect();
            prop_assert_eq!(m.len(), want.len());
            prop_assert!(m.capacity() >= 2 * want.len());
            for (&dst, &hop) in &want {
                prop_assert_eq!(m.get(dst), Some(hop));
            }
            for d in others {
                prop_assert_eq!(m.get(d), want.get(&d).copied());
            }
        }
    }
}
