//! The unicast data-transfer PCI: `dst_addr | qc(1) | ttl(1) | ecn(1) | eid`.
//!
//! **Byte order**: the reference copies `dst_addr` and `eid` out of native `uint64_t`s with
//! `memcpy`, so on the (little-endian) machines it runs on they travel **little-endian**, and
//! only the low `addr_size` / `eid_size` bytes are sent. This crate always uses little-endian,
//! which is what every captured 0.23 frame holds (e.g. address 0x6c8a0ce2 as `e2 0c 8a 6c`),
//! whatever the host's byte order.

use crate::error::{need, Error, Result};
use crate::field::{self, Writer};
use crate::qos::QosCube;

/// Eids below this one address components of the IPCP itself (the flow allocator is 0).
pub const MIN_FLOW_EID: u64 = 64;
/// The flow allocator's DT eid.
pub const FA_EID: u64 = 0;
/// The reference's default maximum TTL.
pub const DEFAULT_TTL: u8 = 60;

/// Field sizes of a unicast layer's DT PCI (set at bootstrap, learnt at enrolment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtConfig {
    /// Address size in bytes (1..=8; the reference's flat policy uses 4).
    pub addr_size: usize,
    /// Endpoint id size in bytes (1..=8; the reference supports only 8).
    pub eid_size: usize,
}

impl Default for DtConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl DtConfig {
    /// The reference's defaults: 4-byte addresses, 8-byte eids (a 15-byte PCI).
    pub const DEFAULT: DtConfig = DtConfig {
        addr_size: 4,
        eid_size: 8,
    };

    /// Checks the sizes.
    pub fn new(addr_size: usize, eid_size: usize) -> Result<Self> {
        if !(1..=8).contains(&addr_size) || !(1..=8).contains(&eid_size) {
            return Err(Error::Malformed {
                what: "dt config",
                reason: "address and eid sizes must be 1..=8 bytes",
            });
        }
        Ok(Self {
            addr_size,
            eid_size,
        })
    }
    /// PCI length.
    pub const fn pci_len(&self) -> usize {
        self.addr_size + 3 + self.eid_size
    }
    const fn qc_at(&self) -> usize {
        self.addr_size
    }
    const fn ttl_at(&self) -> usize {
        self.addr_size + 1
    }
    const fn ecn_at(&self) -> usize {
        self.addr_size + 2
    }
    const fn eid_at(&self) -> usize {
        self.addr_size + 3
    }
}

