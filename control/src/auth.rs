//! Authentication of flow allocations (OAP): certificates and keys from the security
//! directory, chain validation with rustls-webpki (intermediates from `untrusted/`,
//! path-length constraints, validity), the certificate's CN against the flow's name
//! (x509-parser: webpki does not match CNs), and ECDSA P-256/P-384 signatures with ring.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::path::{Path, PathBuf};

/// Why a certificate, a signature or a key was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The certificate cannot be parsed as an end-entity certificate.
    #[error("not a usable certificate: {why}")]
    Unusable {
        /// In words, with the certificate's names.
        why: String,
        /// webpki's reason.
        #[source]
        source: webpki::Error,
    },
    /// No CA certificate is loaded to check against.
    #[error("no trusted CA certificate is loaded (security/cacert)")]
    NoTrustAnchor,
    /// The chain up to a trusted CA does not verify (expired, unknown issuer, ...).
    #[error("certificate chain does not verify: {why}")]
    Chain {
        /// In words, with the dates and names that explain it.
        why: String,
        /// webpki's reason.
        #[source]
        source: webpki::Error,
    },
    /// The certificate is another name's.
    #[error("the certificate is for {got}, not {want}")]
    WrongName {
        /// Its CN.
        got: String,
        /// The flow's name.
        want: String,
    },
    /// A CA or intermediate of the certificate's chain constrains names, and it does not
    /// carry the flow's name as a subjectAltName DNS name (the names the constraints are
    /// checked against; a CN never is).
    #[error(
        "the certificate does not name {name} in its subjectAltName, and a CA or intermediate of its chain has name constraints (a CN is not checked against them)"
    )]
    NameNotConstrained {
        /// The flow's name.
        name: String,
    },
    /// The certificate does not parse.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The certificate has no CN.
    #[error("the certificate has no CN")]
    NoCommonName,
    /// Its key is not ECDSA P-256 or P-384.
    #[error("unsupported public key ({0} bytes; ECDSA P-256 and P-384 are)")]
    UnsupportedKey(usize),
    /// The signature's digest is not SHA-256 or SHA-384.
    #[error("unsupported signature digest NID {0}")]
    UnsupportedDigest(u16),
    /// The signature is not the certificate key's over the message.
    #[error("the signature does not verify")]
    BadSignature,
    /// A certificate or key file cannot be read or used.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("{} is not the key of {}", key.display(), crt.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        crt: PathBuf,
    },
    /// Signing failed.
    #[error("signing failed")]
    Signing,
    /// One of a certificate and its key exists without the other.
    #[error("{} exists but {} does not: {what} cannot authenticate {side} {name}", have.display(), missing.display())]
    HalfPair {
        /// The file there.
        have: PathBuf,
        /// The file missing.
        missing: PathBuf,
        /// "a certificate without its key" or "a key without its certificate".
        what: &'static str,
        /// "client" or "server".
        side: String,
        /// The flow's name.
        name: String,
    },
    /// A file the configuration names (`<side>_crt_file`, `<side>_key_file`) is not there:
    /// refused rather than taken as "no authentication".
    #[error("{} ({key} of name {name}) does not exist: refusing to go on without it", path.display())]
    NamedFileMissing {
        /// The file.
        path: PathBuf,
        /// The configuration key that names it.
        key: String,
        /// The flow's name.
        name: String,
    },
}

impl AuthError {
    /// webpki's reason, when the chain or the certificate was refused by it.
    pub fn webpki(&self) -> Option<&webpki::Error> {
        match self {
            Self::Unusable { source, .. } | Self::Chain { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Trusted CAs (`cacert/`) and intermediates (`untrusted/`).
#[derive(Debug, Default)]
pub struct TrustStore {
    anchors: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
}

/// Whether the certificate `der` carries a name constraints extension.
fn has_name_constraints(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .is_some_and(|(_, c)| matches!(c.name_constraints(), Ok(Some(_)) | Err(_)))
}

/// The subjectAltName DNS names of the certificate `der`.
fn san_dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(der) else {
        return vec![];
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
            _ => None,
        })
        .collect()
}

fn pem_certs(dir: &Path, warnings: &mut Vec<String>) -> Vec<CertificateDer<'static>> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for p in paths {
        match CertificateDer::pem_file_iter(&p) {
            Ok(it) => {
                for c in it {
                    match c {
                        Ok(c) => out.push(c),
                        Err(e) => warnings.push(format!("{}: {e}", p.display())),
                    }
                }
            }
            Err(e) => warnings.push(format!("{}: {e}", p.display())),
        }
    }
    out
}

