#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
use super::*;
use o7s_wire::qos::QosSpec;
use o7s_wire::unicast::pb::CepMsg;
use prost::Message;
use std::collections::BTreeSet;
use std::collections::HashSet;

const A: u64 = 0x0a0a_0001;
const B: u64 = 0x0b0b_0002;
const UNIX: UnixTime = UnixTime::from_secs(1_796_083_200);
/// A's end of an N-1 flow is B's + this (the two ends name a flow differently).
const OFF: u64 = 100;

/// Two IPCPs joined by N-1 flows, B's flow `f` being A's `f + OFF`.
struct Pair {
    a: UnicastIpcp,
    b: UnicastIpcp,
    ev_a: Vec<Event>,
    ev_b: Vec<Event>,
    accepted: HashSet<u64>,
    /// The virtual time.
    now: Instant,
    /// A's directory messages to B are lost.
    drop_a_dht: bool,
}

impl Pair {
    fn new(cfg: UniConfig) -> Self {
        Self::new_with(cfg, &|m, _| m)
    }

    /// [`Pair::new`] with each machine (A's, B's, by address) made by `f`.
    fn new_with(cfg: UniConfig, f: &dyn Fn(UnicastIpcp, u64) -> UnicastIpcp) -> Self {
        let now = Instant::now();
        let mut a = f(UnicastIpcp::new(cfg, 1), A);
        a.propose_address(A);
        assert_eq!(a.bootstrap(now, IpcpConfigMsg::unicast_default("l", 0)), A);
        let mut b = f(UnicastIpcp::new(cfg, 2), B);
        b.propose_address(B);
        let mut p = Self {
            a,
            b,
            ev_a: vec![],
            ev_b: vec![],
            accepted: HashSet::new(),
            now,
            drop_a_dht: false,
        };
        p.pump();
        p
    }

    /// Delivers everything in flight, both ways, until nothing moves.
    fn pump(&mut self) {
        let now = self.now;
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                let dht = t.sdu.get(7..PCI_LEN) == Some(&EID_DHT.to_le_bytes()[..]);
                if !(self.drop_a_dht && t.flow == 3 + OFF && dht) {
                    self.b.handle_sdu(now, UNIX, t.flow - OFF, &t.sdu);
                }
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                let f = t.flow + OFF;
                if self.accepted.insert(f) {
                    self.a.accept(now, f, 7);
                }
                self.a.handle_sdu(now, UNIX, f, &t.sdu);
            }
            while let Some(e) = self.a.poll_event() {
                moved = true;
                self.ev_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                moved = true;
                self.ev_b.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the two IPCPs talk without end");
    }

    /// Runs both machines' timers up to `until`.
    fn run(&mut self, until: Instant) {
        for _ in 0..100_000 {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("a timer that does not go away");
    }

    /// B enrols through A (flow 1), then connects Management (2) and DT (3); link
    /// state computes the routes.
    fn join(cfg: UniConfig) -> Self {
        Self::join_with(cfg, &|m, _| m)
    }

    /// [`Pair::join`] with each machine made by `f` (see [`Pair::new_with`]).
    fn join_with(cfg: UniConfig, f: &dyn Fn(UnicastIpcp, u64) -> UnicastIpcp) -> Self {
        let mut p = Self::new_with(cfg, f);
        let now = p.now;
        p.b.enrol(now, 1, 7);
        p.pump();
        p.b.connect(now, 2, Component::Management, 7);
        p.b.connect(now, 3, Component::DataTransfer, 7);
        p.pump();
        let until = p.now + Duration::from_secs(10);
        p.run(until);
        p
    }
}

fn key(s: &str) -> Key {
    o7s_wire::hash::HashAlgo::Sha3_256.hash(s)
}

#[test]
fn an_enrolled_ipcp_connects_routes_and_each_end_names_the_other() {
    let p = Pair::join(UniConfig::default());
    assert_eq!(p.ev_a.first(), Some(&Event::InLayer { addr: A }));
    assert!(p.ev_b.contains(&Event::InLayer { addr: B }));
    assert!(p.ev_b.contains(&Event::Close { flow: 1 }));
    for (flow, comp) in [(2, Component::Management), (3, Component::DataTransfer)] {
        assert!(p.ev_b.contains(&Event::Connected {
            flow,
            comp,
            peer_addr: A
        }));
        assert!(p.ev_a.contains(&Event::Connected {
            flow: flow + OFF,
            comp,
            peer_addr: B
        }));
    }
    assert!(p.ev_a.contains(&Event::TableChanged));
    assert!(p.ev_b.contains(&Event::TableChanged));
    assert_eq!((p.a.addr(), p.b.addr()), (Some(A), Some(B)));
    assert_eq!(p.b.next_hop(A), Some(3));
    assert_eq!(p.a.next_hop(B), Some(3 + OFF));
    assert_eq!(p.b.next_hop(0x0c0c_0003), None);
    assert_eq!(p.b.link_state().unwrap().addr(), B);
    assert_eq!(
        p.b.connections().connected(2),
        Some((Component::Management, A))
    );
    // The layer's TTL came with the configuration.
    assert_eq!(p.b.max_ttl(), 60);
    // The directory joined through the enroller (A), once at once and once again.
    assert_eq!(p.b.dht().unwrap().contacts(), 1);
    assert!(p.a.dht().unwrap().contacts() >= 1);
    assert_eq!(p.b.fa().unwrap().counters(), fa::Counters::default());
    // Bootstrapping again changes nothing.
    let mut a = p.a;
    assert_eq!(
        a.bootstrap(p.now, IpcpConfigMsg::unicast_default("x", 0)),
        A
    );
}

#[test]
fn a_name_published_at_one_end_is_found_and_a_flow_allocated_from_the_other() {
    let mut p = Pair::join(UniConfig::default());
    let now = p.now;
    p.a.register(now, UNIX, key("srv"));
    p.a.register(now, UNIX, key("srv"));
    p.pump();
    let id = p.b.lookup(now, UNIX, key("srv")).unwrap();
    p.pump();
    let until = now + Duration::from_secs(3);
    p.run(until);
    let found = p.ev_b.iter().find_map(|e| match e {
        Event::Dir(dht::Event::Found { id: i, addrs, .. }) if *i == id => Some(addrs.clone()),
        _ => None,
    });
    assert_eq!(found, Some(vec![A]));
    let (alloc, local) =
        p.b.alloc(
            p.now,
            A,
            &key("srv"),
            QosSpec::RAW,
            b"oap",
            Duration::from_secs(5),
        )
        .unwrap();
    p.pump();
    let req = p
        .ev_a
        .iter()
        .find_map(|e| match e {
            Event::Fa(fa::Event::Incoming {
                req, peer, hash, ..
            }) => {
                assert_eq!((*peer, hash.as_slice()), (B, key("srv").as_slice()));
                Some(*req)
            }
            _ => None,
        })
        .unwrap();
    let (a_local, a_remote, a_peer) = p.a.accept_flow(p.now, req, b"ok").unwrap();
    assert_eq!((a_remote, a_peer), (local, B));
    p.pump();
    let got = p.ev_b.iter().find_map(|e| match e {
        Event::Fa(fa::Event::Allocated {
            id,
            local: l,
            remote,
            peer,
            ..
        }) if *id == alloc => Some((*l, *remote, *peer)),
        _ => None,
    });
    assert_eq!(got, Some((local, a_local, A)));
    // A second request, refused: B hears of it.
    let (alloc2, _) =
        p.b.alloc(
            p.now,
            A,
            &key("srv"),
            QosSpec::RAW,
            &[],
            Duration::from_secs(5),
        )
        .unwrap();
    p.pump();
    let req2 = p
        .ev_a
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Fa(fa::Event::Incoming { req, .. }) => Some(*req),
            _ => None,
        })
        .unwrap();
    assert_ne!(req2, req);
    p.a.refuse_flow(p.now, req2, -1).unwrap();
    assert_eq!(
        p.a.refuse_flow(p.now, req2, -1),
        Err(UniError::Fa(FaError::UnknownRequest))
    );
    assert_eq!(
        p.a.accept_flow(p.now, req2, &[]),
        Err(UniError::Fa(FaError::UnknownRequest))
    );
    p.pump();
    assert!(p.ev_b.iter().any(|e| matches!(
        e,
        Event::Fa(fa::Event::AllocFailed { id, .. }) if *id == alloc2
    )));
    // Withdrawn: A's own copy goes (others expire).
    p.a.unregister(&key("srv"));
    assert!(p.a.dht().unwrap().known(&key("srv"), UNIX).is_empty());
}

