//! The unicast layer's per-packet work, without I/O: what a worker does with a DT PDU that
//! arrives on an N-1 flow of a data-transfer connection (unicast facts §5.4), as a pure
//! function over the PDU's bytes and the tables o7sd gives the worker: deliver it to an
//! N+1 flow of this IPCP, hand it to o7sd (flow allocator and DHT, eids below 64), forward
//! it to the next hop (its TTL decremented in place, its ECN byte kept), or drop it with a
//! reason that is counted. And the PCI put in front of an N+1 SDU (§5.5).
//!
//! PCI: `dst_addr(4, LE) | qc(1) | ttl(1) | ecn(1) | eid(8, LE)`, 15 bytes (the layer's
//! default sizes; the reference's flat address policy admits no other).

use std::collections::HashMap;

use crate::local_flows::LocalFlows;
use crate::route_map::RouteMap;

/// Bytes of a PCI.
pub const PCI_LEN: usize = 15;
/// Where the PCI's TTL is (after `dst_addr(4) | qc(1)`).
pub const TTL_AT: usize = 5;
/// Endpoint ids below this are the IPCP's own components (0 flow allocator, 1 DHT).
pub const FIRST_FLOW_EID: u64 = 64;

/// A fast non-cryptographic hash: keys are addresses and endpoint ids from o7sd's tables,
/// and a lookup by a key from the wire finds only what o7sd put there.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What a worker knows of its unicast IPCP.
#[derive(Debug, Clone, Default)]
pub struct DtTables {
    /// Our address.
    pub own: u32,
    /// Next hop by destination address: an index into `hops`.
    next_hop: RouteMap,
    /// The N-1 flows the routes use, each once (an IPCP has a few neighbours and many
    /// destinations): a forwarded PDU's [`DtAction::Forward::hop`] indexes it, and the
    /// worker keeps what it needs of each (where the N-1 flow sends) in the same order.
    hops: Vec<u64>,
    /// Our N+1 flows by endpoint id.
    pub local: LocalFlows,
}

impl DtTables {
    /// Tables of the IPCP whose address is `own`, without routes or flows.
    pub fn new(own: u32) -> Self {
        Self {
            own,
            ..Self::default()
        }
    }

    /// Replaces the routes: `(destination, N-1 flow)` pairs (a destination given twice
    /// keeps the last). The tables are made anew, so a table much smaller than the one
    /// before gives its memory back.
    pub fn set_routes(&mut self, routes: &[(u32, u64)]) {
        let mut at: Map<u64, u32> = Map::default();
        let mut hops = Vec::new();
        let by_hop: Vec<(u32, u32)> = routes
            .iter()
            .map(|&(dst, n1)| {
                let i = *at.entry(n1).or_insert_with(|| {
                    hops.push(n1);
                    // Fewer than 2^32 - 1 distinct N-1 flows: they would not fit in memory
                    // (the map leaves out a hop of u32::MAX).
                    u32::try_from(hops.len() - 1).unwrap_or(u32::MAX)
                });
                (dst, i)
            })
            .collect();
        self.next_hop = RouteMap::new(&by_hop);
        self.hops = hops;
    }

    /// The N-1 flow towards `dst`.
    pub fn route(&self, dst: u32) -> Option<u64> {
        let at = self.next_hop.get(dst)?;
        self.hops.get(at as usize).copied()
    }

    /// The index in [`DtTables::hops`] of the next hop towards `dst`.
    #[inline]
    pub fn route_hop(&self, dst: u32) -> Option<u32> {
        self.next_hop.get(dst)
    }

    /// Routes held.
    pub fn routes(&self) -> usize {
        self.next_hop.len()
    }

    /// The N-1 flows the routes use, in the order [`DtAction::Forward::hop`] counts them.
    pub fn hops(&self) -> &[u64] {
        &self.hops
    }
}

/// Why a PDU was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtDrop {
    /// Shorter than a PCI.
    Short,
    /// For another address, and its TTL ran out here.
    TtlExpired,
    /// For another address we have no route to.
    NoRoute,
    /// For us, to an endpoint id that is no flow of ours.
    UnknownEid,
    /// For us, to an endpoint id below 64 that no component has (2..63).
    ReservedEid,
    /// For another address whose next hop is the neighbour the PDU came from: the two
    /// disagree about the route (a member that left or moved, tables not yet converged),
    /// and it would bounce between them until its TTL ran out.
    Loop,
}

