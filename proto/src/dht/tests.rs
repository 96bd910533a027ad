#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use o7s_wire::unicast::pb::{
    self, dht_code, DhtFindNodeRspMsg, DhtFindReqMsg, DhtFindValueRspMsg, DhtStoreMsg,
};

fn node(i: u8) -> Dht {
    let mut id = vec![0u8; 32];
    id[0] = i.wrapping_mul(37);
    id[1] = i;
    Dht::new(
        DhtConfig::default(),
        id,
        0x1000 + u64::from(i),
        u64::from(i),
    )
}

/// Delivers every transmit among `nodes` (addressed by `0x1000 + index`) until quiet.
fn settle(nodes: &mut [Dht], now: Instant, unix: UnixTime) -> usize {
    let mut n = 0;
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit() {
                let to = usize::try_from(t.dst - 0x1000).unwrap();
                nodes[to].handle(now, unix, &t.msg);
                moved = true;
                n += 1;
            }
        }
        if !moved {
            return n;
        }
    }
}

#[test]
fn a_name_registered_at_one_end_of_a_chain_is_found_at_the_other() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_796_083_200);
    let mut nodes: Vec<Dht> = (0..30).map(node).collect();
    // Each joins through the one before it (as enrolment hands out the enroller's
    // address): nobody knows everyone.
    for i in 1..nodes.len() {
        nodes[i].bootstrap(now, 0x1000 + i as u64 - 1);
        settle(&mut nodes, now, unix);
    }
    let key = o7s_wire::hash::HashAlgo::Sha3_256.hash("oping");
    nodes[29].register(now, unix, key.clone());
    settle(&mut nodes, now, unix);
    let id = nodes[0].lookup(now, unix, key.clone()).unwrap();
    settle(&mut nodes, now, unix);
    assert_eq!(
        nodes[0].poll_event(),
        Some(Event::Found {
            id,
            key: key.clone(),
            addrs: vec![0x1000 + 29]
        })
    );
    // An unregistered name: every closer contact asked, then NotFound.
    let other = o7s_wire::hash::HashAlgo::Sha3_256.hash("nobody");
    let id = nodes[5].lookup(now, unix, other.clone()).unwrap();
    settle(&mut nodes, now, unix);
    assert_eq!(
        nodes[5].poll_event(),
        Some(Event::NotFound { id, key: other })
    );
}

/// A test policy (the daemon's checks certificates and signatures): a proof is
/// `publisher:at:key[0]:addr` in text and valid when it names the key and address.
#[derive(Debug)]
struct TextProofs;

impl Proofs for TextProofs {
    fn check(
        &self,
        key: &[u8],
        addr: u64,
        proof: &[u8],
        _unix: UnixTime,
    ) -> Result<Signed, ProofError> {
        let t = std::str::from_utf8(proof).map_err(|e| ProofError(e.to_string()))?;
        let v: Vec<&str> = t.split(':').collect();
        if v.len() != 4 || v[2] != key[0].to_string() || v[3] != addr.to_string() {
            return Err(ProofError(format!("bad proof {t}")));
        }
        Ok(Signed {
            publisher: v[0].into(),
            at: v[1].parse().map_err(|_| ProofError("bad time".into()))?,
        })
    }
}

fn proof(publisher: &str, at: u64, key: &[u8], addr: u64) -> Vec<u8> {
    format!("{publisher}:{at}:{}:{addr}", key[0]).into_bytes()
}

fn store_msg(from: u64, key: &[u8], val: Vec<u8>, exp: u32) -> Vec<u8> {
    DhtMsg {
        code: dht_code::STORE,
        src: DhtContactMsg {
            id: vec![9; 32],
            addr: from,
        },
        store: Some(DhtStoreMsg {
            key: key.to_vec(),
            val,
            exp,
        }),
        find: None,
        node: None,
        val: None,
    }
    .encode_to_vec()
}

fn val(addr: u64, proof: &[u8]) -> Vec<u8> {
    Dht::value_bytes(addr, proof)
}

#[test]
fn a_layer_with_proofs_refuses_unproven_stores_and_keeps_each_publishers_newest() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = node(1).with_proofs(Arc::new(TextProofs));
    assert!(a.has_proofs());
    let key = vec![7u8; 32];
    // No proof, a proof for another address, a proof for another key: refused, with
    // an event naming the sender and the address.
    a.handle(now, unix, &store_msg(0x2000, &key, val(5, b""), 2_000));
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &key, val(5, &proof("b", 10, &key, 6)), 2_000),
    );
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &key, val(5, &proof("b", 10, &[8], 5)), 2_000),
    );
    assert_eq!(a.counters().proofs_refused, 3);
    assert_eq!(a.counters().store_refused, 0);
    assert!(a.known(&key, unix).is_empty());
    assert_eq!(
        a.poll_event(),
        Some(Event::ProofRefused {
            from: 0x2000,
            addr: 5,
            why: ProofError("no proof".into())
        })
    );
    // B's entry at 5, then B again at 6 signed later: the newer supersedes.
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &key, val(5, &proof("b", 10, &key, 5)), 2_000),
    );
    assert_eq!(a.known(&key, unix), [5]);
    assert_eq!(a.signer(&key, 5).map(|s| s.at), Some(10));
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &key, val(6, &proof("b", 20, &key, 6)), 2_000),
    );
    assert_eq!(a.known(&key, unix), [6]);
    assert_eq!(a.counters().superseded, 1);
    assert_eq!(a.stored(), 1);
    // A replay of B's older entry is refused; C's entry for the key lives beside B's,
    // the newest signature first.
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &key, val(5, &proof("b", 10, &key, 5)), 2_000),
    );
    assert_eq!(a.known(&key, unix), [6]);
    assert_eq!(a.counters().superseded, 2);
    // The same entry again (same signature time): kept, nothing superseded; B signing
    // again at the same address: its newer proof replaces the stored one.
    let st = |at: u64| store_msg(0x2000, &key, val(6, &proof("b", at, &key, 6)), 2_500);
    a.handle(now, unix, &st(20));
    assert_eq!((a.counters().superseded, a.stored()), (2, 1));
    a.handle(now, unix, &st(25));
    assert_eq!(a.signer(&key, 6).map(|s| s.at), Some(25));
    assert_eq!(a.counters().superseded, 2);
    // An older signature for the same address: refused, the newer proof stays.
    a.handle(now, unix, &st(24));
    assert_eq!(a.signer(&key, 6).map(|s| s.at), Some(25));
    a.handle(
        now,
        unix,
        &store_msg(0x2001, &key, val(9, &proof("c", 30, &key, 9)), 2_000),
    );
    assert_eq!(a.known(&key, unix), [9, 6]);
    assert_eq!(a.stored(), 2);
    // A FIND_VALUE answered with the proofs: a node of the same layer admits both.
    let req = DhtMsg {
        code: dht_code::FIND_VALUE_REQ,
        src: DhtContactMsg {
            id: vec![3; 32],
            addr: 0x1003,
        },
        store: None,
        find: Some(DhtFindReqMsg {
            cookie: 1,
            key: key.clone(),
        }),
        node: None,
        val: None,
    };
    a.handle(now, unix, &req.encode_to_vec());
    let rsp = std::iter::from_fn(|| a.poll_transmit())
        .find(|t| t.dst == 0x1003)
        .unwrap();
    let m = pb::decode::<DhtMsg>(&rsp.msg).unwrap();
    let values = m.val.unwrap().values;
    assert_eq!(
        values,
        [
            val(9, &proof("c", 30, &key, 9)),
            val(6, &proof("b", 25, &key, 6))
        ]
    );
}