#[test]
fn a_name_registered_before_the_directory_can_store_it_waits_for_it() {
    let cfg = UniConfig::default();
    let mut p = Pair::new(cfg);
    let now = p.now;
    // B is in no layer: it keeps the name.
    p.b.register(now, UNIX, key("early"));
    assert_eq!(p.b.lookup(now, UNIX, key("x")), Err(UniError::NotInLayer));
    assert_eq!(
        p.b.alloc(now, A, &key("x"), QosSpec::RAW, &[], Duration::from_secs(1)),
        Err(UniError::NotInLayer)
    );
    assert_eq!(
        p.b.accept_flow(now, fa::ReqId(1), &[]),
        Err(UniError::NotInLayer)
    );
    assert_eq!(
        p.b.refuse_flow(now, fa::ReqId(1), -1),
        Err(UniError::NotInLayer)
    );
    p.b.enrol(now, 1, 7);
    p.pump();
    p.b.connect(now, 2, Component::Management, 7);
    p.b.connect(now, 3, Component::DataTransfer, 7);
    p.pump();
    // In the layer, but its directory has no contact yet: still kept.
    assert!(p.b.dht().unwrap().known(&key("early"), UNIX).is_empty());
    let until = p.now + Duration::from_secs(10);
    p.run(until);
    // Published once it had one: A, its closest, stores it.
    assert_eq!(p.b.dht().unwrap().known(&key("early"), UNIX), [B]);
    assert_eq!(p.a.dht().unwrap().known(&key("early"), UNIX), [B]);
}

#[test]
fn dt_pdus_for_others_are_forwarded_with_the_ttl_down_and_bad_ones_counted() {
    let mut p = Pair::join(UniConfig::default());
    let now = p.now;
    let c = p.b.counters();
    // For A, arriving at B on its DT flow (from a third IPCP, say): forwarded to A.
    let pdu = dt_pdu(A, 9, 5, b"hop");
    p.b.handle_sdu(now, UNIX, 3, &pdu);
    let t = p.b.poll_transmit().unwrap();
    assert_eq!(t.flow, 3);
    assert_eq!(t.sdu, dt_pdu(A, 9, 4, b"hop"));
    assert_eq!(p.b.counters().forwarded, c.forwarded + 1);
    // Its TTL at 1: dropped. Nowhere to go: dropped.
    p.b.handle_sdu(now, UNIX, 3, &dt_pdu(A, 9, 1, b"x"));
    p.b.handle_sdu(now, UNIX, 3, &dt_pdu(0x0c0c_0003, 9, 9, b"x"));
    // For B: too short, or an endpoint that is neither the directory nor the FA.
    p.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 9, 9, b"x")[..PCI_LEN - 1]);
    p.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
    assert_eq!(p.b.poll_transmit(), None);
    let d = p.b.counters();
    assert_eq!(
        (d.ttl_dropped, d.no_route, d.dt_dropped),
        (c.ttl_dropped + 1, c.no_route + 1, c.dt_dropped + 2)
    );
    // A PDU on a flow that carries no DT is not one (its CEP is awaited).
    let mut lone = UnicastIpcp::new(UniConfig::default(), 3);
    lone.handle_sdu(now, UNIX, 3, &dt_pdu(B, 1, 9, b"x"));
    assert_eq!(lone.counters(), Counters::default());
    // An IPCP in no layer that took a DT flow: its PDUs are dropped and counted.
    lone.accept(now, 4, 1);
    let cep = CepMsg::new(Component::DataTransfer, B).encode_to_vec();
    lone.handle_sdu(now, UNIX, 4, &cep);
    assert_eq!(
        lone.connections().connected(4),
        Some((Component::DataTransfer, B))
    );
    lone.handle_sdu(now, UNIX, 4, &dt_pdu(B, 1, 9, b"x"));
    assert_eq!(lone.counters().dt_dropped, 1);
}

#[test]
fn a_message_without_a_route_waits_and_is_dropped_after_the_hold() {
    let cfg = UniConfig {
        hold_max: 2,
        ..UniConfig::default()
    };
    let mut p = Pair::join(cfg);
    let t = p.now;
    let far = 0x0c0c_0003;
    for _ in 0..3 {
        p.b.alloc(
            t,
            far,
            &key("x"),
            QosSpec::RAW,
            &[],
            Duration::from_secs(60),
        )
        .unwrap();
    }
    assert_eq!(p.b.poll_transmit(), None);
    let c = p.b.counters();
    assert_eq!(
        (c.held, c.held_dropped),
        (2, 1),
        "two wait, the third is dropped"
    );
    // The hold's end is a timer; at it both go.
    let due = p.b.poll_timeout().unwrap();
    assert!(due > t && due <= t + cfg.hold_for, "{:?}", due - t);
    p.b.handle_timeout(t + cfg.hold_for - Duration::from_millis(1));
    assert_eq!(p.b.counters().held_dropped, 1);
    p.b.handle_timeout(t + cfg.hold_for);
    assert_eq!(p.b.counters().held_dropped, 3);
    // A message to A (which has a route) is not held.
    p.b.alloc(t, A, &key("x"), QosSpec::RAW, &[], Duration::from_secs(60))
        .unwrap();
    let out = p.b.poll_transmit().unwrap();
    assert_eq!(out.flow, 3);
    assert_eq!(&out.sdu[..4], &(A as u32).to_le_bytes());
    assert_eq!(out.sdu[5], 60, "the layer's TTL");
    assert_eq!(p.b.counters().held, 2);
}

/// Directory messages without a route (answers go to whatever address a request claims)
/// take at most half the hold: FLOW_REQs still wait in the rest.
#[test]
fn directory_messages_take_at_most_half_the_hold() {
    let cfg = UniConfig {
        hold_max: 4,
        ..UniConfig::default()
    };
    let mut p = Pair::join(cfg);
    let t = p.now;
    for i in 0..4u64 {
        p.b.dt_send(t, 0x0c0c_0100 + i, EID_DHT, vec![1]);
    }
    let c = p.b.counters();
    assert_eq!(
        (c.held, c.held_dropped),
        (2, 2),
        "two directory messages wait"
    );
    for _ in 0..3 {
        p.b.alloc(
            t,
            0x0c0c_0003,
            &key("x"),
            QosSpec::RAW,
            &[],
            Duration::from_secs(60),
        )
        .unwrap();
    }
    let c = p.b.counters();
    assert_eq!(
        (c.held, c.held_dropped),
        (4, 3),
        "two FLOW_REQs wait in the rest"
    );
}

