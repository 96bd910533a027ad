//! Enrolment on the simulated segment, with the machines o7sd will drive
//! (`o7s_proto::enroll`): 40 IPCPs enrol with one bootstrapped IPCP at once, one more
//! vanishes half-way, and a late one enrols with an IPCP that was itself just enrolled.
//! Every enrolment completes or fails with a reason; none waits for another (the
//! reference serves one at a time and hangs on a vanished enrollee); the same seed gives
//! the same trace.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_proto::enroll::{Connections, EnrollConfig, EnrollError, Event};
use o7s_proto::machine::UnixTime;
use o7s_proto::mgmt::Peer;
use o7s_proto::sim::{LinkModel, Node, Sim};
use o7s_wire::unicast::pb::{Component, IpcpConfigMsg};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const N: usize = 40;
const VANISHER: usize = N + 1;
const LATE: usize = N + 2;
const LAYER: &str = "sim-layer";

fn mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 2, i as u8]
}

/// Random non-zero 32-bit addresses, distinct (the flat address authority's draw).
fn addresses(seed: u64) -> Vec<u64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    (0..=LATE)
        .map(|_| loop {
            let a = u64::from(rng.gen_range(1..=u32::MAX));
            if seen.insert(a) {
                break a;
            }
        })
        .collect()
}

struct Ipcp {
    i: usize,
    addr: u64,
    conn: Connections,
    /// Whom it enrols with, and when.
    enrol: Option<(usize, Instant)>,
    /// Flows (peers) open now.
    open: HashSet<usize>,
    /// It stops answering after its request.
    vanishes: bool,
    /// SDUs it received.
    got: usize,
    enrolled: Option<IpcpConfigMsg>,
    failed: Vec<(usize, EnrollError)>,
    served: usize,
}

impl Ipcp {
    fn new(i: usize, addr: u64, conf: Option<IpcpConfigMsg>) -> Self {
        Self {
            i,
            addr,
            conn: Connections::new(
                EnrollConfig::default(),
                if conf.is_some() { addr } else { 0 },
                conf,
            ),
            enrol: None,
            open: HashSet::new(),
            vanishes: false,
            got: 0,
            enrolled: None,
            failed: Vec::new(),
            served: 0,
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Enrolled { conf, .. } => {
                    // Adopt the layer; from now on enrol others, as their DHT peer.
                    let mut mine = (*conf).clone();
                    if let Some(d) = mine.unicast.as_mut().and_then(|u| u.dir.dht.as_mut()) {
                        d.peer = self.addr;
                    }
                    self.conn.set_layer(self.addr, mine);
                    self.enrolled = Some(*conf);
                }
                Event::Served { .. } => self.served += 1,
                Event::Failed { flow, why } => self.failed.push((flow as usize, why)),
                Event::Close { flow } => {
                    self.open.remove(&(flow as usize));
                }
                Event::Connected { .. } | Event::Readdressed { .. } => {}
            }
        }
    }
}

