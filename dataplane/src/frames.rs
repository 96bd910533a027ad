//! The per-packet work on Ethernet frames, without I/O: parse a received frame of an eth-dix
//! or eth-llc port into (endpoint id, SDU), and build the frame that carries an SDU to a
//! peer. Used by the worker and, in isolation, by `o7s-bench pkt-path`.

use crate::msg::PortKind;
use o7s_wire::{dix, ethernet, llc};

/// Frames are padded to this length (without FCS).
pub const MIN_FRAME: usize = 60;

/// An SDU too long for the frame's length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SduTooLong(pub usize);

impl std::fmt::Display for SduTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an SDU of {} bytes does not fit the frame", self.0)
    }
}

impl std::error::Error for SduTooLong {}

/// What a received frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not for this port (another Ethertype, a length field on a DIX port, ...).
    NotOurs,
    /// Ours but malformed.
    Malformed,
    /// An SDU for endpoint `eid` (0: management).
    Sdu {
        /// Destination endpoint (0 = management).
        eid: u32,
        /// The SDU.
        sdu: &'a [u8],
        /// Source MAC.
        src: [u8; 6],
        /// Destination MAC.
        dst: [u8; 6],
    },
}

/// Parses a frame received on a port of `kind`.
#[inline]
pub fn parse(kind: PortKind, frame: &[u8]) -> Parsed<'_> {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return Parsed::Malformed;
    };
    let (src, dst) = (eth.src(), eth.dst());
    let pl = frame.get(ethernet::HEADER_LEN..).unwrap_or(&[]);
    let (eid, sdu) = match kind {
        PortKind::Dix { ethertype } => {
            if eth.type_len() != ethertype {
                return Parsed::NotOurs;
            }
            let Ok(d) = dix::Packet::new_checked(pl) else {
                return Parsed::Malformed;
            };
            let len = usize::from(d.length());
            let sdu = pl
                .get(dix::HEADER_LEN..dix::HEADER_LEN + len)
                .unwrap_or(&[]);
            (u32::from(d.eid()), sdu)
        }
        PortKind::Llc => {
            if eth.type_len() > llc::MAX_LENGTH {
                return Parsed::NotOurs;
            }
            // Only the management SAP and the data SAPs 2..=65 (logical) are a layer's:
            // the null SAP, STP's, SNAP's and group SAPs are the host's (the XDP program
            // passes them too), never management.
            let ours = pl
                .first()
                .map(|d| llc::sap_wire(*d))
                .is_some_and(|sap| sap == llc::MGMT_SAP || (2..66).contains(&sap));
            if !ours {
                return Parsed::NotOurs;
            }
            match llc::LlcRepr::parse(pl, eth.type_len()) {
                Ok((h, sdu, _)) if h.ctrl == llc::CTRL_UI => {
                    let eid = if h.dsap == llc::MGMT_SAP {
                        0
                    } else {
                        u32::from(h.dsap)
                    };
                    (eid, sdu)
                }
                _ => return Parsed::Malformed,
            }
        }
        PortKind::Udp { .. } => return Parsed::NotOurs,
    };
    Parsed::Sdu { eid, sdu, src, dst }
}

/// Builds an eth-dix frame carrying `sdu` to endpoint `eid` into `out` (padded).
pub fn build_dix(
    out: &mut Vec<u8>,
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: u16,
    eid: u16,
    sdu: &[u8],
) -> Result<(), SduTooLong> {
    build_dix_with(out, dst, src, ethertype, eid, sdu.len(), |o| {
        o.extend_from_slice(sdu);
        true
    })
    .map(|_| ())
}

/// As [`build_dix`] with a body of `len` bytes that `body` appends to the frame (an SDU
/// sealed by the flow's cipher straight into the frame, without an intermediate copy).
/// `Ok(false)` when `body` failed (the frame is then unusable).
pub fn build_dix_with(
    out: &mut Vec<u8>,
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: u16,
    eid: u16,
    len: usize,
    body: impl FnOnce(&mut Vec<u8>) -> bool,
) -> Result<bool, SduTooLong> {
    let len16 = u16::try_from(len).map_err(|_| SduTooLong(len))?;
    out.clear();
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(&eid.to_be_bytes());
    out.extend_from_slice(&len16.to_be_bytes());
    let header = out.len();
    Ok(finish(out, header, len, body))
}

