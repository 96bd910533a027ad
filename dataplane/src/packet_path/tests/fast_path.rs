//! `step_eth` (the fast path) against `classify_eth` (the full one): the same decision for
//! every frame, the same bytes written, and a forwarded frame re-headed as
//! `rewrite_dix_with` re-heads it.

use super::*;

/// Whether `step` (from `step_eth` over `fast`, a copy of the frame) is the decision `a`
/// that `classify_eth` made over `full`: a [`Step::Decided`] is `a` itself with the same
/// bytes written; a [`Step::Forward`] is, once its TTL is decremented, `a` and the same
/// bytes, its next hop is the one [`Tables::hop_out`] gives, with the same header, and
/// [`Fwd::apply`] writes what the TTL and [`rewrite_dix_with`] write (nothing when it
/// refuses the frame, as `rewrite_dix_with` does).
pub(super) fn same_decision(
    step: &Step,
    fast: &mut [u8],
    a: &Action,
    full: &[u8],
    t: &Tables,
) -> Result<(), String> {
    let f = match step {
        Step::Decided(b) if b == a && fast == full => return Ok(()),
        Step::Decided(b) => return Err(format!("{b:?} (fast) against {a:?}, or other bytes")),
        Step::Forward(f) => f,
    };
    let untouched = fast.to_vec();
    f.decrement_ttl(fast);
    if f.action() != *a || fast != full {
        return Err(format!("{f:?} (fast) against {a:?}, or other bytes"));
    }
    let Some((&Egress::Eth { port, d }, Some(head))) = t.hop_out(f.ipcp, f.n1, f.hop) else {
        return Err(format!(
            "{f:?}: the full path has no eth-dix hop with a header"
        ));
    };
    if (port, d.local, *head) != (f.port, f.local, f.head) {
        return Err(format!("{f:?}: the full path's hop is port {port}, {d:?}"));
    }
    let mut applied = untouched.clone();
    let mut rewritten = full.to_vec();
    let wire = f.apply(&mut applied);
    if wire != rewrite_dix_with(&mut rewritten, &f.pdu(), head) {
        return Err(format!(
            "{f:?}: apply gave {wire:?}, rewrite_dix_with did not"
        ));
    }
    // Re-headed, the same bytes; refused (a frame shorter than the wire needs), none.
    let want = if wire.is_some() { rewritten } else { untouched };
    if applied != want {
        return Err(format!(
            "{f:?}: apply wrote other bytes than rewrite_dix_with"
        ));
    }
    Ok(())
}

/// A PDU of uni-dix.pcap's frame 4 to `dst`, with `ttl`.
fn to(dst: u32, ttl: u8) -> Vec<u8> {
    let mut f = unhex(UNI_DIX_4);
    f[18..22].copy_from_slice(&dst.to_le_bytes());
    f[23] = ttl;
    f
}

/// An eth-dix egress for N1_IN, the flow from the client: back to the client's MAC.
fn back_egress() -> Egress {
    Egress::Eth {
        port: PORT,
        d: EthDest {
            kind: DIX,
            src: SERVER_MAC,
            dst: CLIENT_MAC,
            remote: 65,
            local: 65,
        },
    }
}

#[test]
fn a_pdu_to_another_address_is_forwarded_in_one_pass_and_nothing_is_written_before_apply() {
    let t = transit_tables();
    let mut f = to(SERVER, 0x3c);
    let before = f.clone();
    let Step::Forward(fw) = step_eth(server_port(), &mut f, &t) else {
        panic!("not forwarded in one pass");
    };
    assert_eq!(f, before, "nothing written yet");
    assert_eq!((fw.ipcp, fw.from, fw.n1, fw.hop), (IPCP, N1_IN, N1_OUT, 1));
    assert_eq!((fw.port, fw.local, fw.pdu()), (4, 301, 18..125));
    assert_eq!(fw.apply(&mut f), Some(125));
    // Re-headed to NEXT_MAC from OUT_MAC, the peer's endpoint id 300, the PDU's length,
    // the TTL one less, the rest as it came.
    let want = hex::decode("02000000000c02000000000ba000012c006b").unwrap();
    assert_eq!(&f[..18], &want[..]);
    assert_eq!(f[23], 0x3b);
    assert_eq!(&f[18..23], &before[18..23]);
    assert_eq!(&f[24..], &before[24..]);
}

