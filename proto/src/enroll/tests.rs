#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use o7s_wire::unicast::pb::{CepMsg, EnrollAckMsg, EnrollReqMsg, EnrollRespMsg};
use prost::Message;

const R: u64 = 0x41dc_5e0b;
const E: u64 = 0xe30f_5e97;

fn pump(from: &mut Connections, to: &mut Connections, now: Instant, flow: FlowId) -> usize {
    let mut n = 0;
    while let Some(t) = from.poll_transmit() {
        assert_eq!(t.flow, flow);
        to.handle(now, UnixTime::from_secs(1_796_036_551), flow, &t.sdu);
        n += 1;
    }
    n
}

fn events(c: &mut Connections) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn an_adopted_connection_is_up_at_once_and_goes_down_like_any() {
    let mut c = Connections::new(EnrollConfig::default(), 5, None);
    c.adopt(7, Component::DataTransfer, 0x99);
    c.adopt(8, Component::Management, 0x99);
    assert_eq!(c.connected(7), Some((Component::DataTransfer, 0x99)));
    assert_eq!(
        c.connections(),
        [
            (7, Component::DataTransfer, 0x99),
            (8, Component::Management, 0x99)
        ]
    );
    assert_eq!(c.pending(), 0);
    c.flow_down(7);
    assert_eq!(c.connected(7), None);
    assert_eq!(
        c.counters().failed,
        0,
        "an up connection that ends is no failure"
    );
}

#[test]
fn enrolment_gives_the_enrollee_the_layer_and_sends_the_reference_bytes() {
    let t0 = Instant::now();
    let conf = IpcpConfigMsg::unicast_default("ufuni", R);
    let mut r = Connections::new(EnrollConfig::default(), R, Some(conf.clone()));
    let mut e = Connections::new(EnrollConfig::default(), 0, None);
    e.connect(t0, 7, Component::Enrollment, *b"RH\x0fa\x17\xd2>\xcc");
    r.accept(t0, 7);
    // The enrollee's CEP: the reference's 23 bytes.
    let cep = e.transmits.front().unwrap().sdu.clone();
    assert_eq!(
        hex::encode(&cep),
        "0a0a456e726f6c6c6d656e7412034f4550180128004000"
    );
    pump(&mut e, &mut r, t0, 7); // CEP
    pump(&mut r, &mut e, t0, 7); // CEP back, then e sends the request
    let req = e.transmits.front().unwrap().sdu.clone();
    assert_eq!(hex::encode(&req), "0a0852480f6117d23ecc");
    pump(&mut e, &mut r, t0, 7); // request
    pump(&mut r, &mut e, t0, 7); // response
    pump(&mut e, &mut r, t0, 7); // ack
    let ev = events(&mut e);
    assert!(
        matches!(&ev[..], [Event::Enrolled { flow: 7, conf: c, enroller_time: (1_796_036_551, 0) }, Event::Close { flow: 7 }] if **c == conf),
        "{ev:?}"
    );
    assert_eq!(
        events(&mut r),
        vec![Event::Served { flow: 7 }, Event::Close { flow: 7 }]
    );
    assert_eq!((e.counters().enrolled, r.counters().served), (1, 1));
    assert_eq!(r.pending() + e.pending(), 0);
}

fn bc() -> EnrollConfig {
    EnrollConfig {
        broadcast: true,
        ..EnrollConfig::default()
    }
}

