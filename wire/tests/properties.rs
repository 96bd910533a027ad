//! parse(emit(x)) == x for every repr, and no parser panics on arbitrary bytes.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

use o7s_wire::app::{OcbrMsg, OpingMsg};
use o7s_wire::code::{EthCode, FaCode, UdpCode};
use o7s_wire::ethernet::EthernetRepr;
use o7s_wire::field::Writer;
use o7s_wire::frame::{
    DecodeOpts, DixBody, DixFrame, EthFrame, LlcBody, LlcFrame, MgmtTail, Oap, UdpMsg,
};
use o7s_wire::frct::FrctRepr;
use o7s_wire::oap::{OapHdr, OapHdrV022, Role};
use o7s_wire::qos::{QosCube, QosSpec};
use o7s_wire::unicast::dt::{DtConfig, PciRepr};
use o7s_wire::unicast::fa::FaMsg;
use o7s_wire::unicast::lsa::Lsa;
use o7s_wire::unicast::sdu::{DtBody, DtPdu};
use o7s_wire::{dix, llc, udp};
use proptest::prelude::*;

fn qos() -> impl Strategy<Value = QosSpec> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(delay, bandwidth, availability, loss, ber, in_order, max_gap, timeout)| QosSpec {
                delay,
                bandwidth,
                availability,
                loss,
                ber,
                in_order,
                max_gap,
                timeout,
            },
        )
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn oap(signed: bool, role: Role) -> impl Strategy<Value = OapHdr> {
    let hash_len = if role == Role::Response { 32 } else { 0 };
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        prop::sample::select(vec![0u16, 895, 901, 1018]),
        prop::sample::select(vec![0u16, 672, 673]),
        any::<bool>(),
        bytes(100),
        bytes(100),
        bytes(64),
    )
        .prop_map(
            move |(id, timestamp, cipher_nid, kdf_nid, raw, kex, data, sig)| {
                let crt = if signed { vec![0x30; 40] } else { vec![] };
                let mut tail = vec![0xab; hash_len];
                if signed {
                    tail.extend_from_slice(&sig);
                    tail.push(1);
                }
                OapHdr {
                    id,
                    timestamp,
                    cipher_nid,
                    kdf_nid,
                    md_nid: 672,
                    kex_flags: if raw { 0x8000 } else { 0 },
                    crt,
                    kex,
                    data,
                    tail,
                }
            },
        )
}