impl TrustStore {
    /// Loads `<security>/cacert` and `<security>/untrusted`; unreadable files are reported.
    pub fn load(security: &Path) -> (Self, Vec<String>) {
        let mut w = vec![];
        let anchors = pem_certs(&security.join("cacert"), &mut w);
        let intermediates = pem_certs(&security.join("untrusted"), &mut w);
        (Self::new(anchors, intermediates), w)
    }

    fn new(
        anchors: Vec<CertificateDer<'static>>,
        intermediates: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self {
            anchors,
            intermediates,
        }
    }

    /// A store of the CA certificates `anchors` alone (a layer's `member_ca`).
    pub fn from_anchors(anchors: Vec<CertificateDer<'static>>) -> Self {
        Self::new(anchors, vec![])
    }

    /// How many CA and intermediate certificates are loaded.
    pub fn counts(&self) -> (usize, usize) {
        (self.anchors.len(), self.intermediates.len())
    }

    /// Validates `cert` (DER) up to a trusted CA, now, and checks that its CN is `name`.
    pub fn verify(&self, cert: &[u8], name: &str) -> Result<(), AuthError> {
        self.verify_at(cert, name, UnixTime::now())
    }

    /// [`TrustStore::verify`] at time `now` (a pure function: the simulator passes its
    /// own time).
    pub fn verify_at(&self, cert: &[u8], name: &str, now: UnixTime) -> Result<(), AuthError> {
        let der = CertificateDer::from(cert.to_vec());
        let ee = webpki::EndEntityCert::try_from(&der).map_err(|source| AuthError::Unusable {
            why: explain(&source, cert),
            source,
        })?;
        let anchors: Vec<_> = self
            .anchors
            .iter()
            .filter_map(|a| webpki::anchor_from_trusted_cert(a).ok())
            .collect();
        if anchors.is_empty() {
            return Err(AuthError::NoTrustAnchor);
        }
        // A certificate for serverAuth (what scripts/pki.sh and the tutorials issue for
        // every end) or for clientAuth (a client's, which a server checks): either is one
        // for a flow's end. Without an extended key usage it is one for any.
        // Whether the chain found has name constraints: a name is then bound by the end
        // certificate's subjectAltName DNS names, which webpki checks against them, not by
        // its CN, which it does not (an intermediate limited to `team-a` could otherwise
        // issue `CN=bank`).
        let verify = |usage| {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &self.intermediates,
                now,
                usage,
                None,
                None,
            )
            .map(|path| {
                path.anchor().name_constraints.is_some()
                    || path
                        .intermediate_certificates()
                        .any(|c| has_name_constraints(c.der().as_ref()))
            })
        };
        let constrained = verify(webpki::KeyUsage::server_auth())
            .or_else(|e| verify(webpki::KeyUsage::client_auth()).map_err(|_| e))
            .map_err(|source| AuthError::Chain {
                why: explain(&source, cert),
                source,
            })?;
        if constrained && !san_dns_names(cert).iter().any(|d| d == name) {
            return Err(AuthError::NameNotConstrained {
                name: name.to_string(),
            });
        }
        let cn = common_name(cert)?;
        if cn != name {
            return Err(AuthError::WrongName {
                got: cn,
                want: name.to_string(),
            });
        }
        Ok(())
    }
}

/// A UNIX time as a date (`Nov 30 12:00:00 2026 +00:00`).
fn date(t: rustls_pki_types::UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    x509_parser::time::ASN1Time::from_timestamp(secs)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{secs} s after 1970"))
}