#[test]
fn responses_give_proven_values_only_the_newest_of_each_publisher_first() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let key = vec![7u8; 32];
    let mut a = node(1).with_proofs(Arc::new(TextProofs));
    // A knows B (0x1002), asks it for the key.
    let mut b = node(2);
    b.bootstrap(now, 0x1001);
    let hello = b.poll_transmit().unwrap();
    a.handle(now, unix, &hello.msg);
    while a.poll_transmit().is_some() {}
    let id = a.lookup(now, unix, key.clone()).unwrap();
    let ask = a.poll_transmit().unwrap();
    let cookie = pb::decode::<DhtMsg>(&ask.msg).unwrap().find.unwrap().cookie;
    // B answers with: an unproven value, C's old and new entries, D's entry.
    let rsp = DhtMsg {
        code: dht_code::FIND_VALUE_RSP,
        src: DhtContactMsg {
            id: b.id().to_vec(),
            addr: 0x1002,
        },
        store: None,
        find: None,
        node: Some(DhtFindNodeRspMsg {
            cookie,
            key: key.clone(),
            contacts: vec![],
        }),
        val: Some(DhtFindValueRspMsg {
            values: vec![
                val(4, b""),
                val(5, &proof("c", 10, &key, 5)),
                val(8, &proof("d", 15, &key, 8)),
                val(6, &proof("c", 20, &key, 6)),
            ],
        }),
    };
    a.handle(now, unix, &rsp.encode_to_vec());
    let mut found = None;
    while let Some(e) = a.poll_event() {
        if let Event::Found { id: i, addrs, .. } = e {
            assert_eq!(i, id);
            found = Some(addrs);
        }
    }
    assert_eq!(
        found,
        Some(vec![6, 8]),
        "C's newest, then D's; 4 unproven, 5 superseded"
    );
    assert_eq!(a.counters().proofs_refused, 1);
}

/// The values a FIND_VALUE answer carries for `key` from `a` (asked by 0x1003).
fn answer_values(a: &mut Dht, now: Instant, unix: UnixTime, key: &[u8]) -> Vec<Vec<u8>> {
    let req = DhtMsg {
        code: dht_code::FIND_VALUE_REQ,
        src: DhtContactMsg {
            id: vec![3; 32],
            addr: 0x1003,
        },
        store: None,
        find: Some(DhtFindReqMsg {
            cookie: 1,
            key: key.to_vec(),
        }),
        node: None,
        val: None,
    };
    a.handle(now, unix, &req.encode_to_vec());
    let rsp = std::iter::from_fn(|| a.poll_transmit())
        .find(|t| t.dst == 0x1003)
        .unwrap();
    pb::decode::<DhtMsg>(&rsp.msg).unwrap().val.unwrap().values
}

#[test]
fn answers_with_proofs_fit_in_a_frame_and_always_carry_one_value() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = node(1).with_proofs(Arc::new(TextProofs));
    let fill = |a: &mut Dht, key: &[u8], pad: usize, n: u64| {
        for addr in 5..5 + n {
            let who = format!("{addr}{}", "x".repeat(pad));
            let v = val(addr, &proof(&who, 10 + addr, key, addr));
            a.handle(now, unix, &store_msg(0x2000, key, v, 2_000));
        }
    };
    // Three publishers, proofs of ~600 bytes each: one fits in 1,024 bytes, the newest.
    let key = vec![7u8; 32];
    fill(&mut a, &key, 590, 3);
    assert_eq!(a.known(&key, unix).len(), 3);
    let v = answer_values(&mut a, now, unix, &key);
    assert_eq!(v.len(), 1);
    assert_eq!(DhtMsg::split_value(&v[0]).map(|x| x.0), Some(7));
    // Small proofs: all three.
    let key2 = vec![8u8; 32];
    fill(&mut a, &key2, 0, 3);
    assert_eq!(answer_values(&mut a, now, unix, &key2).len(), 3);
    // One value longer than the budget alone still goes.
    let key3 = vec![9u8; 32];
    fill(&mut a, &key3, 1_200, 1);
    assert_eq!(answer_values(&mut a, now, unix, &key3).len(), 1);
    // Two of ~500 bytes fit together: the budget bounds the bytes, not the count.
    let key4 = vec![10u8; 32];
    fill(&mut a, &key4, 480, 2);
    let v = answer_values(&mut a, now, unix, &key4);
    let total: usize = v.iter().map(Vec::len).sum();
    assert!(
        v.len() == 2 && total <= PROVEN_VALUE_BYTES,
        "{} {total}",
        v.len()
    );
    // An open layer counts values, not bytes: 8 at most.
    let mut o = node(2);
    for addr in 1..=10u64 {
        o.handle(
            now,
            unix,
            &store_msg(0x2000 + addr, &key, val(addr, b""), 2_000),
        );
    }
    assert_eq!(answer_values(&mut o, now, unix, &key).len(), pb::MAX_VALUES);
}

#[test]
fn entries_list_ours_and_stored_ones_until_they_expire_and_unregister_withdraws_ours() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let key = vec![7u8; 32];
    let other = vec![8u8; 32];
    let mut a = node(1);
    a.register(now, unix, key.clone());
    a.handle(now, unix, &store_msg(0x2000, &other, val(5, b""), 2_000));
    let exp = u32::try_from(unix.as_secs() + u64::from(DhtConfig::default().t_expire)).unwrap();
    assert_eq!(
        a.entries(),
        [
            (key.clone(), 0x1001, true, exp),
            (other.clone(), 5, false, 2_000)
        ]
    );
    // A value lives until its expiry, not at it.
    assert_eq!(a.known(&other, UnixTime::from_secs(1_999)), [5]);
    assert!(a.known(&other, UnixTime::from_secs(2_000)).is_empty());
    a.unregister(&key);
    assert!(a.known(&key, unix).is_empty());
    assert_eq!(a.entries(), [(other, 5, false, 2_000)]);
}

#[test]
fn a_stored_value_expires_within_t_expire_and_a_full_table_keeps_no_trace_of_refusals() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let cfg = DhtConfig {
        max_values: 4,
        ..DhtConfig::default()
    };
    let mut a = Dht::new(cfg, vec![1; 32], 0x1001, 1);
    // An expiry in 2106: kept until now + t_expire only.
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &[7; 32], val(5, b""), u32::MAX),
    );
    let latest = 1_000 + cfg.t_expire;
    assert_eq!(a.entries(), [(vec![7; 32], 5, false, latest)]);
    assert!(a
        .known(&[7; 32], UnixTime::from_secs(u64::from(latest)))
        .is_empty());
    // A refresh cannot push it further either.
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &[7; 32], val(5, b""), u32::MAX),
    );
    assert_eq!(a.entries(), [(vec![7; 32], 5, false, latest)]);
    for k in 1..=3u8 {
        a.handle(now, unix, &store_msg(0x2000, &[k; 32], val(5, b""), 2_000));
    }
    assert_eq!(a.values.len(), 4);
    let refused = a.counters().store_refused;
    for k in 100..200u8 {
        a.handle(now, unix, &store_msg(0x2000, &[k; 32], val(5, b""), 2_000));
    }
    assert_eq!(a.counters().store_refused, refused + 100);
    assert_eq!(a.values.len(), 4, "no empty entry per refused key");
    // A value already held is still refreshed when the table is full.
    a.handle(now, unix, &store_msg(0x2000, &[1; 32], val(5, b""), 3_000));
    assert!(a.entries().contains(&(vec![1; 32], 5, false, 3_000)));
}

