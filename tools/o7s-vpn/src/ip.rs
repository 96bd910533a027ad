//! What may cross between a TUN device and a flow: one whole IP packet per SDU, nothing
//! added (the reference's ovpn: IFF_NO_PI, no header). A pure check, tested over plain
//! memory; the pumps count what it refuses.

/// An IP packet's version, as its first nibble says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Why an SDU is not an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotIp {
    /// Empty.
    Empty,
    /// The first nibble is neither 4 nor 6.
    Version(u8),
    /// Shorter than its header (20 bytes for IPv4 or its IHL, 40 for IPv6).
    Short {
        /// Bytes there are.
        have: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// The length field does not match the SDU's length.
    Length {
        /// What the header says the packet is.
        claimed: usize,
        /// What the SDU is.
        have: usize,
    },
}

impl std::fmt::Display for NotIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "empty"),
            Self::Version(v) => write!(f, "version {v} is neither 4 nor 6"),
            Self::Short { have, need } => write!(f, "{have} bytes, the header needs {need}"),
            Self::Length { claimed, have } => {
                write!(f, "the header says {claimed} bytes, the SDU has {have}")
            }
        }
    }
}

/// Checks that `p` is exactly one IP packet: the version nibble, the header's length and the
/// total length field against the SDU's length.
pub fn check(p: &[u8]) -> Result<Version, NotIp> {
    let first = *p.first().ok_or(NotIp::Empty)?;
    let be16 = |at: usize| -> usize {
        match (p.get(at), p.get(at + 1)) {
            (Some(a), Some(b)) => usize::from(u16::from_be_bytes([*a, *b])),
            _ => 0,
        }
    };
    match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            let need = ihl.max(20);
            if p.len() < need {
                return Err(NotIp::Short {
                    have: p.len(),
                    need,
                });
            }
            let claimed = be16(2);
            if claimed != p.len() {
                return Err(NotIp::Length {
                    claimed,
                    have: p.len(),
                });
            }
            Ok(Version::V4)
        }
        6 => {
            if p.len() < 40 {
                return Err(NotIp::Short {
                    have: p.len(),
                    need: 40,
                });
            }
            let claimed = 40 + be16(4);
            if claimed != p.len() {
                return Err(NotIp::Length {
                    claimed,
                    have: p.len(),
                });
            }
            Ok(Version::V6)
        }
        v => Err(NotIp::Version(v)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// An ICMP echo request 10.9.0.2 -> 10.9.0.1 as a TUN device hands it over (28 bytes).
    fn v4_ping() -> Vec<u8> {
        vec![
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 10, 9, 0, 2,
            10, 9, 0, 1, 0x08, 0x00, 0xf7, 0xff, 0x00, 0x00, 0x00, 0x00,
        ]
    }

    #[test]
    fn whole_ipv4_and_ipv6_packets_pass() {
        assert_eq!(check(&v4_ping()), Ok(Version::V4));
        // IPv6: 40-byte header with payload length 8.
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        v6[5] = 8;
        assert_eq!(check(&v6), Ok(Version::V6));
        // IPv4 with options (IHL 6): 24-byte header.
        let mut opt = v4_ping();
        opt[0] = 0x46;
        assert_eq!(check(&opt), Ok(Version::V4));
    }

    #[test]
    fn what_is_not_one_ip_packet_is_told_apart() {
        assert_eq!(check(&[]), Err(NotIp::Empty));
        // An Ethernet frame (a TAP peer) starts with a MAC address.
        assert_eq!(check(&[0x1a, 0x0d, 0xf7, 0x68]), Err(NotIp::Version(1)));
        assert_eq!(
            check(&v4_ping()[..19]),
            Err(NotIp::Short { have: 19, need: 20 })
        );
        // IHL 15: a 60-byte header in 28 bytes.
        let mut big_ihl = v4_ping();
        big_ihl[0] = 0x4f;
        assert_eq!(check(&big_ihl), Err(NotIp::Short { have: 28, need: 60 }));
        // Two packets in one SDU, or one cut short: the total length says so.
        let mut two = v4_ping();
        two.extend(v4_ping());
        assert_eq!(
            check(&two),
            Err(NotIp::Length {
                claimed: 28,
                have: 56
            })
        );
        let mut v6 = vec![0u8; 47];
        v6[0] = 0x60;
        v6[5] = 8;
        assert_eq!(
            check(&v6),
            Err(NotIp::Length {
                claimed: 48,
                have: 47
            })
        );
        assert_eq!(check(&[0x60; 39]), Err(NotIp::Short { have: 39, need: 40 }));
        assert_eq!(
            NotIp::Length {
                claimed: 28,
                have: 56
            }
            .to_string(),
            "the header says 28 bytes, the SDU has 56"
        );
    }
}