#[test]
fn a_neighbour_beyond_its_budget_is_dropped_and_counted() {
    let cfg = UniConfig {
        neighbour_rate: 4,
        neighbour_burst: 0,
        ..UniConfig::default()
    };
    let mut p = Pair::join(cfg);
    let now = p.now + Duration::from_secs(5);
    let c = p.b.counters();
    for _ in 0..10 {
        p.b.handle_sdu(now, UNIX, 2, &[0u8; 24]);
        p.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
    }
    let d = p.b.counters();
    assert_eq!(d.lsa_rate_dropped - c.lsa_rate_dropped, 6);
    assert_eq!(d.dt_rate_dropped - c.dt_rate_dropped, 6);
    assert_eq!(d.dt_dropped - c.dt_dropped, 4);
    // A burst of its own: 10 at once, then 4 a second.
    let mut w = Pair::join(UniConfig {
        neighbour_rate: 4,
        neighbour_burst: 10,
        ..UniConfig::default()
    });
    let now = w.now + Duration::from_secs(5);
    for _ in 0..20 {
        w.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
    }
    let before = w.b.counters().dt_rate_dropped;
    assert_eq!(before, 10);
    w.b.handle_sdu(
        now + Duration::from_millis(250),
        UNIX,
        3,
        &dt_pdu(B, 2, 9, b"x"),
    );
    assert_eq!(
        w.b.counters().dt_rate_dropped,
        before,
        "a token a quarter second"
    );
    // Unbounded with a rate of 0.
    let mut q = Pair::join(UniConfig {
        neighbour_rate: 0,
        ..UniConfig::default()
    });
    let now = q.now;
    for _ in 0..3000 {
        q.b.handle_sdu(now, UNIX, 3, &dt_pdu(B, 2, 9, b"x"));
    }
    assert_eq!(q.b.counters().dt_rate_dropped, 0);
}

#[test]
fn a_neighbour_that_moves_takes_the_flows_of_its_link_along() {
    let mut p = Pair::join(UniConfig::default());
    let now = p.now;
    let new = 0x0b0b_0099;
    // Another IPCP with B's address (a collision not yet resolved) on another link (8):
    // its Management flow to A stays where it is when B moves.
    p.a.accept(now, 200, 8);
    let cep = CepMsg::new(Component::Management, B).encode_to_vec();
    p.a.handle_sdu(now, UNIX, 200, &cep);
    assert_eq!(
        p.a.connections().connected(200),
        Some((Component::Management, B))
    );
    while p.a.poll_transmit().is_some() {}
    while p.a.poll_event().is_some() {}
    // B's Management CEP with its new address, on A's Management flow.
    let cep = CepMsg::new(Component::Management, new).encode_to_vec();
    p.a.handle_sdu(now, UNIX, 2 + OFF, &cep);
    let moved = p.a.poll_event();
    assert_eq!(
        moved,
        Some(Event::NeighbourMoved {
            flow: 2 + OFF,
            old: B,
            new,
            moved: vec![2 + OFF, 3 + OFF],
        })
    );
    assert_eq!(p.a.counters().neighbours_moved, 1);
    assert_eq!(
        p.a.connections().connected(3 + OFF),
        Some((Component::DataTransfer, new))
    );
    assert_eq!(
        p.a.connections().connected(200),
        Some((Component::Management, B))
    );
    // A's own link now names the new address (B, which did not really move, still
    // announces the old one: no route either way until it does).
    let own: Vec<u64> =
        p.a.link_state()
            .unwrap()
            .lsdb()
            .iter()
            .filter(|((s, _), _)| *s == A)
            .map(|((_, d), _)| *d)
            .collect();
    assert_eq!(own, [new]);
    while p.a.poll_event().is_some() {}
    // A CEP naming no new address (0, ours, the same) is counted and changes nothing.
    for bad in [0, A, new] {
        let cep = CepMsg::new(Component::Management, bad).encode_to_vec();
        p.a.handle_sdu(now, UNIX, 2 + OFF, &cep);
    }
    assert_eq!(p.a.counters().neighbours_moved, 1);
    assert_eq!(p.a.poll_event(), None);
}

#[test]
fn a_dt_connection_naming_us_0_or_another_links_neighbour_is_refused_and_closed() {
    let mut p = Pair::join(UniConfig::default());
    let now = p.now;
    assert_eq!(p.a.dt_neighbours().get(&B), Some(&(3 + OFF)));
    while p.a.poll_event().is_some() {}
    // On other links (8, 9, 10): B's address (another member's claim), 0, and ours.
    let wide = (1u64 << 32) + B;
    for (flow, link, addr) in [(300, 8, B), (301, 9, 0), (302, 10, A), (304, 11, wide)] {
        p.a.accept(now, flow, link);
        let cep = CepMsg::new(Component::DataTransfer, addr).encode_to_vec();
        p.a.handle_sdu(now, UNIX, flow, &cep);
        let ev: Vec<Event> = std::iter::from_fn(|| p.a.poll_event()).collect();
        assert!(
            ev.contains(&Event::ClaimRefused { flow, addr }) && ev.contains(&Event::Close { flow }),
            "{ev:?}"
        );
        assert!(
            !ev.iter().any(|e| matches!(e, Event::Connected { .. })),
            "{ev:?}"
        );
    }
    assert_eq!(p.a.counters().address_claims_refused, 4);
    assert_eq!(
        p.a.dt_neighbours().get(&B),
        Some(&(3 + OFF)),
        "B's traffic stays B's"
    );
    assert!(!p.a.dt_neighbours().contains_key(&0) && !p.a.dt_neighbours().contains_key(&A));
    // The refused flow going down takes nothing with it.
    p.a.flow_down(now, 300);
    assert_eq!(p.a.dt_neighbours().get(&B), Some(&(3 + OFF)));
    // A newer DT connection over B's own link (7) takes the old one's place.
    p.a.accept(now, 303, 7);
    let cep = CepMsg::new(Component::DataTransfer, B).encode_to_vec();
    p.a.handle_sdu(now, UNIX, 303, &cep);
    assert_eq!(p.a.dt_neighbours().get(&B), Some(&303));
    assert_eq!(p.a.counters().address_claims_refused, 4);
}

