//! Whole lower-layer messages as owned, layered reprs: an Ethernet frame of the eth-dix or
//! eth-llc layer, or the payload of a UDP-layer datagram. `decode` then `encode` gives the
//! original bytes back for every well-formed input (padding, unknown codes and unparsed
//! tails are kept).

use crate::code::{EthCode, UdpCode};
use crate::error::{Error, Result};
use crate::ethernet::{self, EthernetRepr};
use crate::field::Writer;
use crate::hash::HashAlgo;
use crate::oap::{OapHdr, OapHdrV022, Role};
use crate::{dix, llc, nid, udp};

/// What a decoder needs to know that the bytes do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOpts {
    /// The eth-dix layer's Ethertype.
    pub ethertype: u16,
    /// Length of the name hash in FLOW_REQ messages of eth layers; `None` guesses it
    /// (the SHA3 length for which the OAP header that follows is well formed).
    pub hash_len: Option<usize>,
}

impl Default for DecodeOpts {
    fn default() -> Self {
        Self {
            ethertype: ethernet::ETHERTYPE_OUROBOROS,
            hash_len: None,
        }
    }
}

/// The OAP header after a flow allocation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Oap {
    /// No OAP part (0.21 messages).
    Absent,
    /// A 0.23 header.
    V023(OapHdr),
    /// A 0.22 header (tutorial 06).
    V022(OapHdrV022),
}

impl Oap {
    /// Decodes an OAP part of a message with `role`: 0.23 first, 0.22 if that fails.
    pub fn decode(buf: &[u8], role: Role) -> Result<Self> {
        if buf.is_empty() {
            return Ok(Self::Absent);
        }
        let strict = OapHdr::parse(buf).and_then(|h| {
            let hl = if role == Role::Response {
                nid::digest_len(h.md_nid).unwrap_or(48)
            } else {
                0
            };
            h.check_tail(role, hl).map(|_| h)
        });
        match strict {
            Ok(h) => Ok(Self::V023(h)),
            Err(e023) => match OapHdrV022::parse(buf) {
                Ok(h) => Ok(Self::V022(h)),
                Err(_) => match OapHdr::parse(buf) {
                    // Well formed but with an unexpected tail: keep it, the reader decides.
                    Ok(h) => Ok(Self::V023(h)),
                    Err(_) => Err(e023),
                },
            },
        }
    }

    /// Appends the header.
    pub fn write(&self, w: &mut Writer) -> Result<()> {
        match self {
            Self::Absent => Ok(()),
            Self::V023(h) => h.write(w),
            Self::V022(h) => h.write(w),
        }
    }
}

/// The name hash and OAP part that follow a management message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgmtTail {
    /// Name hash (empty for FLOW_REPLY).
    pub hash: Vec<u8>,
    /// OAP header (FLOW_REQ, FLOW_REPLY).
    pub oap: Oap,
}

impl MgmtTail {
    /// Decodes `hash | OAP request` where the hash length is `hash_len`, or the first SHA3
    /// length for which the OAP header parses when `None`.
    pub fn decode_flow_req(rest: &[u8], hash_len: Option<usize>) -> Result<Self> {
        let candidates: Vec<usize> = match hash_len {
            Some(l) => vec![l],
            None => vec![32, 28, 48, 64],
        };
        let mut first_err = None;
        for l in candidates {
            let Some((hash, oap)) = rest.split_at_checked(l) else {
                first_err.get_or_insert(Error::Truncated {
                    what: "flow request name hash",
                    need: l,
                    have: rest.len(),
                });
                continue;
            };
            match Oap::decode(oap, Role::Request) {
                Ok(oap) => {
                    return Ok(Self {
                        hash: hash.to_vec(),
                        oap,
                    })
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(Error::Malformed {
            what: "flow request",
            reason: "no hash fits",
        }))
    }

    /// Decodes the OAP response after a FLOW_REPLY.
    pub fn decode_flow_reply(rest: &[u8]) -> Result<Self> {
        Ok(Self {
            hash: vec![],
            oap: Oap::decode(rest, Role::Response)?,
        })
    }

    /// Appends the hash and the OAP header.
    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.put(&self.hash);
        self.oap.write(w)
    }

    /// Decodes the tail of an eth-layer message with `code`.
    fn decode_eth(rest: &[u8], code: EthCode, hash_len: Option<usize>) -> Result<Self> {
        match code {
            EthCode::NameQueryReq | EthCode::NameQueryReply => Ok(Self {
                hash: rest.to_vec(),
                oap: Oap::Absent,
            }),
            EthCode::FlowReply => Self::decode_flow_reply(rest),
            EthCode::FlowReq => Self::decode_flow_req(rest, hash_len),
            EthCode::Unknown(_) => Ok(Self {
                hash: rest.to_vec(),
                oap: Oap::Absent,
            }),
        }
    }
}

/// The body of an eth-dix packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DixBody {
    /// A 0.23 management message (eid 0).
    Mgmt(dix::MgmtMsg, MgmtTail),
    /// A 0.21 management message (eid 0, tutorial 04).
    LegacyMgmt(dix::LegacyMgmtMsg, MgmtTail),
    /// An SDU of a data flow.
    Data(Vec<u8>),
}

