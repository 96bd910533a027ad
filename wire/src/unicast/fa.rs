//! The unicast flow allocator message (61 bytes, all big-endian), sent on DT eid 0.

use crate::code::FaCode;
use crate::error::{need, Result};
use crate::field::{Reader, Writer};
use crate::qos::QosSpec;

/// Length of the message.
pub const MSG_LEN: usize = 61;

/// A flow allocator message; FLOW_REQ is followed by the name hash and the OAP request,
/// FLOW_REPLY by the OAP response, FLOW_UPDATE by nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaMsg {
    /// Source address.
    pub s_addr: u64,
    /// Receiver's endpoint id.
    pub r_eid: u64,
    /// Sender's endpoint id.
    pub s_eid: u64,
    /// Response (0 = success).
    pub response: i32,
    /// QoS of the flow.
    pub qos: QosSpec,
    /// Explicit congestion echo (FLOW_UPDATE).
    pub ece: u16,
    /// Message code.
    pub code: FaCode,
}

impl FaMsg {
    /// Parses the fixed 61 bytes, returning what follows.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        need("flow allocator message", buf, MSG_LEN)?;
        let mut r = Reader::new("flow allocator message", buf);
        let s_addr = r.be64()?;
        let r_eid = r.be64()?;
        let s_eid = r.be64()?;
        let bandwidth = r.be64()?;
        let response = r.be32()? as i32;
        let delay = r.be32()?;
        let loss = r.be32()?;
        let ber = r.be32()?;
        let max_gap = r.be32()?;
        let timeout = r.be32()?;
        let ece = r.be16()?;
        let code = FaCode::from(r.u8()?);
        let availability = r.u8()?;
        let in_order = r.u8()?;
        let qos = QosSpec {
            delay,
            bandwidth,
            availability,
            loss,
            ber,
            in_order,
            max_gap,
            timeout,
        };
        Ok((
            Self {
                s_addr,
                r_eid,
                s_eid,
                response,
                qos,
                ece,
                code,
            },
            r.rest(),
        ))
    }

    /// Appends the 61 bytes.
    pub fn write(&self, w: &mut Writer) {
        let q = &self.qos;
        w.be64(self.s_addr)
            .be64(self.r_eid)
            .be64(self.s_eid)
            .be64(q.bandwidth)
            .be32(self.response as u32)
            .be32(q.delay)
            .be32(q.loss)
            .be32(q.ber)
            .be32(q.max_gap)
            .be32(q.timeout)
            .be16(self.ece)
            .u8(self.code.into())
            .u8(q.availability)
            .u8(q.in_order);
    }
}
