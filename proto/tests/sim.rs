//! The shim machine on a simulated Ethernet segment of 50 hosts: name queries and flow
//! allocations through loss, reordering and duplicates, on virtual time, seeded.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_proto::ipcp::ShimIpcp;
use o7s_proto::mgmt::{Peer, ShimKind};
use o7s_proto::oap::keys::{Cipher, EncConf, Ephemeral, Kex};
use o7s_proto::oap::{self, FlowKey, OapError};
use o7s_proto::shim::{Event, ShimConfig, ShimError};
use o7s_proto::sim::{LinkModel, Node, Sim};
use o7s_wire::hash::HashAlgo;
use o7s_wire::oap::OapHdr;
use o7s_wire::qos::QosSpec;
use rand::Rng;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const HOSTS: usize = 50;

static RNG: std::sync::LazyLock<ring::rand::SystemRandom> =
    std::sync::LazyLock::new(ring::rand::SystemRandom::new);
const MS: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Up {
        peer: Peer,
        local: u32,
        remote: u32,
        key: Option<FlowKey>,
    },
    Failed(String),
}

/// How a server treats OAP: its `enc.conf` (None: no encryption required), and whether it
/// (or someone in the middle) weakens the cipher it answers with.
#[derive(Debug, Clone, Copy, Default)]
struct ServerOap {
    enc: Option<EncConf>,
    downgrade: bool,
}

/// A host: the shim machine and the driver logic o7sd has around it (resolve, then
/// allocate; accept every request for its own name).
struct Host {
    mac: [u8; 6],
    /// The machine o7sd drives for an eth/udp IPCP.
    shim: ShimIpcp,
    /// When to allocate, and to which name hash.
    wants: Vec<(Instant, Vec<u8>)>,
    /// Hashes being resolved.
    resolving: Vec<Vec<u8>>,
    outcomes: Vec<(Vec<u8>, Outcome)>,
    accepted: usize,
    pending: HashMap<u64, Vec<u8>>,
    /// This host's `enc.conf` as a client.
    client_enc: Option<EncConf>,
    server: ServerOap,
    /// Requests in flight: their bytes and our ephemeral key.
    requests: HashMap<u64, (Vec<u8>, Option<Ephemeral>)>,
    /// Keys of the flows this host accepted, by requester MAC and eid.
    server_keys: HashMap<([u8; 6], u32), Option<FlowKey>>,
    refused: Vec<String>,
}

impl Host {
    fn new(i: usize, cfg: &ShimConfig) -> Self {
        let mac = [0x02, 0, 0, 0, (i >> 8) as u8, i as u8];
        let mut shim = ShimIpcp::new(cfg.clone(), Some(mac));
        shim.register(HashAlgo::Sha3_256.hash(&format!("host-{i}")));
        Self {
            mac,
            shim,
            wants: vec![],
            resolving: vec![],
            outcomes: vec![],
            accepted: 0,
            pending: HashMap::new(),
            client_enc: None,
            server: ServerOap::default(),
            requests: HashMap::new(),
            server_keys: HashMap::new(),
            refused: vec![],
        }
    }

    fn alloc(&mut self, now: Instant, peer: Peer, hash: Vec<u8>) {
        let id = [self.mac[5]; 16];
        let (req, eph) = oap::client_request(id, 1, self.client_enc.as_ref(), &*RNG).unwrap();
        let oap = req.to_bytes().unwrap();
        match self
            .shim
            .alloc(now, peer, &hash, QosSpec::RAW, &oap, 2000 * MS)
        {
            Ok((id, _)) => {
                self.pending.insert(id.0, hash);
                self.requests.insert(id.0, (oap, eph));
            }
            Err(e) => self.outcomes.push((hash, Outcome::Failed(e.to_string()))),
        }
    }

