//! The eth-dix and eth-llc layers' control side: management messages, the name cache,
//! endpoint ids. The frames themselves go through the data plane's port.

use crate::config::IpcpKind;
use o7s_abi::msg::PortKind;
use o7s_wire::code::{EthCode, UdpCode};
use o7s_wire::field::Writer;
use o7s_wire::hash::HashAlgo;
use o7s_wire::qos::QosSpec;
use o7s_wire::{dix, llc, udp};
use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

/// Where a peer IPCP is: a MAC on an eth layer, an address and port on a udp layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// eth-dix / eth-llc.
    Mac([u8; 6]),
    /// udp4 / udp6.
    Ip(std::net::SocketAddr),
}

impl Peer {
    /// The MAC (zeros for an IP peer).
    pub fn mac(&self) -> [u8; 6] {
        match self {
            Self::Mac(m) => *m,
            Self::Ip(_) => [0; 6],
        }
    }
    /// The address, for an IP peer.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Mac(_) => None,
            Self::Ip(a) => Some(*a),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mac(m) => f.write_str(&o7s_wire::ethernet::mac_string(m)),
            Self::Ip(a) => write!(f, "{a}"),
        }
    }
}

/// How long a learnt name stays in the cache.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// A management message of either eth layer, with its endpoint ids widened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mgmt {
    /// Code.
    pub code: EthCode,
    /// Sender's endpoint (eid or SAP).
    pub s: u32,
    /// Receiver's endpoint.
    pub d: u32,
    /// QoS.
    pub qos: QosSpec,
    /// Response.
    pub response: i32,
    /// Hash and OAP bytes after the fixed message.
    pub tail: Vec<u8>,
}

/// Parses a management message of a port of `kind`.
pub fn parse_mgmt(kind: PortKind, b: &[u8]) -> Result<Mgmt, o7s_wire::Error> {
    Ok(match kind {
        PortKind::Dix { .. } => {
            let (m, rest) = dix::MgmtMsg::parse(b)?;
            Mgmt {
                code: m.code,
                s: m.seid.into(),
                d: m.deid.into(),
                qos: m.qos,
                response: m.response,
                tail: rest.to_vec(),
            }
        }
        PortKind::Llc => {
            let (m, rest) = llc::MgmtMsg::parse(b)?;
            Mgmt {
                code: m.code,
                s: m.ssap.into(),
                d: m.dsap.into(),
                qos: m.qos,
                response: m.response,
                tail: rest.to_vec(),
            }
        }
        PortKind::Udp { .. } => {
            let (m, rest) = udp::MgmtMsg::parse(b)?;
            let code = match m.code {
                UdpCode::FlowReq => EthCode::FlowReq,
                UdpCode::FlowReply => EthCode::FlowReply,
                UdpCode::Unknown(x) => EthCode::Unknown(x),
            };
            // `s` is the sender's eid, `d` the receiver's: a udp FLOW_REPLY carries them
            // the other way round (requester first).
            let (s, d) = match code {
                EthCode::FlowReply => (m.responder_eid, m.requester_eid),
                _ => (m.requester_eid, m.responder_eid),
            };
            Mgmt {
                code,
                s,
                d,
                qos: m.qos,
                response: m.response,
                tail: rest.to_vec(),
            }
        }
    })
}