#[test]
fn a_neighbour_moves_once_per_hold_and_never_onto_another_links_neighbour() {
    let cfg = UniConfig::default();
    let mut p = Pair::join(cfg);
    let now = p.now;
    let (n1, n2) = (0x0b0b_0001, 0x0b0b_0002);
    let c = 0x0c0c_0c0c;
    // C, a DT neighbour on link 8.
    p.a.accept(now, 300, 8);
    let cep = CepMsg::new(Component::DataTransfer, c).encode_to_vec();
    p.a.handle_sdu(now, UNIX, 300, &cep);
    assert_eq!(p.a.dt_neighbours().get(&c), Some(&300));
    while p.a.poll_event().is_some() {}
    let move_to = |p: &mut Pair, at: Instant, addr: u64| {
        let cep = CepMsg::new(Component::Management, addr).encode_to_vec();
        p.a.handle_sdu(at, UNIX, 2 + OFF, &cep);
        std::iter::from_fn(|| p.a.poll_event()).collect::<Vec<Event>>()
    };
    // B may not take C's address, nor one wider than the layer's.
    for addr in [c, (1 << 32) + 7] {
        let ev = move_to(&mut p, now, addr);
        assert_eq!(
            ev,
            [Event::ClaimRefused {
                flow: 2 + OFF,
                addr
            }]
        );
    }
    assert_eq!(p.a.dt_neighbours().get(&c), Some(&300));
    assert_eq!(p.a.dt_neighbours().get(&B), Some(&(3 + OFF)));
    // A first move is taken; a second within the hold is dropped and counted.
    let ev = move_to(&mut p, now, n1);
    assert!(
        matches!(ev.first(), Some(Event::NeighbourMoved { new, .. }) if *new == n1),
        "{ev:?}"
    );
    // Half of the mover's own hold here (its first CEP may have come late).
    let hold = cfg.readdress_hold / 2;
    let later = now + hold - Duration::from_millis(1);
    // The same move said again (a second Management flow's copy) is no second move.
    assert_eq!(move_to(&mut p, now, n1), []);
    assert_eq!(p.a.counters().neighbour_moves_held, 0);
    assert_eq!(move_to(&mut p, later, n2), []);
    assert_eq!(p.a.counters().neighbour_moves_held, 1);
    assert_eq!(p.a.dt_neighbours().get(&n1), Some(&(3 + OFF)));
    // Once the hold is over it may move again.
    let ev = move_to(&mut p, now + hold, n2);
    assert!(
        matches!(ev.first(), Some(Event::NeighbourMoved { new, .. }) if *new == n2),
        "{ev:?}"
    );
    assert_eq!(p.a.dt_neighbours().get(&n2), Some(&(3 + OFF)));
    assert_eq!(p.a.counters().neighbours_moved, 2);
    assert_eq!(p.a.counters().address_claims_refused, 2);
    // Moving by connecting again over the same link (7) with another address is a move
    // too: held within the hold, closed and counted; taken after it.
    let n3 = 0x0b0b_0003;
    let connect = |p: &mut Pair, at: Instant, flow: u64| {
        p.a.accept(at, flow, 7);
        let cep = CepMsg::new(Component::DataTransfer, n3).encode_to_vec();
        p.a.handle_sdu(at, UNIX, flow, &cep);
        std::iter::from_fn(|| p.a.poll_event()).collect::<Vec<Event>>()
    };
    let ev = connect(&mut p, now + hold + Duration::from_secs(1), 310);
    assert!(ev.contains(&Event::Close { flow: 310 }), "{ev:?}");
    assert_eq!(p.a.counters().neighbour_moves_held, 2);
    assert_eq!(p.a.dt_neighbours().get(&n3), None);
    let ev = connect(&mut p, now + hold * 2, 311);
    assert!(!ev.contains(&Event::Close { flow: 311 }), "{ev:?}");
    assert_eq!(p.a.dt_neighbours().get(&n3), Some(&311));
    // The old address is retired with the move (its flow may stay up a while): another
    // connection to the new address at once is no move.
    assert_eq!(p.a.dt_neighbours().get(&n2), None);
    let ev = connect(&mut p, now + hold * 2 + Duration::from_secs(1), 312);
    assert!(!ev.contains(&Event::Close { flow: 312 }), "{ev:?}");
    assert_eq!(p.a.dt_neighbours().get(&n3), Some(&312));
    assert_eq!(p.a.counters().neighbour_moves_held, 2);
}

#[test]
fn moves_are_held_per_link_and_remembered_only_for_the_hold() {
    let cfg = UniConfig::default();
    let mut p = Pair::join(cfg);
    let t = p.now;
    let dt = |p: &mut Pair, at: Instant, flow: u64, link: u64, addr: u64| {
        p.a.accept(at, flow, link);
        let cep = CepMsg::new(Component::DataTransfer, addr).encode_to_vec();
        p.a.handle_sdu(at, UNIX, flow, &cep);
        std::iter::from_fn(|| p.a.poll_event()).any(|e| e == Event::Close { flow })
    };
    // A first DT neighbour on a new link (12) is no move; its second address, at once, is
    // the link's first move; a third within the hold is held.
    assert!(!dt(&mut p, t, 400, 12, 0x0e0e_0001));
    assert!(!dt(
        &mut p,
        t + Duration::from_secs(1),
        401,
        12,
        0x0e0e_0002
    ));
    assert!(dt(&mut p, t + Duration::from_secs(2), 402, 12, 0x0e0e_0003));
    // Link 8 moves at t + 10 s, link 9 at t + hold + 9 s; B (link 7) moves at exactly
    // t + 10 s + readdress_hold: what link 8 did is forgotten, link 9's is not.
    assert!(!dt(&mut p, t, 410, 8, 0x0c0c_0001));
    assert!(!dt(
        &mut p,
        t + Duration::from_secs(10),
        411,
        8,
        0x0c0c_0002
    ));
    let t9 = t + cfg.readdress_hold + Duration::from_secs(9);
    assert!(!dt(&mut p, t, 420, 9, 0x0d0d_0001));
    assert!(!dt(&mut p, t9, 421, 9, 0x0d0d_0002));
    let tb = t + Duration::from_secs(10) + cfg.readdress_hold;
    // To the widest address there is: a move like any.
    let top = u64::from(u32::MAX);
    let cep = CepMsg::new(Component::Management, top).encode_to_vec();
    p.a.handle_sdu(tb, UNIX, 2 + OFF, &cep);
    assert_eq!(p.a.dt_neighbours().get(&top), Some(&(3 + OFF)));
    let mut links: Vec<u64> = p.a.moved_at.keys().copied().collect();
    links.sort_unstable();
    assert_eq!(
        links,
        [7, 9],
        "link 12's move (t + 1 s) and link 8's are forgotten"
    );
}

#[test]
fn a_flow_down_takes_its_link_out_of_the_routes() {
    let mut p = Pair::join(UniConfig::default());
    let now = p.now;
    // A second DT flow to A takes the place of the first: the first going down
    // leaves the link up.
    p.b.connect(now, 4, Component::DataTransfer, 7);
    p.pump();
    assert!(p.ev_b.contains(&Event::Connected {
        flow: 4,
        comp: Component::DataTransfer,
        peer_addr: A
    }));
    let until = p.now + Duration::from_secs(10);
    p.run(until);
    assert_eq!(p.b.next_hop(A), Some(4));
    p.b.flow_down(p.now, 3);
    assert_eq!(p.b.connections().connected(3), None);
    let until = p.now + Duration::from_secs(10);
    p.run(until);
    assert_eq!(p.b.next_hop(A), Some(4));
    // The Management flow down: link state sends nothing on it any more (the DT
    // link's removal below is flooded to no one).
    p.b.flow_down(p.now, 2);
    assert_eq!(p.b.connections().connected(2), None);
    while p.b.poll_transmit().is_some() {}
    let t = p.now;
    p.b.flow_down(t, 4);
    // B's own transmits for 20 s, kept from A: none on the flow that is down.
    let mut flows = vec![];
    for i in 0..200u32 {
        p.b.handle_timeout(t + Duration::from_millis(100) * i);
        flows.extend(std::iter::from_fn(|| p.b.poll_transmit()).map(|t| t.flow));
    }
    assert_eq!(p.b.next_hop(A), None);
    assert!(
        !flows.contains(&2),
        "an LSA on a flow that is down: {flows:?}"
    );
}

#[test]
fn a_bootstrapper_joins_no_directory_through_the_peer_its_configuration_names() {
    let now = Instant::now();
    let mut a = UnicastIpcp::new(UniConfig::default(), 1);
    a.propose_address(A);
    a.bootstrap(now, IpcpConfigMsg::unicast_default("l", 0x77));
    a.register(now, UNIX, key("n"));
    assert_eq!(
        a.dht().unwrap().known(&key("n"), UNIX),
        [A],
        "published at once"
    );
}