/// An eth-dix frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DixFrame {
    /// Ethernet header.
    pub eth: EthernetRepr,
    /// Destination endpoint id.
    pub eid: u16,
    /// Management message or SDU.
    pub body: DixBody,
    /// Bytes after `length` (runt padding).
    pub padding: Vec<u8>,
}

/// An eth-llc frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlcFrame {
    /// Ethernet (802.3) header.
    pub eth: EthernetRepr,
    /// LLC header.
    pub llc: llc::LlcRepr,
    /// Management message (management SAP) or SDU.
    pub body: LlcBody,
    /// Bytes after the 802.3 length (padding).
    pub padding: Vec<u8>,
}

/// The body of an eth-llc frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlcBody {
    /// A management message (DSAP = management SAP).
    Mgmt(llc::MgmtMsg, MgmtTail),
    /// An SDU of a data flow.
    Data(Vec<u8>),
}

/// A decoded Ethernet frame of an Ouroboros layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EthFrame {
    /// eth-dix.
    Dix(DixFrame),
    /// eth-llc.
    Llc(LlcFrame),
}

fn decode_dix_mgmt(p: &[u8], opts: &DecodeOpts) -> Result<DixBody> {
    let modern = dix::MgmtMsg::parse(p).and_then(|(m, rest)| {
        Ok(DixBody::Mgmt(
            m,
            MgmtTail::decode_eth(rest, m.code, opts.hash_len)?,
        ))
    });
    match modern {
        Ok(b) => Ok(b),
        Err(e) => {
            // Tutorial 04 (0.21): 38-byte message, hash only, no OAP.
            let legacy = dix::LegacyMgmtMsg::parse(p).and_then(|(m, rest)| {
                let ok_len = match m.code {
                    EthCode::FlowReply => rest.is_empty(),
                    EthCode::FlowReq | EthCode::NameQueryReq | EthCode::NameQueryReply => {
                        HashAlgo::sha3_of_len(rest.len()).is_some()
                    }
                    EthCode::Unknown(_) => false,
                };
                if ok_len {
                    Ok(DixBody::LegacyMgmt(
                        m,
                        MgmtTail {
                            hash: rest.to_vec(),
                            oap: Oap::Absent,
                        },
                    ))
                } else {
                    Err(Error::Malformed {
                        what: "0.21 management message",
                        reason: "bad tail",
                    })
                }
            });
            legacy.map_err(|_| e)
        }
    }
}

impl EthFrame {
    /// Decodes an Ethernet frame. Frames of another Ethertype, and 802.3 frames whose DSAP
    /// is not an Ouroboros one, give `Ok(None)`.
    pub fn decode(buf: &[u8], opts: &DecodeOpts) -> Result<Option<Self>> {
        let (eth, payload) = EthernetRepr::parse(buf)?;
        if eth.type_len == opts.ethertype {
            let p = dix::Packet::new_checked(payload)?;
            let body = if p.eid() == dix::MGMT_EID {
                decode_dix_mgmt(p.payload(), opts)?
            } else {
                DixBody::Data(p.payload().to_vec())
            };
            return Ok(Some(Self::Dix(DixFrame {
                eth,
                eid: p.eid(),
                body,
                padding: p.padding().to_vec(),
            })));
        }
        if eth.type_len <= ethernet::MAX_8023_LEN {
            // Only frames whose DSAP and SSAP are odd-free LLC SAPs of the layer: the
            // management SAP, or the data SAPs 2..=65 (in logical form).
            let looks_ours = payload.first().map(|d| {
                let dsap = llc::sap_wire(*d);
                dsap == llc::MGMT_SAP || (2..66).contains(&dsap)
            });
            if looks_ours != Some(true) {
                return Ok(None);
            }
            let (h, sdu, padding) = llc::LlcRepr::parse(payload, eth.type_len)?;
            let body = if h.dsap == llc::MGMT_SAP {
                let (m, rest) = llc::MgmtMsg::parse(sdu)?;
                LlcBody::Mgmt(m, MgmtTail::decode_eth(rest, m.code, opts.hash_len)?)
            } else {
                LlcBody::Data(sdu.to_vec())
            };
            return Ok(Some(Self::Llc(LlcFrame {
                eth,
                llc: h,
                body,
                padding: padding.to_vec(),
            })));
        }
        Ok(None)
    }

