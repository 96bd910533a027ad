//! `classify_eth`, `classify_udp` and `rewrite_dix` over every action, with frames of the
//! reference's captures (bytes copied in: no ../shared needed) where the two ends differ in
//! MAC, address and endpoint id, and properties over random frames.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::dt::DtDrop;
use proptest::prelude::*;

mod fast_path;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// uni-dix.pcap (unicast over eth-dix): the client a4e5 (address 0x9f9b0896) and the
/// server 9c7c (0x05bf2014); the DT N-1 flow is eid 65 on both sides.
const CLIENT_MAC: [u8; 6] = [0x6e, 0x6f, 0x6c, 0x16, 0xa4, 0xe5];
const SERVER_MAC: [u8; 6] = [0x1a, 0x0d, 0xf7, 0x68, 0x9c, 0x7c];
const SERVER: u32 = 0x05bf_2014;
const CLIENT: u32 = 0x9f9b_0896;
/// Frame 1: client -> server, DT PCI to the server's eid 0 (a FLOW_REQ for the flow
/// allocator), 235 bytes of PDU.
const UNI_DIX_1: &str = "1a0df7689c7c6e6f6c16a4e5a000004100eb1420bf05003c000000000000000000000000009f9b089600000000000000006076fba400000042000000000000000000000000ffffffff0000000100000001ffffffff0001d4c0000000000042dee3b0415b4f690fd91cbd99876f1e9bd8d9745ef7fa32b142773af0349d54b864ae9bc8bf06fa0897dc3f887faf0518ea34ad6bc8aeda038502a002a00000005b00003059301306072a8648ce3d020106082a8648ce3d0301070342000410d94ee149a6d8e73b2f6dc9cf3012a07d916f5bd1b98969786664f4779b1921133f62ddf2938db0992cb349bbb1857e66406214a34fd22eae6de19c9d211a29";
/// Frame 2: server -> client on eid 64 (a management N-1 flow, not DT): an LSA.
const UNI_DIX_2: &str =
    "6e6f6c16a4e51a0df7689c7ca00000400018000000009f9b08960000000005bf20140000000000000001";
/// Frame 4: client -> server, DT PCI to the server's eid 0x42 (ttl 0x3c), 107 bytes of PDU.
const UNI_DIX_4: &str = "1a0df7689c7c6e6f6c16a4e5a0000041006b1420bf05003c00420000004e3ca60119d10fc1025cd3cb660003d295080b12b1feb35eec6edb68c412e8a72c3356c667f6322479efbd2626970160e4969956829e2c62348f3478854ff6df0430894522fba447343602898bde1ca853447147d8694176e104fbc7f20705b8";
/// dix-small.pcap frame 3: an eth-dix management frame (eid 0, 0x47 bytes) to broadcast.
const DIX_MGMT: &str = "ffffffffffff6e6f6c16a4e5a0000000004700000000000000000000000000000000000000000000000000000000000000000000000000020042dee3b0415b4f690fd91cbd99876f1e9bd8d9745ef7fa32b142773af0349d54";
/// dix-small.pcap frame 1: IPv6 (a neighbour solicitation), not ours.
const IPV6: &str = "3333000000026e6f6c16a4e586dd6000000000103afffe800000000000006c6f6cfffe16a4e5ff020000000000000000000000000002850080570000000001016e6f6c16a4e5";
/// llc.pcap frame 3: an eth-llc management frame (SAP 0x80 on the wire).
const LLC_MGMT: &str = "1a0df7689c7c6e6f6c16a4e500c78080030200000000000001000000000000000000000001ffffffffffffffff0001d4c0000000000042dee3b0415b4f690fd91cbd99876f1e9bd8d9745ef7fa32b142773af0349d54457b7582fcf285bcdbe44b6b3dd70dd618ea34b6b4b042ad038502a002a00000005b00003059301306072a8648ce3d020106082a8648ce3d0301070342000490459171d4f9f649f41e6747a5e425a4ff888640b036bdcf8cb10214efe660e57e9ebd15f0a798f6c4cd7b40d47046795e91df6fadf01adceade273e95b0a53a";
/// udp-small.pcap frame 1's datagram (127.0.0.1 -> 127.0.0.2): management (eid 0).
const UDP_MGMT: &str =
    "00000000000000400000000000000000000000000000000000ffffffff0000000100000001ffffffff";
/// udp-small.pcap frame 3's datagram: eid 64, an oping request.
const UDP_DATA: &str = "000000400000000000000000590500000000000008fef3260000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

const DIX: PortKind = PortKind::Dix { ethertype: 0xA000 };
/// The port frames arrive on, and the N-1 flow (eid 65) they come by.
const PORT: u32 = 3;
const N1_IN: u64 = 1001;
const N1_OUT: u64 = 1002;
const APP_FLOW: u64 = 77;
const IPCP: u32 = 9;

fn server_port() -> PortView {
    PortView {
        id: PORT,
        kind: DIX,
        mac: SERVER_MAC,
    }
}

