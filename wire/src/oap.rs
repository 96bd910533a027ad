//! OAP, the flow allocation authentication / key exchange header carried by every FLOW_REQ
//! and FLOW_REPLY, in its 0.23 form ([`OapHdr`]) and, for old captures, its 0.22 form
//! ([`OapHdrV022`]).
//!
//! 0.23 layout (fixed part 36 bytes, big-endian):
//! `id(16) | timestamp(8) | cipher_nid(2) | kdf_nid(2) | md_nid(2) | crt_len(2) |
//!  F R kex_len(2) | data_len(2) | crt | kex | data | req_hash (response) | signature`.

use crate::error::{need, Error, Result};
use crate::field::{Reader, Writer};
use crate::nid;

/// Length of the fixed part.
pub const FIXED_LEN: usize = 36;
/// Largest value of the 14-bit key-exchange length.
pub const MAX_KEX_LEN: usize = 0x3fff;
/// Key-exchange flag: raw / hybrid key format (bit 15 of the kex_len field).
pub const KEX_FLAG_RAW: u16 = 0x8000;
/// Key-exchange flag: the client encapsulates (KEM, bit 14).
pub const KEX_FLAG_CLIENT_ENCAP: u16 = 0x4000;

/// Byte offsets of the fixed part.
pub mod offsets {
    /// Random allocation id.
    pub const ID: usize = 0;
    /// CLOCK_REALTIME in ns.
    pub const TIMESTAMP: usize = 16;
    /// Cipher NID.
    pub const CIPHER_NID: usize = 24;
    /// KDF NID.
    pub const KDF_NID: usize = 26;
    /// Digest NID.
    pub const MD_NID: usize = 28;
    /// Certificate length.
    pub const CRT_LEN: usize = 30;
    /// Key-exchange flags and length.
    pub const KEX_LEN: usize = 32;
    /// Piggy-backed data length.
    pub const DATA_LEN: usize = 34;
}

/// Whether an OAP header is a request (FLOW_REQ) or a response (FLOW_REPLY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Carried by a FLOW_REQ.
    Request,
    /// Carried by a FLOW_REPLY.
    Response,
}

/// An owned 0.23 OAP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OapHdr {
    /// Random id of the allocation (echoed in the response).
    pub id: [u8; 16],
    /// Sender's CLOCK_REALTIME in ns.
    pub timestamp: u64,
    /// Cipher NID (0: no encryption).
    pub cipher_nid: u16,
    /// KDF NID.
    pub kdf_nid: u16,
    /// Signature digest NID.
    pub md_nid: u16,
    /// The F and R bits of the kex length field.
    pub kex_flags: u16,
    /// DER X.509 certificate (empty: unauthenticated).
    pub crt: Vec<u8>,
    /// Key-exchange data (DER SubjectPublicKeyInfo for EC keys, raw for F=1).
    pub kex: Vec<u8>,
    /// Piggy-backed data.
    pub data: Vec<u8>,
    /// Everything after the data: `req_hash` (responses) then the signature (when signed).
    pub tail: Vec<u8>,
}

impl OapHdr {
    /// An unauthenticated header without key exchange (all NIDs 0): a request when `tail` is
    /// empty, a response when it holds the request's hash.
    pub fn unsigned(id: [u8; 16], timestamp: u64, tail: Vec<u8>) -> Self {
        Self {
            id,
            timestamp,
            cipher_nid: 0,
            kdf_nid: 0,
            md_nid: 0,
            kex_flags: 0,
            crt: vec![],
            kex: vec![],
            data: vec![],
            tail,
        }
    }