#[test]
fn a_broadcast_member_enrols_in_a_broadcast_layer_and_connects_dt_with_the_zero_cep() {
    let t0 = Instant::now();
    let conf = IpcpConfigMsg::broadcast("bc");
    let mut r = Connections::new(bc(), 0, Some(conf.clone()));
    let mut e = Connections::new(bc(), 0, None);
    e.connect(t0, 7, Component::Enrollment, [9; 8]);
    r.accept(t0, 7);
    for _ in 0..2 {
        pump(&mut e, &mut r, t0, 7);
        pump(&mut r, &mut e, t0, 7);
    }
    pump(&mut e, &mut r, t0, 7);
    let ev = events(&mut e);
    assert!(
        matches!(&ev[..], [Event::Enrolled { flow: 7, conf: c, .. }, Event::Close { flow: 7 }] if **c == conf && c.ipcp_type == 2 && c.unicast.is_none()),
        "{ev:?}"
    );
    e.set_layer(0, conf);
    // DT: the broadcast IPCP's CEP names the component and nothing else.
    e.connect(t0, 8, Component::DataTransfer, [0; 8]);
    r.accept(t0, 8);
    let cep = e.transmits.front().unwrap().sdu.clone();
    assert_eq!(
        hex::encode(&cep),
        "0a0d44617461205472616e736665721200180028004000"
    );
    pump(&mut e, &mut r, t0, 8);
    pump(&mut r, &mut e, t0, 8);
    let up = |c: &mut Connections| {
        events(c)
            .into_iter()
            .filter(|x| {
                matches!(
                    x,
                    Event::Connected {
                        flow: 8,
                        comp: Component::DataTransfer,
                        peer_addr: 0
                    }
                )
            })
            .count()
    };
    assert_eq!((up(&mut e), up(&mut r)), (1, 1));
    assert_eq!(e.connected(8), Some((Component::DataTransfer, 0)));
    // A broadcast IPCP has no Management component: the reference's empty CEP, closed.
    let mut m = Connections::new(EnrollConfig::default(), E, None);
    m.connect(t0, 9, Component::Management, [0; 8]);
    r.accept(t0, 9);
    pump(&mut m, &mut r, t0, 9);
    assert_eq!(
        r.transmits.front().map(|t| t.sdu.clone()),
        Some(CepMsg::default().encode_to_vec())
    );
    r.transmits.clear();
    let ev = events(&mut r);
    assert!(
        matches!(&ev[..], [Event::Failed { flow: 9, why: EnrollError::UnknownComponent(n) }, Event::Close { flow: 9 }] if n == "\"Management\""),
        "{ev:?}"
    );
    // A unicast member's DT CEP does not match a broadcast one's.
    let mut u = Connections::new(EnrollConfig::default(), E, None);
    u.connect(t0, 10, Component::DataTransfer, [0; 8]);
    r.accept(t0, 10);
    pump(&mut u, &mut r, t0, 10);
    pump(&mut r, &mut u, t0, 10);
    let ev = events(&mut u);
    assert!(
        matches!(
            &ev[0],
            Event::Failed {
                flow: 10,
                why: EnrollError::Mismatch(_)
            }
        ),
        "{ev:?}"
    );
}

#[test]
fn a_cep_reply_differing_in_protocol_version_or_syntax_alone_fails() {
    let t0 = Instant::now();
    let good = CepMsg::new(Component::Management, R);
    let variants = [
        CepMsg {
            protocol: "LSQ".into(),
            ..good.clone()
        },
        CepMsg {
            pref_version: 2,
            ..good.clone()
        },
        CepMsg {
            pref_syntax: good.pref_syntax + 1,
            ..good.clone()
        },
    ];
    for (i, reply) in variants.into_iter().enumerate() {
        let mut a = Connections::new(EnrollConfig::default(), E, None);
        a.connect(t0, 1, Component::Management, [0; 8]);
        a.transmits.clear();
        a.handle(t0, UnixTime::default(), 1, &reply.encode_to_vec());
        let ev = events(&mut a);
        assert!(
            matches!(
                &ev[0],
                Event::Failed {
                    flow: 1,
                    why: EnrollError::Mismatch(_)
                }
            ),
            "variant {i}: {ev:?}"
        );
    }
    // The same CEP with another name is accepted (the name is not checked).
    let mut a = Connections::new(EnrollConfig::default(), E, None);
    a.connect(t0, 1, Component::Management, [0; 8]);
    let renamed = CepMsg {
        comp_name: "Other".into(),
        ..good
    };
    a.handle(t0, UnixTime::default(), 1, &renamed.encode_to_vec());
    assert_eq!(a.connected(1), Some((Component::Management, R)));
}