fn entry(flow: u64, mac: [u8; 6], dt_of: Option<u32>) -> FlowEntry {
    FlowEntry {
        flow,
        mac,
        addr: None,
        encrypted: false,
        dt_of,
    }
}

/// The server's tables: eid 65 on PORT is the DT N-1 flow from the client; eid 0x42 of its
/// IPCP is an app's flow; 0x9f9b0896 (the client) is reached back on N1_IN.
fn server_tables() -> Tables {
    let mut t = Tables::default();
    t.insert_flow(PORT, 65, entry(N1_IN, CLIENT_MAC, Some(IPCP)));
    t.insert_flow(PORT, 64, entry(1000, CLIENT_MAC, None));
    let mut u = DtTables::new(SERVER);
    // The PCI's eid is 8 bytes, little-endian: frame 4's is 0x01a63c4e_00000042.
    u.local.insert(0x01a6_3c4e_0000_0042, APP_FLOW);
    u.set_routes(&[(CLIENT, N1_IN)]);
    t.set_uni(IPCP, u);
    t
}

/// A transit IPCP between the client and a third member: the server's address is reached
/// on N1_OUT, an eth-dix flow of port 4 to MAC 02:..:0c with the peer's eid 300.
const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
const NEXT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
fn transit_tables() -> Tables {
    let mut t = server_tables();
    let u = t.uni_mut(IPCP).unwrap();
    u.own = 0x7777_0001;
    u.set_routes(&[(CLIENT, N1_IN), (SERVER, N1_OUT)]);
    t.refresh_hops();
    t.set_egress(N1_OUT, out_egress());
    t
}

fn out_egress() -> Egress {
    Egress::Eth {
        port: 4,
        d: EthDest {
            kind: DIX,
            src: OUT_MAC,
            dst: NEXT_MAC,
            remote: 300,
            local: 301,
        },
    }
}

/// `classify_eth` for the server's port, once `step_eth` was seen to decide the same (so
/// every test that calls this is a test of the fast path too:
/// `fast_path::same_decision`).
fn classify(frame: &mut [u8], t: &Tables) -> Action {
    let mut copy = frame.to_vec();
    let step = step_eth(server_port(), &mut copy, t);
    let a = classify_eth(server_port(), frame, t);
    if let Err(e) = fast_path::same_decision(&step, &mut copy, &a, frame, t) {
        panic!("step_eth and classify_eth differ: {e}");
    }
    a
}

#[test]
fn a_flow_allocation_request_for_the_server_goes_to_o7sd_unchanged() {
    let mut f = unhex(UNI_DIX_1);
    let before = f.clone();
    assert_eq!(
        classify(&mut f, &server_tables()),
        Action::Dt {
            ipcp: IPCP,
            from: N1_IN,
            pdu: 18..18 + 235,
            dt: DtAction::Control { eid: 0 },
        }
    );
    assert_eq!(f, before);
}

#[test]
fn a_dt_pdu_for_a_local_endpoint_is_delivered_with_its_ecn_byte() {
    let mut f = unhex(UNI_DIX_4);
    let before = f.clone();
    let want = |ecn| Action::Dt {
        ipcp: IPCP,
        from: N1_IN,
        pdu: 18..18 + 107,
        dt: DtAction::Deliver {
            flow: APP_FLOW,
            ecn,
        },
    };
    assert_eq!(classify(&mut f, &server_tables()), want(0));
    assert_eq!(f, before);
    // The PCI's ECN byte (offset 6) is what the receiver's MB-ECN reads.
    f[18 + 6] = 5;
    assert_eq!(classify(&mut f, &server_tables()), want(5));
}

#[test]
fn a_dt_pdu_for_another_address_is_forwarded_ttl_decremented_and_re_headed_in_place() {
    let mut f = unhex(UNI_DIX_4);
    let before = f.clone();
    let t = transit_tables();
    let a = classify(&mut f, &t);
    assert_eq!(
        a,
        Action::Dt {
            ipcp: IPCP,
            from: N1_IN,
            pdu: 18..125,
            dt: DtAction::Forward { n1: N1_OUT, hop: 1 },
        }
    );
    // Only the TTL changed: 0x3c -> 0x3b.
    let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != before[i]).collect();
    assert_eq!(changed, [18 + 5]);
    assert_eq!(f[18 + 5], 0x3b);
    let Some(Egress::Eth { d, .. }) = t.egress(N1_OUT) else {
        panic!("no egress");
    };
    assert_eq!(rewrite_dix(&mut f, &(18..125), d), Some(125));
    let mut want = Vec::new();
    want.extend_from_slice(&NEXT_MAC);
    want.extend_from_slice(&OUT_MAC);
    want.extend_from_slice(&[0xa0, 0x00, 0x01, 0x2c, 0x00, 0x6b]);
    assert_eq!(&f[..18], &want[..]);
    assert_eq!(&f[18..23], &before[18..23]);
    assert_eq!(&f[24..], &before[24..]);
}

