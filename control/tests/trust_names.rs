//! How a certificate binds a flow's name (`o7s_control::auth::TrustStore::verify_at`), with
//! certificates from tests/data/constraint-pki (its make.sh says how they were made): an
//! intermediate whose name constraints permit `team-a` only cannot issue a certificate
//! for `bank` by its CN alone; a client's certificate for clientAuth only is one for a
//! flow's end.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use o7s_control::auth::{AuthError, TrustStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::PathBuf;
use std::time::Duration;

/// 2027-06-01: inside the certificates' ten years.
fn when() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(1_811_808_000))
}

fn dir(d: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/constraint-pki")
        .join(d)
}

fn der(f: &str) -> Vec<u8> {
    CertificateDer::from_pem_file(dir(f)).unwrap().to_vec()
}

#[test]
fn under_name_constraints_a_cn_alone_does_not_bind_a_name() {
    let (store, warnings) = TrustStore::load(&dir("constrained"));
    assert!(warnings.is_empty(), "{warnings:?}");
    // CN=bank without a subjectAltName, from the intermediate limited to team-a: its chain
    // is valid (webpki checks constraints against subjectAltNames only), but it names
    // "bank" by its CN alone.
    let e = store
        .verify_at(&der("bank-cn-only.pem"), "bank", when())
        .unwrap_err();
    assert!(
        matches!(e, AuthError::NameNotConstrained { ref name } if name == "bank"),
        "{e}"
    );
    assert!(e.to_string().contains("name constraints"), "{e}");
    // With DNS:bank in its subjectAltName the constraints refuse the chain itself.
    let e = store
        .verify_at(&der("bank-san.pem"), "bank", when())
        .unwrap_err();
    assert!(matches!(e, AuthError::Chain { .. }), "{e}");
    // A name inside the constraints, in the subjectAltName and the CN: accepted.
    store
        .verify_at(&der("svc-team-a.pem"), "svc.team-a", when())
        .unwrap();
    // A certificate whose own chain has no constraints (straight under the root) is bound
    // by its CN, as before, though another chain here is constrained.
    store
        .verify_at(&der("client-only.pem"), "alice", when())
        .unwrap();
    // Without constraints anywhere the CN binds the name, as before (and the reference).
    let (plain, _) = TrustStore::load(&dir("plain"));
    let e = plain
        .verify_at(&der("svc-team-a.pem"), "svc.team-a", when())
        .unwrap_err();
    assert!(
        matches!(e, AuthError::Chain { .. }),
        "not under the root alone: {e}"
    );
}

#[test]
fn a_certificate_for_client_authentication_only_is_one_for_a_flows_end() {
    let (store, _) = TrustStore::load(&dir("plain"));
    store
        .verify_at(&der("client-only.pem"), "alice", when())
        .unwrap();
    let e = store
        .verify_at(&der("client-only.pem"), "bob", when())
        .unwrap_err();
    assert!(matches!(e, AuthError::WrongName { .. }), "{e}");
}
