//! The FRCT (FRCP) header that the library prepends when `in_order != 0`:
//! `flags(1) | rwe(3, BE) | seqno(4, BE) | ackno(4, BE)`.

use crate::error::{need, Result};
use crate::field::{self, Writer};

/// Header length.
pub const HEADER_LEN: usize = 12;

/// FRCT flag bits.
pub mod flags {
    /// Carries data.
    pub const DATA: u8 = 0x01;
    /// Data run flag: starts a new run.
    pub const DRF: u8 = 0x02;
    /// Acknowledgement valid.
    pub const ACK: u8 = 0x04;
    /// Flow control (window) valid.
    pub const FC: u8 = 0x08;
    /// Rendez-vous.
    pub const RDVS: u8 = 0x10;
    /// First fragment.
    pub const FFGM: u8 = 0x20;
    /// More fragments.
    pub const MFGM: u8 = 0x40;
    /// Names of the bits, in order.
    pub const NAMES: [(u8, &str); 7] = [
        (DATA, "DATA"),
        (DRF, "DRF"),
        (ACK, "ACK"),
        (FC, "FC"),
        (RDVS, "RDVS"),
        (FFGM, "FFGM"),
        (MFGM, "MFGM"),
    ];
}

/// A checked view over an FRCT header and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buf` after checking the header fits.
    pub fn new_checked(buf: T) -> Result<Self> {
        need("FRCT header", buf.as_ref(), HEADER_LEN)?;
        Ok(Self { buf })
    }
    /// Flags.
    pub fn flags(&self) -> u8 {
        field::byte(self.buf.as_ref(), 0)
    }
    /// Receiver window edge (24 bits).
    pub fn rwe(&self) -> u32 {
        field::be32(self.buf.as_ref(), 0) & 0x00ff_ffff
    }
    /// Sequence number.
    pub fn seqno(&self) -> u32 {
        field::be32(self.buf.as_ref(), 4)
    }
    /// Acknowledgement number.
    pub fn ackno(&self) -> u32 {
        field::be32(self.buf.as_ref(), 8)
    }
    /// The SDU.
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

/// The owned FRCT header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrctRepr {
    /// Flags.
    pub flags: u8,
    /// Receiver window edge (24 bits).
    pub rwe: u32,
    /// Sequence number.
    pub seqno: u32,
    /// Acknowledgement number.
    pub ackno: u32,
}

impl FrctRepr {
    /// Parses a header, returning it and the payload.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        let h = Header::new_checked(buf)?;
        Ok((
            Self {
                flags: h.flags(),
                rwe: h.rwe(),
                seqno: h.seqno(),
                ackno: h.ackno(),
            },
            buf.get(HEADER_LEN..).unwrap_or(&[]),
        ))
    }
    /// Appends the 12 bytes (the window is truncated to 24 bits, as on the wire).
    pub fn write(&self, w: &mut Writer) {
        let rwe = self.rwe.to_be_bytes();
        w.put(&[self.flags])
            .put(rwe.get(1..).unwrap_or_default())
            .be32(self.seqno)
            .be32(self.ackno);
    }
    /// `DATA|ACK`-style flag names.
    pub fn flag_names(&self) -> String {
        let mut v: Vec<&str> = flags::NAMES
            .iter()
            .filter(|(b, _)| self.flags & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if self.flags & 0x80 != 0 {
            v.push("0x80");
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join("|")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_view_reads_every_field_and_the_payload() {
        // uni.pcap frame 47's header (DATA|DRF|FC, rwe 0x3b531c, seqno 0xd7434e08) and an
        // ackno that differs from every other field, then a payload.
        let b = hex::decode("0b3b531cd7434e0801020304cafe").unwrap();
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(
            (h.flags(), h.rwe(), h.seqno(), h.ackno(), h.payload()),
            (0x0b, 0x3b_531c, 0xd743_4e08, 0x0102_0304, &[0xca, 0xfe][..])
        );
        assert!(Header::new_checked(&b[..12]).unwrap().payload().is_empty());
        assert!(Header::new_checked(&b[..11]).is_err());
        // Written back: the window's top byte is not on the wire.
        let (r, rest) = FrctRepr::parse(&b).unwrap();
        assert_eq!(rest, &[0xca, 0xfe]);
        let mut w = Writer::default();
        FrctRepr {
            rwe: r.rwe | 0xff00_0000,
            ..r
        }
        .write(&mut w);
        assert_eq!(w.0, b[..12]);
    }

    #[test]
    fn captured_ack_only() {
        let b = hex::decode("0400000000000000d7434e1c").unwrap();
        let (h, rest) = FrctRepr::parse(&b).unwrap();
        assert_eq!(h.flags, flags::ACK);
        assert_eq!(h.ackno, 0xd7434e1c);
        assert!(rest.is_empty());
        assert_eq!(h.flag_names(), "ACK");
        let mut w = Writer::default();
        h.write(&mut w);
        assert_eq!(w.0, b);
    }
}