#[test]
fn a_short_forwarded_pdu_is_padded_with_zeros_to_the_minimum_frame() {
    let mut pdu = Vec::new();
    dt::write_pci(&mut pdu, SERVER, 9, 0x42);
    pdu.extend_from_slice(b"hello");
    let mut f = Vec::new();
    frames::build_dix(&mut f, SERVER_MAC, CLIENT_MAC, 0xA000, 65, &pdu).unwrap();
    // The buffer a frame lies in is bigger than the frame; what follows it is old data.
    f.truncate(18 + pdu.len());
    f.resize(64, 0xee);
    let t = transit_tables();
    let Action::Dt {
        dt: DtAction::Forward { n1, hop },
        pdu: at,
        ..
    } = classify(&mut f[..38], &t)
    else {
        panic!("not forwarded");
    };
    let Some(Egress::Eth { d, .. }) = t.hop_egress(IPCP, n1, hop) else {
        panic!("no egress");
    };
    assert_eq!(rewrite_dix(&mut f, &at, d), Some(60));
    assert!(f[38..60].iter().all(|&b| b == 0), "{:x?}", &f[38..60]);
    assert_eq!(&f[60..], &[0xee; 4]);
    assert_eq!(&f[16..18], &[0, 20]);
}

#[test]
fn rewrite_dix_refuses_what_it_cannot_re_head() {
    let mut f = unhex(UNI_DIX_4);
    let Egress::Eth { d, .. } = out_egress() else {
        unreachable!()
    };
    let before = f.clone();
    // Not right after the eth-dix header.
    assert_eq!(rewrite_dix(&mut f, &(19..125), &d), None);
    // An LLC egress.
    let llc = EthDest {
        kind: PortKind::Llc,
        ..d
    };
    assert_eq!(rewrite_dix(&mut f, &(18..125), &llc), None);
    // An endpoint id that does not fit eth-dix's 16 bits.
    let wide = EthDest {
        remote: 0x1_0000,
        ..d
    };
    assert_eq!(rewrite_dix(&mut f, &(18..125), &wide), None);
    // A buffer too short for the padding.
    let mut short = f[..40].to_vec();
    assert_eq!(rewrite_dix(&mut short, &(18..40), &d), None);
    assert_eq!(f, before);
    // The largest endpoint id that fits does.
    let top = EthDest {
        remote: 0xffff,
        ..d
    };
    assert_eq!(rewrite_dix(&mut f, &(18..125), &top), Some(125));
    assert_eq!(&f[14..16], &[0xff, 0xff]);
}

#[test]
fn flows_of_small_and_large_eids_are_found_by_port_and_eid_and_removed() {
    let mut t = Tables::default();
    // Small ids (indexed), the largest indexed one, the first of the map, the largest.
    let eids = [64, 65, 300, 16_383, 16_384, u32::MAX];
    for (i, &eid) in eids.iter().enumerate() {
        t.insert_flow(PORT, eid, entry(i as u64 + 1, CLIENT_MAC, None));
        t.insert_flow(PORT + 1, eid, entry(i as u64 + 100, SERVER_MAC, None));
    }
    for (i, &eid) in eids.iter().enumerate() {
        assert_eq!(
            t.flow(PORT, eid).map(|e| e.flow),
            Some(i as u64 + 1),
            "{eid}"
        );
        assert_eq!(t.flow(PORT + 1, eid).map(|e| e.flow), Some(i as u64 + 100));
        assert_eq!(t.flow(PORT + 2, eid), None);
    }
    for eid in [0, 63, 66, 299, 16_382, 16_385, u32::MAX - 1] {
        assert_eq!(t.flow(PORT, eid), None, "{eid}");
    }
    // Replaced in place, changed in place.
    t.insert_flow(PORT, 65, entry(77, CLIENT_MAC, None));
    assert_eq!(t.flow(PORT, 65).map(|e| e.flow), Some(77));
    t.flow_mut(PORT, 16_384).unwrap().encrypted = true;
    assert!(t.flow(PORT, 16_384).unwrap().encrypted);
    assert!(!t.flow(PORT + 1, 16_384).unwrap().encrypted);
    assert!(t.flow_mut(PORT + 2, 65).is_none() && t.flow_mut(PORT, 66).is_none());
    // Removed one by one, each once; the other port keeps its own.
    for &eid in &eids {
        assert!(t.remove_flow(PORT, eid).is_some(), "{eid}");
        assert_eq!(t.remove_flow(PORT, eid), None);
        assert_eq!(t.flow(PORT, eid), None);
        assert!(t.flow(PORT + 1, eid).is_some());
    }
    // A port's table gives back the room of flows that went.
    t.insert_flow(PORT, 64, entry(1, CLIENT_MAC, None));
    t.insert_flow(PORT, 16_000, entry(2, CLIENT_MAC, None));
    assert!(t.flows.room(PORT) > 16_000);
    t.remove_flow(PORT, 16_000);
    // 65 ids left in room for 16,001: room for twice as many kept.
    assert_eq!(t.flows.room(PORT), 130);
    assert_eq!(t.flow(PORT, 64).map(|e| e.flow), Some(1));
    t.remove_flow(PORT, 64);
    assert_eq!(t.flows.room(PORT), 0);
    // A table a quarter full is left as it is (shrinking it would be undone by the next
    // flow); below a quarter it shrinks.
    t.insert_flow(PORT, 3, entry(3, CLIENT_MAC, None));
    t.insert_flow(PORT, 15, entry(15, CLIENT_MAC, None));
    assert_eq!(
        t.flows.room(PORT),
        16,
        "Vec grew otherwise: the next checks assume 16"
    );
    t.remove_flow(PORT, 15);
    assert_eq!(t.flows.room(PORT), 16, "4 ids of 16: kept");
    t.insert_flow(PORT, 15, entry(15, CLIENT_MAC, None));
    t.remove_flow(PORT, 3);
    t.insert_flow(PORT, 2, entry(2, CLIENT_MAC, None));
    t.remove_flow(PORT, 15);
    assert_eq!(t.flows.room(PORT), 6, "3 ids of 16: room for 6");
    t.remove_flow(PORT, 2);
    // A port whose flows all went comes back empty and takes new ones.
    t.insert_flow(PORT, 70, entry(5, CLIENT_MAC, None));
    assert_eq!(t.flow(PORT, 70).map(|e| e.flow), Some(5));
    assert_eq!(t.flow(PORT, 64), None);
}

