//! Several peers in TUN mode: `--peer NAME=PREFIX` says that packets for PREFIX go on the
//! flow to NAME. A pure table (longest prefix wins, IPv4 and IPv6), tested over plain
//! memory; the pumps in src/peers.rs count what finds no route.

use std::net::IpAddr;
use std::str::FromStr;

/// An IP prefix: an address whose bits beyond `len` are zero, and the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Whether `a` lies in the prefix (never across address families).
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(p)
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(p)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// `10.94.0.0/24`, `fd00::/8`, or an address alone (a host route: /32 or /128).
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{a}' is not an IPv4 or IPv6 address"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("'{l}' is not a prefix length of 0 to {max}"))?,
        };
        let p = Self { addr, len };
        let net = Self {
            addr: match addr {
                IpAddr::V4(v) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                    IpAddr::V4((u32::from(v) & mask).into())
                }
                IpAddr::V6(v) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                    IpAddr::V6((u128::from(v) & mask).into())
                }
            },
            len,
        };
        if net != p {
            return Err(format!(
                "{s} has bits set beyond its prefix length (the prefix is {net})"
            ));
        }
        Ok(p)
    }
}

/// `NAME=PREFIX`, as `--peer` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerArg {
    /// The name the peer's o7s-vpn is bound to.
    pub name: String,
    /// What goes to it.
    pub prefix: Prefix,
}

impl FromStr for PeerArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, prefix) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' is not NAME=PREFIX (e.g. vpn-b=10.94.0.2/32)"))?;
        if name.is_empty() {
            return Err(format!("'{s}': the name is empty"));
        }
        Ok(Self {
            name: name.to_string(),
            prefix: prefix.parse()?,
        })
    }
}

/// Prefix -> peer (an index into the peers as given), longest prefix first.
#[derive(Debug, Default)]
pub struct Routes {
    by_len: Vec<(Prefix, usize)>,
}

impl Routes {
    /// The table of `peers`: a prefix of `peers[i]` leads to i, or to the first entry of
    /// the same name (one flow per name, however many prefixes); a prefix given twice is
    /// an error.
    pub fn new(peers: &[PeerArg]) -> Result<Self, String> {
        let mut by_len: Vec<(Prefix, usize)> = Vec::with_capacity(peers.len());
        for (k, p) in peers.iter().enumerate() {
            let i = first_of_name(peers, k);
            if let Some((_, j)) = by_len.iter().find(|(q, _)| *q == p.prefix) {
                let other = peers.get(*j).map_or("", |o| o.name.as_str());
                return Err(format!(
                    "{} is given twice (to {other} and to {})",
                    p.prefix, p.name
                ));
            }
            by_len.push((p.prefix, i));
        }
        // Longest first; equal lengths keep the order given (a stable sort).
        by_len.sort_by_key(|(p, _)| std::cmp::Reverse(p.len));
        Ok(Self { by_len })
    }

    /// The peer that `dst` goes to.
    pub fn lookup(&self, dst: IpAddr) -> Option<usize> {
        self.by_len
            .iter()
            .find(|(p, _)| p.contains(dst))
            .map(|(_, i)| *i)
    }
}

/// The index of the first entry of `peers` named as `peers[k]` (k itself if none before).
pub fn first_of_name(peers: &[PeerArg], k: usize) -> usize {
    let name = peers.get(k).map(|p| p.name.as_str());
    peers
        .iter()
        .position(|p| Some(p.name.as_str()) == name)
        .unwrap_or(k)
}

/// The destination address of IP packet `p` (checked by `ip::check` before).
pub fn destination(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 => {
            let b: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peers(list: &[&str]) -> Vec<PeerArg> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn prefixes_parse_with_or_without_a_length_and_refuse_host_bits() {
        let p: Prefix = "10.94.0.0/24".parse().unwrap();
        assert_eq!((p.to_string(), p.len), ("10.94.0.0/24".to_string(), 24));
        assert_eq!("10.94.0.7".parse::<Prefix>().unwrap().len, 32);
        assert_eq!("fd00::1".parse::<Prefix>().unwrap().len, 128);
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().len, 0);
        let e = "10.94.0.1/24".parse::<Prefix>().unwrap_err();
        assert!(e.contains("10.94.0.0/24"), "{e}");
        assert!("10.94.0.0/33".parse::<Prefix>().is_err());
        assert!("fd00::/129".parse::<Prefix>().is_err());
        assert!("fd00::/64".parse::<Prefix>().is_ok());
        assert!("vpn/24".parse::<Prefix>().is_err());
    }

    #[test]
    fn peer_arguments_are_name_equals_prefix() {
        let p: PeerArg = "vpn-b=10.94.0.2/32".parse().unwrap();
        assert_eq!(p.name, "vpn-b");
        assert_eq!(p.prefix.to_string(), "10.94.0.2/32");
        assert!("vpn-b".parse::<PeerArg>().is_err());
        assert!("=10.0.0.0/8".parse::<PeerArg>().is_err());
        assert!("b=10.0.0.1/8".parse::<PeerArg>().is_err());
    }

    #[test]
    fn the_longest_prefix_wins_whatever_the_order_given() {
        let r = Routes::new(&peers(&[
            "default=0.0.0.0/0",
            "site=10.94.0.0/16",
            "host=10.94.3.4",
            "v6=fd00::/8",
        ]))
        .unwrap();
        assert_eq!(r.lookup(ip("10.94.3.4")), Some(2));
        assert_eq!(r.lookup(ip("10.94.3.5")), Some(1));
        assert_eq!(r.lookup(ip("10.95.0.1")), Some(0));
        assert_eq!(r.lookup(ip("fd12::1")), Some(3));
        // No IPv6 default: an IPv4 default route does not carry IPv6.
        assert_eq!(r.lookup(ip("2001:db8::1")), None);
        let r = Routes::new(&peers(&["b=10.94.0.2", "c=10.94.0.3"])).unwrap();
        assert_eq!(r.lookup(ip("10.94.0.3")), Some(1));
        assert_eq!(r.lookup(ip("10.94.0.4")), None);
    }

    #[test]
    fn prefixes_of_one_name_lead_to_its_first_entry() {
        let p = peers(&["b=10.94.0.2", "c=10.94.0.3", "b=10.20.0.0/16"]);
        let r = Routes::new(&p).unwrap();
        assert_eq!(r.lookup(ip("10.20.1.1")), Some(0));
        assert_eq!(r.lookup(ip("10.94.0.2")), Some(0));
        assert_eq!(r.lookup(ip("10.94.0.3")), Some(1));
        assert_eq!(
            (0..3).map(|k| first_of_name(&p, k)).collect::<Vec<_>>(),
            [0, 1, 0]
        );
    }

    #[test]
    fn a_prefix_given_twice_is_refused_with_both_names() {
        let e = Routes::new(&peers(&["b=10.94.0.0/24", "c=10.94.0.0/24"])).unwrap_err();
        assert!(e.contains("to b and to c"), "{e}");
    }

    #[test]
    fn the_destination_is_read_from_either_header() {
        let mut v4 = vec![0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 94, 0, 1]);
        v4[16..20].copy_from_slice(&[10, 94, 0, 3]);
        assert_eq!(destination(&v4), Some(ip("10.94.0.3")));
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        v6[8] = 0xfd;
        v6[24] = 0xfd;
        v6[39] = 2;
        assert_eq!(destination(&v6), Some(ip("fd00::2")));
        assert_eq!(destination(&v4[..19]), None);
        assert_eq!(destination(&[0x10; 40]), None);
    }
}