/// What to do with a PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtAction {
    /// Write the (rewritten) PDU to N-1 flow `n1`.
    Forward {
        /// The next hop's N-1 flow.
        n1: u64,
        /// Its place in [`DtTables::hops`].
        hop: u32,
    },
    /// Hand the SDU after the PCI to N+1 flow `flow`, with the congestion level.
    Deliver {
        /// The N+1 flow.
        flow: u64,
        /// The ECN byte.
        ecn: u8,
    },
    /// For o7sd: the flow allocator (eid 0) or the DHT (eid 1).
    Control {
        /// The component's eid.
        eid: u8,
    },
    /// Drop it, for this reason.
    Drop(DtDrop),
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(..4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(..8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// Decides what to do with `pdu` and, for a PDU to forward, decrements its TTL in place
/// (the only byte rewritten; a PDU whose TTL is 0 or 1 on arrival is not forwarded).
pub fn decide(pdu: &mut [u8], t: &DtTables) -> DtAction {
    decide_at(pdu, t, None)
}

/// [`decide`] for a PDU that arrived on N-1 flow `from`: one whose next hop is that same
/// N-1 flow is dropped ([`DtDrop::Loop`]) instead of sent back, its TTL as it came.
pub fn decide_from(pdu: &mut [u8], t: &DtTables, from: u64) -> DtAction {
    decide_at(pdu, t, Some(from))
}

fn decide_at(pdu: &mut [u8], t: &DtTables, from: Option<u64>) -> DtAction {
    if pdu.len() < PCI_LEN {
        return DtAction::Drop(DtDrop::Short);
    }
    let dst = le_u32(pdu);
    if dst == t.own {
        let eid = pdu.get(7..PCI_LEN).map_or(0, le_u64);
        let ecn = pdu.get(6).copied().unwrap_or(0);
        return match eid {
            0 | 1 => DtAction::Control { eid: eid as u8 },
            e if e < FIRST_FLOW_EID => DtAction::Drop(DtDrop::ReservedEid),
            e => match t.local.get(&e) {
                Some(&flow) => DtAction::Deliver { flow, ecn },
                None => DtAction::Drop(DtDrop::UnknownEid),
            },
        };
    }
    let Some(ttl) = pdu.get_mut(5) else {
        return DtAction::Drop(DtDrop::Short);
    };
    if *ttl <= 1 {
        return DtAction::Drop(DtDrop::TtlExpired);
    }
    let Some(hop) = t.next_hop.get(dst) else {
        return DtAction::Drop(DtDrop::NoRoute);
    };
    match t.hops.get(hop as usize) {
        Some(&n1) if Some(n1) == from => DtAction::Drop(DtDrop::Loop),
        Some(&n1) => {
            *ttl -= 1;
            DtAction::Forward { n1, hop }
        }
        None => DtAction::Drop(DtDrop::NoRoute),
    }
}

/// Appends the PCI of an SDU for endpoint `eid` at address `dst` (cube 0, `ttl`, ECN 0).
pub fn write_pci(out: &mut Vec<u8>, dst: u32, ttl: u8, eid: u64) {
    out.extend_from_slice(&dst.to_le_bytes());
    out.push(0);
    out.push(ttl);
    out.push(0);
    out.extend_from_slice(&eid.to_le_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const A: u32 = 0x41dc_5e0b;
    const B: u32 = 0xe30f_5e97;
    const C: u32 = 0x275b_9eac;

    /// B's tables in the chain A - B - C: A on N-1 flow 10, C on 11, one N+1 flow.
    fn b() -> DtTables {
        let mut t = DtTables::new(B);
        t.set_routes(&[(A, 10), (C, 11)]);
        t.local.insert(0x21ba_6063_0000_0042, 5);
        t
    }

    #[test]
    fn the_reference_pdu_through_b_is_forwarded_with_its_ttl_decremented() {
        // uni-chain-ab frame 26: C's STORE to A as it left C (ttl 60), DT payload after.
        let mut pdu = hex::decode("0b5edc41003c000100000000000000").unwrap();
        pdu.extend_from_slice(b"dht");
        let before = pdu.clone();
        assert_eq!(decide(&mut pdu, &b()), DtAction::Forward { n1: 10, hop: 0 });
        assert_eq!(
            pdu[5], 59,
            "ttl 60 -> 59, as the capture shows on the A-B link"
        );
        pdu[5] = 60;
        assert_eq!(pdu, before, "nothing else is rewritten");
    }

    #[test]
    fn a_pdu_whose_next_hop_is_the_neighbour_it_came_from_is_dropped_not_bounced() {
        let t = b();
        // For C (next hop N-1 flow 11): from A's flow 10 it goes on; from C's own flow 11
        // it would go straight back (B and C disagree about C's old address).
        let mut v = Vec::new();
        write_pci(&mut v, C, 60, 0x40);
        let mut w = v.clone();
        assert_eq!(
            decide_from(&mut v, &t, 10),
            DtAction::Forward { n1: 11, hop: 1 }
        );
        assert_eq!(decide_from(&mut w, &t, 11), DtAction::Drop(DtDrop::Loop));
        // For us and for o7sd the N-1 flow it came on does not matter.
        let mut v = Vec::new();
        write_pci(&mut v, B, 60, 0x21ba_6063_0000_0042);
        assert_eq!(
            decide_from(&mut v, &t, 11),
            DtAction::Deliver { flow: 5, ecn: 0 }
        );
        let mut v = Vec::new();
        write_pci(&mut v, A, 1, 0x40);
        assert_eq!(
            decide_from(&mut v, &t, 10),
            DtAction::Drop(DtDrop::TtlExpired)
        );
    }

    #[test]
    fn pdus_for_us_go_to_the_flow_or_to_o7sd() {
        let t = b();
        let mut v = Vec::new();
        write_pci(&mut v, B, 60, 0x21ba_6063_0000_0042);
        v[6] = 3;
        assert_eq!(decide(&mut v, &t), DtAction::Deliver { flow: 5, ecn: 3 });
        for (eid, want) in [
            (0, DtAction::Control { eid: 0 }),
            (1, DtAction::Control { eid: 1 }),
            (2, DtAction::Drop(DtDrop::ReservedEid)),
            (63, DtAction::Drop(DtDrop::ReservedEid)),
            (64, DtAction::Drop(DtDrop::UnknownEid)),
        ] {
            let mut v = Vec::new();
            write_pci(&mut v, B, 0, eid);
            // A PDU for us is delivered whatever its TTL (facts §5.4).
            assert_eq!(decide(&mut v, &t), want, "eid {eid}");
        }
    }

    #[test]
    fn routes_share_one_hop_per_n1_flow_and_are_replaced_whole() {
        let mut t = b();
        t.set_routes(&[(A, 10), (C, 11), (0x0c0c_0c0c, 10), (C, 12)]);
        assert_eq!(t.hops(), &[10, 11, 12], "each N-1 flow once, in order");
        assert_eq!(t.routes(), 3);
        assert_eq!(t.route(A), Some(10));
        assert_eq!(t.route(0x0c0c_0c0c), Some(10));
        assert_eq!(t.route(C), Some(12), "the last route to C holds");
        let mut v = Vec::new();
        write_pci(&mut v, 0x0c0c_0c0c, 60, 99);
        assert_eq!(decide(&mut v, &t), DtAction::Forward { n1: 10, hop: 0 });
        t.set_routes(&[(A, 12)]);
        assert_eq!(t.hops(), &[12]);
        assert_eq!((t.route(A), t.route(C)), (Some(12), None));
    }

    #[test]
    fn ttl_routes_and_length_are_checked() {
        let t = b();
        for ttl in [0u8, 1] {
            let mut v = Vec::new();
            write_pci(&mut v, C, ttl, 99);
            assert_eq!(decide(&mut v, &t), DtAction::Drop(DtDrop::TtlExpired));
            assert_eq!(v[5], ttl, "a dropped PDU is not rewritten");
        }
        let mut v = Vec::new();
        write_pci(&mut v, 0x0bad_0bad, 60, 99);
        assert_eq!(decide(&mut v, &t), DtAction::Drop(DtDrop::NoRoute));
        assert_eq!(decide(&mut [0u8; 14], &t), DtAction::Drop(DtDrop::Short));
        let mut v = Vec::new();
        write_pci(&mut v, C, 2, 99);
        assert_eq!(decide(&mut v, &t), DtAction::Forward { n1: 11, hop: 1 });
        assert_eq!(v[5], 1);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_get_a_decision_and_only_the_ttl_changes(
            mut b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)
        ) {
            let before = b.clone();
            let d = decide(&mut b, &self::tests::b());
            for (i, (x, y)) in before.iter().zip(&b).enumerate() {
                if i != 5 {
                    proptest::prop_assert_eq!(x, y);
                }
            }
            if let DtAction::Forward { .. } = d {
                proptest::prop_assert_eq!(b[5] + 1, before[5]);
            } else {
                proptest::prop_assert_eq!(&b, &before);
            }
        }
    }
}