#[test]
fn the_layer_configuration_sets_link_state_and_the_directory() {
    let mut conf = IpcpConfigMsg::unicast_default("l", 0);
    let u = conf.unicast.as_mut().unwrap();
    let ls = u.dt.routing.ls.as_mut().unwrap();
    (ls.t_recalc, ls.t_update, ls.t_timeo, ls.pol) = (3, 20, 70, 1);
    let d = u.dir.dht.as_mut().unwrap();
    (d.alpha, d.k, d.t_expire, d.t_refresh, d.t_replicate) = (2, 5, 100, 50, 40);
    let l = ls_config(&conf);
    assert_eq!(
        (l.t_recalc, l.t_update, l.t_timeo, l.policy, l.hold),
        (
            Duration::from_secs(3),
            Duration::from_secs(20),
            Duration::from_secs(70),
            Policy::Lfa,
            Duration::from_millis(100)
        )
    );
    let ls = conf
        .unicast
        .as_mut()
        .unwrap()
        .dt
        .routing
        .ls
        .as_mut()
        .unwrap();
    (ls.t_recalc, ls.pol) = (0, 2);
    let l = ls_config(&conf);
    assert_eq!(
        (l.t_recalc, l.policy),
        (Duration::from_secs(1), Policy::Ecmp)
    );
    conf.unicast
        .as_mut()
        .unwrap()
        .dt
        .routing
        .ls
        .as_mut()
        .unwrap()
        .pol = 7;
    assert_eq!(ls_config(&conf).policy, Policy::Simple);
    // An enroller's timers are brought within ls_bounds, as the file's are.
    let ls = conf
        .unicast
        .as_mut()
        .unwrap()
        .dt
        .routing
        .ls
        .as_mut()
        .unwrap();
    (ls.t_recalc, ls.t_update, ls.t_timeo) = (u32::MAX, 0, u32::MAX);
    let l = ls_config(&conf);
    assert_eq!(
        (l.t_recalc, l.t_update, l.t_timeo),
        (
            Duration::from_secs(3600),
            Duration::from_secs(1),
            Duration::from_secs(86_400)
        )
    );
    // A record outlives two update periods, whatever t_timeo says.
    let ls = conf
        .unicast
        .as_mut()
        .unwrap()
        .dt
        .routing
        .ls
        .as_mut()
        .unwrap();
    (ls.t_update, ls.t_timeo) = (3600, 1);
    let l = ls_config(&conf);
    assert_eq!(
        (l.t_update, l.t_timeo),
        (Duration::from_secs(3600), Duration::from_secs(7200))
    );
    let d = dht_config(&conf);
    assert_eq!(
        (d.alpha, d.k, d.t_expire, d.t_refresh, d.t_replicate),
        (2, 5, 100, 50, 40)
    );
    let d = conf.unicast.as_mut().unwrap().dir.dht.as_mut().unwrap();
    (d.alpha, d.k, d.t_refresh, d.t_replicate) = (0, 0, 0, 0);
    let d = dht_config(&conf);
    assert_eq!((d.alpha, d.k, d.t_refresh, d.t_replicate), (1, 1, 3, 3));
    // An enroller's extremes are bounded as the configuration file's are.
    let d = conf.unicast.as_mut().unwrap().dir.dht.as_mut().unwrap();
    (d.alpha, d.k, d.t_expire, d.t_refresh, d.t_replicate) =
        (u32::MAX, u32::MAX, u32::MAX, u32::MAX, 1);
    let d = dht_config(&conf);
    assert_eq!(
        (d.alpha, d.k, d.t_expire, d.t_refresh, d.t_replicate),
        (10, 20, 86_400, 3600, 3)
    );
    let d = conf.unicast.as_mut().unwrap().dir.dht.as_mut().unwrap();
    (d.alpha, d.k) = (9, 4);
    assert_eq!((dht_config(&conf).alpha, dht_config(&conf).k), (4, 4));
}

#[test]
fn addresses_are_drawn_non_zero_from_the_seed_and_a_proposal_wins_once() {
    let now = Instant::now();
    let conf = IpcpConfigMsg::unicast_default("l", 0);
    let draw = |seed| UnicastIpcp::new(UniConfig::default(), seed).bootstrap(now, conf.clone());
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
    assert!((1..=u64::from(u32::MAX)).contains(&draw(5)));
    let mut x = UnicastIpcp::new(UniConfig::default(), 5);
    x.propose_address(0);
    assert_eq!(x.bootstrap(now, conf.clone()), draw(5), "0 is no proposal");
    let mut avoid = BTreeSet::new();
    let mut y = UnicastIpcp::new(UniConfig::default(), 5);
    let first = y.draw_addr(&avoid);
    avoid.insert(UnicastIpcp::new(UniConfig::default(), 5).draw_addr(&BTreeSet::new()));
    let mut z = UnicastIpcp::new(UniConfig::default(), 5);
    assert_ne!(z.draw_addr(&avoid), first, "a taken address is drawn again");
}

/// An LSA from `src` to `dst` at `seqno`.
fn lsa(src: u64, dst: u64, seqno: u64) -> Vec<u8> {
    let mut w = o7s_wire::field::Writer(vec![]);
    o7s_wire::unicast::lsa::Lsa {
        d_addr: dst,
        s_addr: src,
        seqno,
    }
    .write(&mut w);
    w.0
}

#[test]
fn of_two_ipcps_with_one_address_the_older_stays_and_the_younger_moves_once_a_while() {
    let mut p = Pair::join(UniConfig::default());
    while p.a.poll_event().is_some() {}
    let t = p.now;
    // A link "A -> X" that A does not have, older than A's own (seqno 100): another IPCP
    // had A's address first. A moves, to an address no LSA names.
    p.a.handle_sdu(t, UNIX, 2 + OFF, &lsa(A, 0x0c0c_0003, 100));
    let new = p.a.addr().unwrap();
    assert!(![A, B, 0x0c0c_0003].contains(&new));
    assert_eq!(p.a.poll_event(), Some(Event::Moved { old: A, new }));
    assert_eq!(p.a.counters().readdressed, 1);
    assert_eq!(p.a.fa().unwrap().counters(), fa::Counters::default());
    assert_eq!(p.a.link_state().unwrap().addr(), new);
    // B is told (a Management CEP) and follows.
    p.pump();
    assert!(p.ev_b.iter().any(|e| matches!(
        e,
        Event::NeighbourMoved { old: A, new: n, .. } if *n == new
    )));
    // Again within the hold: A stays, and says so.
    let t1 = t + Duration::from_secs(59);
    p.a.handle_sdu(t1, UNIX, 2 + OFF, &lsa(new, 0x0c0c_0004, 200));
    assert_eq!(p.a.addr(), Some(new));
    assert_eq!(p.a.counters().readdress_held, 1);
    assert!(std::iter::from_fn(|| p.a.poll_event()).any(|e| e == Event::ReaddressHeld));
    // At the hold's end it moves again; a proposed address is taken.
    p.a.propose_address(0x0a0a_0777);
    let t2 = t + UniConfig::default().readdress_hold;
    p.a.handle_sdu(t2, UNIX, 2 + OFF, &lsa(new, 0x0c0c_0005, 300));
    assert_eq!(p.a.addr(), Some(0x0a0a_0777));
    assert_eq!(p.a.counters().readdressed, 2);
    assert!(std::iter::from_fn(|| p.a.poll_event()).any(|e| e
        == Event::Moved {
            old: new,
            new: 0x0a0a_0777
        }));
    // A proposal of the address it has: no move.
    p.a.propose_address(0x0a0a_0777);
    let t3 = t2 + Duration::from_secs(120);
    p.a.handle_sdu(t3, UNIX, 2 + OFF, &lsa(0x0a0a_0777, 0x0c0c_0006, 400));
    assert_eq!(
        (p.a.addr(), p.a.counters().readdressed),
        (Some(0x0a0a_0777), 2)
    );
    assert!(std::iter::from_fn(|| p.a.poll_event()).all(|e| !matches!(e, Event::Moved { .. })));
}