#[test]
fn an_open_layer_refuses_values_with_proofs_and_sends_eight_bytes() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let key = vec![7u8; 32];
    let mut a = node(1);
    assert!(!a.has_proofs());
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &key, val(5, b"x:1:7:5"), 2_000),
    );
    assert_eq!(a.counters().proofs_refused, 1);
    assert!(a.known(&key, unix).is_empty());
    a.handle(now, unix, &store_msg(0x2000, &key, val(5, b""), 2_000));
    assert_eq!(a.known(&key, unix), [5]);
    // Our registration goes out as the reference's 8 bytes; with proofs, with ours.
    let mut b = node(2);
    b.bootstrap(now, 0x1001);
    while b.poll_transmit().is_some() {}
    let hello = DhtMsg {
        code: dht_code::FIND_NODE_RSP,
        src: DhtContactMsg {
            id: a.id().to_vec(),
            addr: 0x1001,
        },
        store: None,
        find: None,
        node: Some(DhtFindNodeRspMsg {
            cookie: 0,
            key: b.id().to_vec(),
            contacts: vec![],
        }),
        val: None,
    };
    b.handle(now, unix, &hello.encode_to_vec());
    b.register(now, unix, key.clone());
    let stores: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit())
        .filter_map(|t| pb::decode::<DhtMsg>(&t.msg).ok()?.store.map(|s| s.val))
        .collect();
    assert!(!stores.is_empty());
    assert!(
        stores.iter().all(|v| *v == 0x1002u64.to_be_bytes()),
        "{stores:?}"
    );
    let p = proof("b", 1, &key, 0x1002);
    b.register_signed(now, unix, key.clone(), p.clone());
    let stores: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit())
        .filter_map(|t| pb::decode::<DhtMsg>(&t.msg).ok()?.store.map(|s| s.val))
        .collect();
    assert!(!stores.is_empty());
    assert!(stores.iter().all(|v| *v == val(0x1002, &p)), "{stores:?}");
    // Moving in an open layer: stored again at the new address, 8 bytes.
    b.register(now, unix, key.clone());
    while b.poll_transmit().is_some() {}
    b.readdress(now, unix, 0x1008);
    let stores: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit())
        .filter_map(|t| pb::decode::<DhtMsg>(&t.msg).ok()?.store.map(|s| s.val))
        .collect();
    assert!(!stores.is_empty());
    assert!(
        stores.iter().all(|v| *v == 0x1008u64.to_be_bytes()),
        "{stores:?}"
    );
    // Moving signs again for the new address.
    b.readdress_signed(now, unix, 0x1009, &mut |k, addr| proof("b", 2, k, addr));
    let stores: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit())
        .filter_map(|t| pb::decode::<DhtMsg>(&t.msg).ok()?.store.map(|s| s.val))
        .collect();
    assert!(!stores.is_empty());
    assert!(
        stores
            .iter()
            .all(|v| *v == val(0x1009, &proof("b", 2, &key, 0x1009))),
        "{stores:?}"
    );
}

#[test]
fn a_forgotten_address_leaves_the_values_and_the_buckets() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_796_083_200);
    let mut nodes: Vec<Dht> = (0..4).map(node).collect();
    for i in 1..nodes.len() {
        nodes[i].bootstrap(now, 0x1000);
        settle(&mut nodes, now, unix);
    }
    // Two members publish one name, a third another; node 0 holds copies.
    let key = o7s_wire::hash::HashAlgo::Sha3_256.hash("oping");
    let other = o7s_wire::hash::HashAlgo::Sha3_256.hash("other");
    nodes[2].register(now, unix, key.clone());
    nodes[3].register(now, unix, key.clone());
    nodes[3].register(now, unix, other.clone());
    settle(&mut nodes, now, unix);
    let mut known = nodes[0].known(&key, unix);
    known.sort_unstable();
    assert_eq!(known, [0x1002, 0x1003]);
    let (stored, contacts) = (nodes[0].stored(), nodes[0].contacts());
    assert_eq!(nodes[0].forget_address(0x1003), 2);
    assert_eq!(nodes[0].known(&key, unix), [0x1002]);
    assert!(nodes[0].known(&other, unix).is_empty());
    assert_eq!(nodes[0].stored(), stored - 2);
    assert_eq!(nodes[0].contacts(), contacts - 1);
    assert!(nodes[0].entries().iter().all(|(_, a, _, _)| *a != 0x1003));
    // Again: nothing more; our own address is never forgotten.
    assert_eq!(nodes[0].forget_address(0x1003), 0);
    nodes[0].register(now, unix, other.clone());
    assert_eq!(nodes[0].forget_address(0x1000), 0);
    assert_eq!(nodes[0].known(&other, unix), [0x1000]);
}

#[test]
fn bad_and_unsolicited_messages_are_dropped_and_counted() {
    let now = Instant::now();
    let mut a = node(1);
    a.handle(now, UnixTime::from_secs(0), &[0xff, 0x00]);
    // A response nobody asked for.
    let m = DhtMsg {
        code: dht_code::FIND_NODE_RSP,
        src: DhtContactMsg {
            id: vec![9; 32],
            addr: 77,
        },
        store: None,
        find: None,
        node: Some(DhtFindNodeRspMsg {
            cookie: 5,
            key: vec![1; 32],
            contacts: vec![],
        }),
        val: None,
    };
    a.handle(now, UnixTime::from_secs(0), &m.encode_to_vec());
    // A STORE already expired, and one with a short key.
    let st = |key: Vec<u8>, exp| DhtMsg {
        code: dht_code::STORE,
        src: DhtContactMsg {
            id: vec![9; 32],
            addr: 77,
        },
        store: Some(DhtStoreMsg {
            key,
            val: 5u64.to_be_bytes().to_vec(),
            exp,
        }),
        find: None,
        node: None,
        val: None,
    };
    a.handle(
        now,
        UnixTime::from_secs(100),
        &st(vec![1; 32], 50).encode_to_vec(),
    );
    a.handle(
        now,
        UnixTime::from_secs(100),
        &st(vec![1; 4], 500).encode_to_vec(),
    );
    let c = a.counters();
    assert_eq!(
        (c.dropped_bad, c.dropped_unsolicited, c.store_refused),
        (1, 1, 2)
    );
    assert!(a.known(&[1; 32], UnixTime::from_secs(100)).is_empty());
}

#[test]
fn values_are_replicated_republished_and_expire_on_time() {
    let t0 = Instant::now();
    let unix = UnixTime::from_secs(1_000_000);
    let cfg = DhtConfig {
        t_expire: 100,
        t_replicate: 10,
        t_refresh: 10,
        ..DhtConfig::default()
    };
    let mk = |i: u8| {
        let mut id = vec![0u8; 32];
        id[0] = i;
        Dht::new(cfg, id, 0x1000 + u64::from(i), u64::from(i))
    };
    let (mut a, mut b, mut c) = (mk(1), mk(2), mk(3));
    // b and c know a; a knows both (from their messages).
    for x in [&mut b, &mut c] {
        x.bootstrap(t0, 0x1001);
    }
    let hello_b = b.poll_transmit().unwrap();
    let hello_c = c.poll_transmit().unwrap();
    a.handle(t0, unix, &hello_b.msg);
    a.handle(t0, unix, &hello_c.msg);
    while a.poll_transmit().is_some() {}
    // b's value stored at a, expiring in 100 s.
    let key = vec![9u8; 32];
    let store = DhtMsg {
        code: dht_code::STORE,
        src: DhtContactMsg {
            id: b.id().to_vec(),
            addr: 0x1002,
        },
        store: Some(DhtStoreMsg {
            key: key.clone(),
            val: 0x1002u64.to_be_bytes().to_vec(),
            exp: (unix.as_secs() + 100) as u32,
        }),
        find: None,
        node: None,
        val: None,
    };
    a.handle(t0, unix, &store.encode_to_vec());
    assert_eq!(a.stored(), 1);
    // After t_replicate it is sent on (to c: not back to b, whose value it is).
    let t = t0 + Duration::from_secs(12);
    run_to(&mut a, t);
    let sent: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
    let stores: Vec<u64> = sent
        .iter()
        .filter(|x| DhtMsg::decode(x.msg.as_slice()).unwrap().code == dht_code::STORE)
        .map(|x| x.dst)
        .collect();
    assert_eq!(stores, vec![0x1003], "replicated to c");
    // Past its expiry it is gone.
    let t = t0 + Duration::from_secs(101);
    run_to(&mut a, t);
    assert_eq!(a.stored(), 0);
    assert_eq!(a.counters().expired, 1);
    assert!(a.known(&key, unix + Duration::from_secs(101)).is_empty());
    // Our own registration is republished within 5 x t_replicate of its expiry.
    // (b answers d's requests: a contact that never answers leaves the buckets.)
    let mut d = mk(4);
    d.handle(t0, unix, &hello_b.msg);
    d.register(t0, unix, key.clone());
    let mut republished = 0;
    for s in 0..=52 {
        let t = t0 + Duration::from_secs(s);
        run_to(&mut d, t);
        while let Some(x) = d.poll_transmit() {
            let code = DhtMsg::decode(x.msg.as_slice()).unwrap().code;
            if code == dht_code::STORE && s > 0 {
                republished += 1;
            }
            b.handle(t, unix + Duration::from_secs(s), &x.msg);
            while let Some(r) = b.poll_transmit() {
                if r.dst == 0x1004 {
                    d.handle(t, unix + Duration::from_secs(s), &r.msg);
                }
            }
        }
    }
    assert!(republished >= 1, "republished before it expires");
}

