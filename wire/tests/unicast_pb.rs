//! The unicast layer's protobuf messages (`o7s_wire::unicast::pb`) against the reference:
//! every CEP, enrolment message and DHT message of the unicast captures decodes and
//! re-encodes to the same bytes, with the values the capture maps (unicast facts §8)
//! give. The roles of the N-1 flows are learnt as a receiver learns them: from the CEP
//! that opens each flow (the first Enrollment CEP reaches the enroller).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

mod common;

use o7s_wire::ethernet::EthernetRepr;
use o7s_wire::frame::{DecodeOpts, DixBody, DixFrame, EthFrame, UdpMsg};
use o7s_wire::ip;
use o7s_wire::unicast::dt::DtConfig;
use o7s_wire::unicast::lsa::Lsa;
use o7s_wire::unicast::pb::{
    self, CepMsg, Component, DhtMsg, EnrollAckMsg, EnrollReqMsg, EnrollRespMsg,
};
use o7s_wire::unicast::sdu::{looks_like_lsa, DtBody, DtPdu};
use prost::Message;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// No CEP seen on this flow (the capture began after it opened).
    Unknown,
    /// Enrolment, at the enroller (`n` messages so far) or at the enrollee.
    Enroller(usize),
    Enrollee,
    Management,
    DataTransfer,
}

#[derive(Debug, Default)]
struct Seen {
    cep: Vec<CepMsg>,
    req: Vec<EnrollReqMsg>,
    resp: Vec<EnrollRespMsg>,
    ack: Vec<EnrollAckMsg>,
    dht: Vec<DhtMsg>,
    lsa: usize,
    fa: usize,
    data: usize,
    cut: usize,
}

fn same<M: Message>(m: &M, bytes: &[u8], what: &str) {
    assert_eq!(
        hex::encode(m.encode_to_vec()),
        hex::encode(bytes),
        "{what} re-encodes"
    );
}

/// Walks a capture's N-1 SDUs (eth-dix data frames or udp data datagrams).
fn walk(name: &str) -> Option<Seen> {
    let recs = common::read_capture(&common::captures_dir()?.join(name));
    let mut roles: HashMap<(u32, Vec<u8>), Role> = HashMap::new();
    let mut enrolling = false;
    let mut s = Seen::default();
    for (i, (f, orig)) in recs.iter().enumerate() {
        let what = format!("{name} frame {}", i + 1);
        if f.len() != *orig {
            s.cut += 1;
            continue;
        }
        let (eth, p) = EthernetRepr::parse(f).unwrap();
        let (key, sdu) = if let Some(d) = ip::udp_in(eth.type_len, p).unwrap() {
            match UdpMsg::decode(d.payload).unwrap() {
                UdpMsg::Data { eid, sdu } => ((eid, d.dst.to_string().into_bytes()), sdu),
                UdpMsg::Mgmt(..) => continue,
            }
        } else {
            match EthFrame::decode(f, &DecodeOpts::default()).unwrap() {
                Some(EthFrame::Dix(DixFrame {
                    eth,
                    eid,
                    body: DixBody::Data(sdu),
                    ..
                })) => ((u32::from(eid), eth.dst.to_vec()), sdu),
                _ => continue,
            }
        };
        // A CEP opens every N-1 flow (an eid reused for a new flow gets a new one).
        if let Ok(c) = pb::decode::<CepMsg>(&sdu) {
            if let Some(comp) = c.component().filter(|k| k.protocol() == c.protocol) {
                same(&c, &sdu, &what);
                let role = match comp {
                    Component::Enrollment => {
                        // The enrollee speaks first: the first CEP reaches the enroller.
                        enrolling = !enrolling;
                        if enrolling {
                            Role::Enroller(0)
                        } else {
                            Role::Enrollee
                        }
                    }
                    Component::Management => Role::Management,
                    Component::DataTransfer => Role::DataTransfer,
                };
                roles.insert(key, role);
                s.cep.push(c);
                continue;
            }
        }
        let role = roles.get(&key).copied().unwrap_or(Role::Unknown);
        match role {
            Role::Enroller(n) => {
                if n == 0 {
                    let m =
                        pb::decode::<EnrollReqMsg>(&sdu).unwrap_or_else(|e| panic!("{what}: {e}"));
                    same(&m, &sdu, &what);
                    s.req.push(m);
                } else {
                    let m =
                        pb::decode::<EnrollAckMsg>(&sdu).unwrap_or_else(|e| panic!("{what}: {e}"));
                    same(&m, &sdu, &what);
                    s.ack.push(m);
                }
                roles.insert(key, Role::Enroller(n + 1));
            }
            Role::Enrollee => {
                let m = pb::decode::<EnrollRespMsg>(&sdu).unwrap_or_else(|e| panic!("{what}: {e}"));
                same(&m, &sdu, &what);
                s.resp.push(m);
            }
            Role::Management => {
                let l = Lsa::parse(&sdu).unwrap_or_else(|e| panic!("{what}: {e}"));
                let mut w = o7s_wire::field::Writer::default();
                l.write(&mut w);
                assert_eq!(w.0, sdu, "{what}");
                s.lsa += 1;
            }
            Role::Unknown if looks_like_lsa(&sdu) => s.lsa += 1,
            Role::DataTransfer | Role::Unknown => {
                let Ok(pdu) = DtPdu::decode(&sdu, DtConfig::DEFAULT, Some(32)) else {
                    // uni-dix frame 188 is no DT PDU (facts §8.2).
                    continue;
                };
                assert_eq!(pdu.encode(DtConfig::DEFAULT).unwrap(), sdu, "{what}");
                match pdu.body {
                    DtBody::Component(b) if pdu.pci.eid == 1 => {
                        let m = pb::decode::<DhtMsg>(&b).unwrap_or_else(|e| panic!("{what}: {e}"));
                        same(&m, &b, &what);
                        s.dht.push(m);
                    }
                    DtBody::Fa(..) => s.fa += 1,
                    _ => s.data += 1,
                }
            }
        }
    }
    eprintln!(
        "{name}: cep {} req {} resp {} ack {} dht {} lsa {} fa {} data {} cut {}",
        s.cep.len(),
        s.req.len(),
        s.resp.len(),
        s.ack.len(),
        s.dht.len(),
        s.lsa,
        s.fa,
        s.data,
        s.cut
    );
    Some(s)
}

