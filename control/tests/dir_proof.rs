//! Signed directory entries (issue 26 item 2) with real certificates: o7sd's proofs
//! (`o7s_control::dir_proof`) made with one member's key and checked by another member of
//! the same layer, at fixed times (tests/data/member-pki, its README says how it was made).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use o7s_control::config::MemberFiles;
use o7s_control::dir_proof::{self, DirProofs, CHECKS_PER_SECOND};
use o7s_control::membership::Membership;
use o7s_proto::dht::Proofs;
use o7s_wire::hash::HashAlgo;
use std::sync::Arc;

/// 2026-12-06 00:00 UTC: inside the member certificates' year.
const T: u64 = 1_796_515_200;
/// 2027-12-06: after it.
const LATER: u64 = 1_828_051_200;

fn file(f: &str) -> String {
    format!("{}/tests/data/member-pki/{f}", env!("CARGO_MANIFEST_DIR"))
}

fn member(ca: &str, who: &str) -> Arc<Membership> {
    let f = MemberFiles {
        ca: file(ca),
        crt: file(&format!("{who}.crt.pem")),
        key: file(&format!("{who}.key.pem")),
    };
    Arc::new(Membership::load(who, &f).unwrap().0)
}

fn key(name: &str) -> Vec<u8> {
    HashAlgo::Sha3_256.hash(name)
}

/// UC's view of the layer: the member that checks others' entries.
fn checker() -> DirProofs {
    DirProofs::new(member("ca.pem", "uc"), HashAlgo::Sha3_256)
}

#[test]
fn an_entry_signed_by_a_member_named_for_it_is_accepted_for_its_address_only() {
    let ub = member("ca.pem", "ub");
    let c = checker();
    let k = key("oping-server");
    let p = dir_proof::sign(&ub, &k, 0x1234, T - 10).unwrap();
    let s = c
        .check(&k, 0x1234, &p, o7s_proto::machine::UnixTime::from_secs(T))
        .unwrap();
    assert_eq!((s.publisher.as_str(), s.at), ("ub", T - 10));
    // The second name of its certificate too.
    let k2 = key("foo.bar");
    let p2 = dir_proof::sign(&ub, &k2, 0x1234, T).unwrap();
    assert_eq!(
        c.check(&k2, 0x1234, &p2, o7s_proto::machine::UnixTime::from_secs(T))
            .unwrap()
            .publisher,
        "ub"
    );
    // The same proof for another address or another key: the signature does not hold.
    let e = c
        .check(&k, 0x9999, &p, o7s_proto::machine::UnixTime::from_secs(T))
        .unwrap_err()
        .to_string();
    assert!(e.contains("member ub's entry"), "{e}");
    let e = c
        .check(&k2, 0x1234, &p, o7s_proto::machine::UnixTime::from_secs(T))
        .unwrap_err()
        .to_string();
    assert!(e.contains("member ub's entry"), "{e}");
    // A name its certificate does not list: refused, the names it may publish said.
    let k3 = key("other");
    let p3 = dir_proof::sign(&ub, &k3, 0x1234, T).unwrap();
    let e = c
        .check(&k3, 0x1234, &p3, o7s_proto::machine::UnixTime::from_secs(T))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("member ub may publish oping-server, foo.bar only"),
        "{e}"
    );
}

