//! Routing: shortest paths over the LSDB (the next hop to each destination, the alternates of
//! the loop-free policy) recomputed when the LSDB changes.

use super::{Addr, LinkState, Policy};
use std::collections::{BTreeMap, VecDeque};

impl<F: Clone + PartialEq> LinkState<F> {
    /// The next hop towards `dst`, if the table has one: the primary, or under LFA and
    /// ECMP the first one whose N-1 flow is not down.
    pub fn next_hop(&self, dst: Addr) -> Option<Addr> {
        match self.multi.get(&dst) {
            Some(v) => v.iter().copied().find(|h| !self.down.contains(h)),
            None => self
                .pff
                .get(&dst)
                .copied()
                .filter(|h| !self.down.contains(h)),
        }
    }

    /// Every next hop towards `dst` in order of preference (simple: the primary alone).
    pub fn next_hops(&self, dst: Addr) -> Vec<Addr> {
        match self.multi.get(&dst) {
            Some(v) => v
                .iter()
                .copied()
                .filter(|h| !self.down.contains(h))
                .collect(),
            None => self.next_hop(dst).into_iter().collect(),
        }
    }

    /// The whole table: destination -> next hop.
    pub fn table(&self) -> &BTreeMap<Addr, Addr> {
        &self.pff
    }

    /// Shortest paths (hop count) over the links both ends announced; the next hop of each
    /// destination is the first hop of the first shortest path found, visiting vertices by
    /// (distance, address) and edges newest first, improving only on strictly shorter.
    pub(super) fn recompute(&mut self) {
        self.modified = false;
        self.held = None;
        // Usable edges: both directions announced.
        let mut adj: BTreeMap<Addr, Vec<(u64, Addr)>> = BTreeMap::new();
        for ((s, d), a) in self.lsdb.iter().filter(|(_, a)| !a.withdrawn) {
            if self.lsdb.get(&(*d, *s)).is_some_and(|b| !b.withdrawn) {
                adj.entry(*s).or_default().push((a.order, *d));
            }
        }
        for edges in adj.values_mut() {
            edges.sort_by_key(|e| std::cmp::Reverse(e.0));
        }
        let mut dist: BTreeMap<Addr, u32> = BTreeMap::new();
        let mut first: BTreeMap<Addr, Addr> = BTreeMap::new();
        dist.insert(self.me, 0);
        // Unit weights: breadth first, one distance at a time, the vertices of a distance
        // in address order (the order of a Dijkstra by (distance, address)); a vertex keeps
        // the first hop of the first path that reached it.
        let mut level = vec![self.me];
        let mut d = 0u32;
        while !level.is_empty() {
            let mut next = vec![];
            for &v in &level {
                for &(_, n) in adj.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
                    if dist.contains_key(&n) {
                        continue;
                    }
                    dist.insert(n, d + 1);
                    let hop = if v == self.me {
                        n
                    } else {
                        first.get(&v).copied().unwrap_or(n)
                    };
                    first.insert(n, hop);
                    next.push(n);
                }
            }
            next.sort_unstable();
            level = next;
            d += 1;
        }
        first.remove(&self.me);
        // A next hop without a DT connection is skipped.
        first.retain(|_, hop| self.dt.contains(hop));
        let multi = if self.cfg.policy == Policy::Simple {
            BTreeMap::new()
        } else {
            self.alternates(&adj, &dist, &first)
        };
        if multi != self.multi || first != self.pff {
            self.table_changed = true;
            self.generation += 1;
        }
        self.multi = multi;
        self.pff = first;
    }

    /// LFA or ECMP next hops from the neighbours' distances (unit weights: a breadth-first
    /// search from each DT neighbour).
    pub(super) fn alternates(
        &self,
        adj: &BTreeMap<Addr, Vec<(u64, Addr)>>,
        dist: &BTreeMap<Addr, u32>,
        primary: &BTreeMap<Addr, Addr>,
    ) -> BTreeMap<Addr, Vec<Addr>> {
        let bfs = |from: Addr| {
            let mut d: BTreeMap<Addr, u32> = BTreeMap::new();
            let mut q = VecDeque::new();
            d.insert(from, 0);
            q.push_back(from);
            while let Some(v) = q.pop_front() {
                let dv = d.get(&v).copied().unwrap_or(0);
                for &(_, n) in adj.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
                    if let std::collections::btree_map::Entry::Vacant(e) = d.entry(n) {
                        e.insert(dv + 1);
                        q.push_back(n);
                    }
                }
            }
            d
        };
        let neighbours: Vec<Addr> = adj
            .get(&self.me)
            .map(|v| {
                v.iter()
                    .map(|e| e.1)
                    .filter(|n| self.dt.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        let from_nb: Vec<(Addr, BTreeMap<Addr, u32>)> =
            neighbours.iter().map(|n| (*n, bfs(*n))).collect();
        let mut out: BTreeMap<Addr, Vec<Addr>> = BTreeMap::new();
        for (&d, &ds) in dist.iter().filter(|(d, _)| **d != self.me) {
            let mut hops: Vec<Addr> = match (self.cfg.policy, primary.get(&d)) {
                (Policy::Lfa, Some(p)) => vec![*p],
                _ => Vec::new(),
            };
            for (n, dn) in &from_nb {
                let Some(&nd) = dn.get(&d) else { continue };
                let keep = match self.cfg.policy {
                    // dist(N, self) is 1 for a neighbour.
                    Policy::Lfa => *n != d && nd < 1 + ds && !hops.contains(n),
                    Policy::Ecmp => nd + 1 == ds,
                    Policy::Simple => false,
                };
                if keep {
                    hops.push(*n);
                }
            }
            if !hops.is_empty() {
                out.insert(d, hops);
            }
        }
        out
    }
}
