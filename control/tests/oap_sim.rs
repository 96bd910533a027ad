//! OAP with authentication in the simulator: o7s-proto's shim machines on a virtual
//! segment, with the OAP functions o7sd uses on each end (`o7s_proto::oap` for requests,
//! keys and checks; o7sd's `auth` for signing, chain validation and the CN, at the
//! simulator's time). No socket, no file but the test PKI in tests/data/sim-pki (made by
//! scripts/pki.sh with CURVE=P-256 NAME=srv.sim.o7s; valid from 2026-11-30 for a year,
//! which the virtual clock picks, so the test does not expire).
//!
//! Cases: a server with a valid certificate (authenticated), the same with encryption on
//! both sides (authenticated, both ends' keys equal), a certificate for another name, one
//! from an untrusted CA, and the valid one two years on (expired): the client refuses the
//! last three with the reason.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_control::auth::{sign_header, AuthError, Signer, TrustStore};
use o7s_control::daemon::verify_response_at;
use o7s_control::error::OapCheckError;
use o7s_proto::mgmt::{Peer, ShimKind};
use o7s_proto::oap::keys::{EncConf, Ephemeral};
use o7s_proto::oap::{self, FlowKey};
use o7s_proto::shim::{Event, Shim, ShimConfig};
use o7s_proto::sim::{LinkModel, Node, Sim};
use o7s_wire::hash::HashAlgo;
use o7s_wire::oap::{OapHdr, Role};
use o7s_wire::qos::QosSpec;
use rustls_pki_types::UnixTime;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NAME: &str = "srv.sim.o7s";

fn pki(f: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sim-pki")
        .join(f)
}

fn signer(which: &str) -> Signer {
    Signer::load(
        &pki(&format!("{which}.crt.pem")),
        &pki(&format!("{which}.key.pem")),
    )
    .unwrap()
}