/// A 32-byte id whose first 8 bytes (the part distances read) are `prefix`.
fn id_of(prefix: u64) -> Vec<u8> {
    let mut id = vec![0u8; 32];
    id[..8].copy_from_slice(&prefix.to_be_bytes());
    id
}

fn contact(prefix: u64, addr: u64) -> Contact {
    Contact {
        id: id_of(prefix),
        addr,
    }
}

/// A node with id 0 at 0x1000.
fn zero(cfg: DhtConfig) -> Dht {
    Dht::new(cfg, vec![0; 32], 0x1000, 11)
}

/// Everything `a` sends, decoded, with its destination.
fn sent(a: &mut Dht) -> Vec<(u64, DhtMsg)> {
    std::iter::from_fn(|| a.poll_transmit())
        .map(|t| (t.dst, pb::decode::<DhtMsg>(&t.msg).unwrap()))
        .collect()
}

/// Runs `a`'s timers up to `t` (bounded: a timer that never moves on fails the test).
fn run_to(a: &mut Dht, t: Instant) {
    for _ in 0..10_000 {
        match a.poll_timeout() {
            Some(x) if x <= t => a.handle_timeout(x),
            _ => return,
        }
    }
    panic!("the timers did not settle");
}

/// A response from `from` (id prefix, address) to a request for `key` with `cookie`.
fn response(
    from: (u64, u64),
    cookie: u64,
    key: &[u8],
    contacts: Vec<DhtContactMsg>,
    values: Option<Vec<Vec<u8>>>,
) -> Vec<u8> {
    DhtMsg {
        code: if values.is_some() {
            dht_code::FIND_VALUE_RSP
        } else {
            dht_code::FIND_NODE_RSP
        },
        src: DhtContactMsg {
            id: id_of(from.0),
            addr: from.1,
        },
        store: None,
        find: None,
        node: Some(DhtFindNodeRspMsg {
            cookie,
            key: key.to_vec(),
            contacts,
        }),
        val: values.map(|values| DhtFindValueRspMsg { values }),
    }
    .encode_to_vec()
}

#[test]
fn a_lookup_fed_ever_closer_made_up_contacts_ends_after_its_most_asked() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = node(1);
    a.bootstrap(now, 0x2000);
    let mut asked = 0u64;
    let mut next = 0x3000u64;
    // Each request answered at once with one made-up contact closer to the key than any.
    for _ in 0..10_000 {
        let Some(t) = a.poll_transmit() else { break };
        let m = pb::decode::<DhtMsg>(&t.msg).unwrap();
        let Some(f) = m.find else { continue };
        asked += 1;
        let mut id = f.key.clone();
        // Distance 2^40 - next: strictly closer each time.
        let d = (1u64 << 40) - next;
        for (b, x) in id.iter_mut().zip(d.to_be_bytes()) {
            *b ^= x;
        }
        next += 1;
        let rsp = DhtMsg {
            code: dht_code::FIND_NODE_RSP,
            src: DhtContactMsg {
                id: vec![0x55; 32],
                addr: t.dst,
            },
            store: None,
            find: None,
            node: Some(DhtFindNodeRspMsg {
                cookie: f.cookie,
                key: f.key,
                contacts: vec![DhtContactMsg { id, addr: next }],
            }),
            val: None,
        };
        a.handle(now, unix, &rsp.encode_to_vec());
    }
    assert_eq!(asked, lookup::max_asked(DhtConfig::default().k) as u64);
    assert_eq!(
        (
            lookup::max_asked(1),
            lookup::max_asked(8),
            lookup::max_asked(20)
        ),
        (64, 64, 160)
    );
    assert_eq!(a.counters().lookups_cut, 1);
    assert!(a.poll_transmit().is_none(), "the lookup is over");
}

#[test]
fn distance_is_the_xor_of_the_first_eight_bytes_read_big_endian() {
    let a = [0xF0, 0x0F, 1, 2, 3, 4, 5, 6, 99];
    let b = [0xFF, 0xFF, 1, 2, 3, 4, 5, 7, 1];
    assert_eq!(distance(&a, &b), 0x0FF0_0000_0000_0001);
    assert_eq!(distance(&a, &a), 0);
    // A short id reads as if padded with zeros.
    assert_eq!(distance(&[1], &[]), 1 << 56);
}

#[test]
fn buckets_go_by_leading_zeros_keep_the_oldest_k_and_follow_a_moved_node() {
    let mut a = zero(DhtConfig::default());
    assert_eq!(a.bucket_of(&id_of(1)), 63);
    assert_eq!(a.bucket_of(&id_of(1 << 63)), 0);
    assert_eq!(a.bucket_of(&id_of(0)), 64);
    // Twenty contacts, each in a bucket of its own: all kept.
    for j in 0..20u64 {
        a.learn(contact(1 << j, 0x2000 + j), true);
    }
    assert_eq!(a.contacts(), 20);
    // Ten in bucket 0: the first k (8) stay, later ones are not let in.
    for i in 0..10u64 {
        a.learn(contact((1 << 63) | i, 0x3000 + i), true);
    }
    assert_eq!(a.contacts(), 28);
    let b0: Vec<u64> = a.buckets[0].iter().map(|c| c.addr).collect();
    assert_eq!(b0, (0x3000..0x3008).collect::<Vec<u64>>());
    // Our own address, address 0 and an id of another length are never learnt.
    a.learn(contact(1 << 40, 0x1000), true);
    a.learn(contact(1 << 41, 0), true);
    // Nor an address beyond 32 bits (the highest 32-bit one is an address).
    a.learn(contact(1 << 42, MAX_ADDR + 1), true);
    assert_eq!(a.contacts(), 28);
    a.learn(contact(1 << 43, MAX_ADDR), true);
    assert_eq!(a.contacts(), 29);
    a.forget_address(MAX_ADDR);
    assert_eq!(a.contacts(), 28);
    a.learn(
        Contact {
            id: vec![1; 4],
            addr: 0x4000,
        },
        true,
    );
    assert_eq!(a.contacts(), 28);
    // A node that moved (same id, new address) and an address reused by another id
    // replace the old entry.
    a.learn(contact(1, 0x5000), true);
    assert_eq!(a.contacts(), 28);
    assert_eq!(
        a.buckets[63].iter().map(|c| c.addr).collect::<Vec<_>>(),
        [0x5000]
    );
    a.learn(contact(3, 0x2001), true);
    assert_eq!(a.contacts(), 28);
    assert!(a.buckets[62]
        .iter()
        .all(|c| c.addr == 0x2001 && c.id == id_of(3)));
    assert_eq!(a.buckets[62].len(), 1);
}