    /// Encodes the frame.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::default();
        match self {
            Self::Dix(f) => {
                let mut body = Writer::default();
                match &f.body {
                    DixBody::Mgmt(m, t) => {
                        m.write(&mut body);
                        t.write(&mut body)?;
                    }
                    DixBody::LegacyMgmt(m, t) => {
                        m.write(&mut body);
                        t.write(&mut body)?;
                    }
                    DixBody::Data(d) => {
                        body.put(d);
                    }
                }
                f.eth.write(&mut w);
                let mut hdr = [0u8; dix::HEADER_LEN];
                dix::emit_header(&mut hdr, f.eid, body.0.len())?;
                w.put(&hdr).put(&body.0).put(&f.padding);
            }
            Self::Llc(f) => {
                let mut body = Writer::default();
                match &f.body {
                    LlcBody::Mgmt(m, t) => {
                        m.write(&mut body);
                        t.write(&mut body)?;
                    }
                    LlcBody::Data(d) => {
                        body.put(d);
                    }
                }
                let eth = EthernetRepr {
                    type_len: llc::LlcRepr::length_field(body.0.len())?,
                    ..f.eth
                };
                eth.write(&mut w);
                f.llc.write(&mut w);
                w.put(&body.0).put(&f.padding);
            }
        }
        Ok(w.0)
    }
}

/// A decoded UDP-layer datagram (the UDP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpMsg {
    /// A management message (eid 0).
    Mgmt(udp::MgmtMsg, MgmtTail),
    /// An SDU for flow `eid`.
    Data {
        /// Destination endpoint id.
        eid: u32,
        /// The SDU.
        sdu: Vec<u8>,
    },
}

impl UdpMsg {
    /// Decodes a UDP payload of the layer.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let d = udp::Datagram::new_checked(buf)?;
        if d.eid() != 0 {
            return Ok(Self::Data {
                eid: d.eid(),
                sdu: d.payload().to_vec(),
            });
        }
        let (m, rest) = udp::MgmtMsg::parse(buf)?;
        let tail = match m.code {
            UdpCode::FlowReq => {
                let Some((hash, oap)) = rest.split_at_checked(HashAlgo::Md5.len()) else {
                    return Err(Error::Truncated {
                        what: "udp flow request MD5",
                        need: HashAlgo::Md5.len(),
                        have: rest.len(),
                    });
                };
                MgmtTail {
                    hash: hash.to_vec(),
                    oap: Oap::decode(oap, Role::Request)?,
                }
            }
            UdpCode::FlowReply => MgmtTail::decode_flow_reply(rest)?,
            UdpCode::Unknown(_) => MgmtTail {
                hash: rest.to_vec(),
                oap: Oap::Absent,
            },
        };
        Ok(Self::Mgmt(m, tail))
    }

    /// Encodes the datagram payload.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::default();
        match self {
            Self::Mgmt(m, t) => {
                m.write(&mut w);
                t.write(&mut w)?;
            }
            Self::Data { eid, sdu } => {
                w.be32(*eid).put(sdu);
            }
        }
        Ok(w.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::oap::{OapHdr, OapHdrV022};

    /// An unsigned 0.23 response whose bytes also read as a 0.22 header: the cipher NID
    /// (901) is the 0.22 certificate's length, and the request hash ends in three empty
    /// 0.22 parts. The request hash's length, known for a response, decides: 0.23.
    #[test]
    fn a_response_that_also_reads_as_0_22_is_taken_as_0_23_by_its_hash() {
        let mut tail = vec![9u8; 26];
        tail.extend([0; 6]);
        let h = OapHdr {
            id: [7; 16],
            timestamp: 1,
            cipher_nid: nid::known::AES_256_GCM,
            kdf_nid: nid::known::SHA256,
            md_nid: nid::known::SHA256,
            kex_flags: 0,
            crt: vec![],
            kex: vec![4; 865],
            data: vec![],
            tail,
        };
        let b = h.to_bytes().unwrap();
        assert!(OapHdrV022::parse(&b).is_ok(), "built to read as 0.22 too");
        assert_eq!(Oap::decode(&b, Role::Response).unwrap(), Oap::V023(h));
    }
}