#[test]
fn pdus_the_full_path_decides_otherwise_are_not_forwarded_in_one_pass() {
    // The way back to the client has an egress too (else the loop would be refused for
    // want of a header), and the IPCP has a route to its own address (else the check for
    // it would be the route's).
    let mut t = transit_tables();
    let own = 0x7777_0001;
    t.set_egress(N1_IN, back_egress());
    t.set_routes(
        IPCP,
        own,
        &[(CLIENT, N1_IN), (SERVER, N1_OUT), (own, N1_OUT)],
    );
    for (what, mut f) in [
        ("for us", to(own, 0x3c)),
        ("ttl 1", to(SERVER, 1)),
        ("ttl 0", to(SERVER, 0)),
        ("back where it came from", to(CLIENT, 0x3c)),
        ("no route", to(0x0bad_0bad, 0x3c)),
    ] {
        let mut copy = f.clone();
        let step = step_eth(server_port(), &mut copy, &t);
        assert!(matches!(step, Step::Decided(_)), "{what}: {step:?}");
        let a = classify_eth(server_port(), &mut f, &t);
        same_decision(&step, &mut copy, &a, &f, &t).unwrap();
    }
    let Step::Decided(a) = step_eth(server_port(), &mut to(CLIENT, 0x3c), &t) else {
        unreachable!()
    };
    assert!(
        matches!(
            a,
            Action::Dt {
                dt: DtAction::Drop(DtDrop::Loop),
                ..
            }
        ),
        "{a:?}"
    );
    let Step::Decided(a) = step_eth(server_port(), &mut to(own, 0x3c), &t) else {
        unreachable!()
    };
    assert!(
        matches!(
            a,
            Action::Dt {
                dt: DtAction::Deliver { flow: APP_FLOW, .. },
                ..
            }
        ),
        "{a:?}"
    );
    // A next hop without a made header (UDP, LLC, an endpoint id over 16 bits) or without
    // an egress: the full path.
    let Egress::Eth { d, .. } = out_egress() else {
        unreachable!()
    };
    let udp = Egress::Udp {
        port: 4,
        dst: udp_peer(),
        remote: 300,
    };
    let llc = Egress::Eth {
        port: 4,
        d: EthDest {
            kind: PortKind::Llc,
            ..d
        },
    };
    let wide = Egress::Eth {
        port: 4,
        d: EthDest {
            remote: 70_000,
            ..d
        },
    };
    for e in [Some(udp), Some(llc), Some(wide), None] {
        let mut t = transit_tables();
        match e {
            Some(e) => t.set_egress(N1_OUT, e),
            None => t.remove_egress(N1_OUT),
        }
        let mut f = to(SERVER, 0x3c);
        let step = step_eth(server_port(), &mut f, &t);
        assert!(matches!(step, Step::Decided(_)), "{e:?}: {step:?}");
    }
}

#[test]
fn a_mac_one_byte_off_is_another_station_s() {
    let t = transit_tables();
    for i in 0..6 {
        let mut f = to(SERVER, 0x3c);
        f[6 + i] ^= 0x80;
        let step = step_eth(server_port(), &mut f, &t);
        assert!(
            matches!(step, Step::Decided(Action::WrongPeer { flow: N1_IN })),
            "source byte {i}: {step:?}"
        );
        let mut f = to(SERVER, 0x3c);
        f[i] ^= 0x80;
        let step = step_eth(server_port(), &mut f, &t);
        assert!(
            matches!(step, Step::Decided(Action::NotOurs)),
            "destination byte {i}: {step:?}"
        );
    }
}

#[test]
fn routes_changed_through_uni_mut_are_not_used_by_the_fast_path_until_refreshed() {
    // Both flows have a header: the fast path's hops are [N1_IN, N1_OUT].
    let mut t = transit_tables();
    t.set_egress(N1_IN, back_egress());
    // The routes change under the hops without a refresh: the server is hop 0 now, and
    // hop 0 of the old hops is N1_IN: believed, the PDU would go back to the client.
    t.uni_mut(IPCP)
        .unwrap()
        .set_routes(&[(SERVER, N1_OUT), (CLIENT, N1_IN)]);
    let mut f = to(SERVER, 0x3c);
    let mut copy = f.clone();
    let step = step_eth(server_port(), &mut copy, &t);
    assert!(matches!(step, Step::Decided(_)), "{step:?}");
    let a = classify_eth(server_port(), &mut f, &t);
    same_decision(&step, &mut copy, &a, &f, &t).unwrap();
    // Refreshed: forwarded in one pass again, by the hop the routes now give.
    t.refresh_hops();
    let step = step_eth(server_port(), &mut to(SERVER, 0x3c), &t);
    assert!(
        matches!(
            step,
            Step::Forward(Fwd {
                hop: 0,
                n1: N1_OUT,
                ..
            })
        ),
        "{step:?}"
    );
    // The same through uni_entry.
    t.uni_entry(IPCP)
        .set_routes(&[(CLIENT, N1_IN), (SERVER, N1_OUT)]);
    let step = step_eth(server_port(), &mut to(SERVER, 0x3c), &t);
    assert!(matches!(step, Step::Decided(_)), "{step:?}");
    t.refresh_hops();
    let step = step_eth(server_port(), &mut to(SERVER, 0x3c), &t);
    assert!(
        matches!(
            step,
            Step::Forward(Fwd {
                hop: 1,
                n1: N1_OUT,
                ..
            })
        ),
        "{step:?}"
    );
}

