//! Panic-free fixed-width field access.
//!
//! Views check their length once in `new_checked`; these helpers are still total (an out of
//! range read gives zeros, an out of range write does nothing), so no accessor can panic even
//! on a view built with `new_unchecked` over a short buffer.

/// A byte range inside a header.
pub type Field = core::ops::Range<usize>;

/// Reads `N` bytes at `at` (zeros if out of range).
#[inline]
pub fn get<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        out.copy_from_slice(s);
    }
    out
}

/// Writes `v` at `at` (nothing if out of range).
#[inline]
pub fn set<const N: usize>(b: &mut [u8], at: usize, v: [u8; N]) {
    if let Some(s) = b.get_mut(at..at + N) {
        s.copy_from_slice(&v);
    }
}

/// Big-endian u16 at `at`.
#[inline]
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(get(b, at))
}
/// Big-endian u32 at `at`.
#[inline]
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(get(b, at))
}
/// Big-endian u64 at `at`.
#[inline]
pub fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(get(b, at))
}
/// Little-endian u32 at `at`.
#[inline]
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(get(b, at))
}
/// Little-endian u64 at `at`.
#[inline]
pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(get(b, at))
}
/// The byte at `at` (0 if out of range).
#[inline]
pub fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}
/// Sets the byte at `at`.
#[inline]
pub fn set_byte(b: &mut [u8], at: usize, v: u8) {
    if let Some(x) = b.get_mut(at) {
        *x = v;
    }
}

/// A cursor that appends to a `Vec<u8>`: used by the owned reprs' `to_bytes`.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Appends bytes.
    pub fn put(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    /// Appends a big-endian u16.
    pub fn be16(&mut self, v: u16) -> &mut Self {
        self.put(&v.to_be_bytes())
    }
    /// Appends a big-endian u32.
    pub fn be32(&mut self, v: u32) -> &mut Self {
        self.put(&v.to_be_bytes())
    }
    /// Appends a big-endian u64.
    pub fn be64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_be_bytes())
    }
}

/// A cursor over input bytes that never panics: every read checks the remaining length.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, naming `what` in errors.
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Self { buf, pos: 0, what }
    }
    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }
    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> crate::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(crate::Error::Truncated {
            what: self.what,
            need: usize::MAX,
            have: self.buf.len(),
        })?;
        match self.buf.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(crate::Error::Truncated {
                what: self.what,
                need: end,
                have: self.buf.len(),
            }),
        }
    }
    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> crate::Result<[u8; N]> {
        let s = self.take(N)?;
        Ok(get(s, 0))
    }
    /// Takes one byte.
    pub fn u8(&mut self) -> crate::Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    /// Takes a big-endian u16.
    pub fn be16(&mut self) -> crate::Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// Takes a big-endian u32.
    pub fn be32(&mut self) -> crate::Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Takes a big-endian u64.
    pub fn be64(&mut self) -> crate::Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// Takes everything left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let r = self.rest();
        self.pos = self.buf.len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reader_takes_its_bytes_in_its_order() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(be64(&b, 1), 0x0203_0405_0607_0809);
        assert_eq!(le32(&b, 1), 0x0504_0302);
        assert_eq!(le64(&b, 0), 0x0807_0605_0403_0201);
        let mut r = Reader::new("test", &b);
        assert_eq!(r.pos(), 0);
        assert_eq!(r.take(3).unwrap_or_default(), &[1, 2, 3]);
        assert_eq!(r.pos(), 3);
        assert_eq!(r.rest(), &[4, 5, 6, 7, 8, 9]);
    }
}
