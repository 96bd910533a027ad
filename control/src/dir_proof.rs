//! Signed directory entries (issue 26 item 2): in a secured layer a name's value in the
//! DHT carries proof that its publisher may serve it. docs/WIRE.md "Signed directory
//! entries" has the bytes; docs/SECURITY.md "Names in a secured layer" the reasoning.
//!
//! A value is the publisher's 8-byte address followed by
//! `01 | signed_at (u64, UNIX s) | cert_len (u16) | certificate (DER) | signature`, the
//! signature made with the member's key (ECDSA, SHA-256 on P-256, SHA-384 on P-384) over
//! `"o7s directory entry 1\0" | key | address | signed_at`. A member accepts it when the
//! certificate chains to the layer CA at that moment, one of the certificate's
//! subjectAltName DNS names hashes to the key (the names a member may publish are the
//! ones the CA wrote into its certificate), and the signature verifies. Among a
//! publisher's entries for a key the newest signature wins.

use crate::auth::{verify_signature, AuthError};
use crate::membership::Membership;
use o7s_proto::dht::{ProofError, Proofs, Signed};
use o7s_wire::hash::HashAlgo;
use rustls_pki_types::UnixTime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the signature covers first.
pub const CONTEXT: &[u8] = b"o7s directory entry 1\0";
/// The proof format's version byte.
pub const VERSION: u8 = 1;
/// A signature this far ahead of our clock is still taken (clocks differ a little).
pub const FUTURE_SLACK: u64 = 300;
/// Checks of entries not seen before, at most, per second (the rest refused, counted):
/// a member sending fresh garbage cannot make us spend more than this on signatures.
pub const CHECKS_PER_SECOND: u32 = 1000;
/// Results remembered (a replayed entry costs a hash, not a signature check).
const CACHE: usize = 4096;

/// The bytes a publisher signs.
pub fn signed_bytes(key: &[u8], addr: u64, at: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + key.len() + 16);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(key);
    m.extend_from_slice(&addr.to_be_bytes());
    m.extend_from_slice(&at.to_be_bytes());
    m
}

/// The proof for our entry of `key` at `addr`, signed at `at` with `m`'s key.
pub fn sign(m: &Membership, key: &[u8], addr: u64, at: u64) -> Result<Vec<u8>, AuthError> {
    let sig = m.signer.sign(&signed_bytes(key, addr, at))?;
    let cert = &m.signer.cert;
    let len = u16::try_from(cert.len())
        .map_err(|_| AuthError::BadCertificate(format!("{} bytes", cert.len())))?;
    let mut p = Vec::with_capacity(11 + cert.len() + sig.len());
    p.push(VERSION);
    p.extend_from_slice(&at.to_be_bytes());
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(cert);
    p.extend_from_slice(&sig);
    Ok(p)
}

/// How a member signs its own directory entries in the unicast IPCP machine
/// ([`o7s_proto::ipcp::unicast::UnicastIpcp::with_signed_entries`]): with its member
/// certificate's key, as [`sign`].
#[derive(Debug, Clone)]
pub struct MemberSigner(pub Arc<Membership>);

impl o7s_proto::ipcp::unicast::Signer for MemberSigner {
    fn sign(
        &self,
        key: &[u8],
        addr: u64,
        unix: o7s_proto::machine::UnixTime,
    ) -> Result<Vec<u8>, ProofError> {
        sign(&self.0, key, addr, unix.as_secs()).map_err(|e| ProofError(e.to_string()))
    }
}

/// The subjectAltName DNS names of a DER certificate: the names its holder may publish.
pub fn publishable_names(cert: &[u8]) -> Vec<String> {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert) else {
        return vec![];
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(n) => Some((*n).to_string()),
            _ => None,
        })
        .collect()
}

/// The parts of a proof.
struct Parts<'a> {
    at: u64,
    cert: &'a [u8],
    sig: &'a [u8],
}

fn parse(proof: &[u8]) -> Result<Parts<'_>, ProofError> {
    let (&v, rest) = proof.split_first().ok_or("an empty proof")?;
    if v != VERSION {
        return Err(format!("proof version {v} (this o7s knows {VERSION})").into());
    }
    let (at, rest) = rest
        .split_first_chunk::<8>()
        .ok_or("a proof cut short before its time")?;
    let (len, rest) = rest
        .split_first_chunk::<2>()
        .ok_or("a proof cut short before its certificate")?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() <= len {
        return Err(format!(
            "a certificate of {len} bytes in a proof with {} left",
            rest.len()
        )
        .into());
    }
    let (cert, sig) = rest.split_at(len);
    Ok(Parts {
        at: u64::from_be_bytes(*at),
        cert,
        sig,
    })
}