proptest! {
    #[test]
    fn dix_mgmt(seid: u16, deid: u16, q in qos(), response: i32, code: u8, rest in bytes(40)) {
        let m = dix::MgmtMsg { seid, deid, qos: q, response, code: EthCode::from(code) };
        let mut w = Writer::default();
        m.write(&mut w);
        prop_assert_eq!(w.0.len(), dix::MGMT_LEN);
        w.put(&rest);
        let (p, r) = dix::MgmtMsg::parse(&w.0).unwrap();
        prop_assert_eq!(p, m);
        prop_assert_eq!(r, &rest[..]);
    }

    #[test]
    fn legacy_mgmt(seid: u16, deid: u16, q in qos(), cypher_s: u16, code: u8, response: i8) {
        let m = dix::LegacyMgmtMsg { seid, deid, qos: q, cypher_s, code: EthCode::from(code), response };
        let mut w = Writer::default();
        m.write(&mut w);
        prop_assert_eq!(w.0.len(), dix::LEGACY_MGMT_LEN);
        prop_assert_eq!(dix::LegacyMgmtMsg::parse(&w.0).unwrap().0, m);
    }

    #[test]
    fn llc_mgmt(ssap: u8, dsap: u8, q in qos(), response: i32, code: u8) {
        let m = llc::MgmtMsg { ssap, dsap, code: EthCode::from(code), qos: q, response };
        let mut w = Writer::default();
        m.write(&mut w);
        prop_assert_eq!(w.0.len(), llc::MGMT_LEN);
        prop_assert_eq!(llc::MgmtMsg::parse(&w.0).unwrap().0, m);
    }

    #[test]
    fn udp_mgmt(eid: u32, s_eid: u32, d_eid: u32, q in qos(), response: i32, code: u8) {
        let m = udp::MgmtMsg { eid, requester_eid: s_eid, responder_eid: d_eid, response, qos: q, code: UdpCode::from(code) };
        let mut w = Writer::default();
        m.write(&mut w);
        prop_assert_eq!(w.0.len(), udp::MGMT_LEN);
        prop_assert_eq!(udp::MgmtMsg::parse(&w.0).unwrap().0, m);
    }

    #[test]
    fn fa_msg(s_addr: u64, r_eid: u64, s_eid: u64, q in qos(), response: i32, ece: u16, code: u8) {
        let m = FaMsg { s_addr, r_eid, s_eid, response, qos: q, ece, code: FaCode::from(code) };
        let mut w = Writer::default();
        m.write(&mut w);
        prop_assert_eq!(w.0.len(), o7s_wire::unicast::fa::MSG_LEN);
        prop_assert_eq!(FaMsg::parse(&w.0).unwrap().0, m);
    }

    #[test]
    fn lsa(d_addr: u64, s_addr: u64, seqno: u64) {
        let l = Lsa { d_addr, s_addr, seqno };
        let mut w = Writer::default();
        l.write(&mut w);
        prop_assert_eq!(Lsa::parse(&w.0).unwrap(), l);
    }

    #[test]
    fn dt_pci(addr_size in 1usize..=8, eid_size in 1usize..=8, dst: u64, qc: u8, ttl: u8, ecn: u8, eid: u64, payload in bytes(30)) {
        let cfg = DtConfig::new(addr_size, eid_size).unwrap();
        let mask = |n: usize| if n == 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
        let p = PciRepr { dst_addr: dst & mask(addr_size), qc: QosCube::from(qc), ttl, ecn, eid: eid & mask(eid_size) };
        let mut w = Writer::default();
        p.write(&mut w, cfg).unwrap();
        prop_assert_eq!(w.0.len(), cfg.pci_len());
        w.put(&payload);
        let (q, rest) = PciRepr::parse(&w.0, cfg).unwrap();
        prop_assert_eq!(q, p);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn frct(flags: u8, rwe in 0u32..0x0100_0000, seqno: u32, ackno: u32) {
        let f = FrctRepr { flags, rwe, seqno, ackno };
        let mut w = Writer::default();
        f.write(&mut w);
        prop_assert_eq!(FrctRepr::parse(&w.0).unwrap().0, f);
    }

    #[test]
    fn oap_request(h in oap(false, Role::Request)) {
        let b = h.to_bytes().unwrap();
        prop_assert_eq!(OapHdr::parse_as(&b, Role::Request, 0).unwrap(), h);
    }

    #[test]
    fn oap_signed_response(h in oap(true, Role::Response)) {
        let b = h.to_bytes().unwrap();
        let p = OapHdr::parse_as(&b, Role::Response, 32).unwrap();
        let (rh, sig) = p.split_tail(Role::Response, 32).unwrap();
        prop_assert_eq!(rh.len(), 32);
        prop_assert!(!sig.is_empty());
        prop_assert_eq!(p.signed_len(Role::Response, 32) + sig.len(), b.len());
        prop_assert_eq!(p, h);
    }

    #[test]
    fn oap_v022(id: [u8; 16], timestamp: u64, crt in bytes(50), eph in bytes(100), data in bytes(20), sig in bytes(80)) {
        let h = OapHdrV022 { id, timestamp, crt, eph, data, sig };
        let mut w = Writer::default();
        h.write(&mut w).unwrap();
        prop_assert_eq!(OapHdrV022::parse(&w.0).unwrap(), h);
    }

    #[test]
    fn oping(kind in 0u32..2, id: u32, tv_sec: u64, tv_nsec: u64, pad in 0usize..1476) {
        let m = OpingMsg { kind, id, tv_sec, tv_nsec, padding: vec![0; pad] };
        let mut w = Writer::default();
        m.write(&mut w);
        prop_assert_eq!(OpingMsg::parse(&w.0).unwrap(), m);
    }

    #[test]
    fn ocbr(seqnr: u64, filler in bytes(100)) {
        let m = OcbrMsg { seqnr, filler };
        let mut w = Writer::default();
        m.write(&mut w);
        prop_assert_eq!(OcbrMsg::parse(&w.0).unwrap(), m);
    }

    /// Whole eth-dix frames: request with hash + OAP, data with padding.
    #[test]
    fn dix_frames(dst: [u8; 6], src: [u8; 6], seid: u16, q in qos(), h in oap(false, Role::Request), data in bytes(200), pad in bytes(20), eid in 64u16..) {
        let eth = EthernetRepr { dst, src, type_len: 0xA000 };
        let req = EthFrame::Dix(DixFrame {
            eth,
            eid: 0,
            body: DixBody::Mgmt(
                dix::MgmtMsg { seid, deid: 0, qos: q, response: 0, code: EthCode::FlowReq },
                MgmtTail { hash: vec![7; 32], oap: Oap::V023(h) },
            ),
            padding: vec![],
        });
        let b = req.encode().unwrap();
        prop_assert_eq!(EthFrame::decode(&b, &DecodeOpts::default()).unwrap(), Some(req));
        let d = EthFrame::Dix(DixFrame { eth, eid, body: DixBody::Data(data), padding: pad });
        let b = d.encode().unwrap();
        prop_assert_eq!(EthFrame::decode(&b, &DecodeOpts::default()).unwrap(), Some(d));
    }

    #[test]
    fn llc_frames(dst: [u8; 6], src: [u8; 6], sap in 2u8..66, data in bytes(300), pad in bytes(20)) {
        let f = EthFrame::Llc(LlcFrame {
            eth: EthernetRepr { dst, src, type_len: 0 },
            llc: llc::LlcRepr { dsap: sap, ssap: sap, ctrl: llc::CTRL_UI },
            body: LlcBody::Data(data),
            padding: pad,
        });
        let b = f.encode().unwrap();
        let back = EthFrame::decode(&b, &DecodeOpts::default()).unwrap().unwrap();
        prop_assert_eq!(back.encode().unwrap(), b);
        if let (EthFrame::Llc(x), EthFrame::Llc(y)) = (&back, &f) {
            prop_assert_eq!(&x.body, &y.body);
            prop_assert_eq!(&x.padding, &y.padding);
        }
    }

    #[test]
    fn udp_messages(eid in 1u32.., sdu in bytes(200), s_eid: u32, q in qos(), h in oap(false, Role::Response)) {
        let d = UdpMsg::Data { eid, sdu };
        prop_assert_eq!(UdpMsg::decode(&d.encode().unwrap()).unwrap(), d);
        let m = UdpMsg::Mgmt(
            udp::MgmtMsg { eid: 0, requester_eid: s_eid, responder_eid: 64, response: 0, qos: q, code: UdpCode::FlowReply },
            MgmtTail { hash: vec![], oap: Oap::V023(OapHdr { md_nid: 673, tail: vec![1; 48], ..h }) },
        );
        prop_assert_eq!(UdpMsg::decode(&m.encode().unwrap()).unwrap(), m);
    }

    #[test]
    fn dt_pdus(dst in 1u64..0xffff_ffff, eid in 64u64.., body in bytes(100)) {
        let p = DtPdu { pci: PciRepr { dst_addr: dst, qc: QosCube::BestEffort, ttl: 60, ecn: 0, eid }, body: DtBody::Flow(body) };
        let b = p.encode(DtConfig::DEFAULT).unwrap();
        prop_assert_eq!(DtPdu::decode(&b, DtConfig::DEFAULT, Some(32)).unwrap(), p);
    }

    /// No input makes any parser panic.
    #[test]
    fn arbitrary_bytes_never_panic(b in bytes(600), l: u16) {
        let _ = EthFrame::decode(&b, &DecodeOpts::default());
        let _ = EthFrame::decode(&b, &DecodeOpts { ethertype: 0xA000, hash_len: Some(28) });
        let _ = UdpMsg::decode(&b);
        let _ = OapHdr::parse(&b);
        let _ = OapHdrV022::parse(&b);
        let _ = DtPdu::decode(&b, DtConfig::DEFAULT, None);
        let _ = llc::LlcRepr::parse(&b, l);
        let _ = o7s_wire::capfile::parse(&b);
        let _ = o7s_wire::ip::udp_in(0x0800, &b);
        let _ = o7s_wire::ip::udp_in(0x86dd, &b);
        let _ = OpingMsg::parse(&b);
    }
}