/// A certificate-validation error in words, with the dates and names that explain it.
pub fn explain(e: &webpki::Error, cert: &[u8]) -> String {
    let parsed = x509_parser::parse_x509_certificate(cert)
        .ok()
        .map(|(_, c)| c);
    // (A certificate's names come from whoever sent it, unverified: shown with control
    // characters escaped, so that they cannot forge log lines.)
    let subject = parsed
        .as_ref()
        .map(|c| c.subject().to_string().escape_debug().to_string())
        .unwrap_or_else(|| "the certificate".into());
    match e {
        webpki::Error::CertExpired { time, not_after } => format!(
            "{subject} expired on {} (it is now {})",
            date(*not_after),
            date(*time)
        ),
        webpki::Error::CertNotValidYet { time, not_before } => format!(
            "{subject} is not valid before {} (it is now {})",
            date(*not_before),
            date(*time)
        ),
        webpki::Error::UnknownIssuer => format!(
            "the issuer of {subject} ({}) is not a trusted CA (security/cacert) and no chain to one was found (security/untrusted)",
            parsed
                .as_ref()
                .map(|c| c.issuer().to_string().escape_debug().to_string())
                .unwrap_or_else(|| "unknown".into())
        ),
        webpki::Error::InvalidSignatureForPublicKey => {
            format!("the signature on {subject} does not match its issuer's key")
        }
        webpki::Error::CaUsedAsEndEntity => format!("{subject} is a CA certificate, not a server's"),
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            format!("{subject} is not allowed for this use (extended key usage)")
        }
        other => format!("{subject}: {other}"),
    }
}

/// The subject CN of a DER certificate.
pub fn common_name(cert: &[u8]) -> Result<String, AuthError> {
    let (_, c) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| AuthError::BadCertificate(e.to_string()))?;
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    cn.ok_or(AuthError::NoCommonName)
}

/// Checks an ECDSA signature made by `cert`'s key over `msg` with digest `md_nid`.
pub fn verify_signature(cert: &[u8], md_nid: u16, msg: &[u8], sig: &[u8]) -> Result<(), AuthError> {
    let (_, c) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| AuthError::BadCertificate(e.to_string()))?;
    let spki = c.public_key();
    let key = spki.subject_public_key.data.as_ref();
    let curve = match key.len() {
        65 => 256,
        97 => 384,
        n => return Err(AuthError::UnsupportedKey(n)),
    };
    // md_nid 0 (a peer with a certificate but no enc.conf) means OpenSSL's default digest
    // for an EC key: SHA-256 on every curve (facts 1.9, verified live against the
    // reference; the request hash in such a response stays SHA-384).
    let alg: &dyn signature::VerificationAlgorithm = match (curve, md_nid) {
        (256, 0 | 672) => &signature::ECDSA_P256_SHA256_ASN1,
        (256, 673) => &signature::ECDSA_P256_SHA384_ASN1,
        (384, 0 | 672) => &signature::ECDSA_P384_SHA256_ASN1,
        (384, 673) => &signature::ECDSA_P384_SHA384_ASN1,
        (_, md) => return Err(AuthError::UnsupportedDigest(md)),
    };
    signature::UnparsedPublicKey::new(alg, key)
        .verify(msg, sig)
        .map_err(|_| AuthError::BadSignature)
}

/// Signs an OAP header with `sg`: its certificate, its digest, and the signature over
/// every byte before it appended to the tail.
pub fn sign_header(
    sg: &Signer,
    mut h: o7s_wire::oap::OapHdr,
) -> Result<o7s_wire::oap::OapHdr, AuthError> {
    h.crt = sg.cert.clone();
    h.md_nid = sg.md_nid;
    let unsigned = h
        .to_bytes()
        .map_err(|e| AuthError::BadCertificate(e.to_string()))?;
    let sig = sg.sign(&unsigned)?;
    h.tail.extend_from_slice(&sig);
    Ok(h)
}

/// A certificate and its private key, to sign OAP headers.
pub struct Signer {
    /// DER certificate.
    pub cert: Vec<u8>,
    key: EcdsaKeyPair,
    /// Digest NID of the signatures (SHA-256 for P-256, SHA-384 for P-384).
    pub md_nid: u16,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("md_nid", &self.md_nid)
            .finish()
    }
}

