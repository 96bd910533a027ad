//! The udp4/udp6 layers: every datagram is `eid(4, BE) | payload`; eid 0 is the 47-byte
//! management message (the eid is its first field).

use crate::code::UdpCode;
use crate::error::{need, Result};
use crate::field::{self, Reader, Writer};
use crate::qos::QosSpec;

/// The default port of the reference.
pub const DEFAULT_PORT: u16 = 3435;
/// Length of the eid header.
pub const HEADER_LEN: usize = 4;
/// Length of the management message (eid included).
pub const MGMT_LEN: usize = 47;
/// Largest datagram the reference sends.
pub const MAX_PACKET: usize = 8980;

/// A checked view over a UDP-layer datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Wraps `buf` after checking the eid is there.
    pub fn new_checked(buf: T) -> Result<Self> {
        need("udp-layer eid", buf.as_ref(), HEADER_LEN)?;
        Ok(Self { buf })
    }
    /// Destination endpoint id.
    pub fn eid(&self) -> u32 {
        field::be32(self.buf.as_ref(), 0)
    }
    /// The SDU.
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

/// The 47-byte UDP-layer management message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MgmtMsg {
    /// The eid field (0 for management).
    pub eid: u32,
    /// The requester's endpoint id (the reference's `s_eid`), in a FLOW_REQ and in its
    /// FLOW_REPLY alike: in a reply it is the *receiver's* eid, the opposite of the eth
    /// layers' FLOW_REPLY (verified against the reference, facts §1.8.3).
    pub requester_eid: u32,
    /// The responder's endpoint id (the reference's `d_eid`): 0 in a FLOW_REQ, the sender's
    /// own eid in a FLOW_REPLY.
    pub responder_eid: u32,
    /// Response (0 = success).
    pub response: i32,
    /// QoS of the flow.
    pub qos: QosSpec,
    /// Message code.
    pub code: UdpCode,
}

impl MgmtMsg {
    /// Parses the fixed 47 bytes (starting at the eid), returning what follows.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        need("udp management message", buf, MGMT_LEN)?;
        let mut r = Reader::new("udp management message", buf);
        let eid = r.be32()?;
        let requester_eid = r.be32()?;
        let responder_eid = r.be32()?;
        let response = r.be32()? as i32;
        let bandwidth = r.be64()?;
        let delay = r.be32()?;
        let loss = r.be32()?;
        let ber = r.be32()?;
        let max_gap = r.be32()?;
        let timeout = r.be32()?;
        let code = UdpCode::from(r.u8()?);
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
                eid,
                requester_eid,
                responder_eid,
                response,
                qos,
                code,
            },
            r.rest(),
        ))
    }

    /// Appends the 47 bytes.
    pub fn write(&self, w: &mut Writer) {
        let q = &self.qos;
        w.be32(self.eid)
            .be32(self.requester_eid)
            .be32(self.responder_eid)
            .be32(self.response as u32)
            .be64(q.bandwidth)
            .be32(q.delay)
            .be32(q.loss)
            .be32(q.ber)
            .be32(q.max_gap)
            .be32(q.timeout)
            .u8(self.code.into())
            .u8(q.availability)
            .u8(q.in_order);
    }
}
