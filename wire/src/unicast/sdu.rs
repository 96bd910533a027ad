//! What a unicast layer sends over its N-1 flows, as owned layered reprs.
//!
//! Management flows carry bare link-state advertisements; data-transfer flows carry a DT
//! PCI followed by a flow allocator message (DT eid 0), another internal component's
//! message (eids 1..63, e.g. the DHT's protobuf) or an N+1 flow's SDU.

use super::dt::{DtConfig, PciRepr, FA_EID, MIN_FLOW_EID};
use super::fa::FaMsg;
use super::lsa::Lsa;
use crate::code::FaCode;
use crate::error::Result;
use crate::field::Writer;
use crate::frame::MgmtTail;

/// The body after a DT PCI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtBody {
    /// A flow allocator message and its hash / OAP part (FLOW_UPDATE: nothing).
    Fa(FaMsg, MgmtTail),
    /// A message for another internal component (eid 1..63).
    Component(Vec<u8>),
    /// An N+1 flow's SDU (eid >= 64).
    Flow(Vec<u8>),
}

/// A DT PDU: PCI and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtPdu {
    /// The PCI.
    pub pci: PciRepr,
    /// What follows it.
    pub body: DtBody,
}

impl DtPdu {
    /// Decodes a PDU of a data-transfer flow. `hash_len` is the layer's directory hash length
    /// (`None`: guess from the OAP header).
    pub fn decode(buf: &[u8], cfg: DtConfig, hash_len: Option<usize>) -> Result<Self> {
        let (pci, rest) = PciRepr::parse(buf, cfg)?;
        let body = if pci.eid == FA_EID {
            let (m, tail) = FaMsg::parse(rest)?;
            let t = match m.code {
                FaCode::FlowReq => MgmtTail::decode_flow_req(tail, hash_len)?,
                FaCode::FlowReply => MgmtTail::decode_flow_reply(tail)?,
                FaCode::FlowUpdate | FaCode::Unknown(_) => MgmtTail {
                    hash: tail.to_vec(),
                    oap: crate::frame::Oap::Absent,
                },
            };
            DtBody::Fa(m, t)
        } else if pci.eid < MIN_FLOW_EID {
            DtBody::Component(rest.to_vec())
        } else {
            DtBody::Flow(rest.to_vec())
        };
        Ok(Self { pci, body })
    }

    /// Encodes the PDU.
    pub fn encode(&self, cfg: DtConfig) -> Result<Vec<u8>> {
        let mut w = Writer::default();
        self.pci.write(&mut w, cfg)?;
        match &self.body {
            DtBody::Fa(m, t) => {
                m.write(&mut w);
                t.write(&mut w)?;
            }
            DtBody::Component(b) | DtBody::Flow(b) => {
                w.put(b);
            }
        }
        Ok(w.0)
    }
}

/// Whether `buf` has the shape of a reference LSA (24 bytes, 32-bit addresses, both
/// non-zero and different) — used to tell Management flows from data-transfer flows.
pub fn looks_like_lsa(buf: &[u8]) -> bool {
    match Lsa::parse(buf) {
        Ok(l) => {
            l.d_addr != 0
                && l.s_addr != 0
                && l.d_addr != l.s_addr
                && l.d_addr >> 32 == 0
                && l.s_addr >> 32 == 0
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pdu(eid: u64) -> Vec<u8> {
        let mut b = 0x6c8a_0ce2u32.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 60, 0]);
        b.extend_from_slice(&eid.to_le_bytes());
        b.extend_from_slice(b"body");
        b
    }

    #[test]
    fn the_body_is_told_by_the_endpoint_id() {
        let body = |eid| {
            DtPdu::decode(&pdu(eid), DtConfig::DEFAULT, None)
                .unwrap()
                .body
        };
        assert_eq!(body(1), DtBody::Component(b"body".to_vec()));
        assert_eq!(body(MIN_FLOW_EID - 1), DtBody::Component(b"body".to_vec()));
        assert_eq!(body(MIN_FLOW_EID), DtBody::Flow(b"body".to_vec()));
        assert_eq!(body(0x4433_2211_0000_0041), DtBody::Flow(b"body".to_vec()));
        let p = DtPdu::decode(&pdu(64), DtConfig::DEFAULT, None).unwrap();
        assert_eq!(p.encode(DtConfig::DEFAULT).unwrap(), pdu(64));
    }

    #[test]
    fn an_lsa_has_two_different_non_zero_32_bit_addresses() {
        let lsa = |d_addr, s_addr| {
            let mut w = Writer::default();
            Lsa {
                d_addr,
                s_addr,
                seqno: 1,
            }
            .write(&mut w);
            looks_like_lsa(&w.0)
        };
        assert!(lsa(0x6c8a_0ce2, 0x8178_abbc));
        assert!(!lsa(0, 0x8178_abbc), "no destination");
        assert!(!lsa(0x6c8a_0ce2, 0), "no source");
        assert!(!lsa(0x6c8a_0ce2, 0x6c8a_0ce2), "to itself");
        assert!(!lsa(1 << 32, 0x8178_abbc), "a destination over 32 bits");
        assert!(!lsa(0x6c8a_0ce2, 1 << 32), "a source over 32 bits");
        assert!(!looks_like_lsa(&[0; 10]), "too short");
    }
}