#[test]
fn of_two_ipcps_with_one_address_the_younger_one_s_links_leave_us_in_place() {
    let mut p = Pair::join(UniConfig::default());
    // A's own link ages a few update periods (its seqno goes up).
    let until = p.now + Duration::from_secs(60);
    p.run(until);
    while p.a.poll_event().is_some() {}
    p.a.handle_sdu(p.now, UNIX, 2 + OFF, &lsa(A, 0x0c0c_0003, 0));
    assert_eq!(p.a.addr(), Some(A));
    assert_eq!(p.a.counters().collisions_kept, 1);
    assert_eq!(p.a.poll_event(), Some(Event::CollisionKept));
}

#[test]
fn a_directory_without_an_answer_asks_the_enroller_again_every_retry() {
    let mut p = Pair::new(UniConfig::default());
    let now = p.now;
    p.b.enrol(now, 1, 7);
    p.pump();
    p.b.connect(now, 2, Component::Management, 7);
    p.b.connect(now, 3, Component::DataTransfer, 7);
    p.pump();
    // A's directory's answers are lost. Step by 100 ms.
    p.drop_a_dht = true;
    let mut asks = vec![];
    for _ in 0..200 {
        let until = p.now + Duration::from_millis(100);
        p.run(until);
        if let Some(t) = p.b.dir_join.asked() {
            if asks.last() != Some(&t) {
                asks.push(t);
                // The next ask is a timer of its own, a retry away.
                let due = p.b.poll_timeout().unwrap();
                assert!(due > p.now && due <= t + UniConfig::default().dht_retry);
            }
        }
        if asks.len() == 1 {
            let again = p.b.dir_join.again().unwrap();
            assert_eq!(again, asks[0] + UniConfig::default().dht_again);
        }
    }
    assert_eq!(p.b.dht().unwrap().contacts(), 0);
    assert!(asks.len() >= 10, "{} asks in 20 s", asks.len());
    for w in asks.windows(2) {
        assert!(w[1] - w[0] >= UniConfig::default().dht_retry);
    }
}

#[test]
fn the_directory_asks_once_more_when_the_routes_have_settled() {
    let mut p = Pair::new(UniConfig::default());
    let now = p.now;
    p.b.enrol(now, 1, 7);
    p.pump();
    p.b.connect(now, 2, Component::Management, 7);
    p.b.connect(now, 3, Component::DataTransfer, 7);
    p.pump();
    for _ in 0..100 {
        if p.b.dir_join.asked().is_some() {
            break;
        }
        let until = p.now + Duration::from_millis(100);
        p.run(until);
    }
    let asked = p.b.dir_join.asked().unwrap();
    let again = asked + UniConfig::default().dht_again;
    p.run(again - Duration::from_millis(100));
    assert_eq!(p.b.dir_join.again(), Some(again), "not before its time");
    let sent = p.b.dht().unwrap().counters().sent;
    p.run(again + Duration::from_millis(100));
    assert_eq!(p.b.dir_join.again(), None);
    assert!(p.b.dht().unwrap().counters().sent > sent, "asked again");
}

#[test]
fn a_name_withdrawn_before_it_was_published_is_never_published() {
    let mut p = Pair::new(UniConfig::default());
    let now = p.now;
    p.b.register(now, UNIX, key("gone"));
    p.b.register(now, UNIX, key("kept"));
    p.b.unregister(&key("gone"));
    p.b.enrol(now, 1, 7);
    p.pump();
    p.b.connect(now, 2, Component::Management, 7);
    p.b.connect(now, 3, Component::DataTransfer, 7);
    p.pump();
    let until = p.now + Duration::from_secs(10);
    p.run(until);
    assert!(p.b.dht().unwrap().known(&key("gone"), UNIX).is_empty());
    assert_eq!(p.b.dht().unwrap().known(&key("kept"), UNIX), [B]);
}

#[test]
fn the_machine_trait_drives_the_ipcp() {
    use crate::machine::Machine;
    let mut p = Pair::new(UniConfig::default());
    let now = p.now;
    p.b.enrol(now, 1, 7);
    let t = Machine::poll_transmit(&mut p.b).unwrap();
    assert_eq!(t.flow, 1);
    assert!(Machine::poll_timeout(&p.b).is_some());
    Machine::handle_timeout(&mut p.b, now + Duration::from_secs(60));
    assert!(matches!(
        Machine::poll_event(&mut p.b),
        Some(Event::Failed { flow: 1, .. })
    ));
}

/// A test policy: a proof is `publisher:key[0]:addr` in text, signed "now"; valid
/// when it names the key and the address.
#[derive(Debug)]
struct TextProofs;

impl Proofs for TextProofs {
    fn check(
        &self,
        key: &[u8],
        addr: u64,
        proof: &[u8],
        unix: UnixTime,
    ) -> Result<dht::Signed, ProofError> {
        let t = String::from_utf8_lossy(proof);
        let v: Vec<&str> = t.split(':').collect();
        if v.len() != 3 || v[1] != key[0].to_string() || v[2] != addr.to_string() {
            return Err(ProofError(format!("bad proof {t}")));
        }
        Ok(dht::Signed {
            publisher: v[0].into(),
            at: unix.as_secs(),
        })
    }
}

/// Signs as `publisher`, except the keys starting with `refuse`.
#[derive(Debug)]
struct TextSigner {
    publisher: &'static str,
    refuse: Arc<std::sync::atomic::AtomicU8>,
}

impl Signer for TextSigner {
    fn sign(&self, key: &[u8], addr: u64, _unix: UnixTime) -> Result<Vec<u8>, ProofError> {
        if key[0] == self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ProofError("no key for it".into()));
        }
        Ok(format!("{}:{}:{addr}", self.publisher, key[0]).into_bytes())
    }
}

fn signed_pair(sign_a: bool) -> Pair {
    signed_pair_refusing(sign_a, &Arc::new(0xee.into()))
}

/// Both sign (A only with `sign_a`), refusing the keys that start with `refuse`.
fn signed_pair_refusing(sign_a: bool, refuse: &Arc<std::sync::atomic::AtomicU8>) -> Pair {
    Pair::join_with(UniConfig::default(), &move |m, addr| {
        if addr == A && !sign_a {
            return m;
        }
        let publisher = if addr == A { "a" } else { "b" };
        m.with_signed_entries(
            Arc::new(TextProofs),
            Arc::new(TextSigner {
                publisher,
                refuse: Arc::clone(refuse),
            }),
        )
    })
}

/// A key whose first byte is `b`.
fn key_at(b: u8) -> Key {
    let mut k = key("srv");
    k[0] = b;
    k
}

