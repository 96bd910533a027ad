//! OAP in o7sd: certificates and keys from the security directory, checking requests,
//! signing responses, verifying servers; the protocol itself is `o7s_proto::oap`.

use crate::auth::AuthError;
use crate::daemon::{now_ns, Owner};
use crate::error::OapCheckError;
use crate::replay::ReplayError;
use crate::security::EncConf;
use o7s_abi::msg::CryptSpec;
use o7s_wire::oap::{OapHdr, Role};

/// The replay window's key for where a request came from: a MAC, an IP address (whatever
/// the port; an IPv4-mapped IPv6 address as its IPv4 one; an IPv6 address by its /64, which
/// one host holds whole), or a member's address in a unicast layer.
pub(super) fn source_key(peer: Option<&o7s_proto::mgmt::Peer>, member: Option<u64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match (peer, member) {
        (Some(o7s_proto::mgmt::Peer::Ip(a)), _) => match a.ip().to_canonical() {
            std::net::IpAddr::V4(v4) => (1u8, v4.octets()).hash(&mut h),
            std::net::IpAddr::V6(v6) => (4u8, v6.segments()[..4].to_vec()).hash(&mut h),
        },
        (Some(o7s_proto::mgmt::Peer::Mac(m)), _) => (2u8, m).hash(&mut h),
        (None, a) => (3u8, a).hash(&mut h),
    }
    h.finish()
}

