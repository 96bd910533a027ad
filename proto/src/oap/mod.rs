//! OAP (flow-allocation authentication and key exchange, 0.23) without I/O: the request a
//! client sends, the server's answer and keys, the client's check of that answer and its
//! keys. Time (`now_ns`) and randomness (`rng`) come in. Certificates and signatures stay
//! with the caller (o7sd's `auth`), which signs and verifies around these functions.

pub mod keys;

use keys::{Cipher, EncConf, Ephemeral, Kdf, Kex};
use o7s_wire::oap::{OapHdr, Role};
use ring::rand::SecureRandom;
use sha2::Digest;

/// Why an OAP exchange fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OapError {
    /// A header that does not parse.
    #[error("bad OAP header: {0}")]
    Malformed(String),
    /// A digest this implementation does not have.
    #[error("digest NID {0} is not supported")]
    Digest(u16),
    /// The response is not for our request.
    #[error("its id is not our request's")]
    IdMismatch,
    /// The response's request hash is not our request's.
    #[error("its request hash does not match our request")]
    HashMismatch,
    /// The client asked for encryption, the server sent no key.
    #[error("we asked for encryption but the server sent no key")]
    NoServerKey,
    /// The server requires encryption, the client offered none.
    #[error("the client offers no encryption but this server requires it")]
    EncryptionRequired,
    /// A group, cipher or KDF this implementation does not have.
    #[error("{0}")]
    Unsupported(String),
    /// An offer or choice weaker than the configuration allows (a downgrade).
    #[error("{0}")]
    Weaker(String),
    /// Key generation or agreement failed.
    #[error("{0}")]
    Key(#[from] keys::KeyError),
}

/// The key of an encrypted flow: the cipher's NID and 32 key bytes (its `Debug` leaves
/// the key out).
#[derive(Clone, PartialEq, Eq)]
pub struct FlowKey {
    /// Cipher NID.
    pub cipher: u16,
    /// Key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowKey")
            .field("cipher", &self.cipher)
            .field("key", &"<32 bytes, not shown>")
            .finish()
    }
}

/// The hash of a request as its response carries it: the request's digest, SHA-384 when
/// its `md_nid` is 0 (facts 1.8.9).
pub fn req_hash(req: &[u8], md_nid: u16) -> Result<Vec<u8>, OapError> {
    Ok(match md_nid {
        0 | 673 => sha2::Sha384::digest(req).to_vec(),
        672 => sha2::Sha256::digest(req).to_vec(),
        674 => sha2::Sha512::digest(req).to_vec(),
        other => return Err(OapError::Digest(other)),
    })
}

/// A client's request: id, time, and with `enc` its offer and a fresh key (kept by the
/// caller to finish with [`client_key`]). Unsigned: the caller signs it if it has a
/// certificate.
pub fn client_request(
    id: [u8; 16],
    now_ns: u64,
    enc: Option<&EncConf>,
    rng: &dyn SecureRandom,
) -> Result<(OapHdr, Option<Ephemeral>), OapError> {
    let mut h = OapHdr::unsigned(id, now_ns, vec![]);
    let Some(c) = enc else {
        return Ok((h, None));
    };
    let e = Ephemeral::generate(c.kex, rng).map_err(OapError::Key)?;
    h.cipher_nid = c.cipher.nid();
    h.kdf_nid = c.kdf.nid();
    h.md_nid = c.digest;
    h.kex = e.spki.clone();
    Ok((h, Some(e)))
}

/// Checks a response against our request: same id, and its request hash is our request's.
pub fn check_response(req: &[u8], resp: &[u8]) -> Result<(), OapError> {
    let r = OapHdr::parse(resp).map_err(|e| OapError::Malformed(e.to_string()))?;
    let q = OapHdr::parse(req).map_err(|e| OapError::Malformed(e.to_string()))?;
    if r.id != q.id {
        return Err(OapError::IdMismatch);
    }
    let want = req_hash(req, q.md_nid)?;
    let (h, _) = r
        .split_tail(Role::Response, want.len())
        .map_err(|e| OapError::Malformed(e.to_string()))?;
    if h != want.as_slice() {
        return Err(OapError::HashMismatch);
    }
    Ok(())
}

/// The client's side of the key exchange: the server's choices must not be weaker than
/// ours; the key from our ephemeral key and the server's.
pub fn client_key(conf: &EncConf, eph: Ephemeral, resp: &[u8]) -> Result<FlowKey, OapError> {
    let r = OapHdr::parse(resp).map_err(|e| OapError::Malformed(e.to_string()))?;
    if r.kex.is_empty() {
        return Err(OapError::NoServerKey);
    }
    let cipher = Cipher::from_nid(r.cipher_nid).ok_or_else(|| {
        OapError::Unsupported(format!(
            "the server chose an unsupported cipher (NID {})",
            r.cipher_nid
        ))
    })?;
    let kdf = Kdf::from_nid(r.kdf_nid).ok_or_else(|| {
        OapError::Unsupported(format!(
            "the server chose an unsupported KDF (NID {})",
            r.kdf_nid
        ))
    })?;
    if cipher < conf.cipher || kdf < conf.kdf {
        return Err(OapError::Weaker(format!(
            "the server chose {cipher:?}/{kdf:?}, weaker than our {:?}/{:?}",
            conf.cipher, conf.kdf
        )));
    }
    let key = eph.derive(&r.kex, kdf).map_err(OapError::Key)?;
    Ok(FlowKey {
        cipher: cipher.nid(),
        key,
    })
}

