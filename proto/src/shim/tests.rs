#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const MS: Duration = Duration::from_millis(1);

fn shim(kind: ShimKind, mac: [u8; 6]) -> Shim {
    Shim::new(ShimConfig::new(kind, 32), Some(mac))
}

fn req(s: u32, hash: &[u8]) -> Vec<u8> {
    let mut tail = hash.to_vec();
    tail.extend_from_slice(b"oap");
    Mgmt {
        code: EthCode::FlowReq,
        s,
        d: 0,
        qos: QosSpec::RAW,
        response: 0,
        tail,
    }
    .build(ShimKind::Dix)
}

#[test]
fn a_flow_is_allocated_between_two_machines() {
    let t0 = Instant::now();
    let (mut a, mut b) = (shim(ShimKind::Dix, A), shim(ShimKind::Dix, B));
    b.register(vec![5; 32]);
    // Take a few ids on b first, so that the two ends' eids differ.
    for _ in 0..3 {
        b.take_free_eid();
    }
    a.query(t0, vec![5; 32], 100 * MS).unwrap();
    let q = a.poll_transmit().unwrap();
    assert_eq!(q.dst, Peer::Mac(BROADCAST));
    b.handle(
        t0,
        Peer::Mac(A),
        Some(BROADCAST),
        &q.msg.build(ShimKind::Dix),
    );
    let r = b.poll_transmit().unwrap();
    a.handle(t0, Peer::Mac(B), Some(A), &r.msg.build(ShimKind::Dix));
    assert_eq!(
        a.poll_event(),
        Some(Event::QueryAnswered {
            hash: vec![5; 32],
            peer: Peer::Mac(B)
        })
    );
    assert_eq!(a.cached(t0, &[5; 32]), Some(Peer::Mac(B)));
    let (id, local) = a
        .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"oap", 100 * MS)
        .unwrap();
    assert_eq!(local, 64);
    let fr = a.poll_transmit().unwrap();
    b.handle(t0, Peer::Mac(A), Some(B), &fr.msg.build(ShimKind::Dix));
    let Some(Event::Incoming {
        req, remote, oap, ..
    }) = b.poll_event()
    else {
        panic!("no request");
    };
    assert_eq!((remote, oap.as_slice()), (64, &b"oap"[..]));
    assert_eq!(b.take_eid(req).unwrap(), 67);
    b.reply(t0, req, b"resp".to_vec()).unwrap();
    let rep = b.poll_transmit().unwrap();
    a.handle(t0, Peer::Mac(B), Some(A), &rep.msg.build(ShimKind::Dix));
    assert_eq!(
        a.poll_event(),
        Some(Event::Allocated {
            alloc: id,
            local: 64,
            remote: 67,
            peer: Peer::Mac(B),
            oap: b"resp".to_vec()
        })
    );
}

#[test]
fn udp_replies_carry_the_requesters_eid_first() {
    let t0 = Instant::now();
    let peer = Peer::Ip("127.0.0.2:3435".parse().unwrap());
    let mut b = Shim::new(ShimConfig::new(ShimKind::Udp, 16), None);
    b.register(vec![1; 16]);
    let mut tail = vec![1; 16];
    tail.extend_from_slice(b"x");
    let m = Mgmt {
        code: EthCode::FlowReq,
        s: 0x40,
        d: 0,
        qos: QosSpec::RAW,
        response: 0,
        tail,
    };
    b.take_free_eid(); // so the responder's id (0x41) differs from the requester's
    b.handle(t0, peer, None, &m.build(ShimKind::Udp));
    let Some(Event::Incoming { req, .. }) = b.poll_event() else {
        panic!()
    };
    b.reply(t0, req, vec![]).unwrap();
    let bytes = b.poll_transmit().unwrap().msg.build(ShimKind::Udp);
    let (wire, _) = o7s_wire::udp::MgmtMsg::parse(&bytes).unwrap();
    assert_eq!((wire.requester_eid, wire.responder_eid), (0x40, 0x41));
}