/// How the client's check failed: o7sd's typed error, or another step's words.
#[derive(Debug)]
enum Fail {
    Check(OapCheckError),
    Other(#[allow(dead_code)] String),
}

/// A refusal the case expects: its description and a test of the error's variant.
type Refusal = (&'static str, fn(&OapCheckError) -> bool);

/// A case: the server's certificate, the client's and server's `enc.conf`, the client's
/// time, and what must happen (up, encrypted or not; or the refusal, by its variant).
type Case<'a> = (
    &'a str,
    Option<EncConf>,
    Option<EncConf>,
    UnixTime,
    Result<bool, Refusal>,
);

/// 2026-12-01: inside the test certificates' year.
const DEC_2026: u64 = 1_796_083_200;

enum Role2 {
    Client {
        enc: Option<EncConf>,
        trust: TrustStore,
        now: UnixTime,
        sent: Option<(Vec<u8>, Option<Ephemeral>)>,
        result: Option<Result<Option<FlowKey>, Fail>>,
    },
    Server {
        enc: Option<EncConf>,
        signer: Signer,
        keys: Vec<Option<FlowKey>>,
    },
}

struct Host {
    mac: [u8; 6],
    shim: Shim,
    role: Role2,
    /// When the client starts (asks for the name).
    start: Option<Instant>,
}

impl Node for Host {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn handle(&mut self, now: Instant, src: Peer, dst: [u8; 6], payload: &[u8]) {
        self.shim.handle(now, src, Some(dst), payload);
        self.events(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.start.is_some_and(|t| t <= now) {
            self.start = None;
            let hash = HashAlgo::Sha3_256.hash(NAME);
            self.shim.query(now, hash, Duration::from_secs(1)).unwrap();
        }
        self.shim.handle_timeout(now);
        self.events(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        [self.start, self.shim.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<([u8; 6], Vec<u8>)> {
        let t = self.shim.poll_transmit()?;
        Some((t.dst.mac(), t.msg.build(ShimKind::Dix)))
    }
}

impl Host {
    fn events(&mut self, now: Instant) {
        let rng = ring::rand::SystemRandom::new();
        while let Some(e) = self.shim.poll_event() {
            match (&mut self.role, e) {
                (Role2::Client { enc, sent, .. }, Event::QueryAnswered { hash, peer }) => {
                    let (req, eph) = oap::client_request([1; 16], 1, enc.as_ref(), &rng).unwrap();
                    let raw = req.to_bytes().unwrap();
                    let timeout = Duration::from_secs(2);
                    self.shim
                        .alloc(now, peer, &hash, QosSpec::RAW, &raw, timeout)
                        .unwrap();
                    *sent = Some((raw, eph));
                }
                (
                    Role2::Client {
                        enc,
                        trust,
                        now: at,
                        sent,
                        result,
                    },
                    Event::Allocated { oap: resp, .. },
                ) => {
                    let (req, eph) = sent.take().unwrap();
                    let r = oap::check_response(&req, &resp)
                        .map_err(|e| Fail::Other(e.to_string()))
                        .and_then(|()| {
                            verify_response_at(trust, NAME, &req, &resp, *at).map_err(Fail::Check)
                        })
                        .and_then(|()| match (enc.as_ref(), eph) {
                            (Some(c), Some(e)) => oap::client_key(c, e, &resp)
                                .map(Some)
                                .map_err(|e| Fail::Other(e.to_string())),
                            _ => Ok(None),
                        });
                    *result = Some(r);
                }
                (Role2::Client { result, .. }, Event::AllocFailed { error, .. }) => {
                    *result = Some(Err(Fail::Other(error.to_string())));
                }
                (Role2::Server { enc, signer, keys }, Event::Incoming { req, oap: raw, .. }) => {
                    let h = OapHdr::parse_as(&raw, Role::Request, 0).unwrap();
                    let (resp, key) = oap::server_key(*enc, &h, &raw, 2, &rng).unwrap();
                    let resp = sign_header(signer, resp).unwrap();
                    self.shim.take_eid(req).unwrap();
                    self.shim.reply(now, req, resp.to_bytes().unwrap()).unwrap();
                    keys.push(key);
                }
                (_, other) => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn authentication_matrix_in_the_simulator() {
    let (trust, warnings) = TrustStore::load(&pki(""));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(trust.counts(), (1, 1));
    let dec = UnixTime::since_unix_epoch(Duration::from_secs(DEC_2026));
    let later = UnixTime::since_unix_epoch(Duration::from_secs(DEC_2026 + 2 * 365 * 86_400));
    let p256 = Some(EncConf::default());
    // (server certificate, client enc, server enc, client time, expected)
    let cases: Vec<Case<'_>> = vec![
        ("server", None, None, dec, Ok(false)),
        ("server", p256, p256, dec, Ok(true)),
        (
            "wrongcn",
            None,
            None,
            dec,
            Err(("the certificate is another name's", |e| {
                matches!(
                    e,
                    OapCheckError::ServerCertificate(AuthError::WrongName { got, want })
                        if got == "not.srv.sim.o7s" && want == NAME
                )
            })),
        ),
        (
            "other",
            None,
            None,
            dec,
            Err(("its issuer is not trusted", |e| {
                matches!(
                    e,
                    OapCheckError::ServerCertificate(AuthError::Chain {
                        source: webpki::Error::UnknownIssuer,
                        ..
                    })
                )
            })),
        ),
        (
            "server",
            None,
            None,
            later,
            Err(("it has expired", |e| {
                matches!(
                    e,
                    OapCheckError::ServerCertificate(AuthError::Chain {
                        source: webpki::Error::CertExpired { .. },
                        ..
                    })
                ) && e.to_string().contains("expired on")
            })),
        ),
    ];
    let cfg = ShimConfig::new(ShimKind::Dix, 32);
    let t0 = Instant::now();
    let mut results = vec![];
    for (k, (cert, cenc, senc, at, want)) in cases.into_iter().enumerate() {
        let mut server = Shim::new(cfg.clone(), Some([2, 0, 0, 0, 0, 2]));
        server.register(HashAlgo::Sha3_256.hash(NAME));
        let (trust_k, _) = TrustStore::load(&pki(""));
        let hosts = vec![
            Host {
                mac: [2, 0, 0, 0, 0, 1],
                shim: Shim::new(cfg.clone(), Some([2, 0, 0, 0, 0, 1])),
                role: Role2::Client {
                    enc: cenc,
                    trust: trust_k,
                    now: at,
                    sent: None,
                    result: None,
                },
                start: Some(t0 + Duration::from_millis(1)),
            },
            Host {
                mac: [2, 0, 0, 0, 0, 2],
                shim: server,
                role: Role2::Server {
                    enc: senc,
                    signer: signer(cert),
                    keys: vec![],
                },
                start: None,
            },
        ];
        let mut sim = Sim::new(
            t0,
            k as u64,
            LinkModel::ideal(Duration::from_micros(200)),
            hosts,
        );
        sim.run_until(t0 + Duration::from_secs(5));
        let Role2::Client { result, .. } = &mut sim.nodes[0].role else {
            panic!()
        };
        let got = result
            .take()
            .unwrap_or_else(|| Err(Fail::Other("no result".into())));
        let Role2::Server { keys, .. } = &sim.nodes[1].role else {
            panic!()
        };
        match (&want, &got) {
            (Ok(enc), Ok(key)) => {
                assert_eq!(key.is_some(), *enc, "case {k}");
                assert_eq!(keys.first(), Some(key), "case {k}: both ends' keys");
            }
            (Err((why, test)), Err(Fail::Check(e))) => {
                assert!(test(e), "case {k}: want the refusal \"{why}\", got {e:?}")
            }
            _ => panic!(
                "case {k}: want {:?}, got {got:?}",
                want.as_ref().map_err(|(why, _)| why)
            ),
        }
        results.push(got);
    }
    eprintln!("{results:#?}");
}