#[test]
fn n1_flows_coming_and_going_leave_the_fast_path_s_hops_alone() {
    let mut t = transit_tables();
    let forwarded = |t: &Tables| {
        matches!(
            step_eth(server_port(), &mut to(SERVER, 0x3c), t),
            Step::Forward(Fwd { n1: N1_OUT, .. })
        )
    };
    assert!(forwarded(&t));
    t.local_flows_entry(IPCP).insert(0x5_0000_0045, 78);
    assert!(forwarded(&t), "an N+1 flow added");
    assert_eq!(t.uni(IPCP).unwrap().local.get(&0x5_0000_0045), Some(&78));
    t.local_flows_mut(IPCP).unwrap().remove(&0x5_0000_0045);
    assert!(forwarded(&t), "an N+1 flow removed");
    assert_eq!(t.uni(IPCP).unwrap().local.get(&0x5_0000_0045), None);
    // An IPCP not known yet gets empty tables; one not known is none to change.
    t.local_flows_entry(10).insert(0x45, 1);
    assert_eq!(t.uni(10).unwrap().local.get(&0x45), Some(&1));
    assert!(t.local_flows_mut(11).is_none());
    assert!(forwarded(&t));
}

/// The transit tables behind another port's flow and another IPCP (the lookups go past
/// their first entries).
fn transit_second() -> Tables {
    let mut t = Tables::default();
    t.insert_flow(2, 65, entry(2000, OUT_MAC, Some(10)));
    t.set_uni(10, DtTables::new(0x1010));
    // Then what transit_tables holds.
    t.insert_flow(PORT, 65, entry(N1_IN, CLIENT_MAC, Some(IPCP)));
    t.insert_flow(PORT, 64, entry(1000, CLIENT_MAC, None));
    let mut u = DtTables::new(0x7777_0001);
    u.local.insert(0x01a6_3c4e_0000_0042, APP_FLOW);
    u.set_routes(&[(CLIENT, N1_IN), (SERVER, N1_OUT)]);
    t.set_uni(IPCP, u);
    t.set_egress(N1_OUT, out_egress());
    t
}

#[test]
fn the_flow_and_the_ipcp_are_found_behind_others() {
    let t = transit_second();
    assert_eq!(t.flows.dense.first().map(|(p, _)| *p), Some(2));
    assert_eq!(t.unis.first().map(|u| u.id), Some(10));
    let step = step_eth(server_port(), &mut to(SERVER, 0x3c), &t);
    assert!(
        matches!(
            step,
            Step::Forward(Fwd {
                ipcp: IPCP,
                n1: N1_OUT,
                ..
            })
        ),
        "{step:?}"
    );
}

#[test]
fn apply_refuses_a_frame_that_cannot_hold_the_wire_frame_and_writes_nothing() {
    let t = transit_tables();
    let mut f = to(SERVER, 0x3c);
    let Step::Forward(fw) = step_eth(server_port(), &mut f.clone(), &t) else {
        panic!("not forwarded in one pass");
    };
    for len in [0, 17, 18, 18 + 14, 124] {
        let mut short = f[..len].to_vec();
        let before = short.clone();
        assert_eq!(fw.apply(&mut short), None, "{len} bytes");
        assert_eq!(short, before);
    }
    // A PDU shorter than the minimum frame is padded with zeros, as rewrite_dix pads it.
    f.truncate(18 + 20);
    f[16..18].copy_from_slice(&20u16.to_be_bytes());
    f.extend_from_slice(&[0xee; 30]);
    let Step::Forward(fw) = step_eth(server_port(), &mut f.clone(), &t) else {
        panic!("not forwarded in one pass");
    };
    assert_eq!(fw.pdu_len, 20);
    assert_eq!(fw.apply(&mut f), Some(MIN_FRAME));
    assert!(f[38..MIN_FRAME].iter().all(|&b| b == 0));
    assert_eq!(&f[MIN_FRAME..], &[0xee; 8]);
    // A runt (a whole frame shorter than the minimum: a veth passes one) is forwarded in
    // one pass, but its buffer cannot hold the padding: refused, nothing written (the
    // worker copies its PDU into a frame of its own), as rewrite_dix refuses it.
    let mut runt = to(SERVER, 0x3c);
    runt.truncate(18 + 20);
    runt[16..18].copy_from_slice(&20u16.to_be_bytes());
    let before = runt.clone();
    let mut copy = runt.clone();
    let step = step_eth(server_port(), &mut copy, &t);
    let Step::Forward(fw) = step.clone() else {
        panic!("not forwarded in one pass: {step:?}");
    };
    assert_eq!(fw.apply(&mut copy), None);
    assert_eq!(copy, before);
    let a = classify_eth(server_port(), &mut runt, &t);
    same_decision(&step, &mut before.clone(), &a, &runt, &t).unwrap();
}

