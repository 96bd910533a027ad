//! The DHT directory on the simulated network, with the machine o7sd will drive
//! (`o7s_proto::dht`): nodes join one after the other through an earlier node (as
//! enrolment hands each the enroller's address), every node registers a name, and every
//! lookup of a registered name from a random node resolves to the registering node's
//! address; an unregistered name ends NotFound. 100 nodes in every test run; 1000 with
//! the message counts and virtual times printed (docs/BENCHMARKS.md). DT forwarding is not
//! simulated here: a message to an address reaches it (routing has its own simulation,
//! linkstate_sim).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_proto::dht::{Dht, DhtConfig, Event};
use o7s_proto::machine::UnixTime;
use o7s_proto::mgmt::Peer;
use o7s_proto::sim::{LinkModel, Node, Sim};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const UNIX: UnixTime = UnixTime::from_secs(1_796_083_200);

fn addr(i: usize) -> u64 {
    0x1_0000 + i as u64
}

fn mac_of(a: u64) -> [u8; 6] {
    let b = a.to_be_bytes();
    [2, 0, b[4], b[5], b[6], b[7]]
}

fn name(i: usize) -> Vec<u8> {
    o7s_wire::hash::HashAlgo::Sha3_256.hash(&format!("name-{i}"))
}

struct Ipcp {
    i: usize,
    dht: Dht,
    /// When it joins, and through whom.
    join: Option<(Instant, u64)>,
    register: Option<Instant>,
    lookups: Vec<(Instant, usize)>,
    found: Vec<(usize, Vec<u64>)>,
    not_found: usize,
    asked: Vec<(o7s_proto::dht::LookupId, usize)>,
}

impl Node for Ipcp {
    fn mac(&self) -> [u8; 6] {
        mac_of(addr(self.i))
    }
    fn handle(&mut self, now: Instant, _src: Peer, _dst: [u8; 6], payload: &[u8]) {
        self.dht.handle(now, UNIX, payload);
        self.events();
    }
    fn handle_timeout(&mut self, now: Instant) {
        if let Some((t, peer)) = self.join {
            if t <= now {
                self.join = None;
                self.dht.bootstrap(now, peer);
            }
        }
        if self.register.is_some_and(|t| t <= now) {
            self.register = None;
            self.dht.register(now, UNIX, name(self.i));
        }
        while self.lookups.first().is_some_and(|(t, _)| *t <= now) {
            let (_, target) = self.lookups.remove(0);
            if let Some(id) = self.dht.lookup(now, UNIX, name(target)) {
                self.asked.push((id, target));
            }
        }
        self.dht.handle_timeout(now);
        self.events();
    }
    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.join.map(|(t, _)| t),
            self.register,
            self.lookups.first().map(|(t, _)| *t),
            self.dht.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<([u8; 6], Vec<u8>)> {
        let t = self.dht.poll_transmit()?;
        Some((mac_of(t.dst), t.msg))
    }
}

impl Ipcp {
    fn events(&mut self) {
        while let Some(e) = self.dht.poll_event() {
            let (id, result) = match e {
                Event::Found { id, addrs, .. } => (id, Some(addrs)),
                Event::NotFound { id, .. } => (id, None),
                Event::ProofRefused { why, .. } => panic!("an open layer refused a proof: {why}"),
            };
            let Some(pos) = self.asked.iter().position(|(x, _)| *x == id) else {
                continue;
            };
            let (_, target) = self.asked.remove(pos);
            match result {
                Some(a) => self.found.push((target, a)),
                None => self.not_found += 1,
            }
        }
    }
}

struct Outcome {
    lookups: usize,
    resolved: usize,
    wrong: usize,
    not_found_unregistered: usize,
    messages: u64,
    join_done: Duration,
    end: Duration,
}