/// B looks `k` up: the addresses found (empty: NotFound).
fn look(p: &mut Pair, k: &Key) -> Option<Vec<u64>> {
    let now = p.now;
    let id = p.b.lookup(now, UNIX, k.clone()).unwrap();
    p.pump();
    let until = now + Duration::from_secs(5);
    p.run(until);
    p.ev_b.iter().find_map(|e| match e {
        Event::Dir(dht::Event::Found { id: i, addrs, .. }) if *i == id => Some(addrs.clone()),
        Event::Dir(dht::Event::NotFound { id: i, .. }) if *i == id => Some(vec![]),
        _ => None,
    })
}

#[test]
fn a_layer_that_signs_its_entries_publishes_signed_ones_and_moves_them_signed() {
    let mut p = signed_pair(true);
    let now = p.now;
    let k = key_at(0x11);
    p.a.register(now, UNIX, k.clone());
    p.pump();
    assert_eq!(look(&mut p, &k), Some(vec![A]));
    // B holds A's copy with A's signature.
    let signer =
        p.b.dht()
            .unwrap()
            .signer(&k, A)
            .map(|s| s.publisher.clone());
    assert_eq!(signer.as_deref(), Some("a"));
    // A key A cannot sign: not published, said and counted.
    let bad = key_at(0xee);
    p.a.register(now, UNIX, bad.clone());
    p.pump();
    assert!(p.ev_a.contains(&Event::SignFailed {
        key: bad.clone(),
        why: ProofError("no key for it".into())
    }));
    assert_eq!(p.a.counters().sign_failed, 1);
    assert_eq!(look(&mut p, &bad), Some(vec![]));
    // A moves: its entry is stored again at the new address, signed for it.
    let now = p.now;
    // (As a collision does, inside the machine's turn: the rest of the turn sends what
    // the move produced.)
    p.a.readdress(now);
    p.a.handle_timeout(now);
    p.pump();
    let until = now + Duration::from_secs(1);
    p.run(until);
    let new = p.a.addr().unwrap();
    assert_ne!(new, A);
    let signer =
        p.b.dht()
            .unwrap()
            .signer(&k, new)
            .map(|s| s.publisher.clone());
    assert_eq!(
        signer.as_deref(),
        Some("a"),
        "{:?} {:?} {:?} {:?} {:?}",
        p.b.dht().unwrap().entries(),
        p.b.dht().unwrap().counters(),
        p.a.counters(),
        p.b.counters(),
        p.a.dht().unwrap().counters()
    );
    // The key it cannot sign stays unpublished (nothing to move) and nothing else failed.
    assert_eq!(p.a.counters().sign_failed, 1);
}

#[test]
fn a_member_that_does_not_sign_is_not_believed_in_a_layer_that_does() {
    let mut p = signed_pair(false);
    let now = p.now;
    let k = key_at(0x22);
    p.a.register(now, UNIX, k.clone());
    p.pump();
    assert_eq!(look(&mut p, &k), Some(vec![]));
    assert!(p.b.dht().unwrap().counters().proofs_refused >= 1);
    assert!(p.ev_b.iter().any(|e| matches!(
        e,
        Event::Dir(dht::Event::ProofRefused { addr, .. }) if *addr == A
    )));
}

#[test]
fn a_link_back_makes_both_directories_rejoin_and_publish_again_signed_anew() {
    use std::sync::atomic::{AtomicU8, Ordering};
    let refuse = Arc::new(AtomicU8::new(0xee));
    let mut p = signed_pair_refusing(true, &refuse);
    let now = p.now;
    p.a.register(now, UNIX, key_at(0x11));
    p.b.register(now, UNIX, key_at(0x33));
    p.pump();
    let until = p.now + Duration::from_secs(3);
    p.run(until);
    assert!(p.a.dht().unwrap().signer(&key_at(0x33), B).is_some());
    // The link goes (both ends see their flows end): each drops the other's value.
    let now = p.now;
    for f in [2, 3] {
        p.a.flow_down(now, f + OFF);
        p.b.flow_down(now, f);
        p.accepted.remove(&(f + OFF));
    }
    p.pump();
    let until = p.now + Duration::from_secs(3);
    p.run(until);
    assert_eq!(p.a.next_hop(B), None);
    let (ca, cb) = (p.a.counters(), p.b.counters());
    assert_eq!((ca.dht_forgotten, cb.dht_forgotten), (1, 1));
    assert_eq!((ca.dht_rejoined, cb.dht_rejoined), (0, 0));
    // Each said which member it forgot, and how many of its values went.
    assert!(p.ev_a.contains(&Event::DirForgotten { addr: B, values: 1 }));
    assert!(p.ev_b.contains(&Event::DirForgotten { addr: A, values: 1 }));
    assert!(!p
        .ev_a
        .iter()
        .any(|e| matches!(e, Event::DirRejoined { .. })));
    // A can no longer sign its key; the link comes back: both rejoin, B publishes
    // again, A's publication fails (said, counted).
    refuse.store(0x11, Ordering::Relaxed);
    let now = p.now;
    p.b.connect(now, 2, Component::Management, 7);
    p.b.connect(now, 3, Component::DataTransfer, 7);
    p.pump();
    let until = p.now + Duration::from_secs(6);
    p.run(until);
    let (ca, cb) = (p.a.counters(), p.b.counters());
    assert_eq!((ca.dht_rejoined, cb.dht_rejoined), (1, 1));
    assert!(p.ev_a.contains(&Event::DirRejoined { addr: B }));
    assert!(p.ev_b.contains(&Event::DirRejoined { addr: A }));
    assert_eq!((ca.sign_failed, cb.sign_failed), (1, 0));
    assert!(p.a.dht().unwrap().signer(&key_at(0x33), B).is_some());
    assert!(p.ev_a.contains(&Event::SignFailed {
        key: key_at(0x11),
        why: ProofError("no key for it".into())
    }));
    // Moving cannot sign it either: counted once more.
    let now = p.now;
    p.a.readdress(now);
    assert_eq!(p.a.counters().sign_failed, 2);
}

#[test]
fn the_enroller_says_whom_it_served_and_the_layer_conf_names_us_as_directory_peer() {
    let p = Pair::join(UniConfig::default());
    // A enrolled B over its end of flow 1, and said so once.
    let served: Vec<&Event> = p
        .ev_a
        .iter()
        .filter(|e| matches!(e, Event::Served { .. }))
        .collect();
    assert_eq!(served, [&Event::Served { flow: 1 + OFF }]);
    assert!(!p.ev_b.iter().any(|e| matches!(e, Event::Served { .. })));
    // Each keeps the layer's configuration, with itself as the directory's peer.
    for (m, addr) in [(&p.a, A), (&p.b, B)] {
        let c = m.layer_conf().unwrap();
        assert_eq!(c.layer_info.name, "l");
        assert_eq!(
            c.unicast.as_ref().unwrap().dir.dht.as_ref().unwrap().peer,
            addr
        );
    }
    assert_eq!(p.a.dt_neighbours().get(&B), Some(&(3 + OFF)));
    assert_eq!(p.b.dt_neighbours().get(&A), Some(&3));
    assert_eq!(p.b.dt_neighbours().len(), 1);
}