/// The tables the property test draws from: transit (forwarded in one pass; with a header
/// back to the client; behind another port and IPCP), its next hop without an egress or by
/// UDP, routes changed without a refresh, and the server's.
fn tables(which: u8) -> Tables {
    let mut t = transit_tables();
    // Transit half the time (a third of that with a header back to the client, so a
    // loop reaches the fast path's check).
    match which % 8 {
        0 | 1 => {}
        2 => t.set_egress(N1_IN, back_egress()),
        3 => t = transit_second(),
        4 => t.remove_egress(N1_OUT),
        5 => t.set_egress(
            N1_OUT,
            Egress::Udp {
                port: 4,
                dst: udp_peer(),
                remote: 300,
            },
        ),
        6 => {
            // Routes changed without a refresh, where stale hops would send the PDU back,
            // and a route to the IPCP's own address.
            t.set_egress(N1_IN, back_egress());
            t.uni_mut(IPCP).unwrap().set_routes(&[
                (SERVER, N1_OUT),
                (CLIENT, N1_IN),
                (0x7777_0001, N1_OUT),
            ]);
        }
        _ => t = server_tables(),
    }
    t
}

/// A MAC that differs from `mac` in one byte only (in its first four or its last two: the
/// fast path compares the two parts apart).
fn near(mac: [u8; 6]) -> impl Strategy<Value = [u8; 6]> {
    (0usize..6, 1u8..=255).prop_map(move |(i, x)| {
        let mut m = mac;
        m[i] ^= x;
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// For every frame (most of them eth-dix frames of the tables' flows, with a PCI to one
    /// of the addresses they know) and tables, `step_eth` decides as `classify_eth` does.
    #[test]
    fn step_eth_decides_every_frame_as_classify_eth(
        which in any::<u8>(),
        kind in prop_oneof![6 => Just(DIX), 1 => any_kind()],
        eid in prop_oneof![6 => Just(65u16), 1 => Just(64), 1 => Just(0), 1 => any::<u16>()],
        src in prop_oneof![12 => Just(CLIENT_MAC), 1 => Just(OUT_MAC), 1 => near(CLIENT_MAC)],
        dst_mac in prop_oneof![12 => Just(SERVER_MAC), 1 => Just(NEXT_MAC), 1 => near(SERVER_MAC)],
        dst in prop_oneof![
            4 => Just(SERVER),
            1 => Just(CLIENT),
            1 => Just(0x7777_0001),
            1 => any::<u32>()
        ],
        ttl in prop_oneof![1 => Just(0u8), 1 => Just(1), 1 => Just(2), 4 => any::<u8>()],
        pdu_eid in prop_oneof![Just(0u64), Just(1), Just(0x01a6_3c4e_0000_0042), any::<u64>()],
        body in prop::collection::vec(any::<u8>(), 0..80),
        length_delta in prop_oneof![6 => Just(0i32), 1 => -20i32..20],
        cut in prop_oneof![6 => Just(usize::MAX), 1 => 0usize..120],
    ) {
        let t = tables(which);
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0xa0, 0x00]);
        f.extend_from_slice(&eid.to_be_bytes());
        let pdu_len = 15 + body.len();
        let length = (pdu_len as i32 + length_delta).clamp(0, 0xffff) as u16;
        f.extend_from_slice(&length.to_be_bytes());
        crate::dt::write_pci(&mut f, dst, ttl, pdu_eid);
        f.extend_from_slice(&body);
        f.truncate(cut);
        let port = PortView { kind, ..server_port() };
        let mut copy = f.clone();
        let step = step_eth(port, &mut copy, &t);
        let a = classify_eth(port, &mut f, &t);
        if let Err(e) = same_decision(&step, &mut copy, &a, &f, &t) {
            prop_assert!(false, "{}", e);
        }
    }
}
