//! The responder's side as o7sd runs it, in the simulator: a server's shim machine hands
//! flow requests to its `AcceptQueue`, which serves them in arrival order as its one
//! accepting process becomes free (it needs 50 ms per flow and starts only at 300 ms), and
//! refuses what waited longer than the plan allows.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_proto::accept::{AcceptQueue, Action, Plan};
use o7s_proto::mgmt::{Peer, ShimKind};
use o7s_proto::shim::{Event, ReqId, Shim, ShimConfig, ShimError};
use o7s_proto::sim::{LinkModel, Node, Sim};
use o7s_wire::hash::HashAlgo;
use o7s_wire::oap::OapHdr;
use o7s_wire::qos::QosSpec;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

struct Server {
    shim: Shim,
    queue: AcceptQueue<ReqId>,
    plan: Plan,
    /// When the accepting process is (next) free; `None`: there is none.
    free_at: Option<Instant>,
    /// Requesters of the requests waiting.
    from: std::collections::HashMap<ReqId, Peer>,
    /// Requesters served, with when.
    served: Vec<(Peer, Instant)>,
    /// Requesters refused.
    expired: Vec<Peer>,
}

struct Client {
    mac: [u8; 6],
    shim: Shim,
    start: Option<Instant>,
    outcome: Option<Result<Instant, ShimError>>,
}

enum Host {
    S(Server),
    C(Client),
}

fn mac(i: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, i]
}

fn hash() -> Vec<u8> {
    HashAlgo::Sha3_256.hash("srv")
}

impl Host {
    fn shim(&mut self) -> &mut Shim {
        match self {
            Host::S(s) => &mut s.shim,
            Host::C(c) => &mut c.shim,
        }
    }