#[test]
fn a_layer_name_of_255_bytes_is_adopted_and_256_is_not() {
    for (len, ok) in [(255, true), (256, false), (1, true)] {
        let name = "l".repeat(len);
        assert_eq!(
            check_conf(IpcpConfigMsg::unicast_default(&name, R), false).is_ok(),
            ok,
            "{len}"
        );
        assert_eq!(
            check_conf(IpcpConfigMsg::broadcast(&name), true).is_ok(),
            ok,
            "{len}"
        );
    }
    // An enroller's name with a terminal escape or a newline (shown in o7sctl and logs).
    for name in ["l\u{1b}[2J", "l\nfake log line", "\u{7}"] {
        assert!(matches!(
            check_conf(IpcpConfigMsg::unicast_default(name, R), false),
            Err(ConfError::Name)
        ));
    }
}

#[test]
fn each_kind_of_member_adopts_only_a_layer_of_its_own_kind() {
    for (broadcast, conf, want) in [
        (
            true,
            IpcpConfigMsg::unicast_default("l", R),
            "is not broadcast",
        ),
        (false, IpcpConfigMsg::broadcast("l"), "is not unicast"),
        (true, IpcpConfigMsg::broadcast(""), "1..=255"),
    ] {
        let t0 = Instant::now();
        let cfg = EnrollConfig {
            broadcast,
            ..EnrollConfig::default()
        };
        let mut r = Connections::new(cfg, 0, Some(conf));
        let mut e = Connections::new(cfg, 0, None);
        e.connect(t0, 7, Component::Enrollment, [9; 8]);
        r.accept(t0, 7);
        for _ in 0..2 {
            pump(&mut e, &mut r, t0, 7);
            pump(&mut r, &mut e, t0, 7);
        }
        let ev = events(&mut e);
        assert!(
            matches!(&ev[0], Event::Failed { flow: 7, why: EnrollError::Bad { what: "layer configuration", why } } if why.contains(want)),
            "{broadcast}: {ev:?}"
        );
    }
    assert!(check_conf(IpcpConfigMsg::broadcast("l"), true).is_ok());
    // A unicast layer hashing its directory with SHA3-224/384/512: refused, said why.
    for algo in [0, 2, 3, 5] {
        let mut c = IpcpConfigMsg::unicast_default("l", R);
        c.layer_info.dir_hash_algo = algo;
        let e = check_conf(c, false).unwrap_err();
        assert_eq!(e, ConfError::DirHash(algo));
        assert!(e.to_string().contains("SHA3-256"), "{e}");
    }
    assert!(check_conf(IpcpConfigMsg::unicast_default("l", R), false).is_ok());
}

/// `a` (at E) connected Management on flow 1 and DT on flow 2 to `b` (at R, in layer
/// "l").
fn connected_pair(t0: Instant) -> (Connections, Connections) {
    let mut a = Connections::new(EnrollConfig::default(), E, None);
    let mut b = Connections::new(
        EnrollConfig::default(),
        R,
        Some(IpcpConfigMsg::unicast_default("l", R)),
    );
    for (flow, comp) in [(1, Component::Management), (2, Component::DataTransfer)] {
        a.connect(t0, flow, comp, [0; 8]);
        b.accept(t0, flow);
        pump(&mut a, &mut b, t0, flow);
        pump(&mut b, &mut a, t0, flow);
    }
    (a, b)
}

