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
                    ts_nsec: ((ticks % res) * 1_000_000_000 / res) as u32,
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
}