    fn events(&mut self, now: Instant) {
        while let Some(e) = self.shim.poll_event() {
            match e {
                Event::QueryAnswered { hash, peer } => {
                    if let Some(p) = self.resolving.iter().position(|h| *h == hash) {
                        self.resolving.remove(p);
                        self.alloc(now, peer, hash);
                    }
                }
                Event::QueryFailed { hash } => {
                    if let Some(p) = self.resolving.iter().position(|h| *h == hash) {
                        self.resolving.remove(p);
                        self.outcomes
                            .push((hash, Outcome::Failed("no answer to the name query".into())));
                    }
                }
                Event::Allocated {
                    alloc,
                    peer,
                    local,
                    remote,
                    oap: resp,
                } => {
                    let hash = self.pending.remove(&alloc.0).unwrap();
                    let (req, eph) = self.requests.remove(&alloc.0).unwrap();
                    let checked = oap::check_response(&req, &resp).and_then(|()| {
                        match (self.client_enc.as_ref(), eph) {
                            (Some(c), Some(e)) => oap::client_key(c, e, &resp).map(Some),
                            _ => Ok(None),
                        }
                    });
                    let o = match checked {
                        Ok(key) => Outcome::Up {
                            peer,
                            local,
                            remote,
                            key,
                        },
                        Err(e) => {
                            // The client refuses the flow itself (o7sd frees it).
                            self.shim.release(local);
                            Outcome::Failed(format!("refused by the client: {e}"))
                        }
                    };
                    self.outcomes.push((hash, o));
                }
                Event::AllocFailed { alloc, error } => {
                    let hash = self.pending.remove(&alloc.0).unwrap();
                    self.requests.remove(&alloc.0);
                    assert!(
                        matches!(error, ShimError::Timeout(_) | ShimError::Refused(_)),
                        "{error:?}"
                    );
                    self.outcomes
                        .push((hash, Outcome::Failed(error.to_string())));
                }
                Event::Incoming {
                    req,
                    oap: raw,
                    peer,
                    remote,
                    ..
                } => {
                    let answer = OapHdr::parse_as(&raw, o7s_wire::oap::Role::Request, 0)
                        .map_err(|e| OapError::Malformed(e.to_string()))
                        .and_then(|h| oap::server_key(self.server.enc, &h, &raw, 2, &*RNG));
                    match answer {
                        Ok((mut resp, key)) => {
                            if self.server.downgrade && key.is_some() {
                                resp.cipher_nid = Cipher::Aes128Gcm.nid();
                            }
                            self.shim.take_eid(req).unwrap();
                            self.shim.reply(now, req, resp.to_bytes().unwrap()).unwrap();
                            self.server_keys.insert((peer.mac(), remote), key);
                            self.accepted += 1;
                        }
                        Err(e) => {
                            self.refused.push(e.to_string());
                            self.shim.refuse(now, req, -1).unwrap();
                        }
                    }
                }
            }
        }
    }
}

impl Node for Host {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn handle(&mut self, now: Instant, src: Peer, dst: [u8; 6], payload: &[u8]) {
        self.shim.handle(now, src, Some(dst), payload);
        self.events(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Vec<u8>> = self
            .wants
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, h)| h.clone())
            .collect();
        self.wants.retain(|(t, _)| *t > now);
        for hash in due {
            match self.shim.cached(now, &hash) {
                Some(peer) => self.alloc(now, peer, hash),
                None => match self.shim.query(now, hash.clone(), 1000 * MS) {
                    Ok(()) => self.resolving.push(hash),
                    Err(e) => self.outcomes.push((hash, Outcome::Failed(e.to_string()))),
                },
            }
        }
        self.shim.handle_timeout(now);
        self.events(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        let w = self.wants.iter().map(|(t, _)| *t).min();
        [w, self.shim.poll_timeout()].into_iter().flatten().min()
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<([u8; 6], Vec<u8>)> {
        let t = self.shim.poll_transmit()?;
        Some((t.dst.mac(), t.msg.build(ShimKind::Dix)))
    }
}

struct Run {
    trace: Vec<String>,
    outcomes: Vec<Outcome>,
    accepted: usize,
    flows_up: usize,
    eids_in_use: usize,
    lost: u64,
    duplicated: u64,
}

/// 50 hosts; each allocates a flow to another host's name, picked by the seed, at a time
/// in the first 200 ms picked by the seed.
fn run(seed: u64, link: LinkModel, retries: bool) -> Run {
    let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
    if retries {
        cfg.query_retry = Some(150 * MS);
        cfg.req_retry = Some(250 * MS);
    }
    let t0 = Instant::now();
    let hosts = (0..HOSTS).map(|i| Host::new(i, &cfg)).collect();
    let mut sim = Sim::new(t0, seed, link, hosts);
    for i in 0..HOSTS {
        let mut to = sim.rng().gen_range(0..HOSTS - 1);
        if to >= i {
            to += 1;
        }
        let at = t0 + Duration::from_micros(sim.rng().gen_range(0..200_000));
        sim.nodes[i]
            .wants
            .push((at, HashAlgo::Sha3_256.hash(&format!("host-{to}"))));
    }
    sim.run_until(t0 + Duration::from_secs(10));
    let outcomes: Vec<Outcome> = sim
        .nodes
        .iter()
        .flat_map(|h| h.outcomes.iter().map(|(_, o)| o.clone()))
        .collect();
    let flows_up = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Up { .. }))
        .count();
    Run {
        trace: sim.trace().to_vec(),
        accepted: sim.nodes.iter().map(|h| h.accepted).sum(),
        eids_in_use: sim.nodes.iter().map(|h| h.shim.eids_in_use()).sum(),
        outcomes,
        flows_up,
        lost: sim.stats().lost,
        duplicated: sim.stats().duplicated,
    }
}