#[test]
fn a_readdressed_neighbour_tells_its_management_neighbours() {
    let (mut a, mut b) = connected_pair(Instant::now());
    let _ = (events(&mut a), events(&mut b));
    const N: u64 = 0x0bad_cafe;
    b.readdress(N);
    // One Management CEP with the new address, on the Management flow only.
    let t: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].flow, 1);
    assert_eq!(
        t[0].sdu,
        CepMsg::new(Component::Management, N).encode_to_vec()
    );
    // An LSA is not one (the caller gives it to link state).
    let same = |_| true;
    assert!(!Connections::is_update(&[0u8; 24]));
    assert!(!a.handle_update(1, &[0u8; 24], same));
    assert!(Connections::is_update(&t[0].sdu));
    assert!(a.handle_update(1, &t[0].sdu, same));
    assert_eq!(
        events(&mut a),
        vec![Event::Readdressed {
            flow: 1,
            old: R,
            new: N,
            moved: vec![1, 2]
        }]
    );
    assert_eq!(
        a.connections(),
        vec![
            (1, Component::Management, N),
            (2, Component::DataTransfer, N)
        ]
    );
    // Not on a DT flow; address 0 or ours: counted, nothing moves.
    assert!(!a.handle_update(2, &t[0].sdu, same));
    let before = a.counters().unexpected;
    for bad in [0, E] {
        let cep = CepMsg::new(Component::Management, bad).encode_to_vec();
        assert!(a.handle_update(1, &cep, same));
    }
    assert_eq!(a.counters().unexpected, before + 2);
    assert_eq!(a.counters().readdressed, 1);
    assert!(events(&mut a).is_empty());
    // Enrollees of b now get b's new address as their DHT peer.
    let peer = b
        .conf
        .as_ref()
        .and_then(|c| c.unicast.as_ref())
        .and_then(|u| u.dir.dht.as_ref())
        .map(|d| d.peer);
    assert_eq!(peer, Some(N));
    // Connections to another IPCP that still has the old address stay (the caller
    // says which flows go to the mover).
    let (mut a, _) = connected_pair(Instant::now());
    let _ = events(&mut a);
    let cep = CepMsg::new(Component::Management, N).encode_to_vec();
    assert!(a.handle_update(1, &cep, |f| f == 1));
    assert_eq!(
        a.connections(),
        vec![
            (1, Component::Management, N),
            (2, Component::DataTransfer, R)
        ]
    );
}

#[test]
fn management_and_dt_connect_with_each_others_addresses() {
    let t0 = Instant::now();
    let (a, b) = connected_pair(t0);
    for (flow, comp) in [(1, Component::Management), (2, Component::DataTransfer)] {
        assert_eq!(a.connected(flow), Some((comp, R)));
        assert_eq!(b.connected(flow), Some((comp, E)));
    }
    // The DT CEP is the reference's, FIXED syntax.
    let mut c = Connections::new(EnrollConfig::default(), E, None);
    c.connect(t0, 3, Component::DataTransfer, [0; 8]);
    assert_eq!(
        hex::encode(c.poll_transmit().unwrap().sdu),
        "0a0d44617461205472616e736665721203647470180128024097bdbd980e"
    );
}

#[test]
fn a_vanished_enrollee_times_out_and_blocks_no_one() {
    let t0 = Instant::now();
    let mut r = Connections::new(
        EnrollConfig::default(),
        R,
        Some(IpcpConfigMsg::unicast_default("l", R)),
    );
    // Flow 1's enrollee sends its CEP and request, then nothing.
    r.accept(t0, 1);
    r.handle(
        t0,
        UnixTime::default(),
        1,
        &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
    );
    r.handle(
        t0,
        UnixTime::default(),
        1,
        &EnrollReqMsg { id: vec![1; 8] }.encode_to_vec(),
    );
    // Flow 2 enrols meanwhile.
    let mut e = Connections::new(EnrollConfig::default(), 0, None);
    e.connect(t0, 2, Component::Enrollment, [2; 8]);
    r.accept(t0, 2);
    while let Some(t) = r.poll_transmit() {
        if t.flow == 2 {
            e.handle(t0, UnixTime::default(), 2, &t.sdu);
        }
    }
    for _ in 0..3 {
        pump(&mut e, &mut r, t0, 2);
        while let Some(t) = r.poll_transmit() {
            e.handle(t0, UnixTime::default(), t.flow, &t.sdu);
        }
    }
    assert_eq!(e.counters().enrolled, 1);
    assert_eq!(r.counters().served, 1);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    r.handle_timeout(t0 + Duration::from_secs(1));
    let ev = events(&mut r);
    assert!(ev.contains(&Event::Failed {
        flow: 1,
        why: EnrollError::Timeout("enrolment acknowledgement")
    }));
    assert!(ev.contains(&Event::Close { flow: 1 }));
    assert_eq!(r.pending(), 0);
}

