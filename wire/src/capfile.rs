//! Capture files (classic pcap and pcapng) parsed from memory, for the dissector and the
//! tests. Unlike stricter readers, records captured shorter than the packet was (a small
//! snaplen) are kept and marked, since reference captures contain them.

use crate::error::{Error, Result};
use crate::field::Reader;

/// Link type of Ethernet captures.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Index in the file (0-based).
    pub index: usize,
    /// Timestamp, seconds.
    pub ts_sec: u64,
    /// Timestamp, sub-second part in nanoseconds.
    pub ts_nsec: u32,
    /// Link type of the interface.
    pub linktype: u32,
    /// Length on the wire.
    pub orig_len: usize,
    /// The captured bytes (shorter than `orig_len` when truncated by the snaplen).
    pub data: &'a [u8],
}

impl Record<'_> {
    /// Whether the capture holds fewer bytes than were on the wire.
    pub fn truncated(&self) -> bool {
        self.data.len() < self.orig_len
    }
}

/// Parses a classic pcap (either byte order, µs or ns) or a pcapng file.
pub fn parse(file: &[u8]) -> Result<Vec<Record<'_>>> {
    parse_partial(file).map(|(records, _)| records)
}

/// As [`parse`], also saying how many bytes at the end belong to a record that is cut short
/// (a capture still being written): the complete records are returned, the rest is left.
pub fn parse_partial(file: &[u8]) -> Result<(Vec<Record<'_>>, usize)> {
    match file.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => parse_pcapng(file).map(|r| (r, 0)),
        Some(_) => parse_pcap(file),
        None => Err(Error::Truncated {
            what: "capture file",
            need: 4,
            have: file.len(),
        }),
    }
}

fn u32_of(b: [u8; 4], le: bool) -> u32 {
    if le {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    }
}

fn parse_pcap(file: &[u8]) -> Result<(Vec<Record<'_>>, usize)> {
    let mut r = Reader::new("pcap header", file);
    let magic = r.array::<4>()?;
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => {
            return Err(Error::Malformed {
                what: "capture file",
                reason: "not pcap or pcapng",
            })
        }
    };
    r.take(12)?; // version, thiszone, sigfigs
    let _snaplen = r.array::<4>()?;
    let linktype = u32_of(r.array::<4>()?, le) & 0x0fff_ffff;
    let mut out = Vec::new();
    let mut r = Reader::new("pcap record", r.rest());
    while !r.rest().is_empty() {
        // A record cut short at the end (the file is still being written): stop there.
        let left = r.rest().len();
        let Some((head, after)) = r.rest().split_first_chunk::<16>() else {
            return Ok((out, left));
        };
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(head.get(i * 4..i * 4 + 4).unwrap_or(&[0; 4]));
            u32_of(w, le)
        };
        let incl = word(2) as usize;
        if after.len() < incl {
            return Ok((out, left));
        }
        let ts_sec = u64::from(u32_of(r.array()?, le));
        let frac = u32_of(r.array()?, le);
        let _incl = r.array::<4>()?;
        let orig = u32_of(r.array()?, le) as usize;
        let data = r.take(incl)?;
        out.push(Record {
            index: out.len(),
            ts_sec,
            ts_nsec: if nanos {
                frac
            } else {
                frac.saturating_mul(1000)
            },
            linktype,
            orig_len: orig.max(incl),
            data,
        });
    }
    Ok((out, 0))
}