/// Encodes a management message of a port of `kind`.
pub fn build_mgmt(kind: PortKind, m: &Mgmt) -> Vec<u8> {
    let mut w = Writer::default();
    match kind {
        PortKind::Dix { .. } => dix::MgmtMsg {
            seid: m.s as u16,
            deid: m.d as u16,
            qos: m.qos,
            response: m.response,
            code: m.code,
        }
        .write(&mut w),
        PortKind::Llc => llc::MgmtMsg {
            ssap: m.s as u8,
            dsap: m.d as u8,
            code: m.code,
            qos: m.qos,
            response: m.response,
        }
        .write(&mut w),
        PortKind::Udp { .. } => udp::MgmtMsg {
            eid: 0,
            // The requester's eid first, in a FLOW_REPLY too (see parse_mgmt).
            requester_eid: if m.code == EthCode::FlowReply {
                m.d
            } else {
                m.s
            },
            responder_eid: if m.code == EthCode::FlowReply {
                m.s
            } else {
                m.d
            },
            response: m.response,
            qos: m.qos,
            code: match m.code {
                EthCode::FlowReq => UdpCode::FlowReq,
                EthCode::FlowReply => UdpCode::FlowReply,
                EthCode::NameQueryReq | EthCode::NameQueryReply => UdpCode::Unknown(0xff),
                EthCode::Unknown(x) => UdpCode::Unknown(x),
            },
        }
        .write(&mut w),
    }
    w.put(&m.tail);
    w.0
}

/// A learnt name.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The name, when this daemon asked for it.
    pub name: Option<String>,
    /// Where it lives.
    pub mac: [u8; 6],
    /// When it expires.
    pub expires: Instant,
    /// When it was learnt.
    pub learnt: SystemTime,
}

/// What a FLOW_REPLY told the requester.
#[derive(Debug, Clone)]
pub struct ReplyInfo {
    /// The responder's endpoint id.
    pub remote: u32,
    /// Where it is.
    pub peer: Peer,
    /// Response code.
    pub response: i32,
    /// The OAP response bytes.
    pub oap: Vec<u8>,
}

/// One eth-dix or eth-llc IPCP.
#[derive(Debug)]
pub struct EthIpcp {
    /// IPCP name.
    pub name: String,
    /// Layer name.
    pub layer: String,
    /// eth-dix or eth-llc.
    pub kind: IpcpKind,
    /// Framing.
    pub port_kind: PortKind,
    /// Device.
    pub dev: String,
    /// Directory hash.
    pub hash: HashAlgo,
    /// Data-plane port id.
    pub port: u32,
    /// Device MAC once up.
    pub mac: [u8; 6],
    /// Layer MTU once up.
    pub mtu: usize,
    /// I/O path, or why the port is not up.
    pub io_path: String,
    /// Whether the port is up.
    pub up: bool,
    /// Registered names by hash.
    pub regs: HashMap<Vec<u8>, String>,
    /// Learnt names.
    pub cache: HashMap<Vec<u8>, CacheEntry>,
    /// Endpoint ids in use.
    pub eids: BTreeSet<u32>,
    /// Allocations waiting for a FLOW_REPLY, by our endpoint id.
    pub alloc_waiters: HashMap<u32, Sender<ReplyInfo>>,
    /// Name queries waiting for an answer, by hash (bounded by the daemon, pruned when
    /// their time is up). Only answers to these are believed.
    pub query_waiters: HashMap<Vec<u8>, PendingQuery>,
    /// DNS server of a udp layer (`dns=`).
    pub dns: Option<std::net::SocketAddr>,
}

/// A name query this host sent and waits to hear about.
#[derive(Debug)]
pub struct PendingQuery {
    /// The name asked for (shown in the cache).
    pub name: String,
    /// Answers after this are not believed.
    pub deadline: Instant,
    /// Allocations waiting for the answer.
    pub waiters: Vec<Sender<Peer>>,
}

impl EthIpcp {
    /// Lowest and highest local endpoint ids.
    pub fn eid_range(&self) -> (u32, u32) {
        match self.port_kind {
            // fds 0..63 are reserved in the reference; eids are 16 bits.
            PortKind::Dix { .. } => (u32::from(dix::MIN_DATA_EID), 0xfffe),
            // 64 SAPs from 2 (logical values; 1 is management).
            PortKind::Llc => (2, 65),
            // 32-bit eids; 0..63 reserved as in the reference.
            PortKind::Udp { .. } => (64, u32::MAX - 1),
        }
    }

