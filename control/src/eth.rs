//! The eth-dix, eth-llc and udp layers' control side in o7sd: the driver's state around
//! each layer's [`Shim`] machine (o7s-proto), which holds the protocol (name queries and the
//! name cache, endpoint ids, flow requests and replies). The frames themselves go through
//! the data plane's port.

use crate::config::IpcpKind;
use o7s_abi::msg::PortKind;
use o7s_proto::shim::{self, Shim, ShimConfig};
use o7s_wire::hash::HashAlgo;
use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

pub use o7s_proto::mgmt::{Mgmt, Peer, ShimKind};

/// How long a learnt name stays in the cache.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// The encoding of a port of `kind`.
pub fn shim_kind(kind: PortKind) -> ShimKind {
    match kind {
        PortKind::Dix { .. } => ShimKind::Dix,
        PortKind::Llc => ShimKind::Llc,
        PortKind::Udp { .. } => ShimKind::Udp,
    }
}

/// Parses a management message of a port of `kind`.
pub fn parse_mgmt(kind: PortKind, b: &[u8]) -> Result<Mgmt, o7s_wire::Error> {
    Mgmt::parse(shim_kind(kind), b)
}

/// Encodes a management message of a port of `kind`.
pub fn build_mgmt(kind: PortKind, m: &Mgmt) -> Vec<u8> {
    m.build(shim_kind(kind))
}

/// A FLOW_REPLY as the requester's driver hands it to the waiting allocation.
#[derive(Debug, Clone)]
pub struct ReplyInfo {
    /// Our endpoint id.
    pub local: u32,
    /// The responder's endpoint id.
    pub remote: u32,
    /// The responder.
    pub peer: Peer,
    /// Its OAP response.
    pub oap: Vec<u8>,
}

/// Name queries this host asked, by hash: the name and who waits for the answer.
#[derive(Debug)]
pub struct PendingQuery {
    /// The name asked for.
    pub name: String,
    /// Who waits: each gets the IPCP index and the peer (nothing when nobody answers).
    pub waiters: Vec<Sender<(usize, Peer)>>,
}

/// An eth-dix, eth-llc or udp IPCP.
#[derive(Debug)]
pub struct EthIpcp {
    /// IPCP name.
    pub name: String,
    /// Layer name.
    pub layer: String,
    /// Type.
    pub kind: IpcpKind,
    /// What the data plane runs for it.
    pub port_kind: PortKind,
    /// Device (eth) or address (udp).
    pub dev: String,
    /// Directory hash.
    pub hash: HashAlgo,
    /// Data-plane port.
    pub port: u32,
    /// The port's MAC.
    pub mac: [u8; 6],
    /// The port's MTU.
    pub mtu: usize,
    /// How the data plane moves its frames.
    pub io_path: String,
    /// Whether the port is up.
    pub up: bool,
    /// The port's egress cap (bit/s) and queue bound as last set (`rate`/`queue`, `o7sctl
    /// port set`): sent again when the port is opened again.
    pub shaping: (Option<u64>, Option<u32>),
    /// Impairments of its received data frames as last set (loss, dup, reorder per
    /// million, delay in µs; `None`: never set): sent again with the shaping.
    pub impair: [Option<u32>; 5],
    /// Registered names by hash (the shim answers for the same hashes).
    pub regs: HashMap<Vec<u8>, String>,
    /// The protocol machine.
    pub shim: Shim,
    /// Allocations waiting for their FLOW_REPLY (by allocation id).
    pub alloc_waiters: HashMap<u64, Sender<Result<ReplyInfo, shim::ShimError>>>,
    /// Name queries waiting.
    pub query_waiters: HashMap<Vec<u8>, PendingQuery>,
    /// Names learnt from queries (for `o7sctl cache list`): name and when.
    pub learnt: HashMap<Vec<u8>, (String, SystemTime)>,
    /// The shim's counters as last added to the daemon's.
    pub counted: shim::Counters,
    /// udp: the DNS server names are registered with and looked up in.
    pub dns: Option<std::net::SocketAddr>,
}

impl EthIpcp {
    /// A new IPCP of `port_kind` with hashes of `hash`; not up yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        layer: &str,
        kind: IpcpKind,
        port_kind: PortKind,
        dev: &str,
        hash: HashAlgo,
        port: u32,
    ) -> Self {
        let mut cfg = ShimConfig::new(shim_kind(port_kind), hash.len());
        cfg.cache_ttl = CACHE_TTL;
        // Neither o7s nor the reference sends a FLOW_REQ twice: a repeat of an answered
        // request is a replay, for OAP's replay window to refuse (and log), not to answer.
        cfg.reply_memory = Duration::ZERO;
        Self {
            name: name.to_string(),
            layer: layer.to_string(),
            kind,
            port_kind,
            dev: dev.to_string(),
            hash,
            port,
            mac: [0; 6],
            mtu: 0,
            io_path: String::new(),
            up: false,
            shaping: (None, None),
            impair: [None; 5],
            regs: HashMap::new(),
            shim: Shim::new(cfg, None),
            alloc_waiters: HashMap::new(),
            query_waiters: HashMap::new(),
            learnt: HashMap::new(),
            counted: shim::Counters::default(),
            dns: None,
        }
    }

    /// Sets the port's MAC (frames to other MACs are then not for us).
    pub fn set_mac(&mut self, mac: [u8; 6]) {
        self.mac = mac;
        if !self.is_udp() {
            self.shim.set_mac(Some(mac));
        }
    }

    /// Registers `name` (hash `h`) here.
    pub fn reg_insert(&mut self, h: Vec<u8>, name: &str) {
        self.shim.register(h.clone());
        self.regs.insert(h, name.to_string());
    }

    /// Unregisters `name`; returns how many hashes it had here.
    pub fn reg_remove(&mut self, name: &str) -> usize {
        let gone: Vec<Vec<u8>> = self
            .regs
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &gone {
            self.shim.unregister(h);
            self.regs.remove(h);
        }
        gone.len()
    }

    /// Whether this is a udp layer.
    pub fn is_udp(&self) -> bool {
        matches!(self.port_kind, PortKind::Udp { .. })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use o7s_wire::code::EthCode;
    use o7s_wire::qos::QosSpec;

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