fn parse_pcapng(file: &[u8]) -> Result<Vec<Record<'_>>> {
    let mut out = Vec::new();
    let mut le = true;
    let mut links: Vec<(u32, u64)> = Vec::new(); // (linktype, ticks per second)
    let mut r = Reader::new("pcapng block", file);
    while !r.rest().is_empty() {
        let ty_raw = r.array::<4>()?;
        if ty_raw == [0x0a, 0x0d, 0x0d, 0x0a] {
            let peek = r.rest().get(4..8).unwrap_or(&[]);
            le = peek == [0x4d, 0x3c, 0x2b, 0x1a];
            links.clear();
        }
        let ty = u32_of(ty_raw, le);
        let len = u32_of(r.array()?, le) as usize;
        if len < 12 || len % 4 != 0 {
            return Err(Error::Malformed {
                what: "pcapng block",
                reason: "bad block length",
            });
        }
        let body = r.take(len - 12)?;
        r.take(4)?; // trailing length
        let mut b = Reader::new("pcapng block body", body);
        match ty {
            1 => {
                // Interface description: linktype(2) reserved(2) snaplen(4) options.
                let lt = b.array::<2>()?;
                let lt = if le {
                    u16::from_le_bytes(lt)
                } else {
                    u16::from_be_bytes(lt)
                };
                b.take(6)?;
                let mut tsres = 1_000_000u64;
                let mut o = Reader::new("pcapng option", b.rest());
                while o.rest().len() >= 4 {
                    let code = o.array::<2>()?;
                    let code = if le {
                        u16::from_le_bytes(code)
                    } else {
                        u16::from_be_bytes(code)
                    };
                    let l = o.array::<2>()?;
                    let l = usize::from(if le {
                        u16::from_le_bytes(l)
                    } else {
                        u16::from_be_bytes(l)
                    });
                    let v = o.take(l)?;
                    o.take((4 - l % 4) % 4)?;
                    if code == 0 {
                        break;
                    }
                    if code == 9 {
                        if let Some(&x) = v.first() {
                            let e = u32::from(x & 0x7f).min(19);
                            tsres = if x & 0x80 != 0 {
                                1u64 << e.min(63)
                            } else {
                                10u64.pow(e)
                            };
                        }
                    }
                }
                links.push((u32::from(lt), tsres.max(1)));
            }
            6 => {
                let iface = u32_of(b.array()?, le) as usize;
                let hi = u64::from(u32_of(b.array()?, le));
                let lo = u64::from(u32_of(b.array()?, le));
                let incl = u32_of(b.array()?, le) as usize;
                let orig = u32_of(b.array()?, le) as usize;
                let data = b.take(incl)?;
                let (linktype, res) = links
                    .get(iface)
                    .copied()
                    .unwrap_or((LINKTYPE_ETHERNET, 1_000_000));
                let ticks = (hi << 32) | lo;
                out.push(Record {
                    index: out.len(),
                    ts_sec: ticks / res,
                    // In u128: a resolution finer than 1 ns would overflow u64.
                    ts_nsec: (u128::from(ticks % res) * 1_000_000_000 / u128::from(res)) as u32,
                    linktype,
                    orig_len: orig.max(incl),
                    data,
                });
            }
            3 => {
                let orig = u32_of(b.array()?, le) as usize;
                let data = b.rest();
                let data = data.get(..orig.min(data.len())).unwrap_or(data);
                let linktype = links.first().map(|l| l.0).unwrap_or(LINKTYPE_ETHERNET);
                out.push(Record {
                    index: out.len(),
                    ts_sec: 0,
                    ts_nsec: 0,
                    linktype,
                    orig_len: orig.max(data.len()),
                    data,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Writes a classic little-endian, microsecond pcap file of Ethernet frames.
pub fn write_pcap(frames: &[&[u8]]) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
    w.extend_from_slice(&[0; 8]);
    w.extend_from_slice(&65535u32.to_le_bytes());
    w.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        w.extend_from_slice(&(i as u32).to_le_bytes());
        w.extend_from_slice(&0u32.to_le_bytes());
        w.extend_from_slice(&(f.len() as u32).to_le_bytes());
        w.extend_from_slice(&(f.len() as u32).to_le_bytes());
        w.extend_from_slice(f);
    }
    w
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn pcap_round_trip_and_garbage() {
        let a = [1u8, 2, 3];
        let b = [4u8; 70];
        let file = write_pcap(&[&a, &b]);
        let recs = parse(&file).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].data, &b);
        assert_eq!(recs[1].ts_sec, 1);
        assert!(!recs[0].truncated());
        // The last record cut short: the complete one, and how much is left over.
        let (recs, cut) = parse_partial(&file[..file.len() - 1]).unwrap();
        assert_eq!((recs.len(), cut), (1, 16 + 70 - 1));
        assert_eq!(parse_partial(&file).unwrap().1, 0);
        assert!(parse(b"hello world, not a pcap").is_err());
        assert!(parse(&[]).is_err());
    }

    /// A pcapng file in either byte order, block by block.
    struct Ng {
        le: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn new(le: bool) -> Self {
            Self {
                le,
                out: Vec::new(),
            }
        }
        fn u16(&self, v: u16) -> [u8; 2] {
            if self.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        }
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        }
        fn block(&mut self, ty: u32, body: &[u8]) -> &mut Self {
            let len = (12 + body.len()) as u32;
            let (t, l) = (self.u32(ty), self.u32(len));
            self.out.extend_from_slice(&t);
            self.out.extend_from_slice(&l);
            self.out.extend_from_slice(body);
            self.out.extend_from_slice(&l);
            self
        }
        fn shb(&mut self) -> &mut Self {
            let mut b = self.u32(0x1a2b_3c4d).to_vec();
            b.extend(self.u16(1));
            b.extend(self.u16(0));
            b.extend([0xff; 8]);
            self.block(0x0a0d_0d0a, &b)
        }
        /// An interface of `linktype`, with these options (code, value).
        fn idb(&mut self, linktype: u16, opts: &[(u16, &[u8])]) -> &mut Self {
            let mut b = self.u16(linktype).to_vec();
            b.extend([0, 0]);
            b.extend(self.u32(65535));
            for (code, v) in opts {
                b.extend(self.u16(*code));
                b.extend(self.u16(v.len() as u16));
                b.extend_from_slice(v);
                b.resize(b.len().next_multiple_of(4), 0);
            }
            if !opts.is_empty() {
                b.extend([0; 4]);
            }
            self.block(1, &b)
        }
        fn epb(&mut self, iface: u32, ticks: u64, data: &[u8], orig: u32) -> &mut Self {
            let mut b = self.u32(iface).to_vec();
            b.extend(self.u32((ticks >> 32) as u32));
            b.extend(self.u32(ticks as u32));
            b.extend(self.u32(data.len() as u32));
            b.extend(self.u32(orig));
            b.extend_from_slice(data);
            b.resize(b.len().next_multiple_of(4), 0);
            self.block(6, &b)
        }
        fn spb(&mut self, data: &[u8]) -> &mut Self {
            let mut b = self.u32(data.len() as u32).to_vec();
            b.extend_from_slice(data);
            b.resize(b.len().next_multiple_of(4), 0);
            self.block(3, &b)
        }
    }

    fn sample_ng(le: bool) -> Vec<u8> {
        let mut n = Ng::new(le);
        n.shb()
            // Nanoseconds (10^-9), after a comment option of 3 bytes (padded to 4).
            .idb(
                1,
                &[(1, b"abc"), (1, b"a comment, 23 bytes long"), (9, &[9])],
            )
            // 2^-10 s ticks, link type 101 (raw IP).
            .idb(101, &[(9, &[0x80 | 10])])
            .epb(0, 5_123_456_789, b"first", 5)
            .epb(1, 3 * 1024 + 512, b"second", 6)
            .epb(0, 1, b"cut", 10)
            // Interface statistics, and a block with nothing in it: skipped.
            .block(5, &[0; 8])
            .block(0x0bad, &[])
            .spb(b"simple");
        n.out
    }

    #[test]
    fn pcapng_of_either_byte_order_gives_the_same_records() {
        for le in [true, false] {
            let file = sample_ng(le);
            let r = parse(&file).unwrap();
            assert_eq!(r.len(), 4, "le {le}");
            assert_eq!(
                (
                    r[0].index,
                    r[0].ts_sec,
                    r[0].ts_nsec,
                    r[0].linktype,
                    r[0].data
                ),
                (0, 5, 123_456_789, 1, &b"first"[..])
            );
            assert_eq!(
                (
                    r[1].index,
                    r[1].ts_sec,
                    r[1].ts_nsec,
                    r[1].linktype,
                    r[1].data
                ),
                (1, 3, 500_000_000, 101, &b"second"[..])
            );
            assert_eq!((r[2].data, r[2].orig_len), (&b"cut"[..], 10));
            assert!(r[2].truncated() && !r[0].truncated());
            // A simple packet: the first interface's link type, its own length.
            assert_eq!(
                (r[3].index, r[3].linktype, r[3].data),
                (3, 1, &b"simple"[..])
            );
            assert_eq!(r[3].orig_len, 6);
        }
    }

    #[test]
    fn pcapng_interfaces_default_to_microseconds_and_a_section_starts_afresh() {
        let mut n = Ng::new(true);
        n.shb()
            .idb(101, &[])
            .epb(0, 2_000_003, b"x", 1)
            // A new section: its interface 0 is another.
            .shb()
            .idb(1, &[(9, &[3])])
            .epb(0, 7_250, b"y", 1)
            // An interface nobody described: Ethernet, microseconds.
            .epb(4, 1_000_001, b"z", 1);
        let r = parse(&n.out).unwrap();
        assert_eq!((r[0].linktype, r[0].ts_sec, r[0].ts_nsec), (101, 2, 3_000));
        assert_eq!(
            (r[1].linktype, r[1].ts_sec, r[1].ts_nsec),
            (1, 7, 250_000_000)
        );
        assert_eq!((r[2].linktype, r[2].ts_sec, r[2].ts_nsec), (1, 1, 1_000));
    }

    #[test]
    fn pcapng_blocks_of_bad_length_are_refused() {
        for bad in [8u32, 13, 14] {
            let mut n = Ng::new(true);
            n.shb();
            n.out.extend(1u32.to_le_bytes());
            n.out.extend(bad.to_le_bytes());
            n.out.extend([0; 16]);
            assert!(parse(&n.out).is_err(), "length {bad}");
        }
        // A body cut short.
        let mut file = sample_ng(true);
        file.truncate(file.len() - 2);
        assert!(parse(&file).is_err());
    }

    #[test]
    fn classic_pcap_in_each_byte_order_and_resolution() {
        // (magic, little-endian, nanoseconds)
        for (magic, le, ns) in [
            ([0xd4, 0xc3, 0xb2, 0xa1], true, false),
            ([0xa1, 0xb2, 0xc3, 0xd4], false, false),
            ([0x4d, 0x3c, 0xb2, 0xa1], true, true),
            ([0xa1, 0xb2, 0x3c, 0x4d], false, true),
        ] {
            let w = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
            let mut f = magic.to_vec();
            f.extend([0; 12]);
            f.extend(w(65535));
            // The link type's upper bits are flags (FCS length): masked off.
            f.extend(w(0x1000_0001));
            f.extend(w(7));
            f.extend(w(250));
            f.extend(w(3));
            f.extend(w(9));
            f.extend(b"abc");
            let r = parse(&f).unwrap();
            assert_eq!(r.len(), 1);
            assert_eq!((r[0].ts_sec, r[0].linktype, r[0].data), (7, 1, &b"abc"[..]));
            assert_eq!(r[0].ts_nsec, if ns { 250 } else { 250_000 }, "{magic:x?}");
            assert_eq!(r[0].orig_len, 9);
            assert!(r[0].truncated());
        }
    }
}