#[test]
fn cookies_differ_and_a_response_must_match_key_cookie_and_sender() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    for (p, addr) in [(1, 0x2001), (2, 0x2002), (4, 0x2004)] {
        a.learn(contact(p, addr), true);
    }
    let key = id_of(7);
    let id = a.lookup(now, unix, key.clone()).unwrap();
    let asks = sent(&mut a);
    assert_eq!(asks.len(), 3, "alpha requests");
    let cookie = |dst: u64| {
        asks.iter()
            .find(|(d, _)| *d == dst)
            .and_then(|(_, m)| m.find.as_ref())
            .map(|f| f.cookie)
            .unwrap()
    };
    let cookies: HashSet<u64> = asks.iter().map(|(d, _)| cookie(*d)).collect();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    let c1 = cookie(0x2001);
    // Another cookie, another key, another sender with B's cookie: unsolicited.
    a.handle(
        now,
        unix,
        &response((1, 0x2001), c1 ^ 1, &key, vec![], Some(vec![])),
    );
    a.handle(
        now,
        unix,
        &response((1, 0x2001), c1, &id_of(8), vec![], Some(vec![])),
    );
    a.handle(
        now,
        unix,
        &response((2, 0x2002), c1, &key, vec![], Some(vec![])),
    );
    assert_eq!(a.counters().dropped_unsolicited, 3);
    assert_eq!(a.lookups[&id].waiting.len(), 3);
    // B's true answer: our address and another; the other is the answer.
    let values = vec![val(0x1000, b""), val(0x7777, b"")];
    a.handle(
        now,
        unix,
        &response((1, 0x2001), c1, &key, vec![], Some(values)),
    );
    assert_eq!(
        a.poll_event(),
        Some(Event::Found {
            id,
            key: key.clone(),
            addrs: vec![0x7777]
        })
    );
    // Only ours: ours.
    let key2 = id_of(9);
    let id2 = a.lookup(now, unix, key2.clone()).unwrap();
    let asks = sent(&mut a);
    let (dst, m) = asks.first().unwrap();
    let c = m.find.as_ref().unwrap().cookie;
    let from = (*dst - 0x2000, *dst);
    let values = vec![val(0x1000, b"")];
    a.handle(now, unix, &response(from, c, &key2, vec![], Some(values)));
    assert_eq!(
        a.poll_event(),
        Some(Event::Found {
            id: id2,
            key: key2,
            addrs: vec![0x1000]
        })
    );
}

#[test]
fn a_responses_contacts_are_bounded_and_unusable_ones_skipped() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    let key = id_of(0xAAAA_0000_0000_0000);
    let b = 0xAAAA_0000_0000_0001;
    a.learn(contact(b, 0x2001), true);
    let id = a.lookup(now, unix, key.clone()).unwrap();
    let asks = sent(&mut a);
    let c1 = asks[0].1.find.as_ref().unwrap().cookie;
    let cm = |prefix: u64, addr: u64| DhtContactMsg {
        id: id_of(prefix),
        addr,
    };
    // Closer than all others: one at address 0, one with a short id, one at our own
    // address; then 17 good ones (20 is the most a response carries).
    let mut contacts = vec![
        cm(0xAAAA_0000_0000_0000, 0),
        DhtContactMsg {
            id: vec![0xAA, 0xAA, 0, 0],
            addr: 0x5555,
        },
        cm(0xAAAA_0000_0000_0002, 0x1000),
    ];
    contacts.extend((0..17u64).map(|i| cm(0xAAAA_0000_0000_1000 + i, 0x4000 + i)));
    a.handle(
        now,
        unix,
        &response((b, 0x2001), c1, &key, contacts, Some(vec![])),
    );
    assert_eq!(a.counters().dropped_bad, 0);
    assert_eq!(a.lookups[&id].shortlist.len(), 18);
    let asks = sent(&mut a);
    let dsts: Vec<u64> = asks.iter().map(|(d, _)| *d).collect();
    assert_eq!(dsts, [0x4000, 0x4001, 0x4002]);
    // All in bucket 0 (their ids start with a 1 bit, ours is 0): B and the first 7.
    assert_eq!(a.contacts(), 8);
    // 20 more from the next: the shortlist keeps 4 x k (32), the closest.
    let c2 = asks[0].1.find.as_ref().unwrap().cookie;
    let more = (0..20u64)
        .map(|i| cm(0xAAAA_0000_0000_2000 + i, 0x6000 + i))
        .collect();
    let from = (0xAAAA_0000_0000_1000, 0x4000);
    a.handle(now, unix, &response(from, c2, &key, more, Some(vec![])));
    let l = &a.lookups[&id];
    assert_eq!(l.shortlist.len(), 32);
    assert_eq!(
        l.shortlist.values().last().map(|c| c.addr),
        Some(0x6000 + 13)
    );
}

#[test]
fn requests_lookups_and_values_beyond_the_bounds_are_refused_and_counted() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig {
        max_lookups: 2,
        max_values: 2,
        ..DhtConfig::default()
    });
    a.learn(contact(1, 0x2001), true);
    assert!(a.lookup(now, unix, id_of(7)).is_some());
    assert!(a.lookup(now, unix, id_of(8)).is_some());
    assert_eq!(a.lookup(now, unix, id_of(9)), None);
    assert_eq!(a.counters().lookups_refused, 1);
    while a.poll_transmit().is_some() {}
    // A sender with a short id, a sender at address 0: dropped as bad.
    let from = |id: Vec<u8>, addr| DhtMsg {
        code: dht_code::FIND_NODE_REQ,
        src: DhtContactMsg { id, addr },
        store: None,
        find: Some(DhtFindReqMsg {
            cookie: 5,
            key: id_of(3),
        }),
        node: None,
        val: None,
    };
    a.handle(now, unix, &from(vec![1; 4], 0x2002).encode_to_vec());
    a.handle(now, unix, &from(id_of(2), 0).encode_to_vec());
    assert_eq!((a.counters().dropped_bad, a.counters().received), (2, 0));
    assert!(a.poll_transmit().is_none());
    // A request for a key of another length: counted, not answered.
    let mut short = from(id_of(2), 0x2002);
    short.find = Some(DhtFindReqMsg {
        cookie: 5,
        key: vec![3; 4],
    });
    a.handle(now, unix, &short.encode_to_vec());
    assert_eq!((a.counters().dropped_bad, a.counters().received), (3, 1));
    assert!(a.poll_transmit().is_none());
    // A STORE naming our own address; three values where two fit.
    a.handle(
        now,
        unix,
        &store_msg(0x2003, &id_of(4), val(0x1000, b""), 2_000),
    );
    assert_eq!((a.counters().store_refused, a.stored()), (1, 0));
    for k in 5..8u64 {
        a.handle(
            now,
            unix,
            &store_msg(0x2003, &id_of(k), val(0x3000 + k, b""), 2_000),
        );
    }
    assert_eq!((a.counters().store_refused, a.stored()), (2, 2));
    assert!(a.known(&id_of(7), unix).is_empty());
    assert_eq!(a.counters().received, 5);
}

#[test]
fn a_request_that_times_out_moves_its_lookup_on() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    a.learn(contact(1, 0x2001), true);
    let key = id_of(7);
    let id = a.lookup(now, unix, key.clone()).unwrap();
    assert_eq!(sent(&mut a).len(), 1);
    assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(2)));
    a.handle_timeout(now + Duration::from_millis(1_999));
    assert_eq!(a.poll_event(), None);
    a.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(a.poll_event(), Some(Event::NotFound { id, key }));
}