    /// Whether `id` can be a peer's endpoint id.
    pub fn valid_remote(&self, id: u32) -> bool {
        let (lo, hi) = self.eid_range();
        (lo..=hi).contains(&id)
    }

    /// Takes a free endpoint id.
    pub fn alloc_eid(&mut self) -> Option<u32> {
        let (lo, hi) = self.eid_range();
        let id = (lo..=hi).find(|i| !self.eids.contains(i))?;
        self.eids.insert(id);
        Some(id)
    }

    /// The cached peer of `hash`, if fresh.
    pub fn cached(&self, hash: &[u8]) -> Option<Peer> {
        self.cache
            .get(hash)
            .filter(|e| e.expires > Instant::now())
            .map(|e| Peer::Mac(e.mac))
    }

    /// Whether this is a udp layer.
    pub fn is_udp(&self) -> bool {
        matches!(self.port_kind, PortKind::Udp { .. })
    }

    /// Drops expired cache entries and name queries whose time is up.
    pub fn expire(&mut self) {
        let now = Instant::now();
        self.cache.retain(|_, e| e.expires > now);
        self.query_waiters.retain(|_, q| q.deadline > now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A udp FLOW_REPLY as the reference sends it (facts 1.8.3, verified live): the
    /// requester's eid (0x40) first, then the responder's (0x47); the two ends differ, so a
    /// swap cannot pass unnoticed. On eth-dix the responder's eid comes first.
    #[test]
    fn udp_flow_reply_carries_the_requester_eid_first() {
        let udp = PortKind::Udp {
            addr: "127.0.0.1:3435".parse().unwrap(),
        };
        let mut wire = vec![0u8; 47];
        wire[4..8].copy_from_slice(&0x40u32.to_be_bytes()); // requester (the receiver)
        wire[8..12].copy_from_slice(&0x47u32.to_be_bytes()); // responder (the sender)
        wire[44] = 2; // FLOW_REPLY
        let m = parse_mgmt(udp, &wire).unwrap();
        assert_eq!(m.code, EthCode::FlowReply);
        assert_eq!((m.s, m.d), (0x47, 0x40), "sender's eid is the responder's");
        assert_eq!(build_mgmt(udp, &m), wire);
        // A FLOW_REQ: the requester's eid first, the responder's 0.
        let req = Mgmt {
            code: EthCode::FlowReq,
            s: 0x40,
            d: 0,
            qos: QosSpec::RAW,
            response: 0,
            tail: vec![],
        };
        let b = build_mgmt(udp, &req);
        assert_eq!(&b[4..12], &[0, 0, 0, 0x40, 0, 0, 0, 0]);
        // eth-dix: the responder's eid (seid) first.
        let dix = PortKind::Dix { ethertype: 0xA000 };
        let r = Mgmt {
            code: EthCode::FlowReply,
            s: 0x47,
            d: 0x40,
            qos: QosSpec::RAW,
            response: 0,
            tail: vec![],
        };
        let b = build_mgmt(dix, &r);
        assert_eq!(&b[0..4], &[0, 0x47, 0, 0x40]);
        assert_eq!(parse_mgmt(dix, &b).unwrap(), r);
    }

    #[test]
    fn mgmt_round_trip_all_kinds() {
        let udp = PortKind::Udp {
            addr: "127.0.0.1:3435".parse().unwrap(),
        };
        for kind in [PortKind::Dix { ethertype: 0xA000 }, PortKind::Llc, udp] {
            let m = Mgmt {
                code: EthCode::FlowReq,
                s: 65,
                d: 0,
                qos: QosSpec::RAW,
                response: 0,
                tail: vec![1, 2, 3],
            };
            let b = build_mgmt(kind, &m);
            assert_eq!(parse_mgmt(kind, &b).unwrap(), m);
            assert!(parse_mgmt(kind, &b[..10]).is_err());
        }
    }
}
