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