fn lossy() -> LinkModel {
    LinkModel {
        delay: 200 * Duration::from_micros(1),
        jitter: 3 * MS,
        loss: 0.05,
        duplicate: 0.02,
    }
}

#[test]
fn fifty_hosts_allocate_through_loss_and_reordering() {
    let r = run(1, lossy(), false);
    eprintln!(
        "no retransmission: {} of {HOSTS} up, {} accepted, {} frames lost, {} duplicated, {} trace lines",
        r.flows_up,
        r.accepted,
        r.lost,
        r.duplicated,
        r.trace.len()
    );
    assert!(
        r.lost > 0 && r.duplicated > 0,
        "the link lost and duplicated"
    );
    // Every allocation ends: up, or failed with a clear reason.
    assert_eq!(r.outcomes.len(), HOSTS, "{:?}", r.outcomes);
    for o in &r.outcomes {
        if let Outcome::Failed(why) = o {
            assert!(
                why.contains("no FLOW_REPLY within 2000 ms")
                    || why.contains("no answer to the name query"),
                "{why}"
            );
        }
    }
    assert!(r.flows_up >= HOSTS * 3 / 4, "{} of {HOSTS} up", r.flows_up);
    // Duplicated requests made no second flow: each accepted request is one flow (its
    // reply may have been lost: then the requester failed and the responder's end stays,
    // as the reference's would, until its peer timeout).
    assert!(r.accepted >= r.flows_up && r.accepted <= HOSTS);
    assert_eq!(r.eids_in_use, r.flows_up + r.accepted);
}

#[test]
fn with_retransmission_every_allocation_completes() {
    let r = run(1, lossy(), true);
    eprintln!(
        "retransmission: {} of {HOSTS} up, {} frames lost, {} duplicated",
        r.flows_up, r.lost, r.duplicated
    );
    assert_eq!(r.outcomes.len(), HOSTS);
    assert_eq!(r.flows_up, HOSTS, "{:?}", r.outcomes);
    // Repeated FLOW_REQs were answered with the same reply: one flow each.
    assert_eq!(r.accepted, HOSTS);
    assert_eq!(r.eids_in_use, 2 * HOSTS);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a = run(42, lossy(), true);
    let b = run(42, lossy(), true);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.outcomes, b.outcomes);
    let c = run(43, lossy(), true);
    assert_ne!(a.trace, c.trace, "another seed, another run");
}

#[test]
fn an_ideal_segment_allocates_everything_at_once() {
    let r = run(7, LinkModel::ideal(Duration::from_micros(100)), false);
    assert_eq!(r.flows_up, HOSTS);
    assert_eq!(r.accepted, HOSTS);
}