#[test]
fn bad_peers_get_clear_failures() {
    let t0 = Instant::now();
    let conf = IpcpConfigMsg::unicast_default("l", R);
    let mut r = Connections::new(EnrollConfig::default(), R, Some(conf.clone()));
    // Garbage instead of a CEP.
    r.accept(t0, 1);
    r.handle(t0, UnixTime::default(), 1, &[0xff, 0xff, 0x01]);
    // An unknown component: the all-default CEP, then the flow goes.
    r.accept(t0, 2);
    let mut odd = CepMsg::new(Component::Management, 5);
    odd.comp_name = "Routing".into();
    r.handle(t0, UnixTime::default(), 2, &odd.encode_to_vec());
    let back = r.poll_transmit().unwrap();
    assert_eq!(back.flow, 2);
    assert_eq!(
        CepMsg::decode(back.sdu.as_slice()).unwrap(),
        CepMsg::default()
    );
    let ev = events(&mut r);
    assert!(
        matches!(
            ev[0],
            Event::Failed {
                flow: 1,
                why: EnrollError::Bad { what: "CEP", .. }
            }
        ),
        "{ev:?}"
    );
    assert!(ev.contains(&Event::Failed {
        flow: 2,
        why: EnrollError::UnknownComponent("\"Routing\"".into())
    }));
    // A CEP reply with the wrong protocol fails the allocator; what is no CEP at all
    // (a stale LSA on a reused endpoint id) is ignored and counted while it waits.
    let mut a = Connections::new(EnrollConfig::default(), E, None);
    a.connect(t0, 3, Component::Management, [0; 8]);
    let _ = a.poll_transmit();
    a.handle(t0, UnixTime::default(), 3, &[0u8; 24]);
    assert!(events(&mut a).is_empty(), "still waiting for the CEP reply");
    assert_eq!(a.counters().unexpected, 1);
    let mut wrong = CepMsg::new(Component::Management, R);
    wrong.protocol = "XYZ".into();
    a.handle(t0, UnixTime::default(), 3, &wrong.encode_to_vec());
    assert!(matches!(
        events(&mut a)[0],
        Event::Failed {
            flow: 3,
            why: EnrollError::Mismatch(_)
        }
    ));
    // An enroller's response with a configuration we cannot use.
    let mut e = Connections::new(EnrollConfig::default(), 0, None);
    e.connect(t0, 4, Component::Enrollment, [4; 8]);
    e.handle(
        t0,
        UnixTime::default(),
        4,
        &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
    );
    let mut bad = conf;
    if let Some(u) = bad.unicast.as_mut() {
        u.dt.addr_size = 2;
    }
    let resp = EnrollRespMsg {
        id: vec![4; 8],
        t_sec: 0,
        t_nsec: 0,
        response: 0,
        conf: Some(bad),
    };
    e.handle(t0, UnixTime::default(), 4, &resp.encode_to_vec());
    let ev = events(&mut e);
    assert!(
        matches!(&ev[0], Event::Failed { flow: 4, why: EnrollError::Bad { what: "layer configuration", why } } if why.contains("addr_size 2")),
        "{ev:?}"
    );
    // Not in a layer: no enrolment is served.
    let mut n = Connections::new(EnrollConfig::default(), 0, None);
    n.accept(t0, 5);
    n.handle(
        t0,
        UnixTime::default(),
        5,
        &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
    );
    assert!(events(&mut n).contains(&Event::Failed {
        flow: 5,
        why: EnrollError::NotInLayer
    }));
}