/// What hop `hop` of IPCP `ipcp` holds: its N-1 flow and where that sends.
fn slot(t: &Tables, ipcp: u32, hop: u32) -> Option<(u64, Egress)> {
    t.hop_slot(ipcp, hop).map(|h| (h.n1, h.egress))
}

#[test]
fn a_forwarded_pdu_leaves_by_its_hop_and_a_stale_hop_is_not_believed() {
    let mut t = transit_tables();
    let out = out_egress();
    assert_eq!(slot(&t, IPCP, 1), Some((N1_OUT, out)), "kept by index");
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 1), Some(&out));
    // No such IPCP, hop or flow: found by the N-1 flow, or not at all.
    assert_eq!(t.hop_egress(99, N1_OUT, 1), Some(&out));
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 7), Some(&out));
    assert_eq!(t.hop_egress(IPCP, N1_IN, 1), None, "hop 1 is N1_OUT's");
    // Where the flow sends changes: the hop follows.
    let Egress::Eth { d, .. } = out else {
        unreachable!()
    };
    let moved = Egress::Eth { port: 9, d };
    t.set_egress(N1_OUT, moved);
    assert_eq!(slot(&t, IPCP, 1), Some((N1_OUT, moved)));
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 1), Some(&moved));
    // The routes change under the index (through uni_mut, not refreshed): hop 1 is now
    // N1_IN's, which has no egress; N1_OUT is hop 0 and still found.
    t.uni_mut(IPCP)
        .unwrap()
        .set_routes(&[(SERVER, N1_OUT), (0x0c0c_0c0c, N1_IN)]);
    assert_eq!(t.hop_egress(IPCP, N1_IN, 1), None);
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 0), Some(&moved));
    t.refresh_hops();
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 0), Some(&moved));
    // A slot that names a flow no route uses any more follows that flow's changes too: the
    // routes come back to it later without a refresh, and its slot does not hold the old
    // egress.
    t.uni_mut(IPCP).unwrap().set_routes(&[(SERVER, N1_IN)]);
    t.set_egress(N1_OUT, out);
    t.uni_mut(IPCP)
        .unwrap()
        .set_routes(&[(SERVER, N1_OUT), (0x0c0c_0c0c, N1_IN)]);
    assert_ne!(slot(&t, IPCP, 0), Some((N1_OUT, moved)), "stale");
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 0), Some(&out));
    t.set_egress(N1_OUT, moved);
    // Gone: by the flow, by its port.
    t.remove_egress(N1_OUT);
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 0), None);
    assert_eq!(t.egress(N1_OUT), None);
    t.set_egress(N1_OUT, moved);
    t.remove_port_egress(4);
    assert_eq!(
        t.hop_egress(IPCP, N1_OUT, 0),
        Some(&moved),
        "port 9's stays"
    );
    t.remove_port_egress(9);
    assert_eq!(t.hop_egress(IPCP, N1_OUT, 0), None);
}

/// The header a hop's slot holds, as bytes.
fn head_of(t: &Tables, ipcp: u32, n1: u64, hop: u32) -> Option<[u8; 18]> {
    t.hop_out(ipcp, n1, hop)
        .and_then(|(_, h)| h.copied())
        .map(|h| h.0)
}

