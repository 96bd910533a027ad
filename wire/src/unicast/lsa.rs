//! Link-state advertisement (24 bytes, big-endian), sent on Management flows.

use crate::error::{need, Error, Result};
use crate::field::{Reader, Writer};

/// Length of an LSA.
pub const LSA_LEN: usize = 24;

/// One adjacency `s_addr -> d_addr` with its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lsa {
    /// Destination (neighbour) address.
    pub d_addr: u64,
    /// Source (originator) address.
    pub s_addr: u64,
    /// Sequence number.
    pub seqno: u64,
}

impl Lsa {
    /// Parses exactly one LSA (no trailing bytes).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        need("link-state advertisement", buf, LSA_LEN)?;
        if buf.len() > LSA_LEN {
            return Err(Error::Trailing {
                what: "link-state advertisement",
                count: buf.len() - LSA_LEN,
            });
        }
        let mut r = Reader::new("link-state advertisement", buf);
        Ok(Self {
            d_addr: r.be64()?,
            s_addr: r.be64()?,
            seqno: r.be64()?,
        })
    }
    /// Appends the 24 bytes.
    pub fn write(&self, w: &mut Writer) {
        w.be64(self.d_addr).be64(self.s_addr).be64(self.seqno);
    }
}