#[test]
fn the_periodic_work_runs_a_fifth_of_the_shorter_period_after_the_first_call() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    a.register(now, unix, id_of(7));
    assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(180)));
    let mk = |t_replicate, t_refresh| {
        zero(DhtConfig {
            t_replicate,
            t_refresh,
            ..DhtConfig::default()
        })
    };
    assert_eq!(mk(10, 900).work_interval(), Duration::from_secs(2));
    assert_eq!(mk(900, 25).work_interval(), Duration::from_secs(5));
    assert_eq!(mk(3, 900).work_interval(), Duration::from_secs(1));
    // Joining sets it too; a peer that is nobody or ourselves is not asked.
    let mut b = zero(DhtConfig::default());
    b.bootstrap(now, 0);
    b.bootstrap(now, 0x1000);
    assert!(b.poll_transmit().is_none());
    assert_eq!(b.next_work, None);
    b.bootstrap(now, 0x2000);
    assert_eq!(sent(&mut b).len(), 1);
    assert_eq!(b.next_work, Some(now + Duration::from_secs(180)));
    assert_eq!(b.poll_timeout(), Some(now + Duration::from_secs(2)));
}

/// The STOREs `a` sends, counted.
fn stores(a: &mut Dht) -> usize {
    sent(a)
        .iter()
        .filter(|(_, m)| m.code == dht_code::STORE)
        .count()
}

#[test]
fn our_values_are_republished_five_replication_periods_before_they_expire() {
    let t0 = Instant::now();
    let unix = UnixTime::from_secs(1_000_000);
    let mut d = zero(DhtConfig {
        t_expire: 100,
        t_replicate: 10,
        t_refresh: 1_000,
        ..DhtConfig::default()
    });
    d.learn(contact(1, 0x2001), true);
    d.register(t0, unix, id_of(7));
    assert!(stores(&mut d) >= 1);
    // The registration's node lookup ends (B does not answer) and stores at B again.
    run_to(&mut d, t0 + Duration::from_secs(2));
    sent(&mut d);
    // Expiry at +100 s: nothing more until +50 s (the work runs every 2 s), then again.
    run_to(&mut d, t0 + Duration::from_secs(48));
    assert_eq!(stores(&mut d), 0);
    run_to(&mut d, t0 + Duration::from_secs(50));
    assert!(stores(&mut d) >= 1);
}

/// The FIND_NODE requests `a` sends to `dst`, counted.
fn finds_to(a: &mut Dht, dst: u64) -> usize {
    sent(a)
        .iter()
        .filter(|(d, m)| *d == dst && m.code == dht_code::FIND_NODE_REQ)
        .count()
}

#[test]
fn a_lonely_node_asks_its_bootstrap_peer_again_and_a_connected_one_does_not() {
    let t0 = Instant::now();
    let cfg = DhtConfig {
        t_replicate: 10,
        t_refresh: 10,
        ..DhtConfig::default()
    };
    let mut a = zero(cfg);
    a.bootstrap(t0, 0x2000);
    assert_eq!(finds_to(&mut a, 0x2000), 1);
    run_to(&mut a, t0 + Duration::from_secs(2));
    assert_eq!(a.contacts(), 0);
    assert_eq!(finds_to(&mut a, 0x2000), 1, "asked again");
    let mut b = zero(cfg);
    b.bootstrap(t0, 0x2000);
    b.learn(contact(1, 0x3000), true);
    sent(&mut b);
    run_to(&mut b, t0 + Duration::from_secs(2));
    let out = sent(&mut b);
    assert!(out.iter().all(|(d, _)| *d != 0x2000), "{out:?}");
    assert_eq!(out.len(), 1, "the refresh asks the contact: {out:?}");
}

#[test]
fn buckets_are_refreshed_every_t_refresh_not_every_work_turn() {
    let t0 = Instant::now();
    let mut a = zero(DhtConfig {
        t_replicate: 10,
        t_refresh: 20,
        ..DhtConfig::default()
    });
    a.learn(contact(1, 0x2001), true);
    a.tick(t0, UnixTime::from_secs(1_000));
    run_to(&mut a, t0 + Duration::from_secs(2));
    assert_eq!(finds_to(&mut a, 0x2001), 1);
    run_to(&mut a, t0 + Duration::from_secs(21));
    assert_eq!(finds_to(&mut a, 0x2001), 0);
    run_to(&mut a, t0 + Duration::from_secs(22));
    assert_eq!(finds_to(&mut a, 0x2001), 1);
}

#[test]
fn a_forgotten_address_comes_back_only_by_itself_or_when_told() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    a.learn(contact(1, 0x2001), true);
    a.learn(contact(2, 0x2002), true);
    assert_eq!(a.forget_address(0x2002), 0);
    assert_eq!(a.contacts(), 1);
    // B (0x2001) still knows 0x2002 and names it in an answer: not learnt again.
    let key = id_of(7);
    a.lookup(now, unix, key.clone()).unwrap();
    let c1 = sent(&mut a)[0].1.find.as_ref().unwrap().cookie;
    let gone = DhtContactMsg {
        id: id_of(2),
        addr: 0x2002,
    };
    let rsp = response((1, 0x2001), c1, &key, vec![gone.clone()], Some(vec![]));
    a.handle(now, unix, &rsp);
    assert_eq!(a.contacts(), 1);
    assert!(sent(&mut a).iter().all(|(d, _)| *d != 0x2002));
    // Told it is back (a route again): the next answer naming it is believed.
    a.returned(0x2002);
    a.lookup(now, unix, id_of(8)).unwrap();
    let c2 = sent(&mut a)[0].1.find.as_ref().unwrap().cookie;
    let rsp = response((1, 0x2001), c2, &id_of(8), vec![gone], Some(vec![]));
    a.handle(now, unix, &rsp);
    assert_eq!(a.contacts(), 2);
    // Forgotten again, then a message from it: it is back by itself.
    a.forget_address(0x2002);
    assert_eq!(a.contacts(), 1);
    a.handle(
        now,
        unix,
        &store_msg(0x2002, &id_of(9), val(0x2002, b""), 2_000),
    );
    // (store_msg's sender id is [9; 32].)
    assert_eq!(a.contacts(), 2);
    assert_eq!(a.known(&id_of(9), unix), [0x2002]);
}

#[test]
fn the_forgotten_addresses_kept_out_are_bounded_oldest_first() {
    let mut a = zero(DhtConfig::default());
    // (Above our own address, 0x1000, which is never forgotten.)
    let at = |i: u64| 0x10_0000 + i;
    for i in 1..=MAX_GONE as u64 + 1 {
        a.forget_address(at(i));
    }
    assert_eq!((a.gone.len(), a.gone_order.len()), (MAX_GONE, MAX_GONE));
    assert!(!a.gone.contains(&at(1)) && a.gone.contains(&at(2)));
    assert!(a.gone.contains(&at(MAX_GONE as u64 + 1)));
    // One back leaves the order too.
    a.returned(at(2));
    assert!(!a.gone.contains(&at(2)));
    assert_eq!(a.gone_order.front(), Some(&at(3)));
    assert_eq!(a.gone_order.len(), MAX_GONE - 1);
}

/// One key holds at most MAX_VALUES_PER_KEY values: a later-expiring value takes the place of
/// the one that expires first, an earlier-expiring one is refused; other keys are untouched.
#[test]
fn a_key_holds_a_bounded_number_of_values_the_first_to_expire_making_room() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    let key = id_of(4);
    let n = MAX_VALUES_PER_KEY as u64;
    for i in 0..n {
        // Expiries 1_100, 1_101, ...: 0x3000 expires first.
        let m = store_msg(0x2000, &key, val(0x3000 + i, b""), 1_100 + i as u32);
        a.handle(now, unix, &m);
    }
    assert_eq!(a.stored(), MAX_VALUES_PER_KEY);
    // Expiring before all of them, or with the first: refused.
    a.handle(now, unix, &store_msg(0x2000, &key, val(0x4000, b""), 1_050));
    a.handle(now, unix, &store_msg(0x2000, &key, val(0x4002, b""), 1_100));
    assert_eq!(a.counters().store_refused, 2);
    // Expiring after the first: it goes, this one comes.
    a.handle(now, unix, &store_msg(0x2000, &key, val(0x4001, b""), 1_500));
    assert_eq!(a.stored(), MAX_VALUES_PER_KEY);
    assert_eq!(a.counters().superseded, 1);
    let held: Vec<u64> = a
        .entries()
        .iter()
        .filter(|e| e.0 == key)
        .map(|e| e.1)
        .collect();
    assert_eq!(held.len(), MAX_VALUES_PER_KEY);
    assert!(held.contains(&0x4001) && !held.contains(&0x3000) && !held.contains(&0x4000));
    // Another key is stored as before.
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &id_of(5), val(0x5000, b""), 1_100),
    );
    assert_eq!(a.known(&id_of(5), unix), vec![0x5000]);
}