    fn run(&mut self, now: Instant) {
        match self {
            Host::S(s) => {
                while let Some(e) = s.shim.poll_event() {
                    if let Event::Incoming { req, peer, .. } = e {
                        s.from.insert(req, peer);
                        s.queue.push(now, req, "srv", s.plan).unwrap();
                    }
                }
                loop {
                    let free = s.free_at.is_some_and(|t| t <= now);
                    let Some(action) = s.queue.next(now, &mut |_| free) else {
                        break;
                    };
                    match action {
                        Action::Serve { key, .. } => {
                            s.shim.take_eid(key).unwrap();
                            let oap = OapHdr::unsigned([0; 16], 0, vec![0; 48]);
                            s.shim.reply(now, key, oap.to_bytes().unwrap()).unwrap();
                            s.served.push((s.from.remove(&key).unwrap(), now));
                            s.free_at = Some(now + 50 * MS);
                        }
                        Action::Start { .. } => panic!("no program to start"),
                        Action::Expire { key, .. } => {
                            s.shim.refuse(now, key, -1).unwrap();
                            s.expired.push(s.from.remove(&key).unwrap());
                        }
                    }
                }
            }
            Host::C(c) => {
                if c.start.is_some_and(|t| t <= now) {
                    c.start = None;
                    let oap = OapHdr::unsigned([1; 16], 0, vec![]).to_bytes().unwrap();
                    c.shim
                        .alloc(
                            now,
                            Peer::Mac(mac(0)),
                            &hash(),
                            QosSpec::RAW,
                            &oap,
                            3000 * MS,
                        )
                        .unwrap();
                }
                while let Some(e) = c.shim.poll_event() {
                    match e {
                        Event::Allocated { .. } => c.outcome = Some(Ok(now)),
                        Event::AllocFailed { error, .. } => c.outcome = Some(Err(error)),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
    }
}

impl Node for Host {
    fn mac(&self) -> [u8; 6] {
        match self {
            Host::S(_) => mac(0),
            Host::C(c) => c.mac,
        }
    }
    fn handle(&mut self, now: Instant, src: Peer, dst: [u8; 6], payload: &[u8]) {
        self.shim().handle(now, src, Some(dst), payload);
        self.run(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.shim().handle_timeout(now);
        self.run(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Host::S(s) => {
                // The process coming free matters only while requests wait.
                let free = s.free_at.filter(|_| !s.queue.is_empty());
                [s.shim.poll_timeout(), s.queue.poll_timeout(), free]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Host::C(c) => [c.start, c.shim.poll_timeout()].into_iter().flatten().min(),
        }
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<([u8; 6], Vec<u8>)> {
        let t = self.shim().poll_transmit()?;
        Some((t.dst.mac(), t.msg.build(ShimKind::Dix)))
    }
}

/// A server whose one process starts accepting at 300 ms and needs 50 ms per flow, and
/// three clients asking at 10, 20 and 30 ms (arriving in that order).
fn run(plan: Plan, process: bool) -> (Server, Vec<Option<Result<Instant, ShimError>>>, Instant) {
    let cfg = ShimConfig::new(ShimKind::Dix, 32);
    let t0 = Instant::now();
    let mut server = Shim::new(cfg.clone(), Some(mac(0)));
    server.register(hash());
    let mut hosts = vec![Host::S(Server {
        shim: server,
        queue: AcceptQueue::new(16),
        plan,
        free_at: process.then_some(t0 + 300 * MS),
        from: Default::default(),
        served: vec![],
        expired: vec![],
    })];
    for i in 1..=3u8 {
        hosts.push(Host::C(Client {
            mac: mac(i),
            shim: Shim::new(cfg.clone(), Some(mac(i))),
            start: Some(t0 + u32::from(i) * 10 * MS),
            outcome: None,
        }));
    }
    let mut sim = Sim::new(t0, 1, LinkModel::ideal(Duration::from_micros(100)), hosts);
    sim.run_until(t0 + Duration::from_secs(5));
    let mut outcomes = vec![];
    let mut server = None;
    for h in sim.nodes {
        match h {
            Host::S(s) => server = Some(s),
            Host::C(c) => outcomes.push(c.outcome),
        }
    }
    (server.unwrap(), outcomes, t0)
}

#[test]
fn requests_wait_for_the_process_and_are_served_in_arrival_order() {
    let plan = Plan {
        wait: 1000 * MS,
        autostart: None,
    };
    let (s, outcomes, t0) = run(plan, true);
    let order: Vec<Peer> = s.served.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        order,
        vec![Peer::Mac(mac(1)), Peer::Mac(mac(2)), Peer::Mac(mac(3))]
    );
    // Served at 300, 350 and 400 ms: when the process came free each time.
    let at: Vec<u128> = s
        .served
        .iter()
        .map(|(_, t)| (*t - t0).as_millis())
        .collect();
    assert_eq!(at, vec![300, 350, 400]);
    assert!(s.expired.is_empty());
    for o in outcomes {
        assert!(matches!(o, Some(Ok(_))), "{o:?}");
    }
}

#[test]
fn requests_that_wait_too_long_are_refused_in_order() {
    // The process comes at 300 ms and is free again at 350; the requests (arriving at
    // about 10, 20 and 30 ms) wait 310 ms at most: the first is served at 300, the next
    // two are refused at about 330 and 340 ms, in their order.
    let plan = Plan {
        wait: 310 * MS,
        autostart: None,
    };
    let (s, outcomes, _) = run(plan, true);
    assert_eq!(s.served.len(), 1);
    assert_eq!(s.expired, vec![Peer::Mac(mac(2)), Peer::Mac(mac(3))]);
    assert!(matches!(outcomes[0], Some(Ok(_))));
    for o in &outcomes[1..] {
        assert_eq!(*o, Some(Err(ShimError::Refused(-1))));
    }
    // No process at all: all three refused.
    let (s, outcomes, _) = run(plan, false);
    assert_eq!(s.expired.len(), 3);
    assert!(outcomes
        .iter()
        .all(|o| *o == Some(Err(ShimError::Refused(-1)))));
}