fn run(n: usize, seed: u64) -> (Outcome, Vec<String>) {
    let t0 = Instant::now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let join_every = Duration::from_millis(20);
    let joined = t0 + join_every * n as u32 + Duration::from_secs(3);
    let registered = joined + Duration::from_secs(5);
    let mut nodes: Vec<Ipcp> = (0..n)
        .map(|i| {
            let id: Vec<u8> = (0..32).map(|_| rng.gen::<u8>()).collect();
            let join = (i > 0).then(|| (t0 + join_every * i as u32, addr(rng.gen_range(0..i))));
            Ipcp {
                i,
                dht: Dht::new(DhtConfig::default(), id, addr(i), seed ^ i as u64),
                join,
                register: Some(joined + Duration::from_millis(rng.gen_range(0..1000))),
                lookups: Vec::new(),
                found: Vec::new(),
                not_found: 0,
                asked: Vec::new(),
            }
        })
        .collect();
    // Three lookups of registered names from each node, and one of a name nobody has.
    for node in nodes.iter_mut() {
        let mut l: Vec<(Instant, usize)> = (0..3)
            .map(|_| {
                (
                    registered + Duration::from_millis(rng.gen_range(0..1000)),
                    rng.gen_range(0..n),
                )
            })
            .collect();
        l.push((registered + Duration::from_secs(2), n + 7));
        l.sort();
        node.lookups = l;
    }
    let link = LinkModel {
        jitter: Duration::from_millis(1),
        ..LinkModel::ideal(Duration::from_micros(500))
    };
    let mut sim = Sim::new(t0, seed, link, nodes);
    sim.run_until(joined);
    let contacts: usize = sim.nodes.iter().map(|x| x.dht.contacts()).sum();
    eprintln!("{n} nodes joined: {} contacts on average", contacts / n);
    sim.run_until(registered + Duration::from_secs(30));
    let mut o = Outcome {
        lookups: 0,
        resolved: 0,
        wrong: 0,
        not_found_unregistered: 0,
        messages: sim.stats().sent,
        join_done: joined - t0,
        end: sim.elapsed(),
    };
    for node in &sim.nodes {
        o.lookups += 3;
        for (target, addrs) in &node.found {
            if *target == n + 7 {
                continue;
            }
            if addrs == &vec![addr(*target)] || (addrs.contains(&addr(*target))) {
                o.resolved += 1;
            } else {
                o.wrong += 1;
            }
        }
        o.not_found_unregistered += node.not_found;
        assert!(
            node.asked.is_empty(),
            "node {}: lookups left without an answer",
            node.i
        );
    }
    (o, sim.trace().to_vec())
}

#[test]
fn a_hundred_nodes_resolve_every_registered_name() {
    let (o, trace) = run(100, 3);
    eprintln!(
        "100 nodes: {} of {} lookups resolved, {} wrong, {} NotFound for the unregistered name; {} messages; joined by {:?}, simulated until {:?} (virtual)",
        o.resolved, o.lookups, o.wrong, o.not_found_unregistered, o.messages, o.join_done, o.end
    );
    assert_eq!(o.resolved, o.lookups);
    assert_eq!(o.wrong, 0);
    assert_eq!(o.not_found_unregistered, 100);
    let (_, again) = run(100, 3);
    assert_eq!(trace, again, "same seed, same run");
}

#[test]
fn a_thousand_nodes_resolve_every_registered_name() {
    let wall = std::time::Instant::now();
    let (o, _) = run(1000, 5);
    eprintln!(
        "1000 nodes: {} of {} lookups resolved, {} wrong, {} NotFound for the unregistered name; {} messages ({:.1} per node); joined by {:?}, simulated until {:?} (virtual); {:.1} s of real time",
        o.resolved,
        o.lookups,
        o.wrong,
        o.not_found_unregistered,
        o.messages,
        o.messages as f64 / 1000.0,
        o.join_done,
        o.end,
        wall.elapsed().as_secs_f64()
    );
    assert_eq!(o.resolved, o.lookups);
    assert_eq!(o.not_found_unregistered, 1000);
}