/// A responder that names made-up ids at its own address (asked already) does not end the
/// lookup: the member that holds the value, fourth closest, is still asked.
#[test]
fn made_up_contacts_at_an_asked_address_do_not_end_a_lookup() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    let key = id_of(0xAAAA_0000_0000_0000);
    // M closest, then two others, then H (alpha 3: H is not asked at first).
    let (m, o1, o2, h) = (
        (0xAAAA_0000_0000_0001, 0x2001),
        (0xAAAA_0000_0000_0100, 0x2002),
        (0xAAAA_0000_0000_0200, 0x2003),
        (0xAAAA_0000_0000_0300, 0x2004),
    );
    for c in [m, o1, o2, h] {
        a.learn(contact(c.0, c.1), true);
    }
    let id = a.lookup(now, unix, key.clone()).unwrap();
    let asks = sent(&mut a);
    let dsts: Vec<u64> = asks.iter().map(|(d, _)| *d).collect();
    assert_eq!(dsts, [m.1, o1.1, o2.1]);
    let cookie = |to: u64| {
        asks.iter()
            .find(|(d, _)| *d == to)
            .and_then(|(_, x)| x.find.as_ref())
            .map(|f| f.cookie)
            .unwrap()
    };
    // M: eight ids closer than anyone's, all at its own address.
    let fakes = (0..8u64)
        .map(|i| DhtContactMsg {
            id: id_of(0xAAAA_0000_0000_0000 | (i + 2) << 8 >> 8 & 0xF),
            addr: m.1,
        })
        .collect();
    a.handle(
        now,
        unix,
        &response(m, cookie(m.1), &key, fakes, Some(vec![])),
    );
    a.handle(
        now,
        unix,
        &response(o1, cookie(o1.1), &key, vec![], Some(vec![])),
    );
    a.handle(
        now,
        unix,
        &response(o2, cookie(o2.1), &key, vec![], Some(vec![])),
    );
    let asks = sent(&mut a);
    assert_eq!(
        asks.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [h.1],
        "H is asked"
    );
    let c = asks[0].1.find.as_ref().unwrap().cookie;
    a.handle(
        now,
        unix,
        &response(h, c, &key, vec![], Some(vec![val(0x7777, b"")])),
    );
    assert_eq!(
        a.poll_event(),
        Some(Event::Found {
            id,
            key,
            addrs: vec![0x7777]
        })
    );
}

/// Anyone can claim any id in a request: an unsolicited message claiming B's id from
/// another address does not move B's entry, nor does one claiming B's address with another
/// id. A response to our request (its cookie) from B's address with another id does.
#[test]
fn a_claimed_id_or_address_does_not_take_over_a_contact_unless_it_answers_our_request() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    let b = (0x8000_0000_0000_0001u64, 0x2001u64);
    a.learn(contact(b.0, b.1), true);
    let req = |id: Vec<u8>, addr: u64| {
        DhtMsg {
            code: dht_code::FIND_NODE_REQ,
            src: DhtContactMsg { id, addr },
            store: None,
            find: Some(DhtFindReqMsg {
                cookie: 5,
                key: id_of(3),
            }),
            node: None,
            val: None,
        }
        .encode_to_vec()
    };
    let where_b = |a: &Dht| {
        a.buckets
            .iter()
            .flatten()
            .map(|c| (distance(&c.id, &[]), c.addr))
            .collect::<Vec<_>>()
    };
    a.handle(now, unix, &req(id_of(b.0), 0x6666));
    a.handle(now, unix, &req(id_of(0x8000_0000_0000_0002), b.1));
    assert_eq!(where_b(&a), [(b.0, b.1)]);
    // (Both requests were answered: to their claimed addresses.)
    assert_eq!(sent(&mut a).len(), 2);
    // Our request to B's address, answered with the cookie under another id (B restarted
    // with a new id): believed.
    let id = a.lookup(now, unix, id_of(0x8000_0000_0000_0003)).unwrap();
    let asks = sent(&mut a);
    let c = asks[0].1.find.as_ref().unwrap().cookie;
    assert_eq!(asks[0].0, b.1);
    // (The response comes from B's address: waiting is by address.)
    a.handle(
        now,
        unix,
        &response(
            (0x8000_0000_0000_0009, b.1),
            c,
            &id_of(0x8000_0000_0000_0003),
            vec![],
            Some(vec![]),
        ),
    );
    assert_eq!(where_b(&a), [(0x8000_0000_0000_0009, b.1)]);
    let _ = id;
}

/// A contact that leaves three requests in a row unanswered leaves the buckets (counted);
/// one that answers in between starts again.
#[test]
fn a_contact_that_never_answers_leaves_the_buckets_after_three_requests() {
    let t0 = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    a.learn(contact(1, 0x2001), true);
    let mut t = t0;
    for i in 0..MAX_FAILS {
        assert_eq!(a.contacts(), 1, "after {i} unanswered");
        a.lookup(t, unix, id_of(7 + u64::from(i))).unwrap();
        assert_eq!(sent(&mut a).len(), 1);
        t += Duration::from_secs(3);
        run_to(&mut a, t);
    }
    assert_eq!(a.contacts(), 0);
    assert_eq!(a.counters().contacts_dropped, 1);
    // One that answers between failures stays.
    let mut b = zero(DhtConfig::default());
    b.learn(contact(1, 0x2001), true);
    let mut t = t0;
    for i in 0..2 * MAX_FAILS {
        b.lookup(t, unix, id_of(7 + u64::from(i))).unwrap();
        let asks = sent(&mut b);
        if i % 2 == 1 {
            let f = asks[0].1.find.as_ref().unwrap();
            b.handle(
                t,
                unix,
                &response((1, 0x2001), f.cookie, &f.key, vec![], Some(vec![])),
            );
        }
        t += Duration::from_secs(3);
        run_to(&mut b, t);
    }
    assert_eq!((b.contacts(), b.counters().contacts_dropped), (1, 0));
    // Requests that claim its address (anyone can: DT carries no source address) prove
    // nothing and start no count again.
    let mut c = zero(DhtConfig::default());
    c.learn(contact(1, 0x2001), true);
    let mut t = t0;
    for i in 0..MAX_FAILS {
        c.lookup(t, unix, id_of(7 + u64::from(i))).unwrap();
        let _ = sent(&mut c);
        let claim = DhtMsg {
            code: dht_code::FIND_NODE_REQ,
            src: DhtContactMsg {
                id: id_of(1),
                addr: 0x2001,
            },
            store: None,
            find: Some(DhtFindReqMsg {
                cookie: 5,
                key: id_of(3),
            }),
            node: None,
            val: None,
        };
        c.handle(t, unix, &claim.encode_to_vec());
        let _ = sent(&mut c);
        t += Duration::from_secs(3);
        run_to(&mut c, t);
    }
    assert_eq!((c.contacts(), c.counters().contacts_dropped), (0, 1));
}