#[test]
fn a_hop_s_eth_dix_header_is_made_with_its_egress_and_follows_it() {
    let mut t = transit_tables();
    let Egress::Eth { d, .. } = out_egress() else {
        unreachable!()
    };
    // NEXT_MAC <- OUT_MAC, Ethertype 0xa000, the peer's endpoint id 300, length 0.
    let want = hex::decode("02000000000c02000000000ba000012c0000").unwrap();
    assert_eq!(head_of(&t, IPCP, N1_OUT, 1).map(Vec::from), Some(want));
    // Re-heading with it writes what rewrite_dix writes, the PDU's length included.
    let mut a = unhex(UNI_DIX_4);
    let mut b = a.clone();
    let h = t
        .hop_out(IPCP, N1_OUT, 1)
        .and_then(|(_, h)| h)
        .copied()
        .unwrap();
    assert_eq!(rewrite_dix_with(&mut a, &(18..125), &h), Some(125));
    assert_eq!(rewrite_dix(&mut b, &(18..125), &d), Some(125));
    assert_eq!(a, b);
    assert_eq!(&a[16..18], &[0, 107]);
    // The flow's peer changes (another MAC and endpoint id): the header follows.
    let d2 = EthDest {
        dst: CLIENT_MAC,
        remote: 0x0abc,
        ..d
    };
    t.set_egress(N1_OUT, Egress::Eth { port: 4, d: d2 });
    let mut want2 = CLIENT_MAC.to_vec();
    want2.extend_from_slice(&OUT_MAC);
    want2.extend_from_slice(&[0xa0, 0x00, 0x0a, 0xbc, 0, 0]);
    assert_eq!(head_of(&t, IPCP, N1_OUT, 1).map(Vec::from), Some(want2));
    // Egresses that have none: a UDP one, an LLC one, an endpoint id past 16 bits.
    let udp = Egress::Udp {
        port: 5,
        dst: "127.0.0.1:3435".parse().unwrap(),
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
            remote: 0x1_0000,
            ..d
        },
    };
    for e in [udp, llc, wide] {
        t.set_egress(N1_OUT, e);
        assert_eq!(t.hop_out(IPCP, N1_OUT, 1), Some((&e, None)), "{e:?}");
    }
    // A slot gone stale (routes changed without a refresh): the egress by the flow, and
    // no header (the worker makes one).
    t.set_egress(N1_OUT, out_egress());
    t.uni_mut(IPCP)
        .unwrap()
        .set_routes(&[(SERVER, N1_OUT), (0x0c0c_0c0c, N1_IN)]);
    assert_eq!(t.hop_out(IPCP, N1_OUT, 0), Some((&out_egress(), None)));
    t.refresh_hops();
    assert!(head_of(&t, IPCP, N1_OUT, 0).is_some());
}

#[test]
fn each_ipcp_keeps_where_its_hops_send_by_index() {
    let mut t = transit_tables();
    let out = out_egress();
    let Egress::Eth { d, .. } = out else {
        unreachable!()
    };
    let other = Egress::Eth { port: 9, d };
    // IPCP 10: routes through N1_OUT (its hop 1) and 555 (hop 0), set the worker's way.
    t.set_routes(10, 0x1010, &[(0x2020, 555), (SERVER, N1_OUT)]);
    assert_eq!(
        t.uni(10).map(|u| (u.own, u.route(SERVER))),
        Some((0x1010, Some(N1_OUT)))
    );
    assert_eq!(slot(&t, 10, 1), Some((N1_OUT, out)));
    assert_eq!(slot(&t, 10, 0), None, "555 sends nowhere yet");
    assert_eq!(slot(&t, IPCP, 1), Some((N1_OUT, out)));
    assert_eq!(slot(&t, IPCP, 0), None, "N1_IN has no egress");
    t.set_egress(555, other);
    assert_eq!(slot(&t, 10, 0), Some((555, other)));
    assert_eq!(slot(&t, IPCP, 0), None, "IPCP's hop 0 is N1_IN");
    assert_eq!(t.hop_egress(10, 555, 0), Some(&other));
    assert_eq!(t.hop_egress(IPCP, 555, 0), Some(&other), "by the flow");
    // Routes set the worker's way replace the old ones and their hops.
    t.set_routes(10, 0x1010, &[(0x2020, N1_OUT)]);
    assert_eq!(slot(&t, 10, 0), Some((N1_OUT, out)));
    assert_eq!(slot(&t, 10, 1), None);
    assert_eq!(t.uni(10).map(|u| u.route(SERVER)), Some(None));
    t.remove_egress(N1_OUT);
    assert_eq!((slot(&t, 10, 0), slot(&t, IPCP, 1)), (None, None));
}