/// A check's result: the signer and its certificate's end of validity (UNIX s), or why not.
type Checked = Result<(Signed, i64), ProofError>;

/// A secured layer's check of directory entries, given to its DHT.
pub struct DirProofs {
    member: Arc<Membership>,
    hash: HashAlgo,
    /// Entries already checked: digest of (key, address, proof) -> the result (with the
    /// certificate's end of validity, UNIX s).
    seen: Mutex<HashMap<Vec<u8>, Checked>>,
    /// Checks in the current second: (second, count).
    spent: Mutex<(u64, u32)>,
}

impl std::fmt::Debug for DirProofs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirProofs")
            .field("ipcp", &self.member.ipcp)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl DirProofs {
    /// The check of `member`'s layer, whose directory hashes names with `hash`.
    pub fn new(member: Arc<Membership>, hash: HashAlgo) -> Self {
        Self {
            member,
            hash,
            seen: Mutex::new(HashMap::new()),
            spent: Mutex::new((0, 0)),
        }
    }

    fn check_fresh(&self, key: &[u8], addr: u64, p: &Parts<'_>, unix: u64) -> Checked {
        if p.at > unix.saturating_add(FUTURE_SLACK) {
            return Err(format!("signed {} s in the future", p.at - unix).into());
        }
        let now = UnixTime::since_unix_epoch(Duration::from_secs(unix));
        let publisher = self
            .member
            .verify_member(p.cert, now)
            .map_err(|e| e.to_string())?;
        let names = publishable_names(p.cert);
        if !names.iter().any(|n| self.hash.hash(n) == key) {
            return Err(format!(
                "member {publisher} may publish {} only (its certificate's subjectAltName), not this name",
                if names.is_empty() {
                    "no name".to_string()
                } else {
                    names.join(", ")
                }
            ).into());
        }
        let md = md_nid_of(p.cert);
        verify_signature(p.cert, md, &signed_bytes(key, addr, p.at), p.sig)
            .map_err(|e| format!("member {publisher}'s entry: {e}"))?;
        let not_after = x509_parser::parse_x509_certificate(p.cert)
            .map(|(_, c)| c.validity().not_after.timestamp())
            .unwrap_or(0);
        Ok((
            Signed {
                publisher,
                at: p.at,
            },
            not_after,
        ))
    }
}

/// The digest o7s signs with for a certificate's key: SHA-256 on P-256, SHA-384 on P-384
/// (as [`crate::auth::Signer`]).
fn md_nid_of(cert: &[u8]) -> u16 {
    let len = x509_parser::parse_x509_certificate(cert)
        .map(|(_, c)| c.public_key().subject_public_key.data.len())
        .unwrap_or(0);
    if len == 97 {
        673
    } else {
        672
    }
}

impl Proofs for DirProofs {
    fn check(
        &self,
        key: &[u8],
        addr: u64,
        proof: &[u8],
        unix: o7s_proto::machine::UnixTime,
    ) -> Result<Signed, ProofError> {
        let unix = unix.as_secs();
        let p = parse(proof)?;
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        h.update(key);
        h.update(&addr.to_be_bytes());
        h.update(proof);
        let digest = h.finish().as_ref().to_vec();
        if let Some(r) = self.seen.lock().ok().and_then(|s| s.get(&digest).cloned()) {
            // A remembered success still needs its certificate valid now.
            return match r {
                Ok((sg, not_after)) if i64::try_from(unix).unwrap_or(i64::MAX) > not_after => {
                    Err(format!("member {}'s certificate has expired", sg.publisher).into())
                }
                r => r.map(|x| x.0),
            };
        }
        if let Ok(mut s) = self.spent.lock() {
            if s.0 != unix {
                *s = (unix, 0);
            }
            if s.1 >= CHECKS_PER_SECOND {
                return Err(format!(
                    "more than {CHECKS_PER_SECOND} new entries to check this second"
                )
                .into());
            }
            s.1 += 1;
        }
        let r = self.check_fresh(key, addr, &p, unix);
        if let Ok(mut s) = self.seen.lock() {
            if s.len() >= CACHE {
                s.clear();
            }
            s.insert(digest, r.clone());
        }
        r.map(|x| x.0)
    }
}