#[test]
fn repeated_requests_make_one_flow_and_get_the_same_reply() {
    let t0 = Instant::now();
    let mut b = shim(ShimKind::Dix, B);
    b.register(vec![5; 32]);
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    let Some(Event::Incoming { req: r, .. }) = b.poll_event() else {
        panic!()
    };
    // Again while it waits: ignored.
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    assert_eq!(b.poll_event(), None);
    b.reply(t0, r, b"resp".to_vec()).unwrap();
    let first = b.poll_transmit().unwrap();
    // Again after the reply: the same reply, no new request.
    b.handle(t0 + MS, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    assert_eq!(b.poll_event(), None);
    assert_eq!(b.poll_transmit().unwrap(), first);
    assert_eq!(b.counters().req_duplicate, 2);
    assert_eq!(b.eids_in_use(), 1);
    // Sent again at most MAX_RESENT times: beyond, a spoofer's requests get nothing.
    for _ in 1..super::MAX_RESENT {
        b.handle(t0 + MS, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
        assert_eq!(b.poll_transmit().unwrap(), first);
    }
    b.handle(t0 + MS, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    assert_eq!(b.poll_transmit(), None);
    assert_eq!(b.counters().req_duplicate, 2 + u64::from(super::MAX_RESENT));
    // The same eid again with another request (the requester reused the id for a
    // new flow): a new request, not a repetition.
    let mut other = vec![5; 32];
    other.extend_from_slice(b"another oap");
    let m = Mgmt {
        code: EthCode::FlowReq,
        s: 0x40,
        d: 0,
        qos: QosSpec::RAW,
        response: 0,
        tail: other,
    };
    b.handle(t0 + MS, Peer::Mac(A), Some(B), &m.build(ShimKind::Dix));
    assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
    // Another requester eid from the same peer is another flow.
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
    assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
}

#[test]
fn unknown_names_are_refused_and_full_queues_too() {
    let t0 = Instant::now();
    let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
    cfg.max_incoming = 1;
    let mut b = Shim::new(cfg, Some(B));
    b.register(vec![5; 32]);
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[6; 32]));
    let r = b.poll_transmit().unwrap();
    assert_eq!(
        (r.msg.code, r.msg.response, r.msg.s),
        (
            EthCode::FlowReply,
            crate::refusal::Refusal::NotRegistered.response(),
            0
        )
    );
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x42, &[5; 32]));
    assert_eq!(
        b.poll_transmit().unwrap().msg.d,
        0x42,
        "the second one is refused"
    );
    let c = b.counters();
    assert_eq!((c.req_unknown_name, c.incoming_full, c.refused), (1, 1, 2));
}

#[test]
fn replies_from_elsewhere_or_too_late_are_not_believed() {
    let t0 = Instant::now();
    let mut a = shim(ShimKind::Dix, A);
    let (id, local) = a
        .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
        .unwrap();
    let _ = a.poll_transmit();
    let reply = Mgmt {
        code: EthCode::FlowReply,
        s: 0x50,
        d: local,
        qos: QosSpec::ZERO,
        response: 0,
        tail: vec![],
    }
    .build(ShimKind::Dix);
    // From a third MAC: dropped.
    a.handle(t0, Peer::Mac([2, 0, 0, 0, 0, 0xc]), Some(A), &reply);
    assert_eq!(a.poll_event(), None);
    assert_eq!(a.counters().reply_unknown, 1);
    // Time out.
    assert_eq!(a.poll_timeout(), Some(t0 + 50 * MS));
    a.handle_timeout(t0 + 50 * MS);
    assert_eq!(
        a.poll_event(),
        Some(Event::AllocFailed {
            alloc: id,
            error: ShimError::Timeout(50 * MS)
        })
    );
    assert_eq!(a.eids_in_use(), 0);
    // The real peer's reply, now late: dropped too.
    a.handle(t0 + 60 * MS, Peer::Mac(B), Some(A), &reply);
    assert_eq!(a.poll_event(), None);
    // Unsolicited name replies are not cached.
    let nr = Mgmt {
        code: EthCode::NameQueryReply,
        s: 0,
        d: 0,
        qos: QosSpec::ZERO,
        response: 0,
        tail: vec![5; 32],
    };
    a.handle(t0, Peer::Mac(B), Some(A), &nr.build(ShimKind::Dix));
    assert_eq!(a.cached(t0, &[5; 32]), None);
    assert_eq!(a.counters().name_reply_unsolicited, 1);
}

