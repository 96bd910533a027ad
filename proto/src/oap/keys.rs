//! What encrypted flows are made of (OAP, tutorial 06): the `enc.conf` settings, key
//! exchange groups, ciphers and KDFs with their ranks, ephemeral keys and the key
//! derivation. Randomness comes in (`ring::rand::SecureRandom`); nothing here reads a file.
//!
//! An empty `enc.conf` means the defaults (P-256, AES-256-GCM, SHA-256); `none` means no
//! encryption.

use ring::agreement;
use ring::hkdf;
use ring::rand::SecureRandom;

/// Key-exchange groups, weakest first (the reference's ranks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kex {
    /// prime256v1 (NID 415).
    P256,
    /// X25519 (NID 1034).
    X25519,
    /// secp384r1 (NID 715).
    P384,
}

/// AEAD ciphers, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cipher {
    /// aes-128-gcm (NID 895).
    Aes128Gcm,
    /// aes-256-gcm (NID 901).
    Aes256Gcm,
    /// chacha20-poly1305 (NID 1018).
    ChaCha20Poly1305,
}

/// KDF digests, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kdf {
    /// sha256 (NID 672).
    Sha256,
    /// sha384 (NID 673).
    Sha384,
    /// sha512 (NID 674).
    Sha512,
}

/// DER SubjectPublicKeyInfo prefixes of the raw public keys.
const SPKI_P256: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const SPKI_P384: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];
const SPKI_X25519: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

impl Kex {
    /// OpenSSL NID.
    pub fn nid(self) -> u16 {
        match self {
            Self::P256 => 415,
            Self::X25519 => 1034,
            Self::P384 => 715,
        }
    }
    fn alg(self) -> &'static agreement::Algorithm {
        match self {
            Self::P256 => &agreement::ECDH_P256,
            Self::X25519 => &agreement::X25519,
            Self::P384 => &agreement::ECDH_P384,
        }
    }
    fn spki_prefix(self) -> &'static [u8] {
        match self {
            Self::P256 => SPKI_P256,
            Self::X25519 => SPKI_X25519,
            Self::P384 => SPKI_P384,
        }
    }
    fn point_len(self) -> usize {
        match self {
            Self::P256 => 65,
            Self::X25519 => 32,
            Self::P384 => 97,
        }
    }
    /// The group of a DER SubjectPublicKeyInfo and its raw key, if it is one we know.
    pub fn of_spki(spki: &[u8]) -> Option<(Kex, &[u8])> {
        [Self::P256, Self::X25519, Self::P384]
            .into_iter()
            .find_map(|k| {
                let raw = spki.strip_prefix(k.spki_prefix())?;
                (raw.len() == k.point_len()).then_some((k, raw))
            })
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "prime256v1" | "p-256" | "p256" | "secp256r1" => Self::P256,
            "x25519" => Self::X25519,
            "secp384r1" | "p-384" | "p384" => Self::P384,
            _ => return None,
        })
    }
}

impl Cipher {
    /// OpenSSL NID.
    pub fn nid(self) -> u16 {
        match self {
            Self::Aes128Gcm => 895,
            Self::Aes256Gcm => 901,
            Self::ChaCha20Poly1305 => 1018,
        }
    }
    /// From a NID.
    pub fn from_nid(n: u16) -> Option<Self> {
        [Self::Aes128Gcm, Self::Aes256Gcm, Self::ChaCha20Poly1305]
            .into_iter()
            .find(|c| c.nid() == n)
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "aes-128-gcm" => Self::Aes128Gcm,
            "aes-256-gcm" => Self::Aes256Gcm,
            "chacha20-poly1305" => Self::ChaCha20Poly1305,
            _ => return None,
        })
    }
}

impl Kdf {
    /// OpenSSL NID.
    pub fn nid(self) -> u16 {
        match self {
            Self::Sha256 => 672,
            Self::Sha384 => 673,
            Self::Sha512 => 674,
        }
    }
    /// From a NID.
    pub fn from_nid(n: u16) -> Option<Self> {
        [Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|c| c.nid() == n)
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sha256" => Self::Sha256,
            "sha384" => Self::Sha384,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }
    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Self::Sha256 => hkdf::HKDF_SHA256,
            Self::Sha384 => hkdf::HKDF_SHA384,
            Self::Sha512 => hkdf::HKDF_SHA512,
        }
    }
}

