//! Link-state routing on the simulated segment: six IPCPs in a ring (each with a
//! management and a DT connection to its two neighbours) flood their LSAs, compute
//! shortest paths, keep re-announcing, and route around a link that goes away once the
//! records of its far end have aged out. Virtual time, so the 60 s time-out takes no time.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_proto::linkstate::{Addr, LinkState, LsConfig};
use o7s_proto::mgmt::Peer;
use o7s_proto::sim::{LinkModel, Node, Sim};
use std::time::{Duration, Instant};

const N: usize = 6;

fn mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 1, i as u8]
}

fn addr(i: usize) -> Addr {
    0x100 + i as Addr
}

/// One IPCP: its routing, and its neighbours by index (the management flows).
struct Ipcp {
    i: usize,
    ls: LinkState<usize>,
    neighbours: Vec<usize>,
}

impl Node for Ipcp {
    fn mac(&self) -> [u8; 6] {
        mac(self.i)
    }
    fn handle(&mut self, now: Instant, src: Peer, _dst: [u8; 6], payload: &[u8]) {
        let from = usize::from(src.mac()[5]);
        // Frames from a neighbour whose connection is gone are not ours any more.
        if self.neighbours.contains(&from) {
            self.ls.handle(now, &from, payload);
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.ls.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.ls.poll_timeout()
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<([u8; 6], Vec<u8>)> {
        let (to, lsa) = self.ls.poll_transmit()?;
        Some((mac(to), lsa.to_vec()))
    }
}

fn ring(t0: Instant) -> Vec<Ipcp> {
    let mut v: Vec<Ipcp> = (0..N)
        .map(|i| Ipcp {
            i,
            ls: LinkState::new(addr(i), LsConfig::default(), t0),
            neighbours: vec![(i + N - 1) % N, (i + 1) % N],
        })
        .collect();
    for ip in &mut v {
        for n in ip.neighbours.clone() {
            ip.ls.add_mgmt(n);
            ip.ls.add_dt(t0, addr(n));
        }
    }
    v
}

/// Hops from `from` to `to` following the tables (None on a loop or a hole).
fn walk(nodes: &[Ipcp], from: usize, to: usize) -> Option<usize> {
    let mut at = from;
    for hops in 0..=N {
        if at == to {
            return Some(hops);
        }
        let next = nodes[at].ls.next_hop(addr(to))?;
        at = (next - 0x100) as usize;
    }
    None
}

#[test]
fn a_ring_converges_and_routes_around_a_lost_link() {
    let t0 = Instant::now();
    let mut sim = Sim::new(t0, 3, LinkModel::ideal(Duration::from_millis(1)), ring(t0));
    sim.run_until(t0 + Duration::from_secs(5));
    // Every IPCP reaches every other one on a shortest path of the ring.
    for a in 0..N {
        for b in 0..N {
            let d = (a + N - b) % N;
            let shortest = d.min(N - d);
            assert_eq!(walk(&sim.nodes, a, b), Some(shortest), "{a} -> {b}");
        }
    }
    // 12 directed links, announced by their sources; everyone knows all of them.
    for n in &sim.nodes {
        assert_eq!(n.ls.lsdb().len(), 2 * N, "{}", n.i);
    }
    // Link 0-1 goes away (both ends drop the connections; nothing is sent).
    for (x, y) in [(0, 1), (1, 0)] {
        let n = &mut sim.nodes[x];
        n.neighbours.retain(|m| *m != y);
        n.ls.remove_mgmt(&y);
        n.ls.remove_dt(addr(y));
    }
    // After the far ends' records age out (60 s, checked every 15 s, then recomputed),
    // 0 reaches 1 the long way round, in 5 hops.
    sim.run_until(t0 + Duration::from_secs(100));
    assert_eq!(walk(&sim.nodes, 0, 1), Some(N - 1));
    assert_eq!(walk(&sim.nodes, 1, 0), Some(N - 1));
    assert_eq!(walk(&sim.nodes, 3, 0), Some(3));
    // Own links keep being announced: seqnos grew (one per 15 s).
    let seq = sim.nodes[3]
        .ls
        .lsdb()
        .into_iter()
        .find(|((s, d), _)| *s == addr(3) && *d == addr(4))
        .map(|(_, q)| q)
        .unwrap();
    assert!(seq >= 6, "seqno {seq}");
}