/// A NAME_QUERY_REPLY for `hash`.
fn name_reply(hash: &[u8]) -> Vec<u8> {
    Mgmt {
        code: EthCode::NameQueryReply,
        s: 0,
        d: 0,
        qos: QosSpec::ZERO,
        response: 0,
        tail: hash.to_vec(),
    }
    .build(ShimKind::Dix)
}

#[test]
fn the_own_mac_can_be_set_later_and_names_come_and_go() {
    let t0 = Instant::now();
    let mut b = Shim::new(ShimConfig::new(ShimKind::Dix, 32), None);
    b.register(vec![5; 32]);
    assert!(b.is_registered(&[5; 32]));
    assert!(!b.is_registered(&[6; 32]));
    // No MAC yet: a frame to any MAC is looked at.
    b.handle(t0, Peer::Mac(A), Some(A), &req(0x40, &[5; 32]));
    assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
    b.set_mac(Some(B));
    b.handle(t0, Peer::Mac(A), Some(A), &req(0x41, &[5; 32]));
    assert_eq!((b.poll_event(), b.counters().not_for_us), (None, 1));
    // Unregistered: queries go unanswered, requests are refused.
    b.unregister(&[5; 32]);
    assert!(!b.is_registered(&[5; 32]));
    let q = Mgmt {
        code: EthCode::NameQueryReq,
        s: 0,
        d: 0,
        qos: QosSpec::ZERO,
        response: 0,
        tail: vec![5; 32],
    };
    b.handle(t0, Peer::Mac(A), Some(BROADCAST), &q.build(ShimKind::Dix));
    assert!(b.poll_transmit().is_none());
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x42, &[5; 32]));
    assert_eq!(b.counters().req_unknown_name, 1);
}

