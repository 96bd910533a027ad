//! Every Ouroboros frame of the reference's captures (../shared/captures) decodes and
//! re-encodes to identical bytes; OAP signatures and request hashes verify.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

mod common;

use common::capture;
use o7s_wire::ethernet::EthernetRepr;
use o7s_wire::frame::{DecodeOpts, EthFrame, Oap, UdpMsg};
use o7s_wire::ip;

const UDP_PORT: u16 = 3435;

/// Counts of what was checked in one capture.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    dix: usize,
    llc: usize,
    udp: usize,
    other: usize,
}

fn round_trip_all(name: &str) -> Option<Counts> {
    let frames = capture(name)?;
    let mut c = Counts::default();
    for (i, f) in frames.iter().enumerate() {
        let (eth, payload) = EthernetRepr::parse(f).unwrap();
        if let Some(d) = ip::udp_in(eth.type_len, payload).unwrap() {
            if d.sport == UDP_PORT || d.dport == UDP_PORT {
                let m =
                    UdpMsg::decode(d.payload).unwrap_or_else(|e| panic!("{name} frame {i}: {e}"));
                assert_eq!(
                    m.encode().unwrap(),
                    d.payload,
                    "{name} frame {i} re-encodes"
                );
                c.udp += 1;
                continue;
            }
        }
        match EthFrame::decode(f, &DecodeOpts::default())
            .unwrap_or_else(|e| panic!("{name} frame {i}: {e}"))
        {
            Some(fr) => {
                assert_eq!(&fr.encode().unwrap(), f, "{name} frame {i} re-encodes");
                match fr {
                    EthFrame::Dix(_) => c.dix += 1,
                    EthFrame::Llc(_) => c.llc += 1,
                }
            }
            None => c.other += 1,
        }
    }
    eprintln!("{name}: {c:?}");
    Some(c)
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn dix_small() {
    let Some(c) = round_trip_all("dix-small.pcap") else {
        return;
    };
    assert!(c.dix > 30, "{c:?}");
    assert_eq!(c.udp + c.llc, 0);
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn dix_race_zero_mac() {
    let Some(c) = round_trip_all("dix-race-zero-mac.pcap") else {
        return;
    };
    assert_eq!(c.dix, 15);
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn llc() {
    let Some(c) = round_trip_all("llc.pcap") else {
        return;
    };
    assert!(c.llc > 0, "{c:?}");
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn udp_captures() {
    for n in ["udp-small.pcap", "enc.pcap", "auth.pcap"] {
        let Some(c) = round_trip_all(n) else { return };
        assert!(c.udp > 0, "{n}: {c:?}");
    }
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn unicast_captures() {
    for n in ["uni.pcap", "uni-dix.pcap"] {
        let Some(c) = round_trip_all(n) else { return };
        assert!(c.udp + c.dix > 0, "{n}: {c:?}");
    }
}

/// The zero-MAC FLOW_REPLY of the reference's race: it decodes (so it can be counted and
/// dropped), and its deid is the 0xFFFF the requester crashed on.
#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn race_frame_is_visible() {
    let Some(frames) = capture("dix-race-zero-mac.pcap") else {
        return;
    };
    let last = frames.last().unwrap();
    let Some(EthFrame::Dix(d)) = EthFrame::decode(last, &DecodeOpts::default()).unwrap() else {
        panic!()
    };
    assert_eq!(d.eth.dst, [0; 6]);
    let o7s_wire::frame::DixBody::Mgmt(m, _) = d.body else {
        panic!()
    };
    assert_eq!(m.deid, 0xffff);
}

fn udp_mgmt(frames: &[Vec<u8>]) -> Vec<(Vec<u8>, UdpMsg)> {
    frames
        .iter()
        .filter_map(|f| {
            let (eth, p) = EthernetRepr::parse(f).ok()?;
            let d = ip::udp_in(eth.type_len, p).ok()??;
            let m = UdpMsg::decode(d.payload).ok()?;
            matches!(m, UdpMsg::Mgmt(..)).then(|| (d.payload.to_vec(), m))
        })
        .collect()
}

/// auth.pcap: the server's FLOW_REPLY carries its certificate (CN=oping), `req_hash` =
/// SHA-256 of the request's OAP header, and an ECDSA P-256 signature over every byte before
/// it that verifies with the certificate's key.
#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn auth_response_verifies() {
    use o7s_wire::oap::Role;
    let Some(frames) = capture("auth.pcap") else {
        return;
    };
    let msgs = udp_mgmt(&frames);
    assert_eq!(msgs.len(), 2);
    let oap_bytes = |raw: &[u8], m: &UdpMsg| -> Vec<u8> {
        let UdpMsg::Mgmt(_, t) = m else { panic!() };
        let start = o7s_wire::udp::MGMT_LEN + t.hash.len();
        raw[start..].to_vec()
    };
    let (req_raw, req) = &msgs[0];
    let (resp_raw, resp) = &msgs[1];
    let req_oap = oap_bytes(req_raw, req);
    let resp_oap = oap_bytes(resp_raw, resp);
    let UdpMsg::Mgmt(_, rt) = resp else { panic!() };
    let Oap::V023(h) = &rt.oap else {
        panic!("0.23 OAP expected")
    };
    let UdpMsg::Mgmt(_, qt) = req else { panic!() };
    let Oap::V023(q) = &qt.oap else { panic!() };
    assert_eq!(h.id, q.id, "the response echoes the request id");
    assert_eq!(h.crt.len(), 391);
    assert_eq!(h.kex.len(), 91);
    let hl = o7s_wire::nid::digest_len(q.md_nid).unwrap();
    assert_eq!(hl, 32);
    let (req_hash, sig) = h.split_tail(Role::Response, hl).unwrap();
    assert_eq!(
        req_hash,
        ring::digest::digest(&ring::digest::SHA256, &req_oap).as_ref()
    );
    assert_eq!(sig.len(), 72);

    let (_, cert) = x509_parser::parse_x509_certificate(&h.crt).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(cn, "oping");
    let spki = cert.public_key().subject_public_key.data.to_vec();
    let signed = &resp_oap[..h.signed_len(Role::Response, hl)];
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, spki);
    key.verify(signed, sig).expect("signature verifies");
    // And a single flipped bit does not.
    let mut bad = signed.to_vec();
    bad[20] ^= 1;
    assert!(key.verify(&bad, sig).is_err());
}

/// dix-small.pcap: an unsigned response without enc.conf carries SHA-384 of the request.
#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn unsigned_response_hash_is_sha384() {
    let Some(frames) = capture("dix-small.pcap") else {
        return;
    };
    let mut checked = 0;
    let mut last_req: Option<Vec<u8>> = None;
    for f in &frames {
        let Ok(Some(EthFrame::Dix(d))) = EthFrame::decode(f, &DecodeOpts::default()) else {
            continue;
        };
        let o7s_wire::frame::DixBody::Mgmt(m, t) = &d.body else {
            continue;
        };
        let Oap::V023(h) = &t.oap else { continue };
        let raw = h.to_bytes().unwrap();
        match m.code {
            o7s_wire::code::EthCode::FlowReq => last_req = Some(raw),
            o7s_wire::code::EthCode::FlowReply => {
                let req = last_req.take().unwrap();
                assert_eq!(
                    h.tail,
                    ring::digest::digest(&ring::digest::SHA384, &req).as_ref()
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 2, "{checked}");
}

/// Lower-layer SDUs of the unicast captures: LSAs on Management flows and DT PDUs (flow
/// allocator messages, component messages, N+1 SDUs) on data-transfer flows decode and
/// re-encode identically.
#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn unicast_sdus_round_trip() {
    use o7s_wire::unicast::dt::DtConfig;
    use o7s_wire::unicast::lsa::Lsa;
    use o7s_wire::unicast::sdu::{looks_like_lsa, DtBody, DtPdu};
    for (name, expect_cut) in [("uni.pcap", 40), ("uni-dix.pcap", 3)] {
        let Some((frames, cut)) = common::capture_counted(name) else {
            return;
        };
        assert_eq!(
            cut, expect_cut,
            "{name}: frames truncated by the capture's snaplen"
        );
        let (mut lsa, mut fa, mut comp, mut flow, mut bad) = (0, 0, 0, 0, Vec::new());
        for (i, f) in frames.iter().enumerate() {
            let (eth, p) = EthernetRepr::parse(f).unwrap();
            let sdu = if let Some(d) = ip::udp_in(eth.type_len, p).unwrap() {
                match UdpMsg::decode(d.payload).unwrap() {
                    UdpMsg::Data { sdu, .. } => sdu,
                    UdpMsg::Mgmt(..) => continue,
                }
            } else {
                match EthFrame::decode(f, &DecodeOpts::default()).unwrap() {
                    Some(EthFrame::Dix(o7s_wire::frame::DixFrame {
                        body: o7s_wire::frame::DixBody::Data(sdu),
                        ..
                    })) => sdu,
                    _ => continue,
                }
            };
            if looks_like_lsa(&sdu) {
                let l = Lsa::parse(&sdu).unwrap();
                let mut w = o7s_wire::field::Writer::default();
                l.write(&mut w);
                assert_eq!(w.0, sdu);
                lsa += 1;
                continue;
            }
            match DtPdu::decode(&sdu, DtConfig::DEFAULT, Some(32)) {
                Ok(pdu) => {
                    assert_eq!(
                        pdu.encode(DtConfig::DEFAULT).unwrap(),
                        sdu,
                        "{name} frame {i}"
                    );
                    assert_eq!(pdu.pci.ttl, 60, "{name} frame {i}");
                    match pdu.body {
                        DtBody::Fa(..) => fa += 1,
                        DtBody::Component(_) => comp += 1,
                        DtBody::Flow(_) => flow += 1,
                    }
                }
                Err(e) => bad.push((i, e)),
            }
        }
        eprintln!("{name}: lsa {lsa} fa {fa} component {comp} flow {flow} bad {bad:?}");
        assert!(lsa >= 2 && fa >= 4 && flow > 20, "{name}");
        assert!(bad.is_empty(), "{name}: {bad:?}");
    }
}
