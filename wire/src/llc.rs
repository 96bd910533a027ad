//! The eth-llc layer: an 802.3 frame (length <= 0x05FF) with an LLC header
//! `DSAP(1) SSAP(1) ctrl(1) = 0x03` and its 37-byte management message.
//!
//! SAP values are bit-reversed on the wire (the management SAP 1 appears as 0x80).

use crate::code::EthCode;
use crate::error::{need, Error, Result};
use crate::field::{Reader, Writer};
use crate::qos::QosSpec;

/// Length of the LLC header.
pub const HEADER_LEN: usize = 3;
/// Length of the management message.
pub const MGMT_LEN: usize = 37;
/// Unnumbered-information control byte.
pub const CTRL_UI: u8 = 0x03;
/// The management SAP (as the reference numbers it, before bit reversal).
pub const MGMT_SAP: u8 = 0x01;
/// The management SAP as it appears on the wire.
pub const MGMT_SAP_WIRE: u8 = 0x80;
/// Largest 802.3 length the layer accepts.
pub const MAX_LENGTH: u16 = 0x05ff;

/// Converts a SAP between its logical and wire form (the operation is its own inverse).
pub const fn sap_wire(sap: u8) -> u8 {
    sap.reverse_bits()
}

/// The LLC header and payload of an 802.3 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlcRepr {
    /// Destination SAP (logical value, i.e. already bit-reversed back).
    pub dsap: u8,
    /// Source SAP (logical value).
    pub ssap: u8,
    /// Control byte (0x03).
    pub ctrl: u8,
}

impl LlcRepr {
    /// Parses the LLC part of an 802.3 frame whose length field is `len_field`; `buf` is the
    /// Ethernet payload. Returns the header, the payload and the padding.
    pub fn parse(buf: &[u8], len_field: u16) -> Result<(Self, &[u8], &[u8])> {
        if len_field > MAX_LENGTH {
            return Err(Error::Malformed {
                what: "eth-llc frame",
                reason: "802.3 length above 0x05FF (this is an Ethertype)",
            });
        }
        let len = usize::from(len_field);
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                what: "eth-llc header",
                need: HEADER_LEN,
                have: len,
            });
        }
        if len > buf.len() {
            return Err(Error::BadLength {
                what: "eth-llc 802.3 length",
                claimed: len,
                available: buf.len(),
            });
        }
        let mut r = Reader::new("eth-llc header", buf);
        let dsap = sap_wire(r.u8()?);
        let ssap = sap_wire(r.u8()?);
        let ctrl = r.u8()?;
        let payload = r.take(len - HEADER_LEN)?;
        Ok((Self { dsap, ssap, ctrl }, payload, r.rest()))
    }

    /// The 802.3 length field for a payload of `payload_len` bytes.
    pub fn length_field(payload_len: usize) -> Result<u16> {
        let l = payload_len + HEADER_LEN;
        match u16::try_from(l) {
            Ok(v) if v <= MAX_LENGTH => Ok(v),
            _ => Err(Error::TooLarge {
                what: "eth-llc 802.3 length",
                value: l,
            }),
        }
    }

    /// Appends the 3-byte header.
    pub fn write(&self, w: &mut Writer) {
        w.u8(sap_wire(self.dsap))
            .u8(sap_wire(self.ssap))
            .u8(self.ctrl);
    }
}

/// The 37-byte eth-llc management message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MgmtMsg {
    /// Sender's SAP.
    pub ssap: u8,
    /// Receiver's SAP.
    pub dsap: u8,
    /// Message code.
    pub code: EthCode,
    /// QoS of the flow.
    pub qos: QosSpec,
    /// Response (0 = success).
    pub response: i32,
}

impl MgmtMsg {
    /// Parses the fixed 37 bytes, returning the message and what follows (hash, OAP).
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        need("eth-llc management message", buf, MGMT_LEN)?;
        let mut r = Reader::new("eth-llc management message", buf);
        let ssap = r.u8()?;
        let dsap = r.u8()?;
        let code = EthCode::from(r.u8()?);
        let availability = r.u8()?;
        let loss = r.be32()?;
        let bandwidth = r.be64()?;
        let ber = r.be32()?;
        let max_gap = r.be32()?;
        let delay = r.be32()?;
        let timeout = r.be32()?;
        let response = r.be32()? as i32;
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
                ssap,
                dsap,
                code,
                qos,
                response,
            },
            r.rest(),
        ))
    }

    /// Appends the 37 bytes.
    pub fn write(&self, w: &mut Writer) {
        let q = &self.qos;
        w.u8(self.ssap)
            .u8(self.dsap)
            .u8(self.code.into())
            .u8(q.availability)
            .be32(q.loss)
            .be64(q.bandwidth)
            .be32(q.ber)
            .be32(q.max_gap)
            .be32(q.delay)
            .be32(q.timeout)
            .be32(self.response as u32)
            .u8(q.in_order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sap_reversal() {
        assert_eq!(sap_wire(MGMT_SAP), MGMT_SAP_WIRE);
        assert_eq!(sap_wire(sap_wire(0x42)), 0x42);
        assert_eq!(sap_wire(0x02), 0x40);
    }

    #[test]
    fn rejects_ethertype_and_bad_length() {
        assert!(LlcRepr::parse(&[0x80, 0x80, 3], 0x0600).is_err());
        assert!(LlcRepr::parse(&[0x80, 0x80, 3], 10).is_err());
        assert!(LlcRepr::parse(&[0x80, 0x80, 3], 2).is_err());
        let (h, p, pad) = LlcRepr::parse(&[0x80, 0x80, 3, 9, 0, 0], 4).unwrap();
        assert_eq!(
            (h.dsap, h.ssap, h.ctrl, p, pad),
            (1, 1, 3, &[9u8][..], &[0u8, 0][..])
        );
    }

    /// 0x05FF is the largest 802.3 length (accepted), 0x0600 the smallest Ethertype.
    #[test]
    fn the_largest_8023_length_is_0x05ff_both_ways() {
        let mut buf = vec![0u8; 0x05ff];
        buf[..3].copy_from_slice(&[0x80, 0x80, 3]);
        let (_, p, pad) = LlcRepr::parse(&buf, 0x05ff).expect("0x05FF is a length");
        assert_eq!((p.len(), pad.len()), (0x05ff - HEADER_LEN, 0));
        buf.push(0);
        assert!(LlcRepr::parse(&buf, 0x0600).is_err());
        assert_eq!(LlcRepr::length_field(0x05ff - HEADER_LEN), Ok(0x05ff));
        assert!(LlcRepr::length_field(0x0600 - HEADER_LEN).is_err());
        assert!(LlcRepr::length_field(70_000).is_err());
        assert_eq!(LlcRepr::length_field(0), Ok(3));
    }
}