#[test]
fn the_cache_holds_a_name_for_its_ttl_and_queries_wait_their_time() {
    let t0 = Instant::now();
    let mut a = shim(ShimKind::Dix, A);
    a.query(t0, vec![5; 32], 100 * MS).unwrap();
    assert_eq!(a.counters().queries_sent, 1);
    a.handle(t0, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
    let ttl = a.config().cache_ttl;
    assert_eq!(
        a.cache_entries(t0 + 10 * MS),
        vec![(vec![5; 32], Peer::Mac(B), ttl - 10 * MS)]
    );
    assert_eq!(a.cached(t0 + ttl - MS, &[5; 32]), Some(Peer::Mac(B)));
    assert_eq!(a.cached(t0 + ttl, &[5; 32]), None, "expired at its TTL");
    assert!(a.cache_entries(t0 + ttl).is_empty());
    assert!(a.cache_entries(t0 + ttl + MS).is_empty());
    // An unanswered query fails at its deadline, not before.
    a.query(t0, vec![6; 32], 100 * MS).unwrap();
    assert_eq!(a.counters().queries_sent, 2);
    a.handle_timeout(t0 + 99 * MS);
    assert_eq!(
        a.poll_event(),
        Some(Event::QueryAnswered {
            hash: vec![5; 32],
            peer: Peer::Mac(B)
        })
    );
    assert_eq!(a.poll_event(), None, "still waiting");
    a.handle_timeout(t0 + 100 * MS);
    assert_eq!(
        a.poll_event(),
        Some(Event::QueryFailed { hash: vec![6; 32] })
    );
}

#[test]
fn endpoint_ids_run_out_at_the_top_of_the_range_and_come_back() {
    let t0 = Instant::now();
    let mut cfg = ShimConfig::new(ShimKind::Llc, 32);
    cfg.max_allocs = 1000;
    let mut a = Shim::new(cfg, Some(A));
    let (lo, hi) = ShimKind::Llc.eid_range();
    let mut ids = vec![];
    let mut locals = vec![];
    for _ in lo..=hi {
        let (id, l) = a
            .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
            .unwrap();
        ids.push(id);
        locals.push(l);
    }
    assert_eq!(locals.first(), Some(&lo));
    assert_eq!(locals.last(), Some(&hi), "the last id is handed out");
    ids.dedup();
    assert_eq!(
        ids.len(),
        locals.len(),
        "every allocation has its own handle"
    );
    assert_eq!(
        a.alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS),
        Err(ShimError::NoEid)
    );
    // Cancelled and released ids are free again; an unknown one changes nothing.
    a.cancel(lo + 3);
    a.release(lo + 5);
    a.cancel(hi + 7);
    assert_eq!(a.eids_in_use(), locals.len() - 2);
    let (_, l) = a
        .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
        .unwrap();
    assert_eq!(l, lo + 3);
    // The cancelled allocation does not fail later: only the others time out.
    while a.poll_transmit().is_some() {}
    a.handle_timeout(t0 + 49 * MS);
    assert_eq!(a.poll_event(), None, "not before the deadline");
    a.handle_timeout(t0 + 50 * MS);
    let failed = std::iter::from_fn(|| a.poll_event()).count();
    assert_eq!(failed, locals.len() - 2 + 1);
}

#[test]
fn adopted_eids_are_in_range_and_free() {
    let mut a = shim(ShimKind::Llc, A);
    let (lo, hi) = ShimKind::Llc.eid_range();
    assert!(a.adopt_eid(lo));
    assert!(!a.adopt_eid(lo), "taken");
    assert!(a.adopt_eid(hi));
    assert!(!a.adopt_eid(hi + 1), "above the range");
    assert!(!a.adopt_eid(lo - 1), "below the range");
    assert_eq!(a.eids_in_use(), 2);
}

#[test]
fn a_refusal_is_sent_and_frees_the_reserved_eid() {
    let t0 = Instant::now();
    let mut b = shim(ShimKind::Dix, B);
    b.register(vec![5; 32]);
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    let Some(Event::Incoming { req: r, .. }) = b.poll_event() else {
        panic!()
    };
    b.take_eid(r).unwrap();
    assert_eq!(b.eids_in_use(), 1);
    b.refuse(t0, r, -3).unwrap();
    assert_eq!(b.eids_in_use(), 0);
    let t = b.poll_transmit().unwrap();
    assert_eq!(
        (t.dst, t.msg.code, t.msg.s, t.msg.d, t.msg.response),
        (Peer::Mac(A), EthCode::FlowReply, 0, 0x40, -3)
    );
    assert_eq!(b.counters().refused, 1);
    assert_eq!(b.refuse(t0, r, -3), Err(ShimError::UnknownRequest));
}

#[test]
fn a_request_with_another_tail_is_a_new_request() {
    let t0 = Instant::now();
    let mut b = shim(ShimKind::Dix, B);
    b.register(vec![5; 32]);
    b.register(vec![6; 32]);
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    assert_eq!(b.counters().req_duplicate, 1);
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    assert_eq!(b.counters().req_duplicate, 2);
    // The same endpoint id asking for another name: not a repeat.
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[6; 32]));
    let hashes: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            Event::Incoming { hash, .. } => Some(hash),
            _ => None,
        })
        .collect();
    assert_eq!(hashes, vec![vec![5; 32], vec![6; 32]]);
}

