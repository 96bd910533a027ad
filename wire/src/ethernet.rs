//! The Ethernet II / 802.3 header under the eth-dix and eth-llc layers.

use crate::error::{need, Result};
use crate::field::{self, Writer};

/// Byte offsets of the Ethernet header.
pub mod offsets {
    use crate::field::Field;
    /// Destination MAC.
    pub const DST: Field = 0..6;
    /// Source MAC.
    pub const SRC: Field = 6..12;
    /// Ethertype (DIX) or length (802.3).
    pub const TYPE_LEN: usize = 12;
    /// Start of the payload.
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Values of the type/length field up to this one are 802.3 lengths.
pub const MAX_8023_LEN: u16 = 0x05ff;
/// Smallest valid Ethertype.
pub const MIN_ETHERTYPE: u16 = 0x0600;
/// The Ouroboros eth-dix default Ethertype.
pub const ETHERTYPE_OUROBOROS: u16 = 0xA000;
/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// A checked view over an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buf` after checking it holds a header.
    pub fn new_checked(buf: T) -> Result<Self> {
        need("ethernet header", buf.as_ref(), HEADER_LEN)?;
        Ok(Self { buf })
    }
    /// Destination MAC.
    pub fn dst(&self) -> [u8; 6] {
        field::get(self.buf.as_ref(), offsets::DST.start)
    }
    /// Source MAC.
    pub fn src(&self) -> [u8; 6] {
        field::get(self.buf.as_ref(), offsets::SRC.start)
    }
    /// Ethertype or 802.3 length.
    pub fn type_len(&self) -> u16 {
        field::be16(self.buf.as_ref(), offsets::TYPE_LEN)
    }
    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(offsets::PAYLOAD..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        field::set(self.buf.as_mut(), offsets::DST.start, mac);
    }
    /// Sets the source MAC.
    pub fn set_src(&mut self, mac: [u8; 6]) {
        field::set(self.buf.as_mut(), offsets::SRC.start, mac);
    }
    /// Sets the Ethertype or 802.3 length.
    pub fn set_type_len(&mut self, v: u16) {
        field::set(self.buf.as_mut(), offsets::TYPE_LEN, v.to_be_bytes());
    }
    /// Everything after the header, to write.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buf
            .as_mut()
            .get_mut(offsets::PAYLOAD..)
            .unwrap_or(&mut [])
    }
}

/// The owned Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// Ethertype or 802.3 length.
    pub type_len: u16,
}

impl EthernetRepr {
    /// Parses the header, returning it and the payload.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        let f = Frame::new_checked(buf)?;
        Ok((
            Self {
                dst: f.dst(),
                src: f.src(),
                type_len: f.type_len(),
            },
            buf.get(offsets::PAYLOAD..).unwrap_or(&[]),
        ))
    }
    /// Appends the header.
    pub fn write(&self, w: &mut Writer) {
        w.put(&self.dst).put(&self.src).be16(self.type_len);
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_frame_shows_its_addresses_type_and_payload() {
        let mut b = vec![1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0xa0, 0x00];
        b.extend_from_slice(b"sdu");
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(f.src(), [0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        assert_eq!(f.type_len(), ETHERTYPE_OUROBOROS);
        assert_eq!(f.payload(), b"sdu");
        assert!(Frame::new_checked(&b[..13]).is_err());
        assert_eq!(Frame::new_checked(&b[..14]).unwrap().payload(), b"");
    }

    #[test]
    fn the_setters_write_each_field_at_its_place_and_nothing_else() {
        let mut b = vec![0u8; 17];
        b[14..].copy_from_slice(b"sdu");
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.set_dst([1, 2, 3, 4, 5, 6]);
        f.set_src([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        f.set_type_len(0xa001);
        f.payload_mut()[0] = b'S';
        assert_eq!(
            b,
            [1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0xa0, 0x01, b'S', b'd', b'u']
        );
        let mut short = [0u8; 14];
        assert!(Frame::new_checked(&mut short[..])
            .unwrap()
            .payload_mut()
            .is_empty());
    }

    #[test]
    fn a_mac_reads_as_six_lower_case_hex_pairs() {
        assert_eq!(
            mac_string(&[0, 0x1b, 0xab, 0xff, 9, 0x10]),
            "00:1b:ab:ff:09:10"
        );
        assert_eq!(mac_string(&BROADCAST), "ff:ff:ff:ff:ff:ff");
    }
}