#[test]
fn pending_flows_are_bounded() {
    let t0 = Instant::now();
    let cfg = EnrollConfig {
        max_pending: 2,
        ..EnrollConfig::default()
    };
    let mut r = Connections::new(cfg, R, None);
    for f in 0..3 {
        r.accept(t0, f);
    }
    assert_eq!(r.pending(), 2);
    assert_eq!(r.counters().busy, 1);
    assert!(events(&mut r).contains(&Event::Failed {
        flow: 2,
        why: EnrollError::Busy(2)
    }));
    // Peers holding every accepting slot with flows that never send a CEP do not stop our
    // own connects: they have their own budget.
    r.connect(t0, 10, Component::Management, [0; 8]);
    assert_eq!(r.counters().busy, 1);
    assert_eq!(r.poll_transmit().map(|t| t.flow), Some(10), "our CEP went");
    r.connect(t0, 11, Component::DataTransfer, [0; 8]);
    assert_eq!(r.pending(), 4);
    r.connect(t0, 12, Component::DataTransfer, [0; 8]);
    assert_eq!(
        (r.pending(), r.counters().busy),
        (4, 2),
        "ours are bounded too"
    );
}

#[test]
fn a_step_waits_its_whole_time_and_failures_are_counted() {
    let t0 = Instant::now();
    let step = EnrollConfig::default().step_timeout;
    let mut c = Connections::new(EnrollConfig::default(), E, None);
    c.connect(t0, 3, Component::DataTransfer, [0; 8]);
    c.accept(t0, 4);
    let _ = c.poll_transmit();
    c.handle_timeout(t0 + step - Duration::from_millis(1));
    assert!(events(&mut c).is_empty(), "not before the step's time");
    assert_eq!(c.pending(), 2);
    c.handle_timeout(t0 + step);
    let ev = events(&mut c);
    for flow in [3, 4] {
        assert!(ev.contains(&Event::Close { flow }), "{ev:?}");
    }
    assert_eq!((c.counters().failed, c.pending()), (2, 0));
}

#[test]
fn set_layer_gives_the_address_and_the_configuration_to_later_connections() {
    let t0 = Instant::now();
    // Started without a layer (an enrollee), then enrolled: it serves enrolments now.
    let mut r = Connections::new(EnrollConfig::default(), 0, None);
    r.set_layer(E, IpcpConfigMsg::unicast_default("l", E));
    r.connect(t0, 3, Component::DataTransfer, [0; 8]);
    assert_eq!(
        hex::encode(r.poll_transmit().unwrap().sdu),
        "0a0d44617461205472616e736665721203647470180128024097bdbd980e",
        "its CEP names the new address"
    );
    let mut e = Connections::new(EnrollConfig::default(), 0, None);
    e.connect(t0, 2, Component::Enrollment, [2; 8]);
    r.accept(t0, 2);
    for _ in 0..4 {
        pump(&mut e, &mut r, t0, 2);
        while let Some(t) = r.poll_transmit() {
            e.handle(t0, UnixTime::default(), t.flow, &t.sdu);
        }
    }
    assert_eq!((e.counters().enrolled, r.counters().served), (1, 1));
}

