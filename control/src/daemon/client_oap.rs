//! The client's side of OAP on every layer: the request (signed, with an ephemeral key
//! when the name's settings ask for encryption) and the check of the response (the
//! server's signature and certificate, the keys).

use crate::daemon::{now_ns, Owner};
use crate::error::FlowError;
use crate::security::Ephemeral;
use o7s_abi::msg::CryptSpec;
use o7s_wire::oap::OapHdr;

/// A client's OAP request and what it needs to read the response.
pub(super) struct ClientOap {
    /// The request's bytes.
    pub(super) req_oap: Vec<u8>,
    /// The name's encryption settings, when it has them.
    pub(super) enc: Option<(o7s_proto::oap::keys::EncConf, std::path::PathBuf)>,
    /// The ephemeral key of the exchange, when encrypting.
    pub(super) eph: Option<Ephemeral>,
}

impl Owner {
    /// The OAP request of process `pid` for a flow to `name`: with an ephemeral key when
    /// the name's client settings ask for encryption, signed when a client certificate
    /// exists (tutorial 06); the same on every layer.
    pub(super) fn client_oap(&self, name: &str, pid: i32) -> Result<ClientOap, FlowError> {
        self.client_oap_as(name, pid, None)
    }

    /// [`Daemon::client_oap`], signed with `member`'s certificate when given (an N-1 flow
    /// of an IPCP of a secured layer) instead of the name's client certificate.
    pub(super) fn client_oap_as(
        &self,
        name: &str,
        pid: i32,
        member: Option<&crate::membership::Membership>,
    ) -> Result<ClientOap, FlowError> {
        let enc = self.enc_conf("client", name).map_err(FlowError::Settings)?;
        let mut req_hdr = OapHdr::unsigned(rand::random(), now_ns(), vec![]);
        let eph = match &enc {
            Some((c, path)) => {
                tracing::info!("Encryption enabled for {name} ({}).", path.display());
                let e = Ephemeral::generate(c.kex, &ring::rand::SystemRandom::new())
                    .map_err(|e| FlowError::Internal(e.to_string()))?;
                tracing::debug!("Generated ephemeral keys for {pid}.");
                req_hdr.cipher_nid = c.cipher.nid();
                req_hdr.kdf_nid = c.kdf.nid();
                req_hdr.md_nid = c.digest;
                req_hdr.kex = e.spki.clone();
                Some(e)
            }
            None => {
                tracing::debug!("No security info for {name}.");
                None
            }
        };
        let own;
        let signer = match member {
            Some(m) => Some(&m.signer),
            None => {
                own = self.signer("client", name).map_err(FlowError::Signer)?;
                own.as_ref()
            }
        };
        if let Some(sg) = signer {
            req_hdr.crt = sg.cert.clone();
            req_hdr.md_nid = sg.md_nid;
            let unsigned = req_hdr
                .to_bytes()
                .map_err(|e| FlowError::Internal(e.to_string()))?;
            req_hdr.tail = sg.sign(&unsigned).map_err(FlowError::Signer)?;
        }
        let req_oap = req_hdr
            .to_bytes()
            .map_err(|e| FlowError::Internal(e.to_string()))?;
        Ok(ClientOap { req_oap, enc, eph })
    }

    /// Checks the server's OAP response to `c` (it answers our request, the server is who
    /// the name's trust says) and derives the flow's key when encrypting.
    pub(super) fn client_finish(
        &self,
        name: &str,
        c: ClientOap,
        resp: &[u8],
    ) -> Result<Option<CryptSpec>, FlowError> {
        self.client_finish_as(name, c, resp, None)
    }

    /// [`Daemon::client_finish`]; with `member`, the server must prove that it is a member
    /// of the layer (its certificate under the layer CA, its signature over the response).
    pub(super) fn client_finish_as(
        &self,
        name: &str,
        c: ClientOap,
        resp: &[u8],
        member: Option<&crate::membership::Membership>,
    ) -> Result<Option<CryptSpec>, FlowError> {
        o7s_proto::oap::check_response(&c.req_oap, resp)
            .map_err(|source| FlowError::BadResponse {
                name: name.to_string(),
                source,
            })
            .and_then(|()| {
                match member {
                    Some(m) => super::oap_glue::member_response(m, &c.req_oap, resp).map(|cn| {
                        tracing::info!(
                            "{name}: member {cn} of the layer of {} authenticated.",
                            m.ipcp
                        )
                    }),
                    None => self.authenticate_server(name, &c.req_oap, resp),
                }
                .map_err(|source| FlowError::Unauthenticated {
                    name: name.to_string(),
                    source: Box::new(source),
                })
            })?;
        match (c.enc, c.eph) {
            (Some((conf, _)), Some(eph)) => o7s_proto::oap::client_key(&conf, eph, resp)
                .map(|k| {
                    Some(CryptSpec {
                        cipher: k.cipher,
                        key: k.key.to_vec(),
                        rotation_bits: self.settings.key_rotation_bits,
                    })
                })
                .map_err(|source| FlowError::BadResponse {
                    name: name.to_string(),
                    source,
                }),
            _ => Ok(None),
        }
    }
}
