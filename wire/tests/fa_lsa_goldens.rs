//! Flow allocator messages and LSAs against bytes taken from the facts, not from our encoder
//! (issue 29): the captured FLOW_REQ of uni.pcap frame 1 (unicast facts §8.1, its hex as
//! given there), and messages laid out by hand from the 61-byte layout (base facts §1.8.5:
//! `s_addr(8) r_eid(8) s_eid(8) bandwidth(8) response(4) delay(4) loss(4) ber(4) max_gap(4)
//! timeout(4) ece(2) code(1) availability(1) in_order(1)`, big-endian) with the values the
//! capture maps give, chosen so that every pair of fields a decoder could swap differs. The
//! LSA is uni.pcap frame 43 (`d_addr(8) s_addr(8) seqno(8)`, base facts line 361). The DT
//! PCI is uni.pcap frame 3's (`e20c8a6c 00 3c 00 42000000acde1dfc`: dst and eid
//! little-endian), and the same with qc, ttl and ecn all different.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use o7s_wire::code::FaCode;
use o7s_wire::field::Writer;
use o7s_wire::hash::HashAlgo;
use o7s_wire::qos::QosCube;
use o7s_wire::unicast::dt::{DtConfig, PciRepr};
use o7s_wire::unicast::fa::{FaMsg, MSG_LEN};
use o7s_wire::unicast::lsa::Lsa;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The message's 61 bytes as our encoder writes them.
fn written(m: &FaMsg) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    m.write(&mut w);
    w.0
}

/// uni.pcap frame 1 after the udp eid and the 15-byte DT PCI: the FLOW_REQ's fixed part as
/// the facts print it, then SHA3-256("oping") and 36 bytes standing for the OAP header.
const FRAME1_FIXED: &str = "000000008178abbc 0000000000000000 bc63591000000042 \
     0000000000000000 00000000 ffffffff 00000001 00000001 ffffffff 0001d4c0 0000 00 00 00";

#[test]
fn the_captured_flow_req_of_uni_pcap_frame_1_reads_field_by_field() {
    let fixed = unhex(FRAME1_FIXED);
    assert_eq!(fixed.len(), MSG_LEN);
    let mut sdu = fixed.clone();
    sdu.extend(unhex(&HashAlgo::Sha3_256.hex("oping")));
    sdu.extend([0xa5; 36]);
    let (m, rest) = FaMsg::parse(&sdu).unwrap();
    assert_eq!(m.code, FaCode::FlowReq);
    assert_eq!(m.s_addr, 0x8178_abbc);
    assert_eq!(m.r_eid, 0);
    assert_eq!(m.s_eid, 0xbc63_5910_0000_0042);
    assert_eq!(m.response, 0);
    assert_eq!(m.ece, 0);
    // qos_raw: delay and max_gap UINT32_MAX, loss and ber 1, timeout 120000.
    let q = m.qos;
    assert_eq!(
        (q.delay, q.max_gap, q.timeout),
        (u32::MAX, u32::MAX, 120_000)
    );
    assert_eq!((q.loss, q.ber, q.bandwidth), (1, 1, 0));
    assert_eq!((q.availability, q.in_order), (0, 0));
    // The hash follows the fixed part; our encoder writes the captured bytes again.
    assert_eq!(&rest[..4], &[0x42, 0xde, 0xe3, 0xb0]);
    assert_eq!(rest.len(), 32 + 36);
    assert_eq!(written(&m), fixed);
}

#[test]
fn a_flow_reply_laid_out_from_the_facts_names_both_endpoints_the_right_way_round() {
    // uni.pcap frame 2: the server's FLOW_REPLY to frame 1, s_addr 0 (the responder leaves
    // it 0), r_eid the requester's 0xbc63591000000042, s_eid the responder's new
    // 0xfc1ddeac00000042, response 0, code 1. QoS qos_raw, as the request.
    let bytes = unhex(
        "0000000000000000 bc63591000000042 fc1ddeac00000042 \
         0000000000000000 00000000 ffffffff 00000001 00000001 ffffffff 0001d4c0 0000 01 00 00",
    );
    let (m, rest) = FaMsg::parse(&bytes).unwrap();
    assert!(rest.is_empty());
    assert_eq!(m.code, FaCode::FlowReply);
    assert_eq!(m.s_addr, 0);
    assert_eq!(m.r_eid, 0xbc63_5910_0000_0042);
    assert_eq!(m.s_eid, 0xfc1d_deac_0000_0042);
    assert_eq!(written(&m), bytes);
}