/// An enroller at the point where it waits for the acknowledgement of flow 1's
/// enrolment (request id `[1; 8]`), at `t0`.
fn enroller_waiting_for_ack(t0: Instant) -> Connections {
    let mut r = Connections::new(
        EnrollConfig::default(),
        R,
        Some(IpcpConfigMsg::unicast_default("l", R)),
    );
    r.accept(t0, 1);
    r.handle(
        t0,
        UnixTime::default(),
        1,
        &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
    );
    r.handle(
        t0,
        UnixTime::default(),
        1,
        &EnrollReqMsg { id: vec![1; 8] }.encode_to_vec(),
    );
    while r.poll_transmit().is_some() {}
    r
}

#[test]
fn an_acknowledgement_with_another_id_or_a_failure_fails_the_enrolment() {
    let t0 = Instant::now();
    for (id, result) in [(vec![9; 8], 0), (vec![1; 8], 1), (vec![9; 8], 1)] {
        let mut r = enroller_waiting_for_ack(t0);
        r.handle(
            t0,
            UnixTime::default(),
            1,
            &EnrollAckMsg { id, result }.encode_to_vec(),
        );
        let ev = events(&mut r);
        assert!(
            matches!(ev.first(), Some(Event::Failed { flow: 1, .. })),
            "{ev:?}"
        );
        assert_eq!((r.counters().served, r.counters().failed), (0, 1));
    }
    let mut r = enroller_waiting_for_ack(t0);
    r.handle(
        t0,
        UnixTime::default(),
        1,
        &EnrollAckMsg {
            id: vec![1; 8],
            result: 0,
        }
        .encode_to_vec(),
    );
    assert_eq!(r.counters().served, 1);
}

#[test]
fn every_waiting_step_has_the_whole_step_time() {
    let t0 = Instant::now();
    let step = EnrollConfig::default().step_timeout;
    let ms = Duration::from_millis(1);
    // The enroller: its CEP sent, it waits for the request; then for the ack.
    let t1 = t0 + ms * 10;
    let mut r = Connections::new(
        EnrollConfig::default(),
        R,
        Some(IpcpConfigMsg::unicast_default("l", R)),
    );
    r.accept(t0, 1);
    r.handle(
        t1,
        UnixTime::default(),
        1,
        &CepMsg::new(Component::Enrollment, 0).encode_to_vec(),
    );
    assert_eq!(r.poll_timeout(), Some(t1 + step));
    // The enrollee: its request sent after the CEP reply, it waits for the response.
    let mut e = Connections::new(EnrollConfig::default(), 0, None);
    e.connect(t0, 2, Component::Enrollment, [2; 8]);
    let _ = e.poll_transmit();
    e.handle(
        t1,
        UnixTime::default(),
        2,
        &CepMsg::new(Component::Enrollment, R).encode_to_vec(),
    );
    assert_eq!(e.poll_timeout(), Some(t1 + step));
    for c in [&mut r, &mut e] {
        c.handle_timeout(t1 + step - ms);
        assert!(events(c).is_empty());
        c.handle_timeout(t1 + step);
        assert_eq!(c.counters().failed, 1);
    }
}

#[test]
fn connections_are_counted_on_both_sides_and_stray_sdus_too() {
    let t0 = Instant::now();
    let (a, b) = connected_pair(t0);
    assert_eq!((a.counters().connected, b.counters().connected), (2, 2));
    let mut c = Connections::new(EnrollConfig::default(), E, None);
    c.adopt(7, Component::DataTransfer, 0x99);
    // An SDU of a flow it does not know, and one of a connection that is up.
    c.handle(t0, UnixTime::default(), 8, &[1, 2, 3]);
    c.handle(t0, UnixTime::default(), 7, &[1, 2, 3]);
    assert_eq!(c.counters().unexpected, 2);
    // A flow that goes down while it is set up is a failure.
    c.accept(t0, 9);
    c.flow_down(9);
    assert_eq!(
        events(&mut c),
        [Event::Failed {
            flow: 9,
            why: EnrollError::FlowDown
        }]
    );
    assert_eq!(c.counters().failed, 1);
}