impl Owner {
    /// The certificate and key of `side` for `name`, when both files exist (TOML overrides
    /// `<side>_crt_file`, `<side>_key_file`, else `<security>/<side>/<name>/{crt,key}.pem`).
    pub(super) fn signer(
        &self,
        side: &str,
        name: &str,
    ) -> Result<Option<crate::auth::Signer>, AuthError> {
        let over = |k: &str| {
            self.st().reg.names.get(name).and_then(|e| {
                e.paths
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, p)| p.clone())
            })
        };
        let dir = self.settings.security_dir.join(side).join(name);
        let (crt_key, key_key) = (format!("{side}_crt_file"), format!("{side}_key_file"));
        // A file the configuration names must be there (it was when the configuration was
        // loaded): a missing one is an error, not "no authentication".
        for k in [&crt_key, &key_key] {
            if let Some(p) = over(k).filter(|p| !p.exists()) {
                return Err(AuthError::NamedFileMissing {
                    path: p,
                    key: k.clone(),
                    name: name.to_string(),
                });
            }
        }
        let crt = over(&crt_key).unwrap_or_else(|| dir.join("crt.pem"));
        let key = over(&key_key).unwrap_or_else(|| dir.join("key.pem"));
        let half = |have: &std::path::Path, missing: &std::path::Path, what| AuthError::HalfPair {
            have: have.to_path_buf(),
            missing: missing.to_path_buf(),
            what,
            side: side.to_string(),
            name: name.to_string(),
        };
        match (crt.exists(), key.exists()) {
            (true, false) => return Err(half(&crt, &key, "a certificate without its key")),
            (false, true) => return Err(half(&key, &crt, "a key without its certificate")),
            _ => {}
        }
        if !crt.exists() || !key.exists() {
            tracing::debug!(
                "File {} or {} does not exist.",
                crt.display(),
                key.display()
            );
            return Ok(None);
        }
        crate::auth::Signer::load(&crt, &key).map(Some)
    }

    /// Replay protection and client authentication of a request from `source` (a
    /// [`source_key`]). Its id is recorded against replays only once it passed (a forged
    /// request takes no room in the window).
    pub(super) fn check_request(
        &self,
        req: &OapHdr,
        raw: &[u8],
        source: u64,
    ) -> Result<(), OapCheckError> {
        self.check_oap_fresh(req)?;
        if req.crt.is_empty() {
            tracing::debug!("No certificate provided by <client>.");
            // An unsigned request proves nothing, so its replay gives an attacker nothing
            // it could not have by sending a new one: when its share of the window is full
            // (a flood, or one host allocating fast), it passes unrecorded, counted,
            // rather than refused (which would let any host stop every open allocation).
            return match self.record_oap_id(req, Some(source)) {
                Err(OapCheckError::Replay {
                    source: ReplayError::FullUnsigned | ReplayError::FullSource,
                    ..
                }) => {
                    self.counters
                        .oap_replay_unchecked
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                }
                r => r,
            };
        }
        let (_, sig) = req.split_tail(Role::Request, 0)?;
        let signed = raw
            .get(..req.signed_len(Role::Request, 0))
            .ok_or(OapCheckError::Truncated("request"))?;
        let cn = {
            let trust = self.trust.borrow();
            let cn =
                crate::auth::common_name(&req.crt).map_err(OapCheckError::ClientCertificate)?;
            trust
                .verify(&req.crt, &cn)
                .map_err(OapCheckError::ClientCertificate)?;
            crate::auth::verify_signature(&req.crt, req.md_nid, signed, sig)
                .map_err(OapCheckError::ClientSignature)?;
            cn
        };
        self.record_oap_id(req, None)?;
        crate::wire_log!(info, "Successfully authenticated client {cn}.");
        Ok(())
    }

    /// Replay protection and membership of a request for a name of an IPCP of a secured
    /// layer: its certificate under the layer CA, its signature. The member's CN.
    pub(super) fn check_member_request(
        &self,
        m: &crate::membership::Membership,
        req: &OapHdr,
        raw: &[u8],
    ) -> Result<String, OapCheckError> {
        self.check_oap_fresh(req)?;
        if req.crt.is_empty() {
            return Err(m
                .check_peer(&[], 0, &[], &[], rustls_pki_types::UnixTime::now())
                .err()
                .map_or(OapCheckError::Truncated("request"), OapCheckError::from));
        }
        let (_, sig) = req.split_tail(Role::Request, 0)?;
        let signed = raw
            .get(..req.signed_len(Role::Request, 0))
            .ok_or(OapCheckError::Truncated("request"))?;
        let cn = m.check_peer(
            &req.crt,
            req.md_nid,
            signed,
            sig,
            rustls_pki_types::UnixTime::now(),
        )?;
        self.record_oap_id(req, None)?;
        Ok(cn)
    }

    /// Records the id of a request that passed its checks against replays: `unsigned` is
    /// its source when it had no certificate (`None`: its certificate and signature were
    /// verified).
    fn record_oap_id(&self, req: &OapHdr, unsigned: Option<u64>) -> Result<(), OapCheckError> {
        self.replay
            .borrow_mut()
            .record(req.id, now_ns(), unsigned)
            .map_err(|source| OapCheckError::Replay {
                id: hex::encode(req.id),
                source,
            })
    }

    /// A request's time stamp (not from the future, not older than 20 s) and id (not seen
    /// before; recorded by [`Owner::record_oap_id`] once the request passed).
    fn check_oap_fresh(&self, req: &OapHdr) -> Result<(), OapCheckError> {
        let now = now_ns();
        if req.timestamp > now.saturating_add(crate::replay::MAX_AHEAD_NS) {
            return Err(OapCheckError::Future);
        }
        if now.saturating_sub(req.timestamp) > crate::replay::WINDOW_NS {
            return Err(OapCheckError::Outdated);
        }
        self.replay
            .borrow_mut()
            .seen(req.id, now)
            .map_err(|source| OapCheckError::Replay {
                id: hex::encode(req.id),
                source,
            })?;
        Ok(())
    }

    /// Signs a response with the server's certificate for `name`, if it has one.
    pub(super) fn sign_response(&self, name: &str, resp: OapHdr) -> Result<OapHdr, AuthError> {
        match self.signer("server", name)? {
            Some(sg) => crate::auth::sign_header(&sg, resp),
            None => Ok(resp),
        }
    }

    /// Verifies the server's certificate (chain, CN = `name`) and signature, when it sent one.
    pub(super) fn authenticate_server(
        &self,
        name: &str,
        req: &[u8],
        resp: &[u8],
    ) -> Result<(), OapCheckError> {
        let required = self
            .st()
            .reg
            .names
            .get(name)
            .is_some_and(|e| e.server_auth_required);
        let trust = self.trust.borrow();
        verify_response_requiring(&trust, name, req, resp, required)
    }

    /// The `enc.conf` of `side` ("client" or "server") for `name`: the TOML override
    /// (`client_enc_file`, `server_enc_file`) or `<security>/<side>/<name>/enc.conf`.
    pub(super) fn enc_conf(
        &self,
        side: &str,
        name: &str,
    ) -> Result<Option<(EncConf, std::path::PathBuf)>, crate::security::EncFileError> {
        let key = format!("{side}_enc_file");
        let file = self.st().reg.names.get(name).and_then(|e| {
            e.paths
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, p)| p.clone())
        });
        let dir = self.settings.security_dir.join(side).join(name);
        crate::security::load_enc(&dir, file.as_deref())
    }
}

/// Checks that a response proves membership of `m`'s layer: a certificate under the layer
/// CA, signed over every byte before the signature. The member's CN.
pub(super) fn member_response(
    m: &crate::membership::Membership,
    req: &[u8],
    resp: &[u8],
) -> Result<String, OapCheckError> {
    let now = rustls_pki_types::UnixTime::now();
    let r = OapHdr::parse(resp)?;
    if r.crt.is_empty() {
        return Err(m
            .check_peer(&[], 0, &[], &[], now)
            .err()
            .map_or(OapCheckError::Truncated("response"), OapCheckError::from));
    }
    let q = OapHdr::parse(req)?;
    let hl = o7s_proto::oap::req_hash(req, q.md_nid)?.len();
    let (_, sig) = r.split_tail(Role::Response, hl)?;
    let signed = resp
        .get(..r.signed_len(Role::Response, hl))
        .ok_or(OapCheckError::Truncated("response"))?;
    Ok(m.check_peer(&r.crt, r.md_nid, signed, sig, now)?)
}

/// The hash of a request as its response carries it (`o7s_proto::oap::req_hash`).
pub fn req_hash(req: &[u8], md_nid: u16) -> Result<Vec<u8>, o7s_proto::oap::OapError> {
    o7s_proto::oap::req_hash(req, md_nid)
}