/// OAP negotiation on the simulated segment, one client/server pair per case, through the
/// same functions o7sd uses (`o7s_proto::oap`): encryption on neither side, the client's
/// side only, the server's only (refused), both, a weaker client group than the server
/// requires (refused), and a server that answers with a weaker cipher than the client
/// requires (the client refuses). Both ends of every flow that comes up hold the same key.
#[test]
fn oap_negotiation_matrix_in_the_simulator() {
    let p256 = EncConf::default();
    let p384 = EncConf {
        kex: Kex::P384,
        ..EncConf::default()
    };
    let chacha = EncConf {
        cipher: Cipher::ChaCha20Poly1305,
        ..EncConf::default()
    };
    let server = |enc: Option<EncConf>, downgrade: bool| ServerOap { enc, downgrade };
    // (client enc.conf, server, expected: Ok(encrypted?) or Err(what the failure says))
    let cases: Vec<(Option<EncConf>, ServerOap, Result<bool, &str>)> = vec![
        (None, server(None, false), Ok(false)),
        (Some(p256), server(None, false), Ok(true)),
        (
            None,
            server(Some(p256), false),
            Err("refused the flow (response -1)"),
        ),
        (Some(p384), server(Some(p256), false), Ok(true)),
        (
            Some(p256),
            server(Some(p384), false),
            Err("refused the flow (response -1)"),
        ),
        (
            Some(chacha),
            server(None, true),
            Err("refused by the client: the server chose Aes128Gcm"),
        ),
    ];
    let cfg = ShimConfig::new(ShimKind::Dix, 32);
    let t0 = Instant::now();
    let mut hosts: Vec<Host> = (0..2 * cases.len()).map(|i| Host::new(i, &cfg)).collect();
    for (k, (client, srv, _)) in cases.iter().enumerate() {
        hosts[2 * k].client_enc = *client;
        hosts[2 * k + 1].server = *srv;
        let to = HashAlgo::Sha3_256.hash(&format!("host-{}", 2 * k + 1));
        hosts[2 * k].wants.push((t0 + MS, to));
    }
    let mut sim = Sim::new(t0, 5, LinkModel::ideal(Duration::from_micros(100)), hosts);
    sim.run_until(t0 + Duration::from_secs(10));
    for (k, (_, _, want)) in cases.iter().enumerate() {
        let (client, srv) = (&sim.nodes[2 * k], &sim.nodes[2 * k + 1]);
        let got = client.outcomes.first().map(|(_, o)| o.clone());
        match (want, got) {
            (Ok(enc), Some(Outcome::Up { local, key, .. })) => {
                assert_eq!(key.is_some(), *enc, "case {k}");
                assert_eq!(
                    srv.server_keys.get(&(client.mac, local)),
                    Some(&key),
                    "case {k}: both ends hold the same key"
                );
            }
            (Err(why), Some(Outcome::Failed(e))) => assert!(e.contains(why), "case {k}: {e}"),
            (want, got) => panic!(
                "case {k}: want {want:?}, got {got:?} (server refused: {:?})",
                srv.refused
            ),
        }
    }
    // The servers' refusals say why.
    assert!(
        sim.nodes[5].refused[0].contains("requires it"),
        "{:?}",
        sim.nodes[5].refused
    );
    assert!(
        sim.nodes[9].refused[0].contains("weaker"),
        "{:?}",
        sim.nodes[9].refused
    );
}

/// A run without the trace (millions of frames) keeps none but counts every frame, and the
/// virtual time it reports is the time it reached.
#[test]
fn a_run_without_tracing_keeps_no_lines_and_tells_the_virtual_time_it_reached() {
    let cfg = ShimConfig::new(ShimKind::Dix, 32);
    let t0 = Instant::now();
    let hosts = (0..HOSTS).map(|i| Host::new(i, &cfg)).collect();
    let mut sim = Sim::new(t0, 9, LinkModel::ideal(Duration::from_micros(100)), hosts);
    sim.set_tracing(false);
    for i in 0..HOSTS {
        let to = (i + 1) % HOSTS;
        sim.nodes[i]
            .wants
            .push((t0 + MS, HashAlgo::Sha3_256.hash(&format!("host-{to}"))));
    }
    sim.run_until(t0 + Duration::from_millis(300));
    assert!(sim.trace().is_empty(), "{} lines", sim.trace().len());
    assert!(sim.stats().delivered > HOSTS as u64, "{:?}", sim.stats());
    // Nothing lost on an ideal segment: every frame sent reached a node at least.
    assert!(
        sim.stats().sent > 0 && sim.stats().delivered >= sim.stats().sent,
        "{:?}",
        sim.stats()
    );
    assert!(sim.elapsed() >= MS, "{:?}", sim.elapsed());
    assert_eq!(sim.elapsed(), sim.now() - t0);
    // With the trace on, the same run has a line per frame at least.
    let hosts = (0..HOSTS).map(|i| Host::new(i, &cfg)).collect();
    let mut traced = Sim::new(t0, 9, LinkModel::ideal(Duration::from_micros(100)), hosts);
    for i in 0..HOSTS {
        let to = (i + 1) % HOSTS;
        traced.nodes[i]
            .wants
            .push((t0 + MS, HashAlgo::Sha3_256.hash(&format!("host-{to}"))));
    }
    traced.run_until(t0 + Duration::from_millis(300));
    assert!(traced.trace().len() as u64 >= traced.stats().delivered);
}