#[test]
fn the_tables_keep_flows_by_port_and_eid_and_ipcps_apart() {
    let mut t = server_tables();
    assert_eq!(t.flow(PORT, 65).map(|e| e.flow), Some(N1_IN));
    assert_eq!(t.flow(PORT + 1, 65), None);
    assert_eq!(t.flow(PORT, 66), None);
    let gone = t.remove_flow(PORT, 65);
    assert_eq!(gone.map(|e| e.flow), Some(N1_IN));
    assert_eq!(t.flow(PORT, 65), None);
    assert_eq!(t.remove_flow(PORT, 65), None);
    // A second IPCP gets tables of its own; the first keeps its.
    t.uni_entry(10).own = 0x1010;
    assert_eq!(t.uni(IPCP).map(|u| u.own), Some(SERVER));
    assert_eq!(t.uni(10).map(|u| u.own), Some(0x1010));
    t.uni_entry(IPCP).own = 1;
    assert_eq!(t.uni(10).map(|u| u.own), Some(0x1010));
    assert_eq!(t.uni_mut(IPCP).map(|u| u.own), Some(1));
    t.clear_unis();
    assert!(t.uni(IPCP).is_none() && t.uni(10).is_none());
    // Where a flow sends names its port.
    assert_eq!(out_egress().port(), 4);
    let udp = Egress::Udp {
        port: 7,
        dst: udp_peer(),
        remote: 1,
    };
    assert_eq!(udp.port(), 7);
}

#[test]
fn a_pdu_range_that_ends_before_the_header_is_refused() {
    let mut f = unhex(UNI_DIX_4);
    let before = f.clone();
    let Egress::Eth { d, .. } = out_egress() else {
        unreachable!()
    };
    #[allow(clippy::reversed_empty_ranges)]
    for bad in [18..10, 18..16, 18..17] {
        assert_eq!(rewrite_dix(&mut f, &bad, &d), None, "{bad:?}");
        assert_eq!(f, before);
    }
}

#[test]
fn dt_pdus_are_dropped_for_each_reason_and_left_as_they_came() {
    let t = transit_tables();
    let drop = |edit: &dyn Fn(&mut Vec<u8>), t: &Tables| {
        let mut f = unhex(UNI_DIX_4);
        edit(&mut f);
        let before = f.clone();
        let a = classify(&mut f, t);
        assert_eq!(f, before, "{a:?} changed the frame");
        match a {
            Action::Dt {
                dt: DtAction::Drop(why),
                from: N1_IN,
                ipcp: IPCP,
                ..
            } => why,
            other => panic!("{other:?}"),
        }
    };
    // TTL 1 and 0: not forwarded.
    assert_eq!(drop(&|f| f[23] = 1, &t), DtDrop::TtlExpired);
    assert_eq!(drop(&|f| f[23] = 0, &t), DtDrop::TtlExpired);
    // An address nobody routes.
    assert_eq!(drop(&|f| f[18] = 0x99, &t), DtDrop::NoRoute);
    // The next hop is the flow it came on.
    assert_eq!(
        drop(&|f| f[18..22].copy_from_slice(&CLIENT.to_le_bytes()), &t),
        DtDrop::Loop
    );
    // For us, at an endpoint no flow has, and at a reserved one.
    let s = server_tables();
    assert_eq!(drop(&|f| f[25] = 0x99, &s), DtDrop::UnknownEid);
    assert_eq!(
        drop(&|f| f[25..33].copy_from_slice(&5u64.to_le_bytes()), &s),
        DtDrop::ReservedEid
    );
    // Shorter than a PCI.
    let short = |f: &mut Vec<u8>| {
        f[16..18].copy_from_slice(&[0, 14]);
        f.truncate(18 + 14);
    };
    assert_eq!(drop(&short, &s), DtDrop::Short);
}

#[test]
fn a_dt_flow_whose_ipcp_has_no_table_yet_hands_its_pdus_to_o7sd() {
    let mut t = server_tables();
    t.clear_unis();
    let mut f = unhex(UNI_DIX_4);
    assert_eq!(
        classify(&mut f, &t),
        Action::Deliver {
            flow: N1_IN,
            sdu: 18..125
        }
    );
}

#[test]
fn an_sdu_of_a_plain_flow_goes_to_its_ring() {
    // At the client: frame 2 comes from the server on eid 64.
    let mut t = Tables::default();
    t.insert_flow(PORT, 64, entry(1000, SERVER_MAC, None));
    let client = PortView {
        mac: CLIENT_MAC,
        ..server_port()
    };
    let mut f = unhex(UNI_DIX_2);
    assert_eq!(
        classify_eth(client, &mut f, &t),
        Action::Deliver {
            flow: 1000,
            sdu: 18..42
        }
    );
}

#[test]
fn the_sender_must_be_the_flows_peer() {
    let mut f = unhex(UNI_DIX_4);
    f[6..12].copy_from_slice(&NEXT_MAC);
    assert_eq!(
        classify(&mut f, &server_tables()),
        Action::WrongPeer { flow: N1_IN }
    );
    let mut f = unhex(UNI_DIX_4);
    f[15] = 66;
    assert_eq!(
        classify(&mut f, &server_tables()),
        Action::UnknownEid { eid: 66 }
    );
    // The same eid on another port is another flow (here none).
    let other = PortView {
        id: PORT + 1,
        ..server_port()
    };
    let mut f = unhex(UNI_DIX_4);
    assert_eq!(
        classify_eth(other, &mut f, &server_tables()),
        Action::UnknownEid { eid: 65 }
    );
    // From the flow's peer with its endpoint id, but to another station (a promiscuous
    // device): not ours, untouched.
    let mut f = unhex(UNI_DIX_4);
    f[0..6].copy_from_slice(&NEXT_MAC);
    let before = f.clone();
    assert_eq!(classify(&mut f, &server_tables()), Action::NotOurs);
    assert_eq!(f, before);
}

