//! What an AF_XDP port ended up with, as values (`o7sctl port list` shows their text): where
//! its XDP program runs, whether its sockets copy, where its UMEM lives.

use std::fmt;

/// Where the XDP program was attached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attached {
    /// Generic XDP (asked for).
    Skb,
    /// Native XDP in the driver (asked for).
    Driver,
    /// `auto`: the driver has native XDP.
    AutoDriver,
    /// `auto`: the driver refused native XDP, so generic.
    AutoSkb {
        /// The driver's refusal.
        driver_refused: String,
    },
}

impl fmt::Display for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skb => f.write_str("skb mode"),
            Self::Driver => f.write_str("driver mode"),
            Self::AutoDriver => f.write_str("driver mode (auto)"),
            Self::AutoSkb { driver_refused } => {
                write!(f, "skb mode (auto: driver mode refused: {driver_refused})")
            }
        }
    }
}

/// Whether the sockets copy frames between the device and the UMEM.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyMode {
    /// The driver reads and writes the UMEM.
    ZeroCopy,
    /// Generic XDP always copies.
    CopySkb,
    /// Driver mode, but the driver refused zero-copy.
    CopyRefused {
        /// The refusal.
        why: String,
    },
}

impl fmt::Display for CopyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCopy => f.write_str("zero-copy"),
            Self::CopySkb => f.write_str("copy (XDP skb mode has no zero-copy)"),
            Self::CopyRefused { why } => write!(f, "copy (zero-copy refused: {why})"),
        }
    }
}

/// Where a UMEM's memory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UmemPages {
    /// On 2 MiB hugepages, this many.
    Huge {
        /// Hugepages it takes.
        pages: usize,
    },
    /// On 4 KiB pages, and why not on hugepages (how many it needed and were free).
    Normal {
        /// The reason.
        why: String,
    },
}

impl fmt::Display for UmemPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Huge { pages } => write!(f, "2 MiB hugepages ({pages})"),
            Self::Normal { why } => write!(f, "4 KiB pages ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_reads_as_o7sctl_has_always_shown_it() {
        assert_eq!(Attached::Skb.to_string(), "skb mode");
        assert_eq!(Attached::Driver.to_string(), "driver mode");
        assert_eq!(Attached::AutoDriver.to_string(), "driver mode (auto)");
        let a = Attached::AutoSkb {
            driver_refused: "EOPNOTSUPP".into(),
        };
        assert_eq!(
            a.to_string(),
            "skb mode (auto: driver mode refused: EOPNOTSUPP)"
        );
        assert_eq!(CopyMode::ZeroCopy.to_string(), "zero-copy");
        assert_eq!(
            CopyMode::CopySkb.to_string(),
            "copy (XDP skb mode has no zero-copy)"
        );
        let c = CopyMode::CopyRefused {
            why: "EINVAL".into(),
        };
        assert_eq!(c.to_string(), "copy (zero-copy refused: EINVAL)");
        assert_eq!(
            UmemPages::Huge { pages: 24 }.to_string(),
            "2 MiB hugepages (24)"
        );
        let n = UmemPages::Normal { why: "no".into() };
        assert_eq!(n.to_string(), "4 KiB pages (no)");
    }
}
