//! The one error type of every codec in this crate.

use thiserror::Error;

/// Why a buffer could not be parsed (or emitted into).
///
/// Every parser in this crate returns one of these instead of panicking, whatever the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The buffer ends before the structure does.
    #[error("{what}: truncated, need {need} bytes, have {have}")]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A length field disagrees with the bytes present.
    #[error("{what}: length field says {claimed} bytes, but {available} are present")]
    BadLength {
        /// Which structure was being read.
        what: &'static str,
        /// What the length field claims.
        claimed: usize,
        /// What is really there.
        available: usize,
    },
    /// Bytes left over where the format allows none.
    #[error("{what}: {count} unexpected trailing bytes")]
    Trailing {
        /// Which structure was being read.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A field holds a value the format forbids.
    #[error("{what}: {reason}")]
    Malformed {
        /// Which structure was being read.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A value does not fit the field it must be written to.
    #[error("{what}: value {value} does not fit in the field")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// The value.
        value: usize,
    },
}

/// Result of every codec operation.
pub type Result<T> = core::result::Result<T, Error>;

/// Checks that `buf` holds at least `need` bytes.
pub(crate) fn need(what: &'static str, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need {
        Err(Error::Truncated {
            what,
            need,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}
