//! Just enough IPv4 / IPv6 / UDP to find the datagrams of a UDP layer in a capture.

use crate::error::{need, Error, Result};
use crate::field;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_UDP: u8 = 17;

/// A UDP datagram found in an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// UDP payload (bounded by the UDP length field).
    pub payload: &'a [u8],
}

/// Finds the UDP datagram in an IPv4/IPv6 packet (`ethertype` says which). `Ok(None)` for
/// other protocols and for IPv4 fragments after the first.
pub fn udp_in(ethertype: u16, pkt: &[u8]) -> Result<Option<UdpDatagram<'_>>> {
    udp_in_with(ethertype, pkt, false)
}

/// As [`udp_in`]; with `partial`, lengths that run past the end of `pkt` (a capture cut by
/// its snaplen) are clamped to what is there instead of being an error.
pub fn udp_in_with(ethertype: u16, pkt: &[u8], partial: bool) -> Result<Option<UdpDatagram<'_>>> {
    let (src, dst, proto, l4) = match ethertype {
        ETHERTYPE_IPV4 => {
            need("IPv4 header", pkt, 20)?;
            let ihl = usize::from(field::byte(pkt, 0) & 0x0f) * 4;
            let mut total = usize::from(field::be16(pkt, 2));
            if partial {
                total = total.min(pkt.len());
            }
            if ihl < 20 || total < ihl || total > pkt.len() {
                return Err(Error::Malformed {
                    what: "IPv4 header",
                    reason: "bad IHL or length",
                });
            }
            if field::be16(pkt, 6) & 0x1fff != 0 {
                return Ok(None);
            }
            let s: [u8; 4] = field::get(pkt, 12);
            let d: [u8; 4] = field::get(pkt, 16);
            let l4 = pkt.get(ihl..total).unwrap_or(&[]);
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                field::byte(pkt, 9),
                l4,
            )
        }
        ETHERTYPE_IPV6 => {
            need("IPv6 header", pkt, 40)?;
            let mut plen = usize::from(field::be16(pkt, 4));
            if partial {
                plen = plen.min(pkt.len() - 40);
            }
            let s: [u8; 16] = field::get(pkt, 8);
            let d: [u8; 16] = field::get(pkt, 24);
            let Some(l4) = pkt.get(40..40 + plen) else {
                return Err(Error::BadLength {
                    what: "IPv6 payload length",
                    claimed: plen,
                    available: pkt.len() - 40,
                });
            };
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                field::byte(pkt, 6),
                l4,
            )
        }
        _ => return Ok(None),
    };
    if proto != PROTO_UDP {
        return Ok(None);
    }
    need("UDP header", l4, 8)?;
    let mut ulen = usize::from(field::be16(l4, 4));
    if partial {
        ulen = ulen.min(l4.len());
    }
    let Some(payload) = l4.get(8..ulen) else {
        return Err(Error::BadLength {
            what: "UDP length",
            claimed: ulen,
            available: l4.len(),
        });
    };
    Ok(Some(UdpDatagram {
        src,
        dst,
        sport: field::be16(l4, 0),
        dport: field::be16(l4, 2),
        payload,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// An IPv4 packet: header of `ihl` words, total length `total`, flags/offset `frag`,
    /// protocol `proto`, then UDP 1000 -> 3435 of length 11 with "abc".
    fn v4(ihl: u8, total: u16, frag: u16, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(ihl.max(5)) * 4];
        p[0] = 0x40 | ihl;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p.extend_from_slice(&[0x03, 0xe8, 0x0d, 0x6b, 0, 11, 0, 0]);
        p.extend_from_slice(b"abc");
        p
    }

    #[test]
    fn an_ipv4_udp_datagram_is_found_with_its_addresses_ports_and_payload() {
        let p = v4(5, 31, 0, 17);
        let d = udp_in(ETHERTYPE_IPV4, &p).unwrap().unwrap();
        assert_eq!(d.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(d.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((d.sport, d.dport), (1000, 3435));
        assert_eq!(d.payload, b"abc");
        // Options: the UDP header starts after the IHL's 24 bytes.
        let p = v4(6, 35, 0, 17);
        assert_eq!(udp_in(ETHERTYPE_IPV4, &p).unwrap().unwrap().payload, b"abc");
    }

    #[test]
    fn bad_ipv4_lengths_are_errors_and_the_edges_are_not() {
        // IHL under 5 words (an error even where the rest would read, cut or not UDP).
        assert!(udp_in(ETHERTYPE_IPV4, &v4(4, 31, 0, 17)).is_err());
        assert!(udp_in_with(ETHERTYPE_IPV4, &v4(4, 31, 0, 17), true).is_err());
        assert!(udp_in(ETHERTYPE_IPV4, &v4(5, 19, 0, 6)).is_err());
        assert!(udp_in(ETHERTYPE_IPV4, &v4(5, 40, 0, 6)).is_err());
        // Total under the header, over the packet.
        let mut p = v4(5, 19, 0, 17);
        assert!(udp_in(ETHERTYPE_IPV4, &p).is_err());
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        assert!(udp_in(ETHERTYPE_IPV4, &p).is_err());
        // ... but clamped when the capture cut it.
        assert_eq!(
            udp_in_with(ETHERTYPE_IPV4, &p, true)
                .unwrap()
                .unwrap()
                .payload,
            b"abc"
        );
        // Total equal to the header: no UDP in it, not malformed; another protocol: none.
        assert_eq!(udp_in(ETHERTYPE_IPV4, &v4(5, 20, 0, 6)).unwrap(), None);
        assert_eq!(udp_in(ETHERTYPE_IPV4, &v4(5, 31, 0, 6)).unwrap(), None);
        // A later fragment carries no UDP header; the first (MF set, offset 0) does.
        assert_eq!(
            udp_in(ETHERTYPE_IPV4, &v4(5, 31, 0x0001, 17)).unwrap(),
            None
        );
        assert!(udp_in(ETHERTYPE_IPV4, &v4(5, 31, 0x2000, 17))
            .unwrap()
            .is_some());
        // A UDP length past its packet.
        let mut p = v4(5, 31, 0, 17);
        p[24..26].copy_from_slice(&12u16.to_be_bytes());
        assert!(udp_in(ETHERTYPE_IPV4, &p).is_err());
        assert_eq!(
            udp_in_with(ETHERTYPE_IPV4, &p, true)
                .unwrap()
                .unwrap()
                .payload,
            b"abc"
        );
    }

    fn v6(plen: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p[6] = 17;
        p[8..24].copy_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fe80::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[0x0d, 0x6b, 0x03, 0xe8, 0, 11, 0, 0]);
        p.extend_from_slice(b"xyz");
        p
    }

    #[test]
    fn an_ipv6_udp_datagram_is_found_and_its_length_checked() {
        let p = v6(11);
        let d = udp_in(ETHERTYPE_IPV6, &p).unwrap().unwrap();
        assert_eq!(d.src, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(d.dst, "fe80::2".parse::<IpAddr>().unwrap());
        assert_eq!((d.sport, d.dport, d.payload), (3435, 1000, &b"xyz"[..]));
        // A payload length past the packet: an error naming what is there.
        match udp_in(ETHERTYPE_IPV6, &v6(20)) {
            Err(Error::BadLength {
                claimed, available, ..
            }) => assert_eq!((claimed, available), (20, 11)),
            other => panic!("{other:?}"),
        }
        // Clamped to the 11 bytes there when the capture was cut.
        let p = v6(20);
        let d = udp_in_with(ETHERTYPE_IPV6, &p, true).unwrap().unwrap();
        assert_eq!(d.payload, b"xyz");
        assert!(udp_in(ETHERTYPE_IPV6, &v6(11)[..39]).is_err());
        assert_eq!(udp_in(0x0806, &v6(11)).unwrap(), None, "ARP: none");
    }
}
