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