/// Jitter delays a frame by up to its bound, never less than the delay: on a link of no
/// delay and 2 ms of jitter, deliveries come later than the sends, spread over the bound.
#[test]
fn jitter_delays_frames_after_they_are_sent_and_spreads_them() {
    let cfg = ShimConfig::new(ShimKind::Dix, 32);
    let t0 = Instant::now();
    let hosts = (0..HOSTS).map(|i| Host::new(i, &cfg)).collect();
    let link = LinkModel {
        delay: Duration::ZERO,
        jitter: 2 * MS,
        loss: 0.0,
        duplicate: 0.0,
    };
    let mut sim = Sim::new(t0, 11, link, hosts);
    sim.nodes[0]
        .wants
        .push((t0 + MS, HashAlgo::Sha3_256.hash("host-1")));
    sim.run_until(t0 + Duration::from_millis(100));
    let us = |l: &str| {
        l.split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
    };
    let sends: Vec<u64> = sim
        .trace()
        .iter()
        .filter(|l| l.contains(" send "))
        .filter_map(|l| us(l))
        .collect();
    let recvs: Vec<u64> = sim
        .trace()
        .iter()
        .filter(|l| l.contains(" recv "))
        .filter_map(|l| us(l))
        .collect();
    // The first query's broadcast reaches the other 49 hosts over the next 2 ms.
    let first = sends[0];
    let of_first: Vec<u64> = recvs
        .iter()
        .copied()
        .filter(|t| *t < first + 2_000)
        .collect();
    assert!(of_first.len() >= HOSTS / 2, "{:?}", &sim.trace()[..5]);
    assert!(of_first.iter().all(|t| *t >= first));
    let spread = of_first.iter().max().unwrap() - of_first.iter().min().unwrap();
    assert!(
        spread >= 1_000,
        "deliveries within {spread} us of each other"
    );
    // The trace names the hosts and MACs (by their last two bytes): host 0's query to
    // everyone, host 1 receiving it from host 0's MAC.
    let trace = sim.trace();
    assert!(
        trace.iter().any(|l| l.contains(" send 0 -> all ")),
        "{:?}",
        &trace[..3]
    );
    assert!(
        trace.iter().any(|l| l.contains(" recv 1 <- 0000 ")),
        "{:?}",
        &trace[..3]
    );
}

/// `run_until(t)` handles what is due at `t` itself: a host that wants a name at 1 ms has
/// sent its query when a run until exactly 1 ms returns.
#[test]
fn a_run_until_a_time_handles_what_is_due_at_that_time() {
    let cfg = ShimConfig::new(ShimKind::Dix, 32);
    let t0 = Instant::now();
    let hosts = (0..2).map(|i| Host::new(i, &cfg)).collect();
    let mut sim = Sim::new(t0, 3, LinkModel::ideal(Duration::from_micros(100)), hosts);
    sim.nodes[0]
        .wants
        .push((t0 + MS, HashAlgo::Sha3_256.hash("host-1")));
    sim.run_until(t0 + MS);
    assert_eq!(sim.stats().sent, 1, "{:?}", sim.trace());
    assert!(sim.nodes[0].wants.is_empty());
}