/// The server's side: the (unsigned) OAP response, and the flow's key when the client asked
/// for encryption. The server picks the stronger cipher and KDF of the client's and its own
/// configuration `conf`, and refuses a weaker key exchange than its own, or no encryption
/// when it requires it.
pub fn server_key(
    conf: Option<EncConf>,
    req: &OapHdr,
    raw_req: &[u8],
    now_ns: u64,
    rng: &dyn SecureRandom,
) -> Result<(OapHdr, Option<FlowKey>), OapError> {
    let tail = req_hash(raw_req, req.md_nid)?;
    let mut resp = OapHdr::unsigned(req.id, now_ns, tail);
    if req.kex.is_empty() {
        if conf.is_some() {
            return Err(OapError::EncryptionRequired);
        }
        return Ok((resp, None));
    }
    let (kex, _) = Kex::of_spki(&req.kex).ok_or_else(|| {
        OapError::Unsupported("the client's key exchange is not supported".into())
    })?;
    let mut cipher = Cipher::from_nid(req.cipher_nid).ok_or_else(|| {
        OapError::Unsupported(format!(
            "the client's cipher (NID {}) is not supported",
            req.cipher_nid
        ))
    })?;
    let mut kdf = Kdf::from_nid(req.kdf_nid).ok_or_else(|| {
        OapError::Unsupported(format!(
            "the client's KDF (NID {}) is not supported",
            req.kdf_nid
        ))
    })?;
    if let Some(c) = conf {
        if kex < c.kex {
            return Err(OapError::Weaker(format!(
                "the client's key exchange {kex:?} is weaker than this server's {:?}",
                c.kex
            )));
        }
        cipher = cipher.max(c.cipher);
        kdf = kdf.max(c.kdf);
    }
    let eph = Ephemeral::generate(kex, rng).map_err(OapError::Key)?;
    resp.cipher_nid = cipher.nid();
    resp.kdf_nid = kdf.nid();
    resp.md_nid = req.md_nid;
    resp.kex = eph.spki.clone();
    let key = eph.derive(&req.kex, kdf).map_err(OapError::Key)?;
    Ok((
        resp,
        Some(FlowKey {
            cipher: cipher.nid(),
            key,
        }),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn a_flow_key_is_not_shown_by_debug() {
        let k = FlowKey {
            cipher: 901,
            key: [0xAB; 32],
        };
        let s = format!("{k:?}");
        assert!(
            s.contains("901") && !s.contains("171") && !s.to_lowercase().contains("ab,"),
            "{s}"
        );
    }

    /// The client refuses a server that chose a weaker cipher or KDF than the client's own
    /// configuration (a downgrade), and a server that sent no key.
    #[test]
    fn client_refuses_downgrades() {
        let rng = SystemRandom::new();
        let conf = EncConf {
            cipher: Cipher::ChaCha20Poly1305,
            ..EncConf::default()
        };
        let server = Ephemeral::generate(Kex::P256, &rng).unwrap();
        let mut resp = OapHdr::unsigned([0; 16], 1, vec![0; 32]);
        resp.kex = server.spki.clone();
        resp.kdf_nid = Kdf::Sha256.nid();
        resp.cipher_nid = Cipher::Aes128Gcm.nid();
        let eph = || Ephemeral::generate(Kex::P256, &rng).unwrap();
        let e = client_key(&conf, eph(), &resp.to_bytes().unwrap()).unwrap_err();
        assert!(matches!(e, OapError::Weaker(_)), "{e}");
        resp.cipher_nid = Cipher::ChaCha20Poly1305.nid();
        assert!(client_key(&conf, eph(), &resp.to_bytes().unwrap()).is_ok());
        resp.kex.clear();
        let e = client_key(&conf, eph(), &resp.to_bytes().unwrap()).unwrap_err();
        assert_eq!(e, OapError::NoServerKey);
    }

    #[test]
    fn server_negotiation() {
        let rng = SystemRandom::new();
        let mut p384 = EncConf {
            kex: Kex::P384,
            cipher: Cipher::Aes128Gcm,
            ..EncConf::default()
        };
        let (req, client) = client_request([3; 16], 5, Some(&p384), &rng).unwrap();
        let client = client.unwrap();
        let raw = req.to_bytes().unwrap();
        let strict = EncConf {
            kex: Kex::P384,
            cipher: Cipher::Aes256Gcm,
            kdf: Kdf::Sha384,
            digest: 672,
        };
        let (resp, spec) = server_key(Some(strict), &req, &raw, 6, &rng).unwrap();
        assert_eq!(
            (resp.cipher_nid, resp.kdf_nid),
            (Cipher::Aes256Gcm.nid(), Kdf::Sha384.nid())
        );
        // Both ends derive the same key.
        p384.cipher = Cipher::Aes128Gcm;
        let ckey = client_key(&p384, client, &resp.to_bytes().unwrap()).unwrap();
        assert_eq!(Some(ckey), spec);
        // A P-256 client against a P-384 server is refused; a plain client too.
        let mut weak = req.clone();
        weak.kex = Ephemeral::generate(Kex::P256, &rng).unwrap().spki.clone();
        assert!(matches!(
            server_key(Some(strict), &weak, &weak.to_bytes().unwrap(), 6, &rng),
            Err(OapError::Weaker(_))
        ));
        let plain = OapHdr::unsigned([4; 16], 5, vec![]);
        assert_eq!(
            server_key(Some(strict), &plain, &plain.to_bytes().unwrap(), 6, &rng).unwrap_err(),
            OapError::EncryptionRequired
        );
        assert!(
            server_key(None, &plain, &plain.to_bytes().unwrap(), 6, &rng)
                .unwrap()
                .1
                .is_none()
        );
    }

    /// The KDF and the signature digest are two fields that travel side by side: with a
    /// client offering KDF SHA-512 and digest SHA-256 (NIDs 674 and 672), the server's answer
    /// keeps them apart (kdf 674, md 672), its request hash is SHA-256 (32 bytes, by md, not
    /// 64 by kdf) and the header bytes carry 0x02a2 then 0x02a0 at offsets 26 and 28.
    #[test]
    fn kdf_and_digest_differ_and_stay_in_their_own_fields() {
        let rng = SystemRandom::new();
        let conf = EncConf {
            kdf: Kdf::Sha512,
            digest: 672,
            ..EncConf::default()
        };
        let (req, client) = client_request([7; 16], 9, Some(&conf), &rng).unwrap();
        let raw = req.to_bytes().unwrap();
        assert_eq!(&raw[24..30], &[0x03, 0x85, 0x02, 0xa2, 0x02, 0xa0]);
        let (resp, spec) = server_key(None, &req, &raw, 10, &rng).unwrap();
        assert_eq!((resp.kdf_nid, resp.md_nid), (674, 672));
        let bytes = resp.to_bytes().unwrap();
        assert_eq!(&bytes[26..30], &[0x02, 0xa2, 0x02, 0xa0]);
        assert_eq!(check_response(&raw, &bytes), Ok(()));
        let (tail, _) = OapHdr::parse(&bytes)
            .unwrap()
            .split_tail(Role::Response, 32)
            .map(|(h, r)| (h.to_vec(), r.len()))
            .unwrap();
        assert_eq!(tail, sha2::Sha256::digest(&raw).to_vec());
        // Both ends derive with SHA-512: the same key, and not the SHA-256 one.
        let ckey = client_key(&conf, client.unwrap(), &bytes).unwrap();
        assert_eq!(Some(ckey.clone()), spec);
        let (req2, client2) = client_request(
            [8; 16],
            9,
            Some(&EncConf {
                kdf: Kdf::Sha256,
                digest: 674,
                ..conf
            }),
            &rng,
        )
        .unwrap();
        let raw2 = req2.to_bytes().unwrap();
        assert_eq!(&raw2[26..30], &[0x02, 0xa0, 0x02, 0xa2]);
        let (resp2, spec2) = server_key(None, &req2, &raw2, 10, &rng).unwrap();
        let bytes2 = resp2.to_bytes().unwrap();
        // md SHA-512: a 64-byte request hash.
        assert_eq!(bytes2.len(), 36 + resp2.kex.len() + 64);
        assert_eq!(check_response(&raw2, &bytes2), Ok(()));
        let key2 = client_key(&conf, client2.unwrap(), &bytes2);
        // Our own configuration asks for SHA-512: a server that chose SHA-256 is a downgrade.
        assert!(matches!(key2, Err(OapError::Weaker(_))), "{key2:?}");
        assert!(spec2.is_some());
    }

    #[test]
    fn responses_are_checked_against_the_request() {
        let rng = SystemRandom::new();
        let (req, _) = client_request([1; 16], 5, None, &rng).unwrap();
        let raw = req.to_bytes().unwrap();
        let (resp, _) = server_key(None, &req, &raw, 6, &rng).unwrap();
        let resp = resp.to_bytes().unwrap();
        assert_eq!(check_response(&raw, &resp), Ok(()));
        // md_nid 0: the request hash is SHA-384, 48 bytes.
        assert_eq!(resp.len(), 36 + 48);
        let (other, _) = client_request([2; 16], 5, None, &rng).unwrap();
        assert_eq!(
            check_response(&other.to_bytes().unwrap(), &resp),
            Err(OapError::IdMismatch)
        );
        let mut bad = resp.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert_eq!(check_response(&raw, &bad), Err(OapError::HashMismatch));
    }
}
