//! The frames of the tutorials (seed 000: Ouroboros 0.21, seed 003: 0.22) decode to the
//! values the hex says and re-encode to the same bytes.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

mod common;

use common::{seed, seed_frames};
use o7s_wire::app::OpingMsg;
use o7s_wire::code::{EthCode, OpingType};
use o7s_wire::frame::{DecodeOpts, DixBody, EthFrame, Oap};
use o7s_wire::hash::HashAlgo;
use o7s_wire::qos::QosSpec;

fn dix(bytes: &[u8]) -> o7s_wire::frame::DixFrame {
    match EthFrame::decode(bytes, &DecodeOpts::default())
        .unwrap()
        .unwrap()
    {
        EthFrame::Dix(f) => f,
        other => panic!("not dix: {other:?}"),
    }
}

#[test]
fn every_seed_frame_round_trips() {
    let frames = seed_frames();
    assert_eq!(
        frames.len(),
        20,
        "4 frames of seed 000 and 16 complete ones of seed 003"
    );
    for f in frames {
        let decoded = EthFrame::decode(&f.bytes, &DecodeOpts::default())
            .unwrap_or_else(|e| panic!("{}: {e}", f.id))
            .unwrap_or_else(|| panic!("{}: not recognised", f.id));
        assert_eq!(decoded.encode().unwrap(), f.bytes, "{} re-encodes", f.id);
        let EthFrame::Dix(d) = decoded else {
            panic!("{}: not dix", f.id)
        };
        match (&d.body, f.kind.as_str()) {
            (DixBody::LegacyMgmt(..), "legacy021") | (DixBody::Data(_), _) => {}
            (DixBody::Mgmt(_, t), "v022") => {
                assert!(
                    !matches!(t.oap, Oap::V023(_)),
                    "{}: seed 003 is 0.22 OAP",
                    f.id
                )
            }
            (b, k) => panic!("{}: kind {k} decoded as {b:?}", f.id),
        }
    }
}

#[test]
fn tutorial06_packet3_flow_req_fields() {
    let d = dix(&seed("seed003-p03"));
    assert_eq!(d.eid, 0);
    let DixBody::Mgmt(m, tail) = d.body else {
        panic!("not mgmt")
    };
    assert_eq!(m.code, EthCode::FlowReq);
    assert_eq!(m.seid, 0x0040);
    assert_eq!(m.deid, 0);
    assert_eq!(m.qos, QosSpec::RAW);
    assert_eq!(m.qos.timeout, 120_000);
    assert_eq!(tail.hash, HashAlgo::Sha3_256.hash("sec.oping.tut.o7s"));
    let Oap::V022(o) = tail.oap else {
        panic!("expected a 0.22 OAP header")
    };
    assert_eq!(hex::encode(o.id), "518a56ff6f5ba69d037da1cfc30f3077");
    assert_eq!(o.timestamp, 0x1886_a8e1_033e_5233);
    assert_eq!(
        (o.crt.len(), o.eph.len(), o.data.len(), o.sig.len()),
        (0, 0, 0, 0)
    );
}

#[test]
fn tutorial06_name_query_and_reply() {
    let q = dix(&seed("seed003-p01"));
    assert_eq!(q.eth.dst, [0xff; 6]);
    let DixBody::Mgmt(m, t) = q.body else {
        panic!()
    };
    assert_eq!(m.code, EthCode::NameQueryReq);
    assert_eq!(
        hex::encode(&t.hash),
        HashAlgo::Sha3_256.hex("sec.oping.tut.o7s")
    );
    let r = dix(&seed("seed003-p02"));
    let DixBody::Mgmt(m, _) = r.body else {
        panic!()
    };
    assert_eq!(m.code, EthCode::NameQueryReply);
}

#[test]
fn tutorial06_encrypted_flow_req_carries_p256_key() {
    let d = dix(&seed("seed003-p07"));
    let DixBody::Mgmt(m, t) = d.body else {
        panic!()
    };
    assert_eq!(m.code, EthCode::FlowReq);
    let Oap::V022(o) = t.oap else { panic!() };
    assert_eq!(o.eph.len(), 91);
    // DER SubjectPublicKeyInfo of an id-ecPublicKey prime256v1 key.
    assert!(hex::encode(&o.eph).starts_with("3059301306072a8648ce3d020106082a8648ce3d030107034200"));
    let r = dix(&seed("seed003-p08"));
    let DixBody::Mgmt(m, t) = r.body else {
        panic!()
    };
    assert_eq!(
        (m.code, m.seid, m.deid, m.response),
        (EthCode::FlowReply, 0x42, 0x40, 0)
    );
    let Oap::V022(o) = t.oap else { panic!() };
    assert_eq!(o.eph.len(), 91);
}

#[test]
fn tutorial06_oping_plaintext() {
    let d = dix(&seed("seed003-p05"));
    assert_eq!(d.eid, 0x41);
    let DixBody::Data(sdu) = d.body else { panic!() };
    assert_eq!(sdu.len(), 64);
    let m = OpingMsg::parse(&sdu).unwrap();
    assert_eq!((m.msg_type(), m.id), (OpingType::EchoRequest, 0));
    assert!(m.is_plausible());
    let r = dix(&seed("seed003-p06"));
    let DixBody::Data(sdu) = r.body else { panic!() };
    assert_eq!(
        OpingMsg::parse(&sdu).unwrap().msg_type(),
        OpingType::EchoReply
    );
}

#[test]
fn tutorial04_legacy_messages() {
    let d = dix(&seed("seed000-f1"));
    let DixBody::LegacyMgmt(m, t) = d.body else {
        panic!("{:?}", d.body)
    };
    assert_eq!((m.code, m.seid, m.cypher_s), (EthCode::FlowReq, 0x40, 0));
    assert_eq!(m.qos, QosSpec::RAW);
    assert_eq!(t.hash.len(), 32);
    assert_eq!(
        t.hash,
        HashAlgo::Sha3_256.hash("oping-server"),
        "tutorial 04 registers oping-server"
    );
    let r = dix(&seed("seed000-f2"));
    let DixBody::LegacyMgmt(m, t) = r.body else {
        panic!()
    };
    assert_eq!(
        (m.code, m.seid, m.deid, m.response),
        (EthCode::FlowReply, 0x40, 0x40, 0)
    );
    assert!(t.hash.is_empty());
}