    /// Parses a header without deciding what the tail holds.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        need("OAP header", buf, FIXED_LEN)?;
        let mut r = Reader::new("OAP header", buf);
        let id = r.array::<16>()?;
        let timestamp = r.be64()?;
        let cipher_nid = r.be16()?;
        let kdf_nid = r.be16()?;
        let md_nid = r.be16()?;
        let crt_len = usize::from(r.be16()?);
        let kex_field = r.be16()?;
        let data_len = usize::from(r.be16()?);
        let kex_len = usize::from(kex_field & 0x3fff);
        let need_len = FIXED_LEN + crt_len + kex_len + data_len;
        if need_len > buf.len() {
            return Err(Error::BadLength {
                what: "OAP header (crt + kex + data)",
                claimed: crt_len + kex_len + data_len,
                available: buf.len() - FIXED_LEN,
            });
        }
        let crt = r.take(crt_len)?.to_vec();
        let kex = r.take(kex_len)?.to_vec();
        let data = r.take(data_len)?.to_vec();
        Ok(Self {
            id,
            timestamp,
            cipher_nid,
            kdf_nid,
            md_nid,
            kex_flags: kex_field & 0xc000,
            crt,
            kex,
            data,
            tail: r.take_rest().to_vec(),
        })
    }

    /// Parses and checks the tail against the role: an unsigned request has no tail, a
    /// response holds at least its request hash (`req_hash_len`, see
    /// [`nid::digest_len`] of the request's `md_nid`), and an unsigned response exactly that.
    pub fn parse_as(buf: &[u8], role: Role, req_hash_len: usize) -> Result<Self> {
        let h = Self::parse(buf)?;
        h.check_tail(role, req_hash_len)?;
        Ok(h)
    }

    /// Checks the tail length against the role (see [`OapHdr::parse_as`]).
    pub fn check_tail(&self, role: Role, req_hash_len: usize) -> Result<()> {
        let hash = if role == Role::Response {
            req_hash_len
        } else {
            0
        };
        if self.tail.len() < hash {
            return Err(Error::Truncated {
                what: "OAP response request hash",
                need: hash,
                have: self.tail.len(),
            });
        }
        if self.crt.is_empty() && self.tail.len() != hash {
            return Err(Error::Trailing {
                what: "unsigned OAP header",
                count: self.tail.len() - hash,
            });
        }
        if !self.crt.is_empty() && self.tail.len() == hash {
            return Err(Error::Malformed {
                what: "OAP header",
                reason: "a certificate is present but the signature is missing",
            });
        }
        Ok(())
    }

    /// Splits the tail into `(req_hash, signature)` for a header of `role`.
    pub fn split_tail(&self, role: Role, req_hash_len: usize) -> Result<(&[u8], &[u8])> {
        self.check_tail(role, req_hash_len)?;
        let h = if role == Role::Response {
            req_hash_len
        } else {
            0
        };
        Ok(self.tail.split_at(h))
    }

    /// Number of leading bytes the signature covers (everything before it).
    pub fn signed_len(&self, role: Role, req_hash_len: usize) -> usize {
        let h = if role == Role::Response {
            req_hash_len
        } else {
            0
        };
        FIXED_LEN + self.crt.len() + self.kex.len() + self.data.len() + h
    }

    /// Encoded length.
    pub fn len(&self) -> usize {
        FIXED_LEN + self.crt.len() + self.kex.len() + self.data.len() + self.tail.len()
    }

    /// Never empty (clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the header; fails if a length does not fit its field.
    pub fn write(&self, w: &mut Writer) -> Result<()> {
        let crt = u16::try_from(self.crt.len()).map_err(|_| Error::TooLarge {
            what: "OAP crt_len",
            value: self.crt.len(),
        })?;
        if self.kex.len() > MAX_KEX_LEN {
            return Err(Error::TooLarge {
                what: "OAP kex_len",
                value: self.kex.len(),
            });
        }
        let data = u16::try_from(self.data.len()).map_err(|_| Error::TooLarge {
            what: "OAP data_len",
            value: self.data.len(),
        })?;
        w.put(&self.id)
            .be64(self.timestamp)
            .be16(self.cipher_nid)
            .be16(self.kdf_nid)
            .be16(self.md_nid)
            .be16(crt)
            .be16((self.kex_flags & 0xc000) | self.kex.len() as u16)
            .be16(data)
            .put(&self.crt)
            .put(&self.kex)
            .put(&self.data)
            .put(&self.tail);
        Ok(())
    }

    /// Encodes into a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut w = Writer::default();
        self.write(&mut w)?;
        Ok(w.0)
    }

    /// Length of the request hash in a response to a request with digest `req_md_nid`.
    pub fn req_hash_len_for(req_md_nid: u16) -> Option<usize> {
        nid::digest_len(req_md_nid)
    }
}

/// The OAP header of Ouroboros 0.22 (tutorial 06): `id(16) ts(8) crt_len(2) crt eph_len(2)
/// eph data_len(2) data sig_len(2) sig`. Decoded for old captures; never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OapHdrV022 {
    /// Random id.
    pub id: [u8; 16],
    /// Timestamp.
    pub timestamp: u64,
    /// DER certificate.
    pub crt: Vec<u8>,
    /// Ephemeral public key.
    pub eph: Vec<u8>,
    /// Piggy-backed data.
    pub data: Vec<u8>,
    /// ECDSA signature.
    pub sig: Vec<u8>,
}