/// Reads a DER length at `b[*i]`, advancing `i`.
fn der_len(b: &[u8], i: &mut usize) -> Option<usize> {
    let first = *b.get(*i)?;
    *i += 1;
    if first < 0x80 {
        return Some(usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 2 {
        return None;
    }
    let mut len = 0usize;
    for _ in 0..n {
        len = (len << 8) | usize::from(*b.get(*i)?);
        *i += 1;
    }
    Some(len)
}

/// The private scalar and public point of a SEC1 `ECPrivateKey` (what
/// `openssl ecparam -genkey` writes).
fn sec1_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut i = 0;
    if *der.get(i)? != 0x30 {
        return None;
    }
    i += 1;
    let _ = der_len(der, &mut i)?;
    // version INTEGER 1
    if der.get(i..i + 3)? != [0x02, 0x01, 0x01] {
        return None;
    }
    i += 3;
    if *der.get(i)? != 0x04 {
        return None;
    }
    i += 1;
    let l = der_len(der, &mut i)?;
    let scalar = der.get(i..i + l)?;
    i += l;
    let mut point = None;
    while i < der.len() {
        let tag = *der.get(i)?;
        i += 1;
        let l = der_len(der, &mut i)?;
        let body = der.get(i..i + l)?;
        i += l;
        if tag == 0xa1 {
            // BIT STRING { 0 unused bits, point }
            let mut j = 0;
            if *body.first()? != 0x03 {
                return None;
            }
            j += 1;
            let bl = der_len(body, &mut j)?;
            let bits = body.get(j..j + bl)?;
            point = bits.get(1..);
        }
    }
    Some((scalar, point?))
}

/// Why the private key file at `path` is exposed to other users (readable or writable by
/// its group or anyone, or owned by another user than this process's), or `None`.
pub fn key_file_exposed(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mode = m.mode() & 0o777;
    let me = nix::unistd::geteuid().as_raw();
    if mode & 0o077 != 0 {
        Some(format!(
            "{} is readable or writable by other users (mode {mode:o}; chmod 600 it)",
            path.display()
        ))
    } else if m.uid() != me && m.uid() != 0 {
        Some(format!(
            "{} is owned by user {}, not by this process's ({me})",
            path.display(),
            m.uid()
        ))
    } else {
        None
    }
}

impl Signer {
    /// Loads `crt.pem` and `key.pem` (PKCS#8 or SEC1 EC keys, P-256 or P-384). A key file
    /// that other users may read is used, with a warning ([`key_file_exposed`]).
    pub fn load(crt: &Path, key: &Path) -> Result<Self, AuthError> {
        if let Some(why) = key_file_exposed(key) {
            // Once per file: a key is loaded for every signature (every allocation).
            static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
            if let Ok(mut w) = WARNED.lock() {
                if !w.iter().any(|p| p == key) && w.len() < 1024 {
                    w.push(key.to_path_buf());
                    tracing::warn!("Private key: {why}.");
                }
            }
        }
        let file = |path: &Path, why: String| AuthError::File {
            path: path.to_path_buf(),
            why,
        };
        let cert = CertificateDer::from_pem_file(crt).map_err(|e| file(crt, e.to_string()))?;
        let pk = PrivateKeyDer::from_pem_file(key).map_err(|e| file(key, e.to_string()))?;
        let rng = SystemRandom::new();
        let try_alg = |alg: &'static signature::EcdsaSigningAlgorithm| -> Option<EcdsaKeyPair> {
            match &pk {
                PrivateKeyDer::Pkcs8(p) => {
                    EcdsaKeyPair::from_pkcs8(alg, p.secret_pkcs8_der(), &rng).ok()
                }
                PrivateKeyDer::Sec1(s) => {
                    let (scalar, point) = sec1_parts(s.secret_sec1_der())?;
                    EcdsaKeyPair::from_private_key_and_public_key(alg, scalar, point, &rng).ok()
                }
                _ => None,
            }
        };
        let (kp, md_nid) = if let Some(k) = try_alg(&signature::ECDSA_P256_SHA256_ASN1_SIGNING) {
            (k, 672)
        } else if let Some(k) = try_alg(&signature::ECDSA_P384_SHA384_ASN1_SIGNING) {
            (k, 673)
        } else {
            return Err(file(key, "not an ECDSA P-256 or P-384 private key".into()));
        };
        // The key must be the certificate's.
        let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| file(crt, e.to_string()))?;
        if c.public_key().subject_public_key.data.as_ref() != kp.public_key().as_ref() {
            return Err(AuthError::KeyMismatch {
                key: key.to_path_buf(),
                crt: crt.to_path_buf(),
            });
        }
        Ok(Self {
            cert: cert.as_ref().to_vec(),
            key: kp,
            md_nid,
        })
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        let rng = SystemRandom::new();
        self.key
            .sign(&rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| AuthError::Signing)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_key_that_others_may_read_is_said_to_be_exposed() {
        let dir = std::env::temp_dir().join(format!("o7s-keyperm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = dir.join("key.pem");
        std::fs::write(&k, b"not a key").unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(key_file_exposed(&k), None);
        for mode in [0o644, 0o640, 0o602] {
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(mode)).unwrap();
            let why = key_file_exposed(&k).unwrap();
            assert!(
                why.contains("other users") && why.contains("chmod 600"),
                "{why}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