#[test]
fn the_qos_of_the_data_and_voice_requests_land_in_their_own_fields() {
    // uni.pcap frame 89: qos_data (delay 1000, loss 0, max_gap 2000, in_order 1; ber 1 as
    // the default build forces it), requester eid 0x372355d900000043, a negative response
    // to tell response from the fields around it.
    let data = unhex(
        "000000008178abbc 0000000000000000 372355d900000043 \
         0000000000000000 fffffff3 000003e8 00000000 00000001 000007d0 0001d4c0 0000 00 00 01",
    );
    let (m, _) = FaMsg::parse(&data).unwrap();
    assert_eq!(m.s_eid, 0x3723_55d9_0000_0043);
    assert_eq!(m.response, -13);
    let q = m.qos;
    assert_eq!((q.delay, q.max_gap), (1000, 2000));
    assert_eq!((q.loss, q.ber), (0, 1));
    assert_eq!((q.availability, q.in_order, q.timeout), (0, 1, 120_000));
    assert_eq!(written(&m), data);
    // uni.pcap frame 145: qos_voice (delay 50, bandwidth 100000, availability 5, loss 1,
    // ber 0, in_order 1, max_gap 50) and an ECE, so bandwidth, availability and ece each
    // have a value of their own.
    let voice = unhex(
        "000000008178abbc 0000000000000000 683e2ec900000044 \
         00000000000186a0 00000000 00000032 00000001 00000000 00000032 0001d4c0 0102 02 05 01",
    );
    let (m, _) = FaMsg::parse(&voice).unwrap();
    assert_eq!(m.code, FaCode::FlowUpdate);
    assert_eq!(m.ece, 0x0102);
    let q = m.qos;
    assert_eq!((q.bandwidth, q.availability, q.in_order), (100_000, 5, 1));
    assert_eq!((q.delay, q.max_gap, q.loss, q.ber), (50, 50, 1, 0));
    assert_eq!(written(&m), voice);
}

#[test]
fn the_captured_lsa_of_uni_pcap_frame_43_is_destination_then_source() {
    // The client (0x8178abbc) announces its adjacency to the server (0x6c8a0ce2), seqno 1.
    let bytes = unhex("000000006c8a0ce2 000000008178abbc 0000000000000001");
    let l = Lsa::parse(&bytes).unwrap();
    assert_eq!((l.d_addr, l.s_addr, l.seqno), (0x6c8a_0ce2, 0x8178_abbc, 1));
    let mut w = Writer(Vec::new());
    l.write(&mut w);
    assert_eq!(w.0, bytes);
}

#[test]
fn an_lsa_is_exactly_24_bytes() {
    let mut bytes = unhex("000000006c8a0ce2 000000008178abbc 0000000000000001");
    assert!(Lsa::parse(&bytes[..23]).is_err());
    bytes.extend([0, 0]);
    assert!(matches!(
        Lsa::parse(&bytes),
        Err(o7s_wire::Error::Trailing { count: 2, .. })
    ));
}

#[test]
fn the_captured_dt_pci_of_uni_pcap_frame_3_and_one_with_every_byte_different() {
    let cfg = DtConfig::default();
    let frame3 = unhex("e20c8a6c 00 3c 00 42000000acde1dfc");
    let (p, rest) = PciRepr::parse(&frame3, cfg).unwrap();
    assert!(rest.is_empty());
    assert_eq!(p.dst_addr, 0x6c8a_0ce2);
    assert_eq!(p.eid, 0xfc1d_deac_0000_0042);
    assert_eq!((p.qc, p.ttl, p.ecn), (QosCube::BestEffort, 60, 0));
    // qc 2 (voice), ttl 59, ecn 5: a decoder that swaps any two of the three bytes fails.
    let mixed = unhex("e20c8a6c 02 3b 05 42000000acde1dfc");
    let (p, _) = PciRepr::parse(&mixed, cfg).unwrap();
    assert_eq!((p.qc, p.ttl, p.ecn), (QosCube::Voice, 59, 5));
    let mut w = Writer(Vec::new());
    p.write(&mut w, cfg).unwrap();
    assert_eq!(w.0, mixed);
}