/// Verifies a response's certificate (chain up to `trust`, CN = `name`) and its signature
/// over every byte before it, when the server sent a certificate.
pub fn verify_response(
    trust: &crate::auth::TrustStore,
    name: &str,
    req: &[u8],
    resp: &[u8],
) -> Result<(), OapCheckError> {
    verify_response_at(trust, name, req, resp, rustls_pki_types::UnixTime::now())
}

/// [`verify_response`]; with `required` (`server_auth = "required"` for the name) a
/// response without a certificate is refused: a man in the middle can strip the server's
/// certificate and signature and answer with its own key (the reference takes that).
pub fn verify_response_requiring(
    trust: &crate::auth::TrustStore,
    name: &str,
    req: &[u8],
    resp: &[u8],
    required: bool,
) -> Result<(), OapCheckError> {
    if required && OapHdr::parse(resp)?.crt.is_empty() {
        return Err(OapCheckError::ServerUnauthenticated(name.to_string()));
    }
    verify_response(trust, name, req, resp)
}

/// [`verify_response`] at time `now` (the simulator passes its own).
pub fn verify_response_at(
    trust: &crate::auth::TrustStore,
    name: &str,
    req: &[u8],
    resp: &[u8],
    now: rustls_pki_types::UnixTime,
) -> Result<(), OapCheckError> {
    let r = OapHdr::parse(resp)?;
    if r.crt.is_empty() {
        tracing::info!("No certificate provided by {name}.");
        return Ok(());
    }
    tracing::debug!("Loaded peer certificate for {name}.");
    let q = OapHdr::parse(req)?;
    let hl = o7s_proto::oap::req_hash(req, q.md_nid)?.len();
    let (_, sig) = r.split_tail(Role::Response, hl)?;
    let signed = resp
        .get(..r.signed_len(Role::Response, hl))
        .ok_or(OapCheckError::Truncated("response"))?;
    trust
        .verify_at(&r.crt, name, now)
        .map_err(OapCheckError::ServerCertificate)?;
    tracing::info!("Successfully verified peer certificate for {name}.");
    crate::auth::verify_signature(&r.crt, r.md_nid, signed, sig)
        .map_err(OapCheckError::ServerSignature)?;
    tracing::info!("Successfully authenticated {name}.");
    Ok(())
}

/// The server's OAP response and flow key (`o7s_proto::oap::server_key`), with the time
/// and randomness of this host.
pub(super) fn server_key(
    conf: Option<EncConf>,
    req: &OapHdr,
    raw_req: &[u8],
) -> Result<(OapHdr, Option<CryptSpec>), OapCheckError> {
    let rng = ring::rand::SystemRandom::new();
    let (resp, key) = o7s_proto::oap::server_key(conf, req, raw_req, now_ns(), &rng)?;
    if resp.cipher_nid != req.cipher_nid || resp.kdf_nid != req.kdf_nid {
        // Any host can send such requests: at most `wire_log`'s lines a second.
        crate::wire_log!(
            info,
            "The client asked for cipher {} / KDF {}; this server requires at least {} / {}: using those.",
            req.cipher_nid,
            req.kdf_nid,
            resp.cipher_nid,
            resp.kdf_nid
        );
    }
    Ok((
        resp,
        key.map(|k| CryptSpec {
            cipher: k.cipher,
            key: k.key.to_vec(),
            rotation_bits: 0,
        }),
    ))
}

#[cfg(test)]
mod source_tests {
    use super::source_key;
    use o7s_proto::mgmt::Peer;

    #[test]
    fn a_source_is_its_mac_its_ip_whatever_the_port_or_its_member_address() {
        let ip = |s: &str| Peer::Ip(s.parse().unwrap_or_else(|_| unreachable!()));
        let a = ip("10.0.0.1:3435");
        assert_eq!(
            source_key(Some(&a), None),
            source_key(Some(&ip("10.0.0.1:9999")), None)
        );
        assert_ne!(
            source_key(Some(&a), None),
            source_key(Some(&ip("10.0.0.2:3435")), None)
        );
        let m = Peer::Mac([2, 0, 0, 0, 0, 1]);
        assert_ne!(
            source_key(Some(&m), None),
            source_key(Some(&Peer::Mac([2, 0, 0, 0, 0, 2])), None)
        );
        assert_ne!(source_key(None, Some(1)), source_key(None, Some(2)));
        // IPv6: one /64 is one source; a mapped IPv4 address is that address.
        assert_eq!(
            source_key(Some(&ip("[2001:db8:1:2::1]:1")), None),
            source_key(Some(&ip("[2001:db8:1:2:ffff::9]:2")), None)
        );
        assert_ne!(
            source_key(Some(&ip("[2001:db8:1:2::1]:1")), None),
            source_key(Some(&ip("[2001:db8:1:3::1]:1")), None)
        );
        assert_eq!(
            source_key(Some(&ip("[::ffff:10.0.0.1]:5")), None),
            source_key(Some(&a), None)
        );
        assert_eq!(source_key(None, Some(1)), source_key(None, Some(1)));
    }
}
