#![no_main]
//! Fuzz target: the data-plane worker's per-packet decision (`packet_path::classify_eth`,
//! `classify_udp`, `rewrite_dix`) over any frame: no panic, every range inside the frame,
//! nothing written but the TTL of a PDU to forward (one less); and the fast path
//! (`packet_path::step_eth`, `Fwd::apply`) decides and writes as the full one.
use libfuzzer_sys::fuzz_target;
use o7s_dataplane::dt::{DtAction, DtTables};
use o7s_dataplane::msg::PortKind;
use o7s_dataplane::packet_path::{
    classify_eth, classify_udp, rewrite_dix, rewrite_dix_with, step_eth, Action, Egress, EthDest,
    FlowEntry, PortView, Step, Tables,
};

const PEER: [u8; 6] = [0x6e, 0x6f, 0x6c, 0x16, 0xa4, 0xe5];

fn tables() -> Tables {
    let mut t = Tables::default();
    let entry = |flow, dt_of| FlowEntry { flow, mac: PEER, addr: None, encrypted: false, dt_of };
    t.insert_flow(3, 65, entry(1001, Some(9)));
    t.insert_flow(3, 64, entry(1000, None));
    t.insert_flow(3, 66, FlowEntry { encrypted: true, ..entry(1003, None) });
    t.insert_flow(3, 0x42, entry(5, None));
    let mut u = DtTables::new(0x05bf_2014);
    u.local.insert(0x42, 77);
    u.set_routes(&[(0x9f9b_0896, 1001), (0x7777_0001, 1002)]);
    t.set_uni(9, u);
    let d = EthDest {
        kind: PortKind::Dix { ethertype: 0xA000 },
        src: [2, 0, 0, 0, 0, 0xb],
        dst: [2, 0, 0, 0, 0, 0xc],
        remote: 300,
        local: 301,
    };
    t.set_egress(1002, Egress::Eth { port: 4, d });
    // The way back has a header too: a PDU whose next hop is the flow it came on reaches
    // the fast path's loop check.
    let back = EthDest { src: [2, 0, 0, 0, 0, 1], dst: PEER, remote: 65, local: 65, ..d };
    t.set_egress(1001, Egress::Eth { port: 3, d: back });
    t
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else { return };
    // Often a data frame of ours (to the port, from the peer, eid 65: the DT N-1 flow), so
    // the fuzzer spends its time in the PCI and the lengths.
    let mut own = input.to_vec();
    if sel & 0x40 != 0 && own.len() >= 16 {
        own[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        own[6..12].copy_from_slice(&PEER);
        own[12..16].copy_from_slice(&[0xa0, 0x00, 0x00, 65]);
    }
    let rest = own.as_slice();
    let kind = match sel % 3 {
        0 => PortKind::Dix { ethertype: 0xA000 },
        1 => PortKind::Llc,
        _ => PortKind::Udp { addr: "127.0.0.1:3435".parse().unwrap() },
    };
    let t = tables();
    let mut f = rest.to_vec();
    let port = PortView { id: 3, kind, mac: [2, 0, 0, 0, 0, 1] };
    let mut fast = rest.to_vec();
    let step = step_eth(port, &mut fast, &t);
    let a = classify_eth(port, &mut f, &t);
    match &step {
        Step::Decided(b) => assert!(*b == a && fast == f, "{b:?} (fast) against {a:?}"),
        Step::Forward(fw) => {
            assert_eq!(fast, rest, "nothing written before apply");
            let mut applied = fast.clone();
            fw.decrement_ttl(&mut fast);
            assert!(fw.action() == a && fast == f, "{fw:?} (fast) against {a:?}");
            let Some((_, Some(h))) = t.hop_out(fw.ipcp, fw.n1, fw.hop) else {
                panic!("{fw:?}: no hop with a header on the full path");
            };
            let mut rewritten = f.clone();
            let wire = fw.apply(&mut applied);
            assert_eq!(wire, rewrite_dix_with(&mut rewritten, &fw.pdu(), h));
            // Re-headed as rewrite_dix_with re-heads; refused, nothing written.
            if wire.is_some() {
                assert_eq!(applied, rewritten);
            } else {
                assert_eq!(applied, rest);
            }
        }
    }
    let inside = |r: &std::ops::Range<usize>| r.start <= r.end && r.end <= f.len();
    match &a {
        Action::Dt { pdu, ipcp, dt: DtAction::Forward { n1, hop }, .. } => {
            assert!(inside(pdu));
            for (i, (x, y)) in f.iter().zip(rest).enumerate() {
                if i == pdu.start + 5 {
                    assert_eq!(*x + 1, *y);
                } else {
                    assert_eq!(x, y);
                }
            }
            if let Some(Egress::Eth { d, .. }) = t.hop_egress(*ipcp, *n1, *hop) {
                let mut g = f.clone();
                g.resize(f.len().max(60), 0);
                if let Some(wire) = rewrite_dix(&mut g, pdu, d) {
                    assert!(wire >= 60 && wire <= g.len() && pdu.end <= wire);
                }
            }
        }
        other => {
            assert_eq!(f, rest);
            if let Action::Dt { pdu: r, .. }
            | Action::Deliver { sdu: r, .. }
            | Action::Sealed { sdu: r, .. }
            | Action::Mgmt { sdu: r, .. } = other
            {
                assert!(inside(r));
            }
        }
    }
    let mut g = rest.to_vec();
    let src = if sel & 0x80 != 0 { "127.0.0.1:3435" } else { "127.0.0.1:1" };
    let _ = classify_udp(3, src.parse().unwrap(), &mut g, &t);
});
