//! The management message of the eth-dix, eth-llc and udp layers, with its endpoint ids
//! widened to one shape, and the address of a peer IPCP.

use o7s_wire::code::{EthCode, UdpCode};
use o7s_wire::field::Writer;
use o7s_wire::qos::QosSpec;
use o7s_wire::{dix, llc, udp};

/// Which lower layer a message belongs to (its encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShimKind {
    /// eth-dix: 39-byte message, 16-bit eids.
    Dix,
    /// eth-llc: 37-byte message, 8-bit SAPs.
    Llc,
    /// udp4/udp6: 47-byte message, 32-bit eids, no name queries.
    Udp,
}

impl ShimKind {
    /// Lowest and highest local endpoint ids.
    pub fn eid_range(self) -> (u32, u32) {
        match self {
            // fds 0..63 are reserved in the reference; eids are 16 bits.
            Self::Dix => (u32::from(dix::MIN_DATA_EID), 0xfffe),
            // 64 SAPs from 2 (logical values; 1 is management).
            Self::Llc => (2, 65),
            // 32-bit eids; 0..63 reserved as in the reference.
            Self::Udp => (64, u32::MAX - 1),
        }
    }

    /// Whether `id` can be a peer's endpoint id.
    pub fn valid_remote(self, id: u32) -> bool {
        let (lo, hi) = self.eid_range();
        (lo..=hi).contains(&id)
    }
}

/// Where a peer IPCP is: a MAC on an eth layer, an address and port on a udp layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// eth-dix / eth-llc.
    Mac([u8; 6]),
    /// udp4 / udp6.
    Ip(std::net::SocketAddr),
}

/// The Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

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

/// A management message of any shim layer, with its endpoint ids widened.
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

impl Mgmt {
    /// Parses a management message of a layer of `kind`.
    pub fn parse(kind: ShimKind, b: &[u8]) -> Result<Self, o7s_wire::Error> {
        Ok(match kind {
            ShimKind::Dix => {
                let (m, rest) = dix::MgmtMsg::parse(b)?;
                Self {
                    code: m.code,
                    s: m.seid.into(),
                    d: m.deid.into(),
                    qos: m.qos,
                    response: m.response,
                    tail: rest.to_vec(),
                }
            }
            ShimKind::Llc => {
                let (m, rest) = llc::MgmtMsg::parse(b)?;
                Self {
                    code: m.code,
                    s: m.ssap.into(),
                    d: m.dsap.into(),
                    qos: m.qos,
                    response: m.response,
                    tail: rest.to_vec(),
                }
            }
            ShimKind::Udp => {
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
                Self {
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

    /// Encodes the message for a layer of `kind`.
    pub fn build(&self, kind: ShimKind) -> Vec<u8> {
        let m = self;
        let mut w = Writer::default();
        match kind {
            ShimKind::Dix => dix::MgmtMsg {
                seid: m.s as u16,
                deid: m.d as u16,
                qos: m.qos,
                response: m.response,
                code: m.code,
            }
            .write(&mut w),
            ShimKind::Llc => llc::MgmtMsg {
                ssap: m.s as u8,
                dsap: m.d as u8,
                code: m.code,
                qos: m.qos,
                response: m.response,
            }
            .write(&mut w),
            ShimKind::Udp => udp::MgmtMsg {
                eid: 0,
                // The requester's eid first, in a FLOW_REPLY too (see parse).
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_layer_kind_takes_remote_eids_in_its_range_and_no_other() {
        assert_eq!(ShimKind::Dix.eid_range(), (64, 0xfffe));
        assert_eq!(ShimKind::Llc.eid_range(), (2, 65));
        assert_eq!(ShimKind::Udp.eid_range(), (64, u32::MAX - 1));
        for (kind, below, lo, hi, above) in [
            (ShimKind::Dix, 63, 64, 0xfffe, 0xffff),
            (ShimKind::Llc, 1, 2, 65, 66),
            (ShimKind::Udp, 63, 64, u32::MAX - 1, u32::MAX),
        ] {
            assert!(!kind.valid_remote(below), "{kind:?} {below}");
            assert!(kind.valid_remote(lo), "{kind:?} {lo}");
            assert!(kind.valid_remote(hi), "{kind:?} {hi}");
            assert!(!kind.valid_remote(above), "{kind:?} {above}");
        }
    }

    #[test]
    fn a_peer_tells_its_mac_or_its_address_and_prints_it() {
        let mac = Peer::Mac([0x02, 0, 0x5e, 0x10, 0xab, 0x01]);
        let a: std::net::SocketAddr = "10.1.2.3:3435".parse().unwrap();
        let ip = Peer::Ip(a);
        assert_eq!(mac.mac(), [0x02, 0, 0x5e, 0x10, 0xab, 0x01]);
        assert_eq!(mac.addr(), None);
        assert_eq!(ip.mac(), [0; 6]);
        assert_eq!(ip.addr(), Some(a));
        assert_eq!(mac.to_string(), "02:00:5e:10:ab:01");
        assert_eq!(ip.to_string(), "10.1.2.3:3435");
    }

    /// A udp management message as the reference lays it out (requester's eid first in a
    /// FLOW_REPLY too), written field by field with the wire crate's encoder.
    fn udp_msg(code: UdpCode, requester: u32, responder: u32) -> Vec<u8> {
        let mut w = Writer::default();
        udp::MgmtMsg {
            eid: 0,
            requester_eid: requester,
            responder_eid: responder,
            response: -2,
            qos: QosSpec::VOICE,
            code,
        }
        .write(&mut w);
        w.put(b"tail");
        w.0
    }

    #[test]
    fn a_udp_flow_reply_names_the_sender_as_its_responder_and_a_request_as_its_requester() {
        // The reply of responder 65 to requester 64: sent by 65, for 64.
        let b = udp_msg(UdpCode::FlowReply, 64, 65);
        let m = Mgmt::parse(ShimKind::Udp, &b).unwrap();
        assert_eq!((m.code, m.s, m.d), (EthCode::FlowReply, 65, 64));
        assert_eq!((m.response, m.qos), (-2, QosSpec::VOICE));
        assert_eq!(m.tail, b"tail");
        assert_eq!(m.build(ShimKind::Udp), b);
        // The request of 64 (responder not known yet): sent by 64.
        let b = udp_msg(UdpCode::FlowReq, 64, 0);
        let m = Mgmt::parse(ShimKind::Udp, &b).unwrap();
        assert_eq!((m.code, m.s, m.d), (EthCode::FlowReq, 64, 0));
        assert_eq!(m.build(ShimKind::Udp), b);
    }
}