const A: u64 = 0x41dc_5e0b;
const B: u64 = 0xe30f_5e97;
const C: u64 = 0x275b_9eac;

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn uni_chain_ab_messages_round_trip() {
    let Some(s) = walk("uni-chain-ab.pcap") else {
        return;
    };
    // Enrollment x2, Management x2, Data Transfer x2 (facts §8.3 frames 5-6, 12-13, 16-17).
    assert_eq!(s.cep.len(), 6);
    let addrs: Vec<(Option<Component>, u64)> =
        s.cep.iter().map(|c| (c.component(), c.address)).collect();
    assert_eq!(
        addrs,
        vec![
            (Some(Component::Enrollment), 0),
            (Some(Component::Enrollment), 0),
            (Some(Component::Management), B),
            (Some(Component::Management), A),
            (Some(Component::DataTransfer), B),
            (Some(Component::DataTransfer), A),
        ]
    );
    assert_eq!(s.req.len(), 1);
    assert_eq!(hex::encode(&s.req[0].id), "52480f6117d23ecc");
    assert_eq!(s.resp.len(), 1);
    let r = &s.resp[0];
    assert_eq!((r.id.clone(), r.response), (s.req[0].id.clone(), 0));
    // The configuration A hands B: the defaults, with A as the DHT's bootstrap peer.
    assert_eq!(r.conf, Some(pb::IpcpConfigMsg::unicast_default("ufuni", A)));
    assert_eq!(s.ack.len(), 1);
    assert_eq!(
        (s.ack[0].id.clone(), s.ack[0].result),
        (s.req[0].id.clone(), 0)
    );
    // FIND_NODE_REQ x2, FIND_NODE_RSP x2, C's STORE forwarded (frames 20-23, 26).
    let codes: Vec<u32> = s.dht.iter().map(|m| m.code).collect();
    assert_eq!(codes, vec![1, 1, 2, 2, 0]);
    assert_eq!(s.dht[0].src.addr, B);
    assert_eq!(s.dht[2].src.addr, A);
    let contacts: Vec<u64> = s.dht[2]
        .node
        .as_ref()
        .unwrap()
        .contacts
        .iter()
        .map(|c| c.addr)
        .collect();
    assert_eq!(contacts, vec![B]);
    let store = s.dht[4].store.as_ref().unwrap();
    assert_eq!(DhtMsg::addr_of(&store.val), Some(C));
    assert_eq!(
        store.key,
        o7s_wire::hash::HashAlgo::Sha3_256.hash("oping"),
        "the key is the name's SHA3-256"
    );
    assert!(s.lsa >= 8 && s.fa >= 4, "{s:?}");
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn uni_chain_bc_messages_round_trip() {
    let Some(s) = walk("uni-chain-bc.pcap") else {
        return;
    };
    assert_eq!(s.cep.len(), 6);
    assert_eq!(hex::encode(&s.req[0].id), "a124978ab152fc63");
    // B enrols C: B is C's DHT peer.
    assert_eq!(
        s.resp[0].conf,
        Some(pb::IpcpConfigMsg::unicast_default("ufuni", B))
    );
    assert_eq!(s.ack.len(), 1);
    let codes: Vec<u32> = s.dht.iter().map(|m| m.code).collect();
    assert_eq!(codes, vec![1, 1, 2, 2, 0, 0]);
    // B's answer to C lists A and C itself (facts §8.3, bc frames 24-25).
    let contacts: Vec<u64> = s.dht[2]
        .node
        .as_ref()
        .unwrap()
        .contacts
        .iter()
        .map(|c| c.addr)
        .collect();
    assert_eq!(contacts, vec![A, C]);
    assert!(s.lsa >= 8, "{s:?}");
}

#[test]
#[cfg_attr(
    o7s_no_shared,
    ignore = "needs ../shared (the reference's captures); absent in this clone"
)]
fn uni_and_uni_dix_dht_messages_round_trip() {
    let Some(dix) = walk("uni-dix.pcap") else {
        return;
    };
    // Frame 185: the DHT STORE of "ocbr" by 0x05bf2014.
    assert_eq!(dix.dht.len(), 1);
    let m = &dix.dht[0];
    assert_eq!((m.code, m.src.addr), (pb::dht_code::STORE, 0x05bf_2014));
    let st = m.store.as_ref().unwrap();
    assert_eq!(st.key, o7s_wire::hash::HashAlgo::Sha3_256.hash("ocbr"));
    assert_eq!(DhtMsg::addr_of(&st.val), Some(0x05bf_2014));
    assert_eq!(dix.cep.len(), 0, "captured after the flows opened");
    let Some(udp) = walk("uni.pcap") else {
        return;
    };
    assert_eq!((udp.cep.len(), udp.dht.len()), (0, 0));
    assert!(udp.fa >= 8 && udp.lsa == 2, "{udp:?}");
}