#[test]
fn remembered_replies_are_bounded_and_expired_ones_make_room() {
    let t0 = Instant::now();
    let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
    cfg.max_remembered = 2;
    let memory = cfg.reply_memory;
    let mut b = Shim::new(cfg, Some(B));
    b.register(vec![5; 32]);
    let answer = |b: &mut Shim, at: Instant, s: u32| {
        b.handle(at, Peer::Mac(A), Some(B), &req(s, &[5; 32]));
        let Some(Event::Incoming { req: r, .. }) = b.poll_event() else {
            panic!("no request {s:#x}")
        };
        b.reply(at, r, vec![]).unwrap();
        b.poll_transmit().unwrap()
    };
    let repeat = |b: &mut Shim, at: Instant, s: u32| {
        b.handle(at, Peer::Mac(A), Some(B), &req(s, &[5; 32]));
        let repeated = b.poll_transmit().is_some() && b.poll_event().is_none();
        // A new request instead: dropped unanswered.
        while let Some(e) = b.poll_event() {
            if let Event::Incoming { req: r, .. } = e {
                b.forget(r);
            }
        }
        while b.poll_transmit().is_some() {}
        repeated
    };
    answer(&mut b, t0, 0x40);
    answer(&mut b, t0 + MS, 0x41);
    // Full of replies that have not expired: the third is not kept.
    answer(&mut b, t0 + 2 * MS, 0x42);
    assert!(repeat(&mut b, t0 + 3 * MS, 0x40));
    assert!(repeat(&mut b, t0 + 3 * MS, 0x41));
    assert!(!repeat(&mut b, t0 + 3 * MS, 0x42), "not remembered");
    assert_eq!(b.counters().replies_not_remembered, 1);
    // Once the first has expired (exactly at its time), a new one takes its room.
    answer(&mut b, t0 + memory, 0x43);
    assert!(repeat(&mut b, t0 + memory, 0x43));
    assert!(!repeat(&mut b, t0 + memory, 0x40), "expired");
}

#[test]
fn malformed_and_unexpected_messages_are_counted() {
    let t0 = Instant::now();
    let mut b = shim(ShimKind::Dix, B);
    b.register(vec![5; 32]);
    b.handle(t0, Peer::Mac(A), Some(B), &[0xff; 3]);
    assert_eq!(b.counters().malformed, 1);
    // A name reply whose hash has the wrong length.
    b.handle(t0, Peer::Mac(A), Some(B), &name_reply(&[5; 31]));
    assert_eq!(b.counters().malformed, 2);
    // A FLOW_REQ without an endpoint id of its sender.
    b.handle(t0, Peer::Mac(A), Some(B), &req(0, &[5; 32]));
    assert_eq!(b.counters().req_bad_eid, 1);
    // A FLOW_REQ shorter than the hash; one of exactly the hash (no OAP) is taken.
    let short = Mgmt {
        code: EthCode::FlowReq,
        s: 0x40,
        d: 0,
        qos: QosSpec::RAW,
        response: 0,
        tail: vec![5; 31],
    };
    b.handle(t0, Peer::Mac(A), Some(B), &short.build(ShimKind::Dix));
    assert_eq!(b.counters().malformed, 3);
    let bare = Mgmt {
        tail: vec![5; 32],
        ..short
    };
    b.handle(t0, Peer::Mac(A), Some(B), &bare.build(ShimKind::Dix));
    assert!(matches!(
        b.poll_event(),
        Some(Event::Incoming { oap, .. }) if oap.is_empty()
    ));
    assert_eq!(b.counters().malformed, 3);
    // Name queries and replies on a udp layer: codes it does not use.
    let peer = Peer::Ip("127.0.0.2:3435".parse().unwrap());
    let mut u = Shim::new(ShimConfig::new(ShimKind::Udp, 32), None);
    u.register(vec![5; 32]);
    for code in [EthCode::NameQueryReq, EthCode::NameQueryReply] {
        let m = Mgmt {
            code,
            s: 0,
            d: 0,
            qos: QosSpec::ZERO,
            response: 0,
            tail: vec![5; 32],
        };
        u.handle(t0, peer, None, &m.build(ShimKind::Udp));
    }
    assert!(u.poll_transmit().is_none(), "no answer on udp");
    let c = u.counters();
    assert_eq!((c.unexpected_code, c.name_reply_unsolicited), (2, 0));
}

