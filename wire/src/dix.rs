//! The eth-dix layer: `eid(2) | length(2) | payload` after an Ethernet II header, and its
//! 39-byte management message (eid 0).
//!
//! `eid` is the receiving IPCP's flow id (>= 64 for data), `length` the payload length
//! (frames shorter than 60 bytes are padded on the wire).

use crate::code::EthCode;
use crate::error::{need, Error, Result};
use crate::field::{self, Reader, Writer};
use crate::qos::QosSpec;

/// Length of the eid + length header.
pub const HEADER_LEN: usize = 4;
/// Length of the management message.
pub const MGMT_LEN: usize = 39;
/// The management endpoint id.
pub const MGMT_EID: u16 = 0;
/// Lowest eid of a data flow (fds 0..63 are reserved in the reference).
pub const MIN_DATA_EID: u16 = 64;

/// Byte offsets of the eid/length header.
pub mod offsets {
    /// Destination endpoint id.
    pub const EID: usize = 0;
    /// Payload length.
    pub const LENGTH: usize = 2;
    /// Payload.
    pub const PAYLOAD: usize = 4;
}

/// A checked view over an eth-dix payload (the bytes after the Ethertype).
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buf` after checking the header and that `length` bytes follow it.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        need("eth-dix header", b, HEADER_LEN)?;
        let len = usize::from(field::be16(b, offsets::LENGTH));
        if HEADER_LEN + len > b.len() {
            return Err(Error::BadLength {
                what: "eth-dix length",
                claimed: len,
                available: b.len() - HEADER_LEN,
            });
        }
        Ok(Self { buf })
    }
    /// Destination endpoint id.
    pub fn eid(&self) -> u16 {
        field::be16(self.buf.as_ref(), offsets::EID)
    }
    /// Length field.
    pub fn length(&self) -> u16 {
        field::be16(self.buf.as_ref(), offsets::LENGTH)
    }
    /// The payload (without padding).
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.length());
        self.buf.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }
    /// Padding after the payload.
    pub fn padding(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.length());
        self.buf.as_ref().get(end..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the eid.
    pub fn set_eid(&mut self, eid: u16) {
        field::set(self.buf.as_mut(), offsets::EID, eid.to_be_bytes());
    }
    /// Sets the length.
    pub fn set_length(&mut self, len: u16) {
        field::set(self.buf.as_mut(), offsets::LENGTH, len.to_be_bytes());
    }
}

/// Bytes of the Ethernet and eth-dix headers in front of an eth-dix SDU.
pub const FRAME_HEADER_LEN: usize = crate::ethernet::HEADER_LEN + HEADER_LEN;

/// The Ethernet and eth-dix headers in front of an eth-dix SDU (the first
/// [`FRAME_HEADER_LEN`] bytes of a frame): read and written over an array of that size, so
/// nothing can fail and nothing is checked at run time (the forwarding path reads and
/// re-heads every PDU with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// Ethertype.
    pub ethertype: u16,
    /// Destination endpoint id.
    pub eid: u16,
    /// Length of the SDU after the header (padding not counted).
    pub length: u16,
}

impl FrameHeader {
    /// Reads the headers from `h`.
    #[inline]
    pub fn read(h: &[u8; FRAME_HEADER_LEN]) -> Self {
        use crate::ethernet::{offsets as eth, HEADER_LEN as ETH_LEN};
        Self {
            dst: field::get(h, eth::DST.start),
            src: field::get(h, eth::SRC.start),
            ethertype: field::be16(h, eth::TYPE_LEN),
            eid: field::be16(h, offsets::EID + ETH_LEN),
            length: field::be16(h, ETH_LEN + offsets::LENGTH),
        }
    }
    /// Writes the headers into `h`.
    #[inline]
    pub fn write(&self, h: &mut [u8; FRAME_HEADER_LEN]) {
        use crate::ethernet::{offsets as eth, HEADER_LEN as ETH_LEN};
        field::set(h, eth::DST.start, self.dst);
        field::set(h, eth::SRC.start, self.src);
        field::set(h, eth::TYPE_LEN, self.ethertype.to_be_bytes());
        field::set(h, offsets::EID + ETH_LEN, self.eid.to_be_bytes());
        field::set(h, ETH_LEN + offsets::LENGTH, self.length.to_be_bytes());
    }
    /// Writes only the length field of the headers in `h` (a header made once for many
    /// frames, then given each frame's length).
    #[inline]
    pub fn write_length(h: &mut [u8; FRAME_HEADER_LEN], length: u16) {
        use crate::ethernet::HEADER_LEN as ETH_LEN;
        field::set(h, ETH_LEN + offsets::LENGTH, length.to_be_bytes());
    }
}

/// Writes an eth-dix header for `payload_len` bytes into `buf[..4]`.
#[inline]
pub fn emit_header(buf: &mut [u8], eid: u16, payload_len: usize) -> Result<()> {
    let len = u16::try_from(payload_len).map_err(|_| Error::TooLarge {
        what: "eth-dix length",
        value: payload_len,
    })?;
    need("eth-dix header", buf, HEADER_LEN)?;
    field::set(buf, offsets::EID, eid.to_be_bytes());
    field::set(buf, offsets::LENGTH, len.to_be_bytes());
    Ok(())
}

/// The 39-byte eth-dix management message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MgmtMsg {
    /// Sender's endpoint id.
    pub seid: u16,
    /// Receiver's endpoint id.
    pub deid: u16,
    /// QoS of the flow.
    pub qos: QosSpec,
    /// Response (0 = success, negative errno otherwise).
    pub response: i32,
    /// Message code.
    pub code: EthCode,
}

impl MgmtMsg {
    /// Parses the fixed 39 bytes, returning the message and what follows (hash, OAP).
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        let mut r = Reader::new("eth-dix management message", buf);
        need("eth-dix management message", buf, MGMT_LEN)?;
        let seid = r.be16()?;
        let deid = r.be16()?;
        let loss = r.be32()?;
        let bandwidth = r.be64()?;
        let ber = r.be32()?;
        let max_gap = r.be32()?;
        let delay = r.be32()?;
        let timeout = r.be32()?;
        let response = r.be32()? as i32;
        let in_order = r.u8()?;
        let code = EthCode::from(r.u8()?);
        let availability = r.u8()?;
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
                seid,
                deid,
                qos,
                response,
                code,
            },
            r.rest(),
        ))
    }

    /// Appends the 39 bytes.
    pub fn write(&self, w: &mut Writer) {
        let q = &self.qos;
        w.be16(self.seid)
            .be16(self.deid)
            .be32(q.loss)
            .be64(q.bandwidth)
            .be32(q.ber)
            .be32(q.max_gap)
            .be32(q.delay)
            .be32(q.timeout)
            .be32(self.response as u32)
            .u8(q.in_order)
            .u8(self.code.into())
            .u8(q.availability);
    }
}

/// The management message of Ouroboros 0.21 (tutorial 04): 38 bytes, with a 2-byte cipher
/// field and a 1-byte response. Decoded for old captures; never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyMgmtMsg {
    /// Sender's endpoint id.
    pub seid: u16,
    /// Receiver's endpoint id.
    pub deid: u16,
    /// QoS of the flow.
    pub qos: QosSpec,
    /// Cipher strength requested (`cypher_s`).
    pub cypher_s: u16,
    /// Message code.
    pub code: EthCode,
    /// Response (int8).
    pub response: i8,
}

/// Length of the legacy (0.21) management message.
pub const LEGACY_MGMT_LEN: usize = 38;

impl LegacyMgmtMsg {
    /// Parses the fixed 38 bytes, returning the message and what follows.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        need("eth-dix 0.21 management message", buf, LEGACY_MGMT_LEN)?;
        let mut r = Reader::new("eth-dix 0.21 management message", buf);
        let seid = r.be16()?;
        let deid = r.be16()?;
        let loss = r.be32()?;
        let bandwidth = r.be64()?;
        let ber = r.be32()?;
        let max_gap = r.be32()?;
        let delay = r.be32()?;
        let timeout = r.be32()?;
        let cypher_s = r.be16()?;
        let in_order = r.u8()?;
        let code = EthCode::from(r.u8()?);
        let availability = r.u8()?;
        let response = r.u8()? as i8;
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
                seid,
                deid,
                qos,
                cypher_s,
                code,
                response,
            },
            r.rest(),
        ))
    }

    /// Appends the 38 bytes.
    pub fn write(&self, w: &mut Writer) {
        let q = &self.qos;
        w.be16(self.seid)
            .be16(self.deid)
            .be32(q.loss)
            .be64(q.bandwidth)
            .be32(q.ber)
            .be32(q.max_gap)
            .be32(q.delay)
            .be32(q.timeout)
            .be16(self.cypher_s)
            .u8(q.in_order)
            .u8(self.code.into())
            .u8(q.availability)
            .u8(self.response as u8);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_length_beyond_the_buffer_is_refused_saying_what_is_there() {
        // eid 0x0041, length 20, but only 6 bytes follow the header.
        let b = [0x00, 0x41, 0x00, 0x14, 1, 2, 3, 4, 5, 6];
        match Packet::new_checked(&b[..]) {
            Err(Error::BadLength {
                claimed, available, ..
            }) => assert_eq!((claimed, available), (20, 6)),
            other => panic!("{other:?}"),
        }
        // Exactly what it claims: taken, and the rest is padding.
        let b = [0x00, 0x41, 0x00, 0x04, 1, 2, 3, 4, 0, 0];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.eid(), p.length(), p.payload(), p.padding()),
            (0x41, 4, &b[4..8], &b[8..])
        );
    }

    #[test]
    fn a_frame_header_is_the_ethernet_header_then_the_eid_and_the_length() {
        // To 00:16:3e:9a:1b:02 from 00:16:3e:9a:1b:01, Ethertype 0xa000, eid 0x0041,
        // length 0x004a: each field a different value, so a swapped one shows.
        let want: [u8; FRAME_HEADER_LEN] = hex::decode("00163e9a1b0200163e9a1b01a0000041004a")
            .unwrap()
            .try_into()
            .unwrap();
        let hd = FrameHeader {
            dst: [0x00, 0x16, 0x3e, 0x9a, 0x1b, 0x02],
            src: [0x00, 0x16, 0x3e, 0x9a, 0x1b, 0x01],
            ethertype: 0xa000,
            eid: 0x41,
            length: 0x4a,
        };
        let mut h = [0xeeu8; FRAME_HEADER_LEN];
        hd.write(&mut h);
        assert_eq!(h, want);
        assert_eq!(FrameHeader::read(&want), hd);
        // The length alone, over a header made with another.
        let mut g = h;
        FrameHeader::write_length(&mut g, 0x1234);
        assert_eq!(
            FrameHeader::read(&g),
            FrameHeader {
                length: 0x1234,
                ..hd
            }
        );
        // The same fields as the checked views read.
        let f = crate::ethernet::Frame::new_checked(&want[..]).unwrap();
        assert_eq!(
            (f.dst(), f.src(), f.type_len()),
            (hd.dst, hd.src, hd.ethertype)
        );
    }

    #[test]
    fn setters_rewrite_the_eid_and_the_length_in_place() {
        let mut b = [0x00, 0x41, 0x00, 0x02, 7, 8, 9];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_eid(0x1234);
        p.set_length(3);
        assert_eq!(
            (p.eid(), p.length(), p.payload()),
            (0x1234, 3, &[7u8, 8, 9][..])
        );
        assert_eq!(b[..4], [0x12, 0x34, 0x00, 0x03]);
    }
}
