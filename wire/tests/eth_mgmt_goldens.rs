//! The eth layers' FLOW_REQs against two captured frames, their bytes copied here (so no
//! ../shared is needed), chosen because the fields a decoder could swap differ in them:
//! - dix-race-zero-mac.pcap frame 9 (eth-dix): delay 1000 ms and max_gap 2000 ms, ber 1
//!   and loss 0, in_order 1 and availability 0, sender eid 65 and receiver eid 0;
//! - llc.pcap frame 3 (eth-llc): the message's own SAPs 2 (sender) and 0 (receiver), which
//!   are *not* bit-reversed, behind the LLC header's management SAP 0x01 (0x80 on the wire,
//!   bit-reversed); loss 1, in_order 0.
//!
//! A decoder that reads two of those fields the other way round, or bit-reverses the
//! message's SAPs, fails here; each message is also written back to the same bytes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use o7s_wire::code::EthCode;
use o7s_wire::ethernet::EthernetRepr;
use o7s_wire::field::Writer;
use o7s_wire::{dix, llc};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// dix-race-zero-mac.pcap frame 9, whole (125 bytes): Ethernet header, eth-dix header (eid
/// 0, length 107), the 39-byte message, the name's hash (32) and an unsigned OAP header
/// without encryption (36: id, timestamp, then zeros).
const DIX_FRAME9: &str = "1a0df7689c7c 6e6f6c16a4e5 a000 0000 006b \
     0041 0000 00000000 0000000000000000 00000001 000007d0 000003e8 0001d4c0 00000000 01 00 00 \
     42dee3b0415b4f690fd91cbd99876f1e9bd8d9745ef7fa32b142773af0349d54 \
     3e385769dd183713a92b9e2fa3a5592d18ea342413d5a3fe \
     000000000000000000000000";

/// llc.pcap frame 3's first 70 bytes: Ethernet header (802.3 length 199), LLC header
/// (DSAP/SSAP 0x80 = SAP 0x01 bit-reversed, UI), the 37-byte message and the hash.
const LLC_FRAME3: &str = "1a0df7689c7c 6e6f6c16a4e5 00c7 808003 \
     02 00 00 00 00000001 0000000000000000 00000001 ffffffff ffffffff 0001d4c0 00000000 00 \
     42dee3b0415b4f690fd91cbd99876f1e";

fn written(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    f(&mut w);
    w.0
}

#[test]
fn the_captured_dix_flow_req_keeps_delay_and_max_gap_and_the_two_eids_apart() {
    let frame = unhex(DIX_FRAME9);
    assert_eq!(frame.len(), 125);
    let (eth, payload) = EthernetRepr::parse(&frame).unwrap();
    assert_eq!(eth.dst, [0x1a, 0x0d, 0xf7, 0x68, 0x9c, 0x7c]);
    assert_eq!(eth.src, [0x6e, 0x6f, 0x6c, 0x16, 0xa4, 0xe5]);
    assert_eq!(eth.type_len, 0xa000);
    let p = dix::Packet::new_checked(payload).unwrap();
    assert_eq!((p.eid(), p.length()), (0, 107));
    assert!(p.padding().is_empty());
    let (m, rest) = dix::MgmtMsg::parse(p.payload()).unwrap();
    assert_eq!(m.code, EthCode::FlowReq);
    assert_eq!((m.seid, m.deid, m.response), (65, 0, 0));
    let q = m.qos;
    assert_eq!((q.delay, q.max_gap, q.timeout), (1000, 2000, 120_000));
    assert_eq!((q.loss, q.ber), (0, 1));
    assert_eq!((q.in_order, q.availability, q.bandwidth), (1, 0, 0));
    assert_eq!(rest.len(), 107 - 39);
    assert_eq!(&rest[..4], &[0x42, 0xde, 0xe3, 0xb0]);
    let oap = o7s_wire::oap::OapHdr::parse(&rest[32..]).unwrap();
    assert_eq!((oap.cipher_nid, oap.kdf_nid, oap.md_nid), (0, 0, 0));
    assert!(oap.kex.is_empty());
    assert_eq!(written(|w| m.write(w)), p.payload()[..39]);
}

#[test]
fn the_captured_llc_flow_req_keeps_its_own_saps_unreversed_and_apart() {
    let frame = unhex(LLC_FRAME3);
    let (eth, payload) = EthernetRepr::parse(&frame).unwrap();
    assert_eq!(eth.type_len, 199);
    // The frame is cut here after the hash: the LLC length claims the whole 199 bytes, so
    // the header is read by hand (the full-frame parse is in captures.rs).
    assert_eq!(
        &payload[..3],
        &[llc::MGMT_SAP_WIRE, llc::MGMT_SAP_WIRE, llc::CTRL_UI]
    );
    assert_eq!(llc::sap_wire(llc::MGMT_SAP_WIRE), llc::MGMT_SAP);
    let (m, rest) = llc::MgmtMsg::parse(&payload[3..]).unwrap();
    assert_eq!(m.code, EthCode::FlowReq);
    assert_eq!((m.ssap, m.dsap, m.response), (2, 0, 0));
    let q = m.qos;
    assert_eq!(
        (q.delay, q.max_gap, q.timeout),
        (u32::MAX, u32::MAX, 120_000)
    );
    assert_eq!((q.loss, q.ber, q.in_order, q.availability), (1, 1, 0, 0));
    assert_eq!(rest, &unhex("42dee3b0415b4f690fd91cbd99876f1e")[..]);
    assert_eq!(written(|w| m.write(w)), payload[3..40]);
    // The whole frame, padded out to the LLC length, parses through the LLC header too.
    let mut full = payload.to_vec();
    full.resize(199, 0);
    let (hdr, body, _) = llc::LlcRepr::parse(&full, 199).unwrap();
    assert_eq!(
        (hdr.dsap, hdr.ssap, hdr.ctrl),
        (llc::MGMT_SAP, llc::MGMT_SAP, llc::CTRL_UI)
    );
    assert_eq!(llc::MgmtMsg::parse(body).unwrap().0, m);
}