/// Builds an eth-llc frame (UI, SAPs `dsap`/`ssap`) carrying `sdu` into `out` (padded).
pub fn build_llc(
    out: &mut Vec<u8>,
    dst: [u8; 6],
    src: [u8; 6],
    dsap: u8,
    ssap: u8,
    sdu: &[u8],
) -> Result<(), SduTooLong> {
    build_llc_with(out, dst, src, dsap, ssap, sdu.len(), |o| {
        o.extend_from_slice(sdu);
        true
    })
    .map(|_| ())
}

/// As [`build_llc`] with a body of `len` bytes that `body` appends (see [`build_dix_with`]).
pub fn build_llc_with(
    out: &mut Vec<u8>,
    dst: [u8; 6],
    src: [u8; 6],
    dsap: u8,
    ssap: u8,
    len: usize,
    body: impl FnOnce(&mut Vec<u8>) -> bool,
) -> Result<bool, SduTooLong> {
    let field = llc::LlcRepr::length_field(len).map_err(|_| SduTooLong(len))?;
    out.clear();
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&field.to_be_bytes());
    out.push(llc::sap_wire(dsap));
    out.push(llc::sap_wire(ssap));
    out.push(llc::CTRL_UI);
    let header = out.len();
    Ok(finish(out, header, len, body))
}

/// Appends the body, checks it has the announced length, pads to the minimum frame.
fn finish(
    out: &mut Vec<u8>,
    header: usize,
    len: usize,
    body: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    if !body(out) || out.len() != header + len {
        return false;
    }
    if out.len() < MIN_FRAME {
        out.resize(MIN_FRAME, 0);
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn dix_round_trip_and_padding() {
        let kind = PortKind::Dix { ethertype: 0xA000 };
        let mut f = Vec::new();
        build_dix(&mut f, B, A, 0xA000, 0x40, b"hello").unwrap();
        assert_eq!(f.len(), MIN_FRAME);
        assert_eq!(&f[12..18], &[0xA0, 0x00, 0x00, 0x40, 0x00, 0x05]);
        assert_eq!(
            parse(kind, &f),
            Parsed::Sdu {
                eid: 0x40,
                sdu: b"hello",
                src: A,
                dst: B
            }
        );
        // Another Ethertype is not ours; a cut header is malformed.
        assert_eq!(
            parse(PortKind::Dix { ethertype: 0xA001 }, &f),
            Parsed::NotOurs
        );
        assert_eq!(parse(kind, &f[..15]), Parsed::Malformed);
    }

    #[test]
    fn llc_round_trip() {
        let mut f = Vec::new();
        build_llc(&mut f, B, A, 0x10, 0x12, b"data").unwrap();
        match parse(PortKind::Llc, &f) {
            Parsed::Sdu { eid, sdu, .. } => {
                assert_eq!(eid, 0x10);
                assert_eq!(sdu, b"data");
            }
            other => panic!("{other:?}"),
        }
        // The null SAP (it was read as management), STP's, SNAP's and a group SAP are
        // the host's; the last data SAP is ours.
        for (dsap_wire, ours) in [
            (0x00, false),
            (0x42, false),
            (0xAA, false),
            (0x83, false),
            (llc::sap_wire(2), true),
            (llc::sap_wire(65), true),
            (llc::sap_wire(66), false),
        ] {
            let mut g = f.clone();
            g[14] = dsap_wire;
            assert_eq!(
                !matches!(parse(PortKind::Llc, &g), Parsed::NotOurs),
                ours,
                "DSAP {dsap_wire:#04x} on the wire"
            );
        }
        // A DIX frame on an LLC port is not ours.
        let mut d = Vec::new();
        build_dix(&mut d, B, A, 0xA000, 1, b"x").unwrap();
        assert_eq!(parse(PortKind::Llc, &d), Parsed::NotOurs);
    }

    #[test]
    fn body_writers_match_and_fail_cleanly() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        build_dix(&mut a, B, A, 0xA000, 7, &[9; 100]).unwrap();
        let ok = build_dix_with(&mut b, B, A, 0xA000, 7, 100, |o| {
            o.extend_from_slice(&[9; 100]);
            true
        });
        assert_eq!(ok, Ok(true));
        assert_eq!(a, b);
        // A body that fails, or that is not as long as announced, gives no frame.
        assert_eq!(
            build_dix_with(&mut b, B, A, 0xA000, 7, 10, |_| false),
            Ok(false)
        );
        assert_eq!(
            build_llc_with(&mut b, B, A, 0x10, 0x12, 10, |o| {
                o.push(1);
                true
            }),
            Ok(false)
        );
        assert_eq!(
            build_dix_with(&mut b, B, A, 0xA000, 7, 70_000, |_| true),
            Err(SduTooLong(70_000))
        );
    }
}
