//! Application messages of the reference tools: oping and ocbr.

use crate::code::OpingType;
use crate::error::{need, Result};
use crate::field::{self, Writer};

/// Length of the oping header (the message is zero-padded to the chosen size).
pub const OPING_HEADER_LEN: usize = 24;
/// Smallest and largest oping sizes the reference accepts.
pub const OPING_MIN_SIZE: usize = 64;
/// Largest oping size.
pub const OPING_MAX_SIZE: usize = 1500;

/// An oping message: `type(4, BE) | id(4, BE) | tv_sec(8) | tv_nsec(8) | zero padding`.
///
/// The timestamps are the client's CLOCK_MONOTONIC in **host byte order** in the reference
/// (little-endian on every captured machine); this crate always uses little-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpingMsg {
    /// Request or reply (the whole big-endian u32; only its low byte is a known code).
    pub kind: u32,
    /// Sequence number.
    pub id: u32,
    /// Seconds.
    pub tv_sec: u64,
    /// Nanoseconds.
    pub tv_nsec: u64,
    /// Bytes after the header (zeros when sent by the reference).
    pub padding: Vec<u8>,
}

impl OpingMsg {
    /// Parses an oping message.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        need("oping message", buf, OPING_HEADER_LEN)?;
        Ok(Self {
            kind: field::be32(buf, 0),
            id: field::be32(buf, 4),
            tv_sec: field::le64(buf, 8),
            tv_nsec: field::le64(buf, 16),
            padding: buf.get(OPING_HEADER_LEN..).unwrap_or(&[]).to_vec(),
        })
    }
    /// The message type, when it is one of the two known ones.
    pub fn msg_type(&self) -> OpingType {
        match self.kind {
            0 | 1 => OpingType::from(self.kind as u8),
            _ => OpingType::Unknown(0xff),
        }
    }
    /// Whether this looks like a reference oping message: known type, nanoseconds below 1e9,
    /// zero padding.
    pub fn is_plausible(&self) -> bool {
        self.kind <= 1 && self.tv_nsec < 1_000_000_000 && self.padding.iter().all(|b| *b == 0)
    }
    /// Appends the message.
    pub fn write(&self, w: &mut Writer) {
        w.be32(self.kind)
            .be32(self.id)
            .put(&self.tv_sec.to_le_bytes())
            .put(&self.tv_nsec.to_le_bytes())
            .put(&self.padding);
    }
    /// The encoded length.
    pub fn len(&self) -> usize {
        OPING_HEADER_LEN + self.padding.len()
    }
    /// Never empty (clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Length of the ocbr sequence number.
pub const OCBR_HEADER_LEN: usize = 8;

/// An ocbr message: `seqnr(8, host order = LE)` followed by filler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcbrMsg {
    /// Sequence number.
    pub seqnr: u64,
    /// Filler (uninitialised memory in the reference).
    pub filler: Vec<u8>,
}

impl OcbrMsg {
    /// Parses an ocbr message.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        need("ocbr message", buf, OCBR_HEADER_LEN)?;
        Ok(Self {
            seqnr: field::le64(buf, 0),
            filler: buf.get(OCBR_HEADER_LEN..).unwrap_or(&[]).to_vec(),
        })
    }
    /// Appends the message.
    pub fn write(&self, w: &mut Writer) {
        w.put(&self.seqnr.to_le_bytes()).put(&self.filler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_oping_request() {
        // Tutorial 06, packet 5 (after the eth-dix header).
        let mut b = hex::decode("00000000000000007377000000000000b03ee00700000000").unwrap();
        b.resize(64, 0);
        let m = OpingMsg::parse(&b).unwrap();
        assert_eq!(m.msg_type(), OpingType::EchoRequest);
        assert_eq!(m.id, 0);
        assert_eq!(m.tv_sec, 0x7773);
        assert_eq!(m.tv_nsec, 0x07e03eb0);
        assert!(m.is_plausible());
        let mut w = Writer::default();
        m.write(&mut w);
        assert_eq!(w.0, b);
        assert_eq!((m.len(), m.is_empty()), (64, false));
    }

    #[test]
    fn a_plausible_message_has_a_known_type_nanoseconds_below_a_second_and_zero_padding() {
        let m = |kind: u32, tv_nsec: u64, pad: u8| OpingMsg {
            kind,
            id: 7,
            tv_sec: 1,
            tv_nsec,
            padding: vec![0, pad, 0],
        };
        assert!(m(1, 999_999_999, 0).is_plausible());
        assert!(m(0, 0, 0).is_plausible());
        assert!(!m(2, 0, 0).is_plausible(), "an unknown type");
        assert!(
            !m(1, 1_000_000_000, 0).is_plausible(),
            "a whole second of nanoseconds"
        );
        assert!(!m(1, 0, 9).is_plausible(), "padding that is not zero");
        assert_eq!(m(1, 0, 0).len(), OPING_HEADER_LEN + 3);
        assert_eq!(m(2, 0, 0).msg_type(), OpingType::Unknown(0xff));
    }
}