#[test]
fn encrypted_sdus_are_opened_by_the_step_and_empty_plain_ones_are_keepalives() {
    let mut t = server_tables();
    t.flow_mut(PORT, 65).unwrap().encrypted = true;
    let mut f = unhex(UNI_DIX_4);
    let before = f.clone();
    assert_eq!(
        classify(&mut f, &t),
        Action::Sealed {
            flow: N1_IN,
            sdu: 18..125
        }
    );
    assert_eq!(f, before);
    let mut empty = Vec::new();
    frames::build_dix(&mut empty, SERVER_MAC, CLIENT_MAC, 0xA000, 65, &[]).unwrap();
    assert_eq!(
        classify(&mut empty, &t),
        Action::Sealed {
            flow: N1_IN,
            sdu: 18..18
        }
    );
    assert_eq!(
        classify(&mut empty, &server_tables()),
        Action::Keepalive { flow: N1_IN }
    );
}

#[test]
fn management_frames_go_to_o7sd_unless_their_source_is_no_station() {
    let mut f = unhex(DIX_MGMT);
    assert_eq!(
        classify(&mut f, &server_tables()),
        Action::Mgmt {
            src: CLIENT_MAC,
            dst: [0xff; 6],
            sdu: 18..18 + 0x47,
        }
    );
    let mut multicast = f.clone();
    multicast[6] = 0x01;
    assert_eq!(
        classify(&mut multicast, &server_tables()),
        Action::MgmtBadSource
    );
    let mut zero = f.clone();
    zero[6..12].fill(0);
    assert_eq!(classify(&mut zero, &server_tables()), Action::MgmtBadSource);
    // On the loopback device (all-zero MAC) an all-zero source is our own.
    let lo = PortView {
        mac: [0; 6],
        ..server_port()
    };
    assert!(matches!(
        classify_eth(lo, &mut zero, &server_tables()),
        Action::Mgmt {
            src: [0, 0, 0, 0, 0, 0],
            ..
        }
    ));
    let mut llc = unhex(LLC_MGMT);
    let port = PortView {
        kind: PortKind::Llc,
        ..server_port()
    };
    assert_eq!(
        classify_eth(port, &mut llc, &server_tables()),
        Action::Mgmt {
            src: CLIENT_MAC,
            dst: SERVER_MAC,
            sdu: 17..17 + 0xc7 - 3,
        }
    );
}

#[test]
fn llc_data_goes_to_the_flow_of_its_destination_sap() {
    let mut f = Vec::new();
    // A data SAP of the layer's (logical 2..=65).
    frames::build_llc(&mut f, SERVER_MAC, CLIENT_MAC, 0x21, 0x24, b"sdu").unwrap();
    let mut t = Tables::default();
    t.insert_flow(PORT, 0x21, entry(5, CLIENT_MAC, None));
    let port = PortView {
        kind: PortKind::Llc,
        ..server_port()
    };
    assert_eq!(
        classify_eth(port, &mut f, &t),
        Action::Deliver {
            flow: 5,
            sdu: 17..20
        }
    );
}

#[test]
fn what_is_not_ours_is_ignored_and_what_is_broken_is_malformed() {
    let t = server_tables();
    assert_eq!(classify(&mut unhex(IPV6), &t), Action::NotOurs);
    // An eth-dix frame on an LLC port carries no 802.3 length.
    let llc = PortView {
        kind: PortKind::Llc,
        ..server_port()
    };
    assert_eq!(
        classify_eth(llc, &mut unhex(UNI_DIX_4), &t),
        Action::NotOurs
    );
    // A length past the frame's end; a frame without a full Ethernet header.
    let mut f = unhex(UNI_DIX_4);
    f.truncate(124);
    assert_eq!(classify(&mut f, &t), Action::Malformed);
    assert_eq!(classify(&mut f[..13], &t), Action::Malformed);
    // A UDP port never takes Ethernet frames.
    let udp = PortView {
        kind: PortKind::Udp { addr: udp_peer() },
        ..server_port()
    };
    assert_eq!(
        classify_eth(udp, &mut unhex(UNI_DIX_4), &t),
        Action::NotOurs
    );
}

fn udp_peer() -> SocketAddr {
    "127.0.0.1:3435".parse().unwrap()
}

fn udp_tables() -> Tables {
    let mut t = Tables::default();
    t.insert_flow(
        PORT,
        64,
        FlowEntry {
            addr: Some(udp_peer()),
            ..entry(12, [0; 6], None)
        },
    );
    t
}