fn get_le(b: &[u8], at: usize, n: usize) -> u64 {
    let mut v = [0u8; 8];
    if let (Some(src), Some(dst)) = (b.get(at..at + n), v.get_mut(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_le_bytes(v)
}

fn put_le(b: &mut [u8], at: usize, n: usize, val: u64) {
    let v = val.to_le_bytes();
    if let (Some(dst), Some(src)) = (b.get_mut(at..at + n), v.get(..n)) {
        dst.copy_from_slice(src);
    }
}

/// A checked view over a DT PCI and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Pci<T: AsRef<[u8]>> {
    buf: T,
    cfg: DtConfig,
}

impl<T: AsRef<[u8]>> Pci<T> {
    /// Wraps `buf` after checking the PCI fits.
    pub fn new_checked(buf: T, cfg: DtConfig) -> Result<Self> {
        need("unicast DT PCI", buf.as_ref(), cfg.pci_len())?;
        Ok(Self { buf, cfg })
    }
    /// Destination address.
    pub fn dst_addr(&self) -> u64 {
        get_le(self.buf.as_ref(), 0, self.cfg.addr_size)
    }
    /// QoS cube.
    pub fn qc(&self) -> QosCube {
        field::byte(self.buf.as_ref(), self.cfg.qc_at()).into()
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        field::byte(self.buf.as_ref(), self.cfg.ttl_at())
    }
    /// Congestion level.
    pub fn ecn(&self) -> u8 {
        field::byte(self.buf.as_ref(), self.cfg.ecn_at())
    }
    /// Destination endpoint id.
    pub fn eid(&self) -> u64 {
        get_le(self.buf.as_ref(), self.cfg.eid_at(), self.cfg.eid_size)
    }
    /// The SDU after the PCI.
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(self.cfg.pci_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Pci<T> {
    /// Sets the TTL (forwarding decrements it).
    pub fn set_ttl(&mut self, ttl: u8) {
        field::set_byte(self.buf.as_mut(), self.cfg.ttl_at(), ttl);
    }
    /// Sets the congestion level (forwarding ORs into it).
    pub fn set_ecn(&mut self, ecn: u8) {
        field::set_byte(self.buf.as_mut(), self.cfg.ecn_at(), ecn);
    }
}

/// The owned DT PCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRepr {
    /// Destination address.
    pub dst_addr: u64,
    /// QoS cube.
    pub qc: QosCube,
    /// Time to live.
    pub ttl: u8,
    /// Congestion level.
    pub ecn: u8,
    /// Destination endpoint id.
    pub eid: u64,
}

impl PciRepr {
    /// Parses a PCI, returning it and its payload.
    pub fn parse(buf: &[u8], cfg: DtConfig) -> Result<(Self, &[u8])> {
        let p = Pci::new_checked(buf, cfg)?;
        let r = Self {
            dst_addr: p.dst_addr(),
            qc: p.qc(),
            ttl: p.ttl(),
            ecn: p.ecn(),
            eid: p.eid(),
        };
        Ok((r, buf.get(cfg.pci_len()..).unwrap_or(&[])))
    }
    /// Appends the PCI; fails if the address or eid does not fit the configured size.
    pub fn write(&self, w: &mut Writer, cfg: DtConfig) -> Result<()> {
        let fits = |v: u64, n: usize| n >= 8 || v >> (8 * n) == 0;
        if !fits(self.dst_addr, cfg.addr_size) {
            return Err(Error::TooLarge {
                what: "DT address",
                value: self.dst_addr as usize,
            });
        }
        if !fits(self.eid, cfg.eid_size) {
            return Err(Error::TooLarge {
                what: "DT eid",
                value: self.eid as usize,
            });
        }
        let mut b = vec![0u8; cfg.pci_len()];
        put_le(&mut b, 0, cfg.addr_size, self.dst_addr);
        field::set_byte(&mut b, cfg.qc_at(), self.qc.into());
        field::set_byte(&mut b, cfg.ttl_at(), self.ttl);
        field::set_byte(&mut b, cfg.ecn_at(), self.ecn);
        put_le(&mut b, cfg.eid_at(), cfg.eid_size, self.eid);
        w.put(&b);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_address_as_captured() {
        let b = [
            0xe2, 0x0c, 0x8a, 0x6c, 0, 0x3c, 0, 0x41, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0xaa,
        ];
        let (p, rest) = PciRepr::parse(&b, DtConfig::DEFAULT).unwrap();
        assert_eq!(p.dst_addr, 0x6c8a0ce2);
        assert_eq!(p.ttl, 60);
        assert_eq!(p.eid, 0x4433_2211_0000_0041);
        assert_eq!(rest, &[0xaa]);
        let mut w = Writer::default();
        p.write(&mut w, DtConfig::DEFAULT).unwrap();
        assert_eq!(&w.0[..], &b[..15]);
    }

    #[test]
    fn the_payload_is_what_follows_the_pci() {
        let mut b = vec![0u8; 15];
        b.extend_from_slice(b"sdu");
        let p = Pci::new_checked(&b[..], DtConfig::DEFAULT).unwrap();
        assert_eq!(p.payload(), b"sdu");
        let small = DtConfig::new(2, 2).unwrap();
        assert_eq!(
            Pci::new_checked(&b[..], small).unwrap().payload().len(),
            18 - 7
        );
        assert!(Pci::new_checked(&b[..15], DtConfig::DEFAULT)
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn forwarding_setters() {
        let mut b = [0u8; 15];
        let mut p = Pci::new_checked(&mut b[..], DtConfig::DEFAULT).unwrap();
        p.set_ttl(59);
        p.set_ecn(3);
        assert_eq!((p.ttl(), p.ecn()), (59, 3));
        assert!(Pci::new_checked(&b[..14], DtConfig::DEFAULT).is_err());
    }

    #[test]
    fn oversized_fields_are_refused() {
        let p = PciRepr {
            dst_addr: 1 << 40,
            qc: QosCube::BestEffort,
            ttl: 1,
            ecn: 0,
            eid: 1,
        };
        assert!(p.write(&mut Writer::default(), DtConfig::DEFAULT).is_err());
        assert!(DtConfig::new(0, 8).is_err());
        assert!(DtConfig::new(4, 9).is_err());
    }
}