#[test]
fn a_member_without_the_name_another_cas_and_an_expired_one_are_refused() {
    let c = checker();
    let k = key("oping-server");
    // UC is a member, but its certificate names nothing.
    let uc = member("ca.pem", "uc");
    let e = c
        .check(
            &k,
            7,
            &dir_proof::sign(&uc, &k, 7, T).unwrap(),
            o7s_proto::machine::UnixTime::from_secs(T),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("member uc may publish no name"), "{e}");
    // UB's name under another CA.
    let other = member("ca.pem", "other-ub");
    let e = c
        .check(
            &k,
            7,
            &dir_proof::sign(&other, &k, 7, T).unwrap(),
            o7s_proto::machine::UnixTime::from_secs(T),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not the layer CA"), "{e}");
    // An expired UB.
    let old = member("ca.pem", "expired-ub");
    let e = c
        .check(
            &k,
            7,
            &dir_proof::sign(&old, &k, 7, T).unwrap(),
            o7s_proto::machine::UnixTime::from_secs(T),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("expired"), "{e}");
    // A valid entry checked after its certificate ended: refused, also when it was
    // accepted (and remembered) before.
    let ub = member("ca.pem", "ub");
    let p = dir_proof::sign(&ub, &k, 7, T).unwrap();
    assert!(c
        .check(&k, 7, &p, o7s_proto::machine::UnixTime::from_secs(T))
        .is_ok());
    let e = c
        .check(&k, 7, &p, o7s_proto::machine::UnixTime::from_secs(LATER))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expired"), "{e}");
    let fresh = checker();
    let e = fresh
        .check(&k, 7, &p, o7s_proto::machine::UnixTime::from_secs(LATER))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn p384_members_sign_with_sha384_and_are_checked() {
    let ub = member("ca384.pem", "ub384");
    let c = DirProofs::new(ub.clone(), HashAlgo::Sha3_256);
    let k = key("oping-server");
    let p = dir_proof::sign(&ub, &k, 5, T).unwrap();
    assert_eq!(
        c.check(&k, 5, &p, o7s_proto::machine::UnixTime::from_secs(T))
            .unwrap()
            .publisher,
        "ub"
    );
    // A P-256 layer (whose root has the same name) does not take it.
    let e = checker()
        .check(&k, 5, &p, o7s_proto::machine::UnixTime::from_secs(T))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match its issuer's key"), "{e}");
}

#[test]
fn malformed_and_future_proofs_are_refused_with_the_reason() {
    let c = checker();
    let ub = member("ca.pem", "ub");
    let k = key("oping-server");
    let good = dir_proof::sign(&ub, &k, 5, T).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "an empty proof"),
        (
            {
                let mut p = good.clone();
                p[0] = 2;
                p
            },
            "proof version 2",
        ),
        (good[..5].to_vec(), "cut short before its time"),
        (good[..10].to_vec(), "cut short before its certificate"),
        (good[..200].to_vec(), "a certificate of"),
    ];
    for (p, why) in cases {
        let e = c
            .check(&k, 5, &p, o7s_proto::machine::UnixTime::from_secs(T))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{why}: {e}");
    }
    // Signed an hour ahead of our clock: refused; five minutes: taken.
    let ahead = dir_proof::sign(&ub, &k, 5, T + 3600).unwrap();
    let e = c
        .check(&k, 5, &ahead, o7s_proto::machine::UnixTime::from_secs(T))
        .unwrap_err()
        .to_string();
    assert!(e.contains("signed 3600 s in the future"), "{e}");
    let near = dir_proof::sign(&ub, &k, 5, T + 300).unwrap();
    assert!(c
        .check(&k, 5, &near, o7s_proto::machine::UnixTime::from_secs(T))
        .is_ok());
}

#[test]
fn new_entries_are_checked_at_a_bounded_rate_replays_cost_no_signature_check() {
    let c = checker();
    let ub = member("ca.pem", "ub");
    let k = key("oping-server");
    let good = dir_proof::sign(&ub, &k, 5, T).unwrap();
    assert!(c
        .check(&k, 5, &good, o7s_proto::machine::UnixTime::from_secs(T))
        .is_ok());
    // Fresh garbage (a signature byte changed each time) spends the second's budget.
    let mut refused_for_budget = 0;
    for i in 0..CHECKS_PER_SECOND + 10 {
        let mut p = good.clone();
        let n = p.len();
        p[n - 1] ^= (i % 255 + 1) as u8;
        p[n - 2] ^= (i / 255) as u8;
        if c.check(&k, 5, &p, o7s_proto::machine::UnixTime::from_secs(T))
            .unwrap_err()
            .to_string()
            .contains("new entries to check this second")
        {
            refused_for_budget += 1;
        }
    }
    assert_eq!(
        refused_for_budget, 11,
        "the good one and 999 forged were checked"
    );
    // The good entry again: remembered, still accepted; the next second checks again.
    assert!(c
        .check(&k, 5, &good, o7s_proto::machine::UnixTime::from_secs(T))
        .is_ok());
    let other = dir_proof::sign(&ub, &k, 6, T).unwrap();
    assert!(c
        .check(&k, 6, &other, o7s_proto::machine::UnixTime::from_secs(T))
        .unwrap_err()
        .to_string()
        .contains("this second"));
    assert!(c
        .check(
            &k,
            6,
            &other,
            o7s_proto::machine::UnixTime::from_secs(T + 1)
        )
        .is_ok());
}

/// The unicast IPCP machine's signer is the member's key: what it signs through the
/// machine's `Signer` trait another member's `DirProofs` accepts, for that address and
/// signing time only.
#[test]
fn the_machines_signer_signs_as_the_member_and_others_accept_it() {
    use o7s_control::dir_proof::MemberSigner;
    use o7s_proto::ipcp::unicast::Signer;
    use o7s_proto::machine::UnixTime;
    let signer = MemberSigner(member("ca.pem", "ub"));
    let k = key("oping-server");
    let p = signer
        .sign(&k, 0x0b0b_0002, UnixTime::from_secs(T - 5))
        .unwrap();
    // The layout of dir_proof::sign at that time (ECDSA signatures differ each time):
    // version, signing time, the member's certificate, then its signature.
    let theirs = dir_proof::sign(&signer.0, &k, 0x0b0b_0002, T - 5).unwrap();
    let head = 11 + signer.0.signer.cert.len();
    assert_eq!(p[..head], theirs[..head]);
    assert_eq!(p[1..9], (T - 5).to_be_bytes());
    let c = checker();
    let s = c
        .check(&k, 0x0b0b_0002, &p, UnixTime::from_secs(T))
        .unwrap();
    assert_eq!((s.publisher.as_str(), s.at), ("ub", T - 5));
    assert!(c
        .check(&k, 0x0a0a_0001, &p, UnixTime::from_secs(T))
        .is_err());
}