impl Node for Ipcp {
    fn mac(&self) -> [u8; 6] {
        mac(self.i)
    }
    fn handle(&mut self, now: Instant, src: Peer, _dst: [u8; 6], payload: &[u8]) {
        let from = usize::from(src.mac()[5]);
        self.got += 1;
        if self.vanishes && self.got > 1 {
            // Gone after its request (sent on the enroller's CEP): reads nothing more.
            return;
        }
        // A first SDU from a peer: the driver accepted its flow.
        if self.open.insert(from) && self.conn.connected(from as u64).is_none() {
            self.conn.accept(now, from as u64);
        }
        let unix = UnixTime::from_secs(1_796_083_200);
        self.conn.handle(now, unix, from as u64, payload);
        self.events();
    }
    fn handle_timeout(&mut self, now: Instant) {
        if let Some((to, at)) = self.enrol {
            if at <= now {
                self.enrol = None;
                self.open.insert(to);
                let id = (self.addr as u32 as u64 | (self.i as u64) << 32).to_be_bytes();
                self.conn.connect(now, to as u64, Component::Enrollment, id);
            }
        }
        self.conn.handle_timeout(now);
        self.events();
    }
    fn poll_timeout(&self) -> Option<Instant> {
        [self.enrol.map(|(_, t)| t), self.conn.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<([u8; 6], Vec<u8>)> {
        let t = self.conn.poll_transmit()?;
        Some((mac(t.flow as usize), t.sdu))
    }
}

fn network(t0: Instant, seed: u64) -> Vec<Ipcp> {
    let addr = addresses(seed);
    let conf = IpcpConfigMsg::unicast_default(LAYER, addr[0]);
    let mut v: Vec<Ipcp> = (0..=LATE)
        .map(|i| Ipcp::new(i, addr[i], (i == 0).then(|| conf.clone())))
        .collect();
    for (i, n) in v.iter_mut().enumerate().skip(1) {
        n.enrol = Some(match i {
            // Enrols with node 1 once that one is in the layer.
            LATE => (1, t0 + Duration::from_millis(200)),
            _ => (0, t0 + Duration::from_micros(10 * i as u64)),
        });
    }
    v[VANISHER].vanishes = true;
    v
}

fn run(seed: u64, link: LinkModel) -> Sim<Ipcp> {
    let t0 = Instant::now();
    let mut sim = Sim::new(t0, seed, link, network(t0, seed));
    sim.run_until(t0 + Duration::from_secs(5));
    sim
}

#[test]
fn forty_enrol_at_once_one_vanishes_and_a_late_one_enrols_with_an_enrollee() {
    let link = LinkModel {
        jitter: Duration::from_micros(300),
        ..LinkModel::ideal(Duration::from_micros(200))
    };
    let t0 = Instant::now();
    let mut sim = Sim::new(t0, 7, link, network(t0, 7));
    // Everyone but the vanisher is through within 50 ms of virtual time: nobody waited
    // for anybody (the vanisher's step times out only at 1 s).
    sim.run_until(t0 + Duration::from_millis(50));
    assert_eq!(sim.nodes[0].served, N, "all served at once");
    sim.run_until(t0 + Duration::from_secs(5));
    let addr = addresses(7);
    for n in &sim.nodes[1..=N] {
        let c = n
            .enrolled
            .as_ref()
            .unwrap_or_else(|| panic!("{} not enrolled: {:?}", n.i, n.failed));
        assert_eq!(c.layer_info.name, LAYER);
        let peer = c.unicast.as_ref().unwrap().dir.dht.as_ref().unwrap().peer;
        assert_eq!(peer, addr[0], "node 0 is their DHT peer");
    }
    // The vanisher's exchange ends at the enroller by its time-out, with the reason.
    assert_eq!(
        sim.nodes[0].failed,
        vec![(VANISHER, EnrollError::Timeout("enrolment acknowledgement"))]
    );
    assert!(sim.nodes[VANISHER].enrolled.is_none());
    // The late one enrolled with node 1, its DHT peer.
    let late = sim.nodes[LATE]
        .enrolled
        .as_ref()
        .expect("the late one enrolled");
    assert_eq!(
        late.unicast
            .as_ref()
            .unwrap()
            .dir
            .dht
            .as_ref()
            .unwrap()
            .peer,
        addr[1]
    );
    assert_eq!(sim.nodes[1].served, 1);
    for n in &sim.nodes {
        assert_eq!(n.conn.pending(), 0, "node {} has nothing left hanging", n.i);
    }
    eprintln!(
        "{} enrolled; the last event (the vanisher's time-out) at {:?} of virtual time; {} frames",
        N + 1,
        sim.elapsed(),
        sim.stats().sent
    );
}

#[test]
fn with_loss_every_enrolment_ends_and_the_seed_decides() {
    let link = LinkModel {
        delay: Duration::from_micros(200),
        jitter: Duration::from_millis(2),
        loss: 0.05,
        duplicate: 0.0,
    };
    let a = run(11, link);
    let (mut ok, mut failed) = (0, 0);
    for n in &a.nodes[1..=N] {
        match (&n.enrolled, n.failed.first()) {
            (Some(_), _) => ok += 1,
            (None, Some(_)) => failed += 1,
            (None, None) => {
                // Its enroller may be the one that saw the failure (a lost ack).
                assert!(
                    a.nodes[0].failed.iter().any(|(f, _)| *f == n.i),
                    "node {} neither enrolled nor failed",
                    n.i
                );
                failed += 1;
            }
        }
    }
    eprintln!("5 % loss: {ok} enrolled, {failed} failed with a reason");
    assert_eq!(ok + failed, N);
    assert!(ok > N / 2, "most get through: {ok}");
    for n in &a.nodes {
        assert_eq!(n.conn.pending(), 0);
    }
    let b = run(11, link);
    assert_eq!(a.trace(), b.trace(), "same seed, same run");
    let c = run(12, link);
    assert_ne!(a.trace(), c.trace());
}