/// With every lookup slot taken by members that do not answer, a value known here is still
/// found.
#[test]
fn a_value_known_here_is_found_with_every_lookup_slot_taken() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig {
        max_lookups: 2,
        ..DhtConfig::default()
    });
    a.learn(contact(1, 0x2001), true);
    a.handle(
        now,
        unix,
        &store_msg(0x2000, &id_of(4), val(0x5000, b""), 1_100),
    );
    assert!(a.lookup(now, unix, id_of(7)).is_some());
    assert!(a.lookup(now, unix, id_of(8)).is_some());
    assert_eq!(a.lookup(now, unix, id_of(9)), None);
    let id = a.lookup(now, unix, id_of(4)).unwrap();
    assert_eq!(
        a.poll_event(),
        Some(Event::Found {
            id,
            key: id_of(4),
            addrs: vec![0x5000]
        })
    );
    // Each such lookup has its own id.
    let again = a.lookup(now, unix, id_of(4)).unwrap();
    assert_ne!(again, id);
    assert!(matches!(a.poll_event(), Some(Event::Found { id, .. }) if id == again));
}

/// Layer addresses are 32 bits: a sender or a listed contact beyond is dropped, never
/// answered (its reply would wait for a route that never comes).
#[test]
fn senders_and_contacts_beyond_32_bit_addresses_are_refused() {
    let now = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    let wide = MAX_ADDR + 1;
    let m = DhtMsg {
        code: dht_code::FIND_NODE_REQ,
        src: DhtContactMsg {
            id: id_of(2),
            addr: wide,
        },
        store: None,
        find: Some(DhtFindReqMsg {
            cookie: 5,
            key: id_of(3),
        }),
        node: None,
        val: None,
    };
    a.handle(now, unix, &m.encode_to_vec());
    assert_eq!(a.counters().dropped_bad, 1);
    assert!(a.poll_transmit().is_none());
    assert_eq!(a.contacts(), 0);
    a.learn(contact(1, 0x2001), true);
    let key = id_of(7);
    a.lookup(now, unix, key.clone()).unwrap();
    let c = sent(&mut a)[0].1.find.as_ref().unwrap().cookie;
    let listed = vec![DhtContactMsg {
        id: id_of(6),
        addr: wide,
    }];
    a.handle(
        now,
        unix,
        &response((1, 0x2001), c, &key, listed, Some(vec![])),
    );
    assert!(sent(&mut a).is_empty(), "the wide contact is not asked");
    assert_eq!(a.contacts(), 1);
    // The highest 32-bit address is one.
    a.lookup(now, unix, id_of(8)).unwrap();
    let c = sent(&mut a)[0].1.find.as_ref().unwrap().cookie;
    let listed = vec![DhtContactMsg {
        id: id_of(9),
        addr: MAX_ADDR,
    }];
    a.handle(
        now,
        unix,
        &response((1, 0x2001), c, &id_of(8), listed, Some(vec![])),
    );
    let asked: Vec<u64> = sent(&mut a).iter().map(|(d, _)| *d).collect();
    assert_eq!(asked, [MAX_ADDR]);
}

/// A listed contact at an address the lookup holds already as a candidate, not asked
/// yet, adds no second candidate (one per address, asked or not).
#[test]
fn a_lookup_takes_one_candidate_per_address_asked_or_not() {
    let t0 = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig {
        alpha: 1,
        ..DhtConfig::default()
    });
    let key = id_of(0xAAAA_0000_0000_0000);
    a.learn(contact(0xAAAA_0000_0000_0001, 0x2001), true);
    a.learn(contact(0xAAAA_0000_0000_0100, 0x2002), true);
    let id = a.lookup(t0, unix, key.clone()).unwrap();
    let asks = sent(&mut a);
    assert_eq!(asks.iter().map(|(d, _)| *d).collect::<Vec<_>>(), [0x2001]);
    let listed = vec![DhtContactMsg {
        id: id_of(0xAAAA_0000_0000_0002),
        addr: 0x2002,
    }];
    let c = asks[0].1.find.as_ref().unwrap().cookie;
    let from = (0xAAAA_0000_0000_0001, 0x2001);
    a.handle(t0, unix, &response(from, c, &key, listed, Some(vec![])));
    assert_eq!(a.lookups[&id].shortlist.len(), 2);
}

/// Members that answer just in time with ever closer made-up contacts keep a lookup going
/// for LOOKUP_RESPONSE_TIMES response times at most (10 s with the defaults), not until its
/// most asked (about 43 s).
#[test]
fn a_lookup_ends_after_its_longest_time_however_its_members_answer() {
    let t0 = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig::default());
    a.learn(contact(1, 0x2001), true);
    let key = id_of(0xAAAA_0000_0000_0000);
    let id = a.lookup(t0, unix, key.clone()).unwrap();
    let longest = DhtConfig::default().t_resp * LOOKUP_RESPONSE_TIMES;
    let mut t = t0;
    let mut next = 0x3000u64;
    let mut d = 1u64 << 40;
    let ended = loop {
        assert!(t < t0 + 3 * longest, "the lookup went on");
        let asks = sent(&mut a);
        t += Duration::from_millis(1_900);
        for (to, m) in asks {
            let Some(f) = m.find else { continue };
            d -= 1;
            next += 1;
            let fake = vec![DhtContactMsg {
                id: id_of(0xAAAA_0000_0000_0000 ^ d),
                addr: next,
            }];
            a.handle(
                t,
                unix,
                &response((0x5555, to), f.cookie, &key, fake, Some(vec![])),
            );
        }
        run_to(&mut a, t);
        if let Some(e) = a.poll_event() {
            break (t, e);
        }
    };
    assert_eq!(ended.1, Event::NotFound { id, key });
    assert!(
        ended.0 >= t0 + longest && ended.0 < t0 + longest + Duration::from_secs(2),
        "{:?}",
        ended.0 - t0
    );
    assert_eq!(a.counters().lookups_cut, 1);
}

/// A member that does not answer leaves the lookup's shortlist and the next one is asked;
/// the others stay.
#[test]
fn a_silent_member_leaves_the_shortlist_and_the_next_is_asked() {
    let t0 = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig {
        alpha: 1,
        ..DhtConfig::default()
    });
    let key = id_of(0xAAAA_0000_0000_0000);
    a.learn(contact(0xAAAA_0000_0000_0001, 0x2001), true);
    a.learn(contact(0xAAAA_0000_0000_0100, 0x2002), true);
    let id = a.lookup(t0, unix, key).unwrap();
    assert_eq!(
        sent(&mut a).iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [0x2001]
    );
    run_to(&mut a, t0 + Duration::from_secs(2));
    let addrs: Vec<u64> = a.lookups[&id].shortlist.values().map(|c| c.addr).collect();
    assert_eq!(addrs, [0x2002]);
    assert_eq!(
        sent(&mut a).iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [0x2002]
    );
}

/// A lookup ends at its longest time by the timer alone, while a request is still out
/// (sent late, its response time reaching past the end).
#[test]
fn a_lookup_ends_at_its_longest_time_while_a_request_is_out() {
    let t0 = Instant::now();
    let unix = UnixTime::from_secs(1_000);
    let mut a = zero(DhtConfig {
        alpha: 1,
        ..DhtConfig::default()
    });
    let key = id_of(0xAAAA_0000_0000_0000);
    a.learn(contact(0xAAAA_0000_0000_0001, 0x2001), true);
    let id = a.lookup(t0, unix, key.clone()).unwrap();
    let longest = DhtConfig::default().t_resp * LOOKUP_RESPONSE_TIMES;
    // Answered just before the end with a closer contact, which is then asked: its
    // response is due after the end.
    let f = sent(&mut a)[0].1.find.clone().unwrap();
    let t = t0 + longest - Duration::from_millis(500);
    let closer = vec![DhtContactMsg {
        id: id_of(0xAAAA_0000_0000_0000 ^ 2),
        addr: 0x3001,
    }];
    a.handle(
        t,
        unix,
        &response(
            (0xAAAA_0000_0000_0001, 0x2001),
            f.cookie,
            &key,
            closer,
            Some(vec![]),
        ),
    );
    assert_eq!(
        sent(&mut a).iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [0x3001]
    );
    run_to(&mut a, t0 + longest);
    assert_eq!(a.poll_event(), Some(Event::NotFound { id, key }));
}