#[test]
fn a_name_reply_counts_until_the_querys_deadline_and_a_full_cache_makes_room_of_expired() {
    let t0 = Instant::now();
    let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
    cfg.max_cache = 1;
    let ttl = cfg.cache_ttl;
    let mut a = Shim::new(cfg, Some(A));
    a.query(t0, vec![5; 32], 100 * MS).unwrap();
    // Exactly at the deadline: too late.
    a.handle(t0 + 100 * MS, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
    assert_eq!(a.counters().name_reply_unsolicited, 1);
    a.query(t0, vec![5; 32], 100 * MS).unwrap();
    a.query(t0, vec![6; 32], ttl * 2).unwrap();
    a.handle(t0, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
    // The cache holds one name: the second answer is not kept while the first lives.
    a.handle(t0 + MS, Peer::Mac(B), Some(A), &name_reply(&[6; 32]));
    assert_eq!(a.cached(t0 + MS, &[6; 32]), None);
    assert_eq!(a.counters().cache_full, 1);
    // Answering again for a cached name refreshes it (no room needed).
    a.handle(t0 + 2 * MS, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
    assert_eq!(a.counters().cache_full, 1);
    // Once the first expired (at its time exactly), the second takes its place.
    a.handle(
        t0 + 2 * MS + ttl,
        Peer::Mac(B),
        Some(A),
        &name_reply(&[6; 32]),
    );
    assert_eq!(a.cached(t0 + 2 * MS + ttl, &[6; 32]), Some(Peer::Mac(B)));
    assert_eq!(a.counters().cache_full, 1);
}

#[test]
fn a_refusal_ends_the_allocation_and_frees_its_eid() {
    let t0 = Instant::now();
    let mut a = shim(ShimKind::Dix, A);
    let (id, local) = a
        .alloc(t0, Peer::Mac(B), &[5; 32], QosSpec::RAW, b"", 50 * MS)
        .unwrap();
    let refusal = Mgmt {
        code: EthCode::FlowReply,
        s: 0,
        d: local,
        qos: QosSpec::ZERO,
        response: -7,
        tail: vec![],
    };
    a.handle(t0, Peer::Mac(B), Some(A), &refusal.build(ShimKind::Dix));
    assert_eq!(
        a.poll_event(),
        Some(Event::AllocFailed {
            alloc: id,
            error: ShimError::Refused(-7)
        })
    );
    assert_eq!((a.eids_in_use(), a.counters().reply_unknown), (0, 0));
}

#[test]
fn a_remembered_reply_is_repeated_until_its_time_and_requests_have_their_own_handles() {
    let t0 = Instant::now();
    let mut b = shim(ShimKind::Dix, B);
    let memory = b.config().reply_memory;
    b.register(vec![5; 32]);
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
    let reqs: Vec<ReqId> = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            Event::Incoming { req: r, .. } => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_ne!(reqs[0], reqs[1]);
    b.reply(t0, reqs[0], vec![]).unwrap();
    let _ = b.poll_transmit();
    b.handle(
        t0 + memory - MS,
        Peer::Mac(A),
        Some(B),
        &req(0x40, &[5; 32]),
    );
    assert!(b.poll_transmit().is_some(), "the reply again");
    assert_eq!(b.poll_event(), None);
    // At its time exactly it is forgotten: a new request.
    b.handle(t0 + memory, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    assert!(b.poll_transmit().is_none());
    assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
}

#[test]
fn queries_and_requests_are_sent_again_on_their_retry_timers() {
    let t0 = Instant::now();
    let mut cfg = ShimConfig::new(ShimKind::Dix, 32);
    cfg.query_retry = Some(20 * MS);
    cfg.req_retry = Some(30 * MS);
    let mut a = Shim::new(cfg, Some(A));
    a.query(t0, vec![5; 32], 100 * MS).unwrap();
    a.query(t0, vec![6; 32], 100 * MS).unwrap();
    let (_, local) = a
        .alloc(t0, Peer::Mac(B), &[7; 32], QosSpec::RAW, b"", 100 * MS)
        .unwrap();
    let sent = |a: &mut Shim| std::iter::from_fn(|| a.poll_transmit()).count();
    assert_eq!(sent(&mut a), 3);
    assert_eq!(a.poll_timeout(), Some(t0 + 20 * MS));
    a.handle_timeout(t0 + 19 * MS);
    assert_eq!(sent(&mut a), 0, "not yet");
    // Name 5 is answered: only 6 is asked again.
    a.handle(t0 + 19 * MS, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
    let _ = a.poll_event();
    a.handle_timeout(t0 + 20 * MS);
    let again: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].msg.tail, vec![6; 32]);
    assert_eq!(a.counters().queries_sent, 3);
    // The next retry of 6 is 20 ms after this one; the request's first at 30 ms.
    assert_eq!(a.poll_timeout(), Some(t0 + 30 * MS));
    a.handle_timeout(t0 + 30 * MS);
    let req_again: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(req_again.len(), 1);
    assert_eq!(
        (req_again[0].msg.code, req_again[0].msg.s),
        (EthCode::FlowReq, local)
    );
    assert_eq!(a.counters().reqs_retransmitted, 1);
    a.handle_timeout(t0 + 39 * MS);
    assert_eq!(sent(&mut a), 0);
    a.handle_timeout(t0 + 40 * MS);
    assert_eq!(sent(&mut a), 1, "6 again");
    // At the deadline: 6 fails, 5 (answered) ends quietly, the request fails.
    a.handle_timeout(t0 + 100 * MS);
    let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(events.contains(&Event::QueryFailed { hash: vec![6; 32] }));
    assert!(!events.contains(&Event::QueryFailed { hash: vec![5; 32] }));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(sent(&mut a), 0);
}

#[test]
fn timers_keep_what_has_not_expired_and_a_forgotten_request_leaves_no_trace() {
    let t0 = Instant::now();
    let mut b = shim(ShimKind::Dix, B);
    b.register(vec![5; 32]);
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
    let reqs: Vec<ReqId> = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            Event::Incoming { req: r, .. } => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(b.incoming_waiting(), 2);
    b.reply(t0, reqs[0], vec![]).unwrap();
    let _ = b.poll_transmit();
    b.take_eid(reqs[1]).unwrap();
    assert_eq!((b.incoming_waiting(), b.eids_in_use()), (1, 2));
    b.forget(reqs[1]);
    assert_eq!((b.incoming_waiting(), b.eids_in_use()), (0, 1));
    // Forgotten: its repeat is a new request.
    b.handle(t0, Peer::Mac(A), Some(B), &req(0x41, &[5; 32]));
    assert!(matches!(b.poll_event(), Some(Event::Incoming { .. })));
    // A timer pass keeps the reply remembered (it has not expired).
    b.handle_timeout(t0 + MS);
    b.handle(t0 + 2 * MS, Peer::Mac(A), Some(B), &req(0x40, &[5; 32]));
    assert!(b.poll_transmit().is_some(), "the remembered reply");
    assert_eq!(b.poll_event(), None);
    // And the cache keeps a name that has not expired.
    let mut a = shim(ShimKind::Dix, A);
    a.query(t0, vec![5; 32], 100 * MS).unwrap();
    a.handle(t0, Peer::Mac(B), Some(A), &name_reply(&[5; 32]));
    a.handle_timeout(t0 + MS);
    assert_eq!(a.cached(t0 + 2 * MS, &[5; 32]), Some(Peer::Mac(B)));
}