/// What an `enc.conf` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncConf {
    /// Key exchange.
    pub kex: Kex,
    /// Cipher.
    pub cipher: Cipher,
    /// KDF digest.
    pub kdf: Kdf,
    /// Signature digest NID (carried as md_nid).
    pub digest: u16,
}

impl Default for EncConf {
    fn default() -> Self {
        Self {
            kex: Kex::P256,
            cipher: Cipher::Aes256Gcm,
            kdf: Kdf::Sha256,
            digest: 672,
        }
    }
}

/// Why `enc.conf` text does not parse: its line (from 1) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct EncConfError {
    /// The line.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

/// Why a key could not be made or agreed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The random source failed to make a private key.
    #[error("key generation failed")]
    Generate,
    /// The public key could not be computed.
    #[error("public key computation failed")]
    PublicKey,
    /// The peer's SubjectPublicKeyInfo is of no group we have.
    #[error("the peer's key is not a key we know")]
    UnknownPeerKey,
    /// The peer's key is of another group than ours.
    #[error("the peer's key is {peer:?}, ours {ours:?}")]
    OtherGroup {
        /// The peer's group.
        peer: Kex,
        /// Ours.
        ours: Kex,
    },
    /// The agreement failed (a bad point).
    #[error("key agreement failed (bad peer key)")]
    Agreement,
    /// HKDF failed (a step: "expand", "fill").
    #[error("HKDF {0} failed")]
    Hkdf(&'static str),
}

/// Parses `enc.conf` text: `key=value` lines (`kex`, `cipher`, `kdf`, `digest`), `#`
/// comments, or the single word `none`. `Ok(None)` means no encryption.
pub fn parse_enc(text: &str) -> Result<Option<EncConf>, EncConfError> {
    let mut c = EncConf::default();
    for (n, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if l.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let (k, v) = l.split_once('=').ok_or_else(|| EncConfError {
            line: n + 1,
            why: "expected key=value or none".into(),
        })?;
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        let bad = |what: &str, ok: &str| EncConfError {
            line: n + 1,
            why: format!("{what} '{v}' is not supported (supported: {ok})"),
        };
        match k {
            "kex" => {
                c.kex = Kex::parse(v).ok_or_else(|| bad("kex", "prime256v1, secp384r1, X25519"))?
            }
            "cipher" => {
                c.cipher = Cipher::parse(v)
                    .ok_or_else(|| bad("cipher", "aes-128-gcm, aes-256-gcm, chacha20-poly1305"))?
            }
            "kdf" => c.kdf = Kdf::parse(v).ok_or_else(|| bad("kdf", "sha256, sha384, sha512"))?,
            "digest" => {
                c.digest = Kdf::parse(v)
                    .ok_or_else(|| bad("digest", "sha256, sha384, sha512"))?
                    .nid()
            }
            other => {
                return Err(EncConfError {
                    line: n + 1,
                    why: format!("unknown key '{other}' (kex, cipher, kdf, digest)"),
                })
            }
        }
    }
    Ok(Some(c))
}

/// An ephemeral key pair and its DER SubjectPublicKeyInfo.
pub struct Ephemeral {
    kex: Kex,
    key: agreement::EphemeralPrivateKey,
    /// The public key as sent in the OAP header.
    pub spki: Vec<u8>,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral").field("kex", &self.kex).finish()
    }
}

impl Ephemeral {
    /// A new key pair of group `kex`, from `rng`.
    pub fn generate(kex: Kex, rng: &dyn SecureRandom) -> Result<Self, KeyError> {
        let key = agreement::EphemeralPrivateKey::generate(kex.alg(), rng)
            .map_err(|_| KeyError::Generate)?;
        let public = key.compute_public_key().map_err(|_| KeyError::PublicKey)?;
        let mut spki = kex.spki_prefix().to_vec();
        spki.extend_from_slice(public.as_ref());
        Ok(Self { kex, key, spki })
    }

    /// The group.
    pub fn kex(&self) -> Kex {
        self.kex
    }