#[test]
fn a_resumed_ipcp_keeps_its_address_lsdb_and_connections_and_routes_at_once() {
    let mut p = Pair::join(UniConfig::default());
    // What o7sd saves of B.
    let lsdb = p.b.link_state().unwrap().lsdb();
    let conns: Vec<Adopted> =
        p.b.connections()
            .connections()
            .into_iter()
            .map(|(flow, comp, peer_addr)| Adopted {
                flow,
                comp,
                peer_addr,
                link: 7,
            })
            .collect();
    assert_eq!(conns.len(), 2);
    // B's driver restarts: a new machine (another seed) that enrols again over flow 4 and
    // takes its address back, and then its connections.
    let mut b = UnicastIpcp::new(UniConfig::default(), 99);
    b.propose_address_in("l", B);
    assert_eq!(b.resume(p.now, &lsdb, &conns), 0, "in no layer yet");
    p.b = b;
    p.ev_b.clear();
    let now = p.now;
    p.b.enrol(now, 4, 7);
    p.pump();
    assert_eq!(p.ev_b.first(), Some(&Event::InLayer { addr: B }));
    assert_eq!(
        p.b.next_hop(A),
        None,
        "no route before the connections are back"
    );
    let now = p.now;
    assert_eq!(p.b.resume(now, &lsdb, &conns), 2);
    // At once: the route, the DT neighbour, the connections, the LSDB.
    assert_eq!(p.b.next_hop(A), Some(3));
    assert_eq!(p.b.dt_neighbours().get(&A), Some(&3));
    assert_eq!(
        p.b.connections().connected(2),
        Some((Component::Management, A))
    );
    assert_eq!(
        p.b.connections().connected(3),
        Some((Component::DataTransfer, A))
    );
    let restored = p.b.link_state().unwrap().lsdb();
    for ((s, d), _) in &lsdb {
        assert!(
            restored.iter().any(|((s2, d2), _)| (s2, d2) == (s, d)),
            "{s:#x}->{d:#x}"
        );
    }
    // And A, which saw nothing, reaches the resumed B's name over the old flows.
    p.pump();
    let now = p.now;
    p.b.register(now, UNIX, key("resumed"));
    p.pump();
    let until = p.now + Duration::from_secs(3);
    p.run(until);
    assert_eq!(look(&mut p, &key("resumed")), Some(vec![B]));
}

#[test]
fn a_proposed_address_is_taken_only_in_the_layer_it_names() {
    let mut p = Pair::new(UniConfig::default());
    let mut b = UnicastIpcp::new(UniConfig::default(), 5);
    b.propose_address_in("another", B);
    p.b = b;
    let now = p.now;
    p.b.enrol(now, 1, 7);
    p.pump();
    let addr = p.b.addr().unwrap();
    assert_ne!(addr, B);
    assert_ne!(addr, 0);
}

#[test]
fn eids_of_adopted_flows_are_taken_once_and_released_flows_free_theirs() {
    // A random high half, flow number 100 low (fa.rs's layout).
    const EID: u64 = 0x1234_5678_0000_0064;
    let mut p = Pair::join(UniConfig::default());
    let mut fresh = UnicastIpcp::new(UniConfig::default(), 3);
    assert!(!fresh.adopt_eid(EID), "in no layer");
    fresh.release_flow(EID);
    assert!(!p.a.adopt_eid(0x4000), "flow number out of range");
    assert!(p.a.adopt_eid(EID));
    assert!(!p.a.adopt_eid(EID), "taken already");
    p.a.release_flow(EID);
    assert!(p.a.adopt_eid(EID), "free again");
}

/// The LSAs of `sdus` that withdraw a link (seqno all ones).
fn withdrawals(sdus: &[Transmit]) -> usize {
    sdus.iter()
        .filter(|t| t.sdu.len() == 24 && t.sdu[16..] == [0xff; 8])
        .count()
}

#[test]
fn ls_withdraw_decides_whether_a_dt_connection_that_ends_is_withdrawn() {
    for (withdraw, expected) in [(true, 1), (false, 0)] {
        let cfg = UniConfig {
            ls_withdraw: withdraw,
            ..UniConfig::default()
        };
        let mut p = Pair::join(cfg);
        let now = p.now;
        p.b.flow_down(now, 3);
        let mut out = vec![];
        while let Some(t) = p.b.poll_transmit() {
            out.push(t);
        }
        assert_eq!(
            withdrawals(&out),
            expected,
            "ls_withdraw {withdraw}: {out:?}"
        );
    }
}

#[test]
fn a_held_message_goes_as_soon_as_a_route_to_its_destination_comes() {
    let mut p = Pair::join(UniConfig::default());
    let t = p.now;
    let far = 0x0c0c_0003;
    p.b.alloc(
        t,
        far,
        &key("x"),
        QosSpec::RAW,
        &[],
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(p.b.poll_transmit(), None);
    assert_eq!(p.b.counters().held, 1);
    // A says it has a link to `far` (both ways): B routes to it through A once link
    // state recomputes (its hold), well before the message's hold ends.
    for s in [lsa(A, far, 1), lsa(far, A, 1)] {
        p.b.handle_sdu(t, UNIX, 2, &s);
    }
    let later = t + Duration::from_millis(500);
    p.b.handle_timeout(later);
    assert_eq!(p.b.next_hop(far), Some(3));
    let out: Vec<Transmit> = std::iter::from_fn(|| p.b.poll_transmit()).collect();
    let to_far: Vec<&Transmit> = out
        .iter()
        .filter(|x| x.flow == 3 && x.sdu.get(..4) == Some(&(far as u32).to_le_bytes()[..]))
        .collect();
    assert_eq!(to_far.len(), 1, "{out:?}");
    assert_eq!(p.b.counters().held_dropped, 0);
}

/// What a machine sends, says, counts and knows of the links.
type Outputs = (Vec<Transmit>, Vec<Event>, Counters, Vec<((u64, u64), u64)>);

/// The outputs of a machine.
fn outputs(m: &mut UnicastIpcp) -> Outputs {
    (
        std::iter::from_fn(|| m.poll_transmit()).collect(),
        std::iter::from_fn(|| m.poll_event()).collect(),
        m.counters(),
        m.link_state().unwrap().lsdb(),
    )
}

#[test]
fn sdus_handled_together_do_what_they_do_one_by_one() {
    let far = 0x0c0c_0003;
    // B's Management flow (2): LSAs, one of them malformed; its DT flow (3): a PDU for
    // another member and one for B's directory that does not parse.
    let mgmt = [
        lsa(A, far, 1),
        lsa(far, A, 1),
        vec![1, 2, 3],
        lsa(far, 0x0d0d_0004, 7),
    ];
    let mut dt_fwd = dt_pdu(far, 9, 5, b"for far");
    dt_fwd[5] = 5;
    let dt = [dt_fwd, dt_pdu(B, EID_DHT, 5, &[0xff; 9])];
    let (mut one, mut together) = (
        Pair::join(UniConfig::default()),
        Pair::join(UniConfig::default()),
    );
    for p in [&mut one, &mut together] {
        let _ = outputs(&mut p.b);
    }
    let t = one.now;
    for s in &mgmt {
        one.b.handle_sdu(t, UNIX, 2, s);
    }
    for s in &dt {
        one.b.handle_sdu(t, UNIX, 3, s);
    }
    let t2 = together.now;
    together
        .b
        .handle_sdus(t2, UNIX, 2, mgmt.iter().map(Vec::as_slice));
    together
        .b
        .handle_sdus(t2, UNIX, 3, dt.iter().map(Vec::as_slice));
    let (a, b) = (outputs(&mut one.b), outputs(&mut together.b));
    assert_eq!(a, b);
    // And they did something: LSAs flooded, records kept, the malformed one counted.
    assert!(a.3.iter().any(|((s, d), _)| (*s, *d) == (far, 0x0d0d_0004)));
    assert!(one.b.link_state().unwrap().counters().malformed >= 1);
}