impl OapHdrV022 {
    /// Parses a 0.22 header; trailing bytes are an error.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new("OAP 0.22 header", buf);
        let id = r.array::<16>()?;
        let timestamp = r.be64()?;
        let part = |r: &mut Reader<'_>| -> Result<Vec<u8>> {
            let n = usize::from(r.be16()?);
            Ok(r.take(n)?.to_vec())
        };
        let crt = part(&mut r)?;
        let eph = part(&mut r)?;
        let data = part(&mut r)?;
        let sig = part(&mut r)?;
        let rest = r.rest();
        if !rest.is_empty() {
            return Err(Error::Trailing {
                what: "OAP 0.22 header",
                count: rest.len(),
            });
        }
        Ok(Self {
            id,
            timestamp,
            crt,
            eph,
            data,
            sig,
        })
    }

    /// Appends the header.
    pub fn write(&self, w: &mut Writer) -> Result<()> {
        w.put(&self.id).be64(self.timestamp);
        for p in [&self.crt, &self.eph, &self.data, &self.sig] {
            let n = u16::try_from(p.len()).map_err(|_| Error::TooLarge {
                what: "OAP 0.22 length",
                value: p.len(),
            })?;
            w.be16(n).put(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OapHdr {
        OapHdr {
            id: [7; 16],
            timestamp: 0x1886_a8e1_033e_5233,
            cipher_nid: nid::known::AES_256_GCM,
            kdf_nid: nid::known::SHA256,
            md_nid: nid::known::SHA256,
            kex_flags: 0,
            crt: vec![],
            kex: vec![4; 91],
            data: vec![],
            tail: vec![],
        }
    }

    #[test]
    fn unsigned_request_round_trip() {
        let h = sample();
        let b = h.to_bytes().unwrap();
        assert_eq!(b.len(), FIXED_LEN + 91);
        assert_eq!(OapHdr::parse_as(&b, Role::Request, 0).unwrap(), h);
    }

    #[test]
    fn a_short_header_says_what_it_claimed_and_what_was_there() {
        let mut h = sample();
        h.crt = vec![0x30; 3];
        h.data = vec![1; 5];
        h.tail = vec![2; 7];
        let b = h.to_bytes().unwrap();
        // Encoded length: the fixed part and every variable part.
        assert_eq!(h.len(), FIXED_LEN + 3 + 91 + 5 + 7);
        assert_eq!(h.len(), b.len());
        assert!(!h.is_empty());
        let cut = &b[..FIXED_LEN + 3 + 91 + 4];
        match OapHdr::parse(cut) {
            Err(Error::BadLength {
                claimed, available, ..
            }) => assert_eq!((claimed, available), (3 + 91 + 5, 3 + 91 + 4)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unsigned_response_s_extra_bytes_are_counted() {
        let mut h = sample();
        h.tail = vec![1; 40];
        match h.check_tail(Role::Response, 32) {
            Err(Error::Trailing { count, .. }) => assert_eq!(count, 8),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_kex_length_field_takes_14_bits() {
        let mut h = sample();
        h.kex = vec![4; MAX_KEX_LEN];
        h.kex_flags = 0x8000;
        let b = h.to_bytes().unwrap();
        assert_eq!(OapHdr::parse(&b).unwrap(), h);
        h.kex.push(4);
        assert!(matches!(h.to_bytes(), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn a_response_carries_the_request_s_digest() {
        assert_eq!(OapHdr::req_hash_len_for(nid::known::SHA256), Some(32));
        assert_eq!(OapHdr::req_hash_len_for(nid::known::SHA384), Some(48));
        // NID 0 (none named): the reference's default, SHA-384; a cipher's NID: no digest.
        assert_eq!(OapHdr::req_hash_len_for(0), Some(48));
        assert_eq!(OapHdr::req_hash_len_for(nid::known::AES_256_GCM), None);
    }

    #[test]
    fn tail_rules() {
        let mut h = sample();
        h.tail = vec![1; 5];
        let b = h.to_bytes().unwrap();
        assert!(matches!(
            OapHdr::parse_as(&b, Role::Request, 0),
            Err(Error::Trailing { count: 5, .. })
        ));
        assert!(OapHdr::parse_as(&b, Role::Response, 32).is_err());
        h.tail = vec![1; 32];
        let b = h.to_bytes().unwrap();
        assert!(OapHdr::parse_as(&b, Role::Response, 32).is_ok());
        h.crt = vec![0x30; 10];
        let b = h.to_bytes().unwrap();
        // A certificate but no signature after the 32-byte hash.
        assert!(OapHdr::parse_as(&b, Role::Response, 32).is_err());
    }

    #[test]
    fn lengths_beyond_buffer_are_refused() {
        let mut b = sample().to_bytes().unwrap();
        b.truncate(b.len() - 1);
        assert!(matches!(OapHdr::parse(&b), Err(Error::BadLength { .. })));
        assert!(matches!(
            OapHdr::parse(&b[..20]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn kex_flags_round_trip() {
        let mut h = sample();
        h.kex_flags = KEX_FLAG_RAW | KEX_FLAG_CLIENT_ENCAP;
        let b = h.to_bytes().unwrap();
        assert_eq!(&b[offsets::KEX_LEN..offsets::KEX_LEN + 2], &[0xc0, 91]);
        assert_eq!(OapHdr::parse(&b).unwrap(), h);
    }
}
