//! A unicast IPCP's N+1 flows by endpoint id, as the workers look them up for every PDU
//! delivered.
//!
//! o7sd's flow allocator makes an endpoint id of a random high half and a flow number
//! below 4096 in the low half (`o7s_proto::fa`: `(random << 32) | fd`). An id whose low
//! half is such a number is found by index in a vector, the whole id compared; any other id
//! (a peer's own scheme after a restart, a test's) in a hash map. The vector holds at most
//! [`DENSE`] slots (96 KiB), so no id makes it grow beyond that.

use std::collections::HashMap;

/// Flow numbers found by index: o7sd's allocator hands out numbers below 4096.
pub const DENSE: u64 = 4096;

type Map = HashMap<u64, u64, foldhash::fast::RandomState>;

/// Endpoint id to N+1 flow.
#[derive(Debug, Clone, Default)]
pub struct LocalFlows {
    /// By the id's low half: (the whole id, the flow).
    dense: Vec<Option<(u64, u64)>>,
    /// Ids whose low half is not below [`DENSE`], and ids that came while another id held
    /// their dense slot (they stay here until removed: an id is in one part only).
    sparse: Map,
    len: usize,
}

fn slot_of(eid: u64) -> Option<usize> {
    let low = eid & 0xffff_ffff;
    // Below DENSE (4096): fits in usize.
    (low < DENSE).then_some(low as usize)
}

impl LocalFlows {
    /// The flow of endpoint `eid`.
    #[inline]
    pub fn get(&self, eid: &u64) -> Option<&u64> {
        if let Some(i) = slot_of(*eid) {
            if let Some(Some((id, flow))) = self.dense.get(i) {
                if id == eid {
                    return Some(flow);
                }
            }
        }
        if self.sparse.is_empty() {
            return None;
        }
        self.sparse.get(eid)
    }