#[test]
fn udp_datagrams_are_told_apart_by_their_endpoint_id_and_sender() {
    let t = udp_tables();
    assert_eq!(
        classify_udp(PORT, udp_peer(), &mut unhex(UDP_MGMT), &t),
        Action::UdpMgmt
    );
    let mut d = unhex(UDP_DATA);
    let n = d.len();
    assert_eq!(
        classify_udp(PORT, udp_peer(), &mut d, &t),
        Action::Deliver {
            flow: 12,
            sdu: 4..n
        }
    );
    let other: SocketAddr = "127.0.0.1:3436".parse().unwrap();
    assert_eq!(
        classify_udp(PORT, other, &mut d, &t),
        Action::WrongPeer { flow: 12 }
    );
    assert_eq!(
        classify_udp(PORT + 1, udp_peer(), &mut d, &t),
        Action::UnknownEid { eid: 64 }
    );
    assert_eq!(
        classify_udp(PORT, udp_peer(), &mut d[..3], &t),
        Action::Malformed
    );
    assert_eq!(
        classify_udp(PORT, udp_peer(), &mut d[..4], &t),
        Action::Keepalive { flow: 12 }
    );
}

#[test]
fn a_dt_pdu_in_a_datagram_is_decided_as_on_ethernet() {
    let mut t = transit_tables();
    t.insert_flow(
        PORT,
        64,
        FlowEntry {
            addr: Some(udp_peer()),
            ..entry(N1_IN, [0; 6], Some(IPCP))
        },
    );
    let mut d = vec![0, 0, 0, 64];
    d.extend_from_slice(&unhex(UNI_DIX_4)[18..]);
    assert_eq!(
        classify_udp(PORT, udp_peer(), &mut d, &t),
        Action::Dt {
            ipcp: IPCP,
            from: N1_IN,
            pdu: 4..4 + 107,
            dt: DtAction::Forward { n1: N1_OUT, hop: 1 },
        }
    );
    assert_eq!(d[4 + 5], 0x3b);
}

fn any_kind() -> impl Strategy<Value = PortKind> {
    prop_oneof![
        Just(DIX),
        Just(PortKind::Llc),
        Just(PortKind::Udp {
            addr: "127.0.0.1:3435".parse().unwrap()
        })
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No frame makes the decision panic; it changes at most the TTL of a PDU it forwards
    /// (by one) and every range it returns lies inside the frame.
    #[test]
    fn no_frame_panics_or_changes_more_than_a_forwarded_ttl(
        kind in any_kind(),
        head in prop::collection::vec(any::<u8>(), 0..40),
        tail in prop::collection::vec(any::<u8>(), 0..200),
        dix_like in any::<bool>(),
    ) {
        let mut f = head;
        if dix_like && f.len() >= 18 {
            // Often a frame of ours: the Ethertype, eid 65 from the client.
            f[6..12].copy_from_slice(&CLIENT_MAC);
            f[12..16].copy_from_slice(&[0xa0, 0x00, 0x00, 65]);
        }
        f.extend_from_slice(&tail);
        let before = f.clone();
        let port = PortView { kind, ..server_port() };
        let a = classify_eth(port, &mut f, &transit_tables());
        check(&a, &before, &f)?;
        let a = classify_udp(PORT, udp_peer(), &mut f.clone(), &udp_tables());
        let range_ok = match &a {
            Action::Deliver { sdu, .. } => sdu.end <= f.len(),
            _ => true,
        };
        prop_assert!(range_ok);
    }

    /// rewrite_dix never panics and never writes past the wire length it returns.
    #[test]
    fn rewrite_dix_stays_inside_the_frame(
        frame in prop::collection::vec(any::<u8>(), 0..200),
        start in 0usize..40,
        len in 0usize..200,
    ) {
        let mut f = frame.clone();
        let Egress::Eth { d, .. } = out_egress() else { unreachable!() };
        let at = start..start + len;
        if let Some(wire) = rewrite_dix(&mut f, &at, &d) {
            prop_assert!(wire <= f.len() && wire >= MIN_FRAME && at.end <= wire);
            prop_assert_eq!(&f[wire..], &frame[wire..]);
            prop_assert_eq!(&f[18..at.end], &frame[18..at.end]);
        } else {
            prop_assert_eq!(f, frame);
        }
    }
}

fn check(a: &Action, before: &[u8], after: &[u8]) -> Result<(), TestCaseError> {
    let inside = |r: &Range<usize>| r.start <= r.end && r.end <= after.len();
    match a {
        Action::Dt {
            pdu,
            dt: DtAction::Forward { .. },
            ..
        } => {
            prop_assert!(inside(pdu));
            let changed: Vec<usize> = (0..after.len())
                .filter(|&i| after[i] != before[i])
                .collect();
            prop_assert_eq!(changed, vec![pdu.start + 5]);
            prop_assert_eq!(after[pdu.start + 5] + 1, before[pdu.start + 5]);
        }
        other => {
            prop_assert_eq!(after, before);
            match other {
                Action::Dt { pdu: r, .. }
                | Action::Deliver { sdu: r, .. }
                | Action::Sealed { sdu: r, .. }
                | Action::Mgmt { sdu: r, .. } => prop_assert!(inside(r)),
                _ => {}
            }
        }
    }
    Ok(())
}
