//! Layer membership (issue 26 item 1): a unicast or broadcast IPCP configured with
//! `member_ca`, `member_crt` and `member_key` admits only members of its layer on its N-1
//! flows, and proves that it is one. Every N-1 flow (Enrollment, Management, Data
//! Transfer) is allocated with OAP (facts §1.8.9), as an application's flow is:
//!
//! - allocating, the IPCP signs its OAP request with its member certificate (CN = its
//!   name) and requires the response to carry a certificate that chains to the layer CA,
//!   signed over the response;
//! - accepting a flow for its name or its layer's, it requires the same of the request
//!   (refused with `Security`, the reason in its log and counted) and signs its response.
//!
//! The CA vouches for membership: any certificate it issued is a member's, whatever its
//! CN (a member's CN is its IPCP name, shown in the logs). Which member may answer for
//! which application name is the directory's business, not this. Without the keys the
//! layer is open, as the reference's (o7s says so once in its log).

use crate::auth::{AuthError, Signer, TrustStore};
use crate::config::MemberFiles;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::Path;

/// A member of a secured layer: the layer's CA and this IPCP's certificate and key.
#[derive(Debug)]
pub struct Membership {
    /// Peers admitted (their certificates checked) on N-1 flows.
    pub admitted: std::sync::atomic::AtomicU64,
    /// Peers refused: no certificate, another CA's, expired, a bad signature.
    pub refused: std::sync::atomic::AtomicU64,
    /// The IPCP.
    pub ipcp: String,
    /// The CA file, as configured (for `ipcp list` and the logs).
    pub ca_file: String,
    /// The layer CA's certificates.
    trust: TrustStore,
    /// This IPCP's certificate and key.
    pub signer: Signer,
}

/// Why a peer is not a member.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotMember {
    /// It sent no certificate.
    #[error("no member certificate: layer of {ipcp} admits members only (member_ca {ca})")]
    NoCertificate {
        /// Our IPCP.
        ipcp: String,
        /// Our CA file.
        ca: String,
    },
    /// Its certificate is not one of the layer CA's, or is expired, or unusable.
    #[error("not a member of the layer of {ipcp}: {source}")]
    Certificate {
        /// Our IPCP.
        ipcp: String,
        /// Why.
        #[source]
        source: Box<AuthError>,
    },
    /// Its signature does not verify with its certificate.
    #[error("member {cn}: {source}")]
    Signature {
        /// The certificate's CN.
        cn: String,
        /// Why.
        #[source]
        source: Box<AuthError>,
    },
}

impl Membership {
    /// Loads the files of IPCP `ipcp`: the CA's certificates (PEM, at least one) and this
    /// IPCP's certificate and key. With a warning when its own certificate does not
    /// verify under the CA (expired, another CA's): its peers will refuse it, and say why.
    pub fn load(ipcp: &str, f: &MemberFiles) -> Result<(Self, Option<String>), AuthError> {
        let anchors = CertificateDer::pem_file_iter(Path::new(&f.ca))
            .map_err(|e| AuthError::File {
                path: f.ca.clone().into(),
                why: e.to_string(),
            })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AuthError::File {
                path: f.ca.clone().into(),
                why: e.to_string(),
            })?;
        if anchors.is_empty() {
            return Err(AuthError::File {
                path: f.ca.clone().into(),
                why: "no certificate in it".into(),
            });
        }
        let signer = Signer::load(Path::new(&f.crt), Path::new(&f.key))?;
        let m = Self {
            admitted: 0.into(),
            refused: 0.into(),
            ipcp: ipcp.to_string(),
            ca_file: f.ca.clone(),
            trust: TrustStore::from_anchors(anchors),
            signer,
        };
        let warning = m
            .verify_chain(&m.signer.cert, UnixTime::now())
            .err()
            .map(|e| {
                format!(
                    "{}: does not verify under the layer CA in {}: {e}; members will refuse this IPCP",
                    f.crt, f.ca
                )
            });
        Ok((m, warning))
    }

    /// A chain error in the layer's terms: the trusted CA is the layer's (`member_ca`),
    /// not the security directory's.
    fn in_layer_terms(&self, e: AuthError) -> AuthError {
        match e {
            AuthError::Chain { why, source } => AuthError::Chain {
                why: why
                    .replace(
                        "is not a trusted CA (security/cacert)",
                        &format!("is not the layer CA ({})", self.ca_file),
                    )
                    .replace(" and no chain to one was found (security/untrusted)", ""),
                source,
            },
            other => other,
        }
    }

    /// The certificate chains to the layer CA at `now`: its CN, the member's name.
    fn verify_chain(&self, cert: &[u8], now: UnixTime) -> Result<String, AuthError> {
        let cn = crate::auth::common_name(cert)?;
        self.trust.verify_at(cert, &cn, now)?;
        Ok(cn)
    }

    /// A certificate of a member of this layer at `now` (it chains to the layer CA): its
    /// CN; the error in the layer's terms.
    pub fn verify_member(&self, cert: &[u8], now: UnixTime) -> Result<String, AuthError> {
        self.verify_chain(cert, now)
            .map_err(|e| self.in_layer_terms(e))
    }

    /// Checks a peer's OAP certificate `crt` and its signature `sig` (digest `md_nid`) over
    /// `signed`: a member of this layer. Its CN.
    pub fn check_peer(
        &self,
        crt: &[u8],
        md_nid: u16,
        signed: &[u8],
        sig: &[u8],
        now: UnixTime,
    ) -> Result<String, NotMember> {
        use std::sync::atomic::Ordering;
        let r = self.check(crt, md_nid, signed, sig, now);
        match &r {
            Ok(_) => self.admitted.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.refused.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    fn check(
        &self,
        crt: &[u8],
        md_nid: u16,
        signed: &[u8],
        sig: &[u8],
        now: UnixTime,
    ) -> Result<String, NotMember> {
        if crt.is_empty() {
            return Err(NotMember::NoCertificate {
                ipcp: self.ipcp.clone(),
                ca: self.ca_file.clone(),
            });
        }
        let cn = self
            .verify_chain(crt, now)
            .map_err(|source| NotMember::Certificate {
                ipcp: self.ipcp.clone(),
                source: Box::new(self.in_layer_terms(source)),
            })?;
        crate::auth::verify_signature(crt, md_nid, signed, sig).map_err(|source| {
            NotMember::Signature {
                cn: cn.clone(),
                source: Box::new(source),
            }
        })?;
        Ok(cn)
    }
}