    /// Sets the flow of `eid`; the flow it had before, if any.
    pub fn insert(&mut self, eid: u64, flow: u64) -> Option<u64> {
        if let Some(i) = slot_of(eid) {
            if self.dense.len() <= i {
                self.dense.resize(i + 1, None);
            }
            if let Some(slot) = self.dense.get_mut(i) {
                match slot {
                    Some((id, f)) if *id == eid => return Some(std::mem::replace(f, flow)),
                    // Free, and the id not in the map (where it went while another id held
                    // the slot): it takes the slot.
                    None if !self.sparse.contains_key(&eid) => {
                        *slot = Some((eid, flow));
                        self.len += 1;
                        return None;
                    }
                    // Another id with the same flow number holds the slot, or this id is
                    // in the map already: the map has it.
                    _ => {}
                }
            }
        }
        let old = self.sparse.insert(eid, flow);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Forgets `eid`; its flow, if it had one.
    pub fn remove(&mut self, eid: &u64) -> Option<u64> {
        if let Some(i) = slot_of(*eid) {
            if let Some(slot) = self.dense.get_mut(i) {
                if matches!(slot, Some((id, _)) if id == eid) {
                    let old = slot.take().map(|(_, f)| f);
                    self.len -= 1;
                    // Trailing empty slots go, and with them the memory of a large table.
                    while matches!(self.dense.last(), Some(None)) {
                        self.dense.pop();
                    }
                    if self.dense.len() < self.dense.capacity() / 4 {
                        self.dense.shrink_to(self.dense.len() * 2);
                    }
                    return old;
                }
            }
        }
        let old = self.sparse.remove(eid);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots of the index vector in use (for tests of its bound).
    pub fn dense_len(&self) -> usize {
        self.dense.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const HI: u64 = 0x01a6_3c4e_0000_0000;

    #[test]
    fn ids_of_o7sd_are_found_by_index_and_compared_whole() {
        let mut l = LocalFlows::default();
        assert_eq!(l.insert(HI | 64, 5000), None);
        assert_eq!(l.insert(HI | 65, 5001), None);
        assert_eq!(l.dense_len(), 66);
        assert_eq!(l.get(&(HI | 64)), Some(&5000));
        assert_eq!(l.get(&(HI | 65)), Some(&5001));
        // Same flow number, another random half: not the flow.
        assert_eq!(l.get(&(0x0bad_0000_0000_0000 | 64)), None);
        assert_eq!(l.get(&66), None);
        assert_eq!(l.len(), 2);
        assert!(!l.is_empty());
    }

    #[test]
    fn two_ids_of_one_flow_number_both_hold() {
        let mut l = LocalFlows::default();
        let (a, b) = (HI | 70, 0x7777_0000_0000_0000 | 70);
        l.insert(a, 1);
        l.insert(b, 2);
        assert_eq!((l.get(&a), l.get(&b)), (Some(&1), Some(&2)));
        assert_eq!(l.len(), 2);
        assert_eq!(l.remove(&a), Some(1));
        assert_eq!((l.get(&a), l.get(&b)), (None, Some(&2)));
        assert_eq!(l.remove(&b), Some(2));
        assert_eq!(l.remove(&b), None);
        assert!(l.is_empty());
    }

    #[test]
    fn an_id_in_the_map_stays_there_when_its_slot_frees() {
        let mut l = LocalFlows::default();
        let (a, b) = (HI | 70, 0x7777_0000_0000_0000 | 70);
        l.insert(a, 1);
        l.insert(b, 2);
        l.remove(&a);
        // b is in the map; its slot is free now: a new flow for b replaces the old one.
        assert_eq!(l.insert(b, 3), Some(2));
        assert_eq!(l.len(), 1);
        assert_eq!(l.get(&b), Some(&3));
        assert_eq!(l.remove(&b), Some(3));
        assert_eq!(l.get(&b), None, "no stale copy left");
        assert!(l.is_empty());
    }

    #[test]
    fn other_ids_go_to_the_map_and_the_vector_stays_bounded() {
        let mut l = LocalFlows::default();
        l.insert(HI | 4096, 1);
        l.insert(HI | 0xffff_ffff, 2);
        l.insert(u64::MAX, 3);
        assert_eq!(
            l.dense_len(),
            0,
            "no slot for flow numbers of 4096 and above"
        );
        assert_eq!(l.get(&(HI | 4096)), Some(&1));
        assert_eq!(l.get(&(HI | 0xffff_ffff)), Some(&2));
        assert_eq!(l.get(&u64::MAX), Some(&3));
        l.insert(HI | 4095, 4);
        assert_eq!(l.dense_len(), 4096);
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn insert_replaces_and_remove_gives_memory_back() {
        let mut l = LocalFlows::default();
        assert_eq!(l.insert(HI | 3000, 1), None);
        assert_eq!(l.insert(HI | 3000, 9), Some(1));
        assert_eq!(l.len(), 1);
        l.insert(HI | 64, 2);
        assert_eq!(l.remove(&(HI | 3000)), Some(9));
        assert_eq!(l.dense_len(), 65, "trailing empty slots went");
        assert!(l.dense.capacity() <= 130, "capacity {}", l.dense.capacity());
        assert_eq!(l.dense.capacity(), 130, "twice what is left");
        assert_eq!(l.get(&(HI | 64)), Some(&2));
        assert_eq!(l.remove(&(HI | 64)), Some(2));
        assert_eq!(l.dense_len(), 0);
        assert!(l.is_empty());
    }

    #[test]
    fn a_vector_a_quarter_used_keeps_its_memory() {
        let mut l = LocalFlows::default();
        l.insert(HI | 259, 1);
        l.insert(HI | 64, 2);
        assert_eq!(l.dense.capacity(), 260);
        l.remove(&(HI | 259));
        // 65 slots left of 260: a quarter exactly, not less: nothing given back.
        assert_eq!((l.dense_len(), l.dense.capacity()), (65, 260));
        l.remove(&(HI | 64));
        assert_eq!(l.dense.capacity(), 0);
    }

    proptest! {
        #[test]
        fn it_answers_as_a_hash_map_does(
            ops in proptest::collection::vec(
                // Flow numbers mostly from a dozen, so ids share slots and come back.
                (any::<bool>(), 0u64..4, prop_oneof![3 => 60u64..72, 1 => 0u64..5000],
                    any::<u64>()), 0..200),
        ) {
            let mut l = LocalFlows::default();
            let mut want = std::collections::HashMap::new();
            for (add, hi, fd, flow) in ops {
                let eid = (hi << 32) | fd;
                if add {
                    prop_assert_eq!(l.insert(eid, flow), want.insert(eid, flow));
                } else {
                    prop_assert_eq!(l.remove(&eid), want.remove(&eid));
                }
                prop_assert_eq!(l.len(), want.len());
                prop_assert!(l.dense_len() as u64 <= DENSE);
            }
            for hi in 0u64..4 {
                for fd in (60u64..72).chain([0, 100, 4095, 4096, 4999]) {
                    let eid = (hi << 32) | fd;
                    prop_assert_eq!(l.get(&eid), want.get(&eid));
                }
            }
        }
    }
}