    /// The shared secret with the peer's SubjectPublicKeyInfo, then the flow key: HKDF with
    /// `kdf`, salt SHA-256(min(spkiA, spkiB) | max(spkiA, spkiB)), info "o7s-ossl-dhe", 32
    /// bytes (as the reference).
    pub fn derive(self, peer_spki: &[u8], kdf: Kdf) -> Result<[u8; 32], KeyError> {
        let (k, raw) = Kex::of_spki(peer_spki).ok_or(KeyError::UnknownPeerKey)?;
        if k != self.kex {
            return Err(KeyError::OtherGroup {
                peer: k,
                ours: self.kex,
            });
        }
        let salt = flow_salt(&self.spki, peer_spki);
        let peer = agreement::UnparsedPublicKey::new(k.alg(), raw);
        agreement::agree_ephemeral(self.key, &peer, |secret| {
            hkdf32(kdf, salt.as_ref(), secret, b"o7s-ossl-dhe")
        })
        .map_err(|_| KeyError::Agreement)?
    }
}

/// The HKDF salt of a flow key: SHA-256 of the two public keys, the lower one first, so that
/// both ends compute the same.
fn flow_salt(ours: &[u8], peer: &[u8]) -> ring::digest::Digest {
    let (a, b) = if ours <= peer {
        (ours, peer)
    } else {
        (peer, ours)
    };
    let mut cat = a.to_vec();
    cat.extend_from_slice(b);
    ring::digest::digest(&ring::digest::SHA256, &cat)
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// HKDF(kdf, salt, ikm, info) -> 32 bytes.
pub fn hkdf32(kdf: Kdf, salt: &[u8], ikm: &[u8], info: &[u8]) -> Result<[u8; 32], KeyError> {
    let prk = hkdf::Salt::new(kdf.hkdf(), salt).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, Len32)
        .map_err(|_| KeyError::Hkdf("expand"))?;
    let mut out = [0u8; 32];
    okm.fill(&mut out).map_err(|_| KeyError::Hkdf("fill"))?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    static RNG: std::sync::LazyLock<ring::rand::SystemRandom> =
        std::sync::LazyLock::new(ring::rand::SystemRandom::new);

    #[test]
    fn every_name_enc_conf_accepts_reads_as_its_algorithm_with_openssl_s_nid() {
        for (name, k) in [
            ("prime256v1", Kex::P256),
            ("P-256", Kex::P256),
            ("p256", Kex::P256),
            ("secp256r1", Kex::P256),
            ("X25519", Kex::X25519),
            ("secp384r1", Kex::P384),
            ("p-384", Kex::P384),
            ("P384", Kex::P384),
        ] {
            assert_eq!(Kex::parse(name), Some(k), "{name}");
        }
        assert_eq!(Kex::parse("secp521r1"), None);
        assert_eq!(
            [Kex::P256.nid(), Kex::X25519.nid(), Kex::P384.nid()],
            [415, 1034, 715]
        );
        for (name, c, nid) in [
            ("AES-128-GCM", Cipher::Aes128Gcm, 895),
            ("aes-256-gcm", Cipher::Aes256Gcm, 901),
            ("chacha20-poly1305", Cipher::ChaCha20Poly1305, 1018),
        ] {
            assert_eq!(Cipher::parse(name), Some(c), "{name}");
            assert_eq!((c.nid(), Cipher::from_nid(nid)), (nid, Some(c)));
        }
        assert_eq!(Cipher::parse("aes-128-cbc"), None);
        for (name, k, nid) in [
            ("SHA256", Kdf::Sha256, 672),
            ("sha384", Kdf::Sha384, 673),
            ("sha512", Kdf::Sha512, 674),
        ] {
            assert_eq!(Kdf::parse(name), Some(k), "{name}");
            assert_eq!((k.nid(), Kdf::from_nid(nid)), (nid, Some(k)));
        }
        assert_eq!(Kdf::parse("md5"), None);
    }

    /// The salt against SHA-256 computed independently (Python's hashlib) of the lower key
    /// then the higher: e7e9.. (the other order gives e6c8..).
    #[test]
    fn the_flow_salt_hashes_the_lower_public_key_first_whichever_end_computes_it() {
        let lower: Vec<u8> = [0x30, 0x2a].into_iter().chain(1u8..11).collect();
        let higher: Vec<u8> = [0x30, 0x2a].into_iter().chain(2u8..12).collect();
        let hex = |d: ring::digest::Digest| {
            d.as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let want = "e7e9d6fe2e4a1d6be0b017854bbe74011dda3192c78055d025d8f85bfdd1b453";
        assert_eq!(hex(flow_salt(&lower, &higher)), want);
        assert_eq!(hex(flow_salt(&higher, &lower)), want);
    }

    #[test]
    fn an_ephemeral_key_shows_its_group_and_nothing_of_the_key() {
        let e = Ephemeral::generate(Kex::X25519, &*RNG).unwrap();
        let shown = format!("{e:?}");
        assert_eq!(shown, "Ephemeral { kex: X25519 }");
    }

    /// HKDF with each KDF against vectors computed independently (Python's hmac/hashlib,
    /// RFC 5869): ikm 00..1f, salt 64..83, info "o7s-ossl-dhe"; the three differ, so a KDF
    /// taken from the wrong field (e.g. the signature digest) gives another key.
    #[test]
    fn hkdf_follows_the_kdf_it_is_given() {
        let ikm: Vec<u8> = (0u8..32).collect();
        let salt: Vec<u8> = (100u8..132).collect();
        let hex = |k: [u8; 32]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let want = [
            (
                Kdf::Sha256,
                "3696aa5bbaf6f3abb55003c72b2b4beb5c230e8667d83aca24a783dd4432209a",
            ),
            (
                Kdf::Sha384,
                "c42c8377545d05505be299f53ffddc59acb1116182310356866490e7e9bdf133",
            ),
            (
                Kdf::Sha512,
                "70154397d83ea56c37914eb8c04b10b245630bf82c52e40f8e728ee754a1b315",
            ),
        ];
        for (kdf, w) in want {
            assert_eq!(
                hex(hkdf32(kdf, &salt, &ikm, b"o7s-ossl-dhe").unwrap()),
                w,
                "{kdf:?}"
            );
        }
    }

    #[test]
    fn enc_conf_forms() {
        assert_eq!(parse_enc("").unwrap(), Some(EncConf::default()));
        assert_eq!(parse_enc("none\n").unwrap(), None);
        let c = parse_enc("# c\nkex=X25519\ncipher = chacha20-poly1305\nkdf=sha512\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.kex, c.cipher, c.kdf),
            (Kex::X25519, Cipher::ChaCha20Poly1305, Kdf::Sha512)
        );
        let e = parse_enc("# comment\ncipher=aes-128-cbc").unwrap_err();
        assert_eq!(e.line, 2);
        let e = e.to_string();
        assert!(
            e.starts_with("line 2: ") && e.contains("aes-128-cbc") && e.contains("not supported"),
            "{e}"
        );
        assert!(parse_enc("kex=ffdhe2048")
            .unwrap_err()
            .why
            .contains("ffdhe2048"));
        assert!(parse_enc("colour=blue")
            .is_err_and(|e| e.line == 1 && e.why.contains("unknown key 'colour'")));
        assert!(parse_enc("kex=X25519\ncolour=blue").is_err_and(|e| e.line == 2));
        assert!(parse_enc("novalue")
            .is_err_and(|e| e.line == 1 && e.why.contains("expected key=value")));
        assert!(parse_enc("kex=X25519\n\nnovalue").is_err_and(|e| e.line == 3));
    }

    #[test]
    fn both_sides_derive_the_same_key() {
        for kex in [Kex::P256, Kex::P384, Kex::X25519] {
            let a = Ephemeral::generate(kex, &*RNG).unwrap();
            let b = Ephemeral::generate(kex, &*RNG).unwrap();
            let (sa, sb) = (a.spki.clone(), b.spki.clone());
            assert_eq!(Kex::of_spki(&sa).map(|x| x.0), Some(kex));
            let ka = a.derive(&sb, Kdf::Sha256).unwrap();
            let kb = b.derive(&sa, Kdf::Sha256).unwrap();
            assert_eq!(ka, kb);
        }
        let a = Ephemeral::generate(Kex::P256, &*RNG).unwrap();
        let b = Ephemeral::generate(Kex::P384, &*RNG).unwrap();
        assert!(a.derive(&b.spki, Kdf::Sha256).is_err());
    }

    #[test]
    fn p256_spki_is_91_bytes_as_captured() {
        assert_eq!(
            Ephemeral::generate(Kex::P256, &*RNG).unwrap().spki.len(),
            91
        );
    }
}
