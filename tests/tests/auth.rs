//! Tutorial 06 tests 3 and 4 (server authentication, with and without encryption) with a
//! PKI made by scripts/pki.sh (openssl), and the attacks that must be refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use o7s_control::auth::AuthError;
use o7s_control::error::OapCheckError;
use o7s_integration::{bin, can_run, eventually, tool, Daemon, Topo};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const NAME: &str = "sec.oping.tut.o7s";

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes the PKI (P-384 as the tutorial, or P-256) in the test's folder.
fn pki(t: &Topo, curve: &str) -> PathBuf {
    t.pki(curve)
}

/// The security directory: the root CA trusted, intermediates untrusted, the server's
/// certificate and key taken from `server` (a folder of the PKI), `extra_untrusted` too.
fn install(t: &Topo, pki: &Path, server: &str, extra_untrusted: &[&str]) {
    let sec = t.dir.join("security");
    let _ = std::fs::remove_dir_all(&sec);
    for d in ["cacert", "untrusted", "client", "server"] {
        std::fs::create_dir_all(sec.join(d)).unwrap();
    }
    std::fs::create_dir_all(sec.join("server").join(NAME)).unwrap();
    std::fs::create_dir_all(sec.join("client").join(NAME)).unwrap();
    std::fs::copy(
        pki.join("root/crt.pem"),
        sec.join("cacert/ca.tut.o7s.crt.pem"),
    )
    .unwrap();
    std::fs::copy(
        pki.join("sign/crt.pem"),
        sec.join("untrusted/sign.tut.o7s.crt.pem"),
    )
    .unwrap();
    for (i, e) in extra_untrusted.iter().enumerate() {
        std::fs::copy(pki.join(e), sec.join(format!("untrusted/extra{i}.pem"))).unwrap();
    }
    let (crt, key) = if server.ends_with(".pem") {
        let (c, k) = server.split_once(',').unwrap();
        (pki.join(c), pki.join(k))
    } else {
        (
            pki.join(server).join("crt.pem"),
            pki.join(server).join("key.pem"),
        )
    };
    std::fs::copy(crt, sec.join("server").join(NAME).join("crt.pem")).unwrap();
    std::fs::copy(key, sec.join("server").join(NAME).join("key.pem")).unwrap();
}

fn start(t: &Topo) -> (Daemon, Server) {
    let conf = format!("[name.\"{NAME}\"]\nprog=[\"/usr/bin/oping\"]\n\n[eth-dix.dixlo]\nbootstrap=\"lo-layer\"\ndev=\"lo\"\nreg=[\"{NAME}\"]\n");
    let d = t.daemon("a", &conf);
    let s = Server(
        t.cmd("a", &bin("oping"))
            .arg("-l")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(eventually(Duration::from_secs(5), || {
        t.ctl_json("a", &["name", "list"])
            .iter()
            .any(|n| n["accepting"].as_u64() == Some(1))
    }));
    (d, s)
}

fn ping(t: &Topo, n: u32) -> (bool, String) {
    let o = t
        .cmd("a", &bin("oping"))
        .args(["-n", NAME, "-c", &n.to_string(), "-i", "10ms"])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Captures lo while one oping runs (it must succeed) and returns the FLOW_REQ sent: its
/// bytes and its 0.23 OAP id.
fn capture_flow_req(t: &Topo, d: &Daemon) -> (Vec<u8>, [u8; 16]) {
    let cap = t.dir.join("flow-req.pcap");
    let mut capture = o7s_integration::spawn_ready(
        t.cmd("a", &bin("o7s-inject"))
            .args(["--capture", "lo", "1.5"])
            .arg(&cap),
    );
    let (ok, err) = ping(t, 1);
    assert!(ok, "{err}\n{}", d.log());
    assert!(capture.wait().unwrap().success());
    let file = std::fs::read(&cap).unwrap();
    let recs = o7s_wire::capfile::parse(&file).unwrap();
    recs.iter()
        .find_map(
            |r| match o7s_wire::frame::EthFrame::decode(r.data, &Default::default()) {
                Ok(Some(o7s_wire::frame::EthFrame::Dix(o7s_wire::frame::DixFrame {
                    body:
                        o7s_wire::frame::DixBody::Mgmt(
                            m,
                            o7s_wire::frame::MgmtTail {
                                oap: o7s_wire::frame::Oap::V023(h),
                                ..
                            },
                        ),
                    ..
                }))) if m.code == o7s_wire::code::EthCode::FlowReq => Some((r.data.to_vec(), h.id)),
                _ => None,
            },
        )
        .expect("the FLOW_REQ was captured")
}

/// Sends `frame` on lo and waits for `line` in the daemon's log.
fn inject_expect(t: &Topo, d: &mut Daemon, frame: &[u8], line: &str) {
    let o = t
        .cmd("a", &bin("o7s-inject"))
        .args(["lo", &hex::encode(frame)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        eventually(Duration::from_secs(3), || d.log().contains(line)),
        "{line:?} not in:\n{}",
        d.log()
    );
}

#[test]
fn tutorial06_tests_3_and_4_server_authentication() {
    if !can_run() || !tool("openssl") {
        return;
    }
    let t = Topo::single("a6");
    for curve in ["P-384", "P-256"] {
        let p = pki(&t, curve);
        install(&t, &p, "server", &[]);
        let (d, _s) = start(&t);
        // Test 3: authentication and encryption.
        std::fs::write(t.dir.join("security/client").join(NAME).join("enc.cfg"), "").unwrap();
        let (ok, err) = ping(&t, 2);
        assert!(ok, "{curve} test 3: {err}\n{}", d.log());
        let log = d.log();
        for line in [
            format!("Encryption enabled for {NAME}"),
            format!("Successfully verified peer certificate for {NAME}."),
            format!("Successfully authenticated {NAME}."),
        ] {
            assert!(log.contains(&line), "{curve}: missing '{line}' in\n{log}");
        }
        // Test 4: authentication without encryption.
        std::fs::remove_file(t.dir.join("security/client").join(NAME).join("enc.cfg")).unwrap();
        let (ok, err) = ping(&t, 2);
        assert!(ok, "{curve} test 4: {err}");
        let flows = t.ctl_json("a", &["flow", "list"]);
        assert!(flows.iter().any(|f| f["cipher"] == "none"), "{flows:?}");
        assert!(d.log().matches("Successfully authenticated").count() >= 2);
        drop(d);
    }
}

#[test]
fn bad_server_certificates_are_refused() {
    if !can_run() || !tool("openssl") {
        return;
    }
    let t = Topo::single("ab");
    let p = pki(&t, "P-384");
    let cases: [(&str, &[&str], &str); 4] = [
        ("other", &[], "is not a trusted CA (security/cacert)"),
        ("wrongcn", &[], &format!("is for not.{NAME}, not {NAME}")),
        ("expired", &[], "expired on"),
        ("pathlen", &["pathlen/sub.crt.pem"], "chain does not verify"),
    ];
    for (server, extra, why) in cases {
        install(&t, &p, server, extra);
        let (d, _s) = start(&t);
        let (ok, err) = ping(&t, 1);
        assert!(!ok, "{server}: the flow must be refused");
        // We refused the server, the server did not refuse us.
        assert!(err.contains("security check failed"), "{server}: {err}");
        assert!(!err.contains("refused by the peer"), "{server}: {err}");
        // In words, not Rust debug output.
        assert!(
            !d.log().contains(" { ") && !d.log().contains("UnknownIssuer"),
            "{}",
            d.log()
        );
        assert!(
            d.log().contains(why),
            "{server}: no '{why}' in\n{}",
            d.log()
        );
        drop(d);
    }
}

/// A signature that does not match (one byte of the signed response changed) is refused.
#[test]
fn tampered_signature_is_refused() {
    if !tool("openssl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("o7s-tamper-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pki.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sec = dir.join("security");
    std::fs::create_dir_all(sec.join("cacert")).unwrap();
    std::fs::create_dir_all(sec.join("untrusted")).unwrap();
    std::fs::copy(dir.join("root/crt.pem"), sec.join("cacert/ca.pem")).unwrap();
    std::fs::copy(dir.join("sign/crt.pem"), sec.join("untrusted/sign.pem")).unwrap();
    let (trust, w) = o7s_control::auth::TrustStore::load(&sec);
    assert!(w.is_empty(), "{w:?}");
    let signer =
        o7s_control::auth::Signer::load(&dir.join("server/crt.pem"), &dir.join("server/key.pem"))
            .unwrap();
    let req = o7s_wire::oap::OapHdr::unsigned([1; 16], 5, vec![])
        .to_bytes()
        .unwrap();
    let mut resp = o7s_wire::oap::OapHdr::unsigned(
        [1; 16],
        6,
        o7s_control::daemon::req_hash(&req, 0).unwrap(),
    );
    resp.crt = signer.cert.clone();
    resp.md_nid = signer.md_nid;
    let sig = signer.sign(&resp.to_bytes().unwrap()).unwrap();
    resp.tail.extend_from_slice(&sig);
    let good = resp.to_bytes().unwrap();
    o7s_control::daemon::verify_response(&trust, NAME, &req, &good).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 0x01; // inside the timestamp, covered by the signature
    let e = o7s_control::daemon::verify_response(&trust, NAME, &req, &bad).unwrap_err();
    assert!(
        matches!(e, OapCheckError::ServerSignature(AuthError::BadSignature)),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A replayed FLOW_REQ (captured on the wire and sent again) and a truncated OAP header are
/// refused with a log line; the daemon stays up.
#[test]
fn replayed_and_truncated_flow_requests_are_refused() {
    if !can_run() {
        return;
    }
    let t = Topo::single("ar");
    std::fs::create_dir_all(t.dir.join("security")).unwrap();
    let (mut d, _s) = start(&t);
    let (frame, _) = capture_flow_req(&t, &d);
    inject_expect(&t, &mut d, &frame, "replayed OAP request");
    // The same request cut inside its OAP header (the eth-dix length field fixed up).
    let mut cut = frame[..frame.len() - 20].to_vec();
    let len = (cut.len() - 18) as u16;
    cut[16..18].copy_from_slice(&len.to_be_bytes());
    inject_expect(&t, &mut d, &cut, "bad OAP header");
    assert!(d.alive());
    let (ok, err) = ping(&t, 1);
    assert!(ok, "still serving: {err}");
}

/// A client with a certificate signs its request; the server checks the chain and the
/// signature, and refuses a client whose certificate is from another CA.
#[test]
fn client_certificates_are_checked() {
    if !can_run() || !tool("openssl") {
        return;
    }
    let t = Topo::single("ac");
    let p = pki(&t, "P-384");
    install(&t, &p, "server", &[]);
    let client = t.dir.join("security/client").join(NAME);
    // A certificate of the same PKI (its CN is another name: clients' CNs are not checked).
    std::fs::copy(p.join("wrongcn/crt.pem"), client.join("crt.pem")).unwrap();
    std::fs::copy(p.join("wrongcn/key.pem"), client.join("key.pem")).unwrap();
    let (d, _s) = start(&t);
    let (ok, err) = ping(&t, 1);
    assert!(ok, "{err}\n{}", d.log());
    assert!(
        d.log()
            .contains(&format!("Successfully authenticated client not.{NAME}.")),
        "{}",
        d.log()
    );
    // From another CA: refused by the server.
    std::fs::copy(p.join("other/crt.pem"), client.join("crt.pem")).unwrap();
    std::fs::copy(p.join("other/key.pem"), client.join("key.pem")).unwrap();
    let (ok, _) = ping(&t, 1);
    assert!(!ok);
    assert!(
        d.log()
            .contains("client certificate: certificate chain does not verify"),
        "{}",
        d.log()
    );
}

/// A signed FLOW_REQ whose signed bytes were changed on the way (its OAP id, so that it is
/// not a replay) reaches a running daemon: refused with a log line naming the signature,
/// and the daemon keeps serving.
#[test]
fn tampered_flow_request_is_refused_live() {
    if !can_run() || !tool("openssl") {
        return;
    }
    let t = Topo::single("at");
    let p = pki(&t, "P-256");
    install(&t, &p, "server", &[]);
    let client = t.dir.join("security/client").join(NAME);
    std::fs::copy(p.join("wrongcn/crt.pem"), client.join("crt.pem")).unwrap();
    std::fs::copy(p.join("wrongcn/key.pem"), client.join("key.pem")).unwrap();
    let (mut d, _s) = start(&t);
    let (frame, id) = capture_flow_req(&t, &d);
    // The id is covered by the signature; a fresh id also gets it past the replay check.
    let at = frame
        .windows(16)
        .position(|w| w == id)
        .expect("the OAP id is in the frame");
    let mut bad = frame.clone();
    bad[at] ^= 0x5a;
    inject_expect(
        &t,
        &mut d,
        &bad,
        "refused: client: the signature does not verify",
    );
    // A refused request takes no room in the replay window: sent again, it is refused for
    // its signature again, not as a replay (forged requests cannot fill the window).
    let o = t
        .cmd("a", &bin("o7s-inject"))
        .args(["lo", &hex::encode(&bad)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let line = "refused: client: the signature does not verify";
    assert!(
        eventually(Duration::from_secs(3), || d.log().matches(line).count()
            >= 2),
        "{}",
        d.log()
    );
    assert!(!d.log().contains("replayed OAP request"), "{}", d.log());
    assert!(d.alive());
    let (ok, err) = ping(&t, 1);
    assert!(ok, "still serving: {err}");
}

/// A response whose `md_nid` is 0 (a server with a certificate but no enc.conf) is signed
/// with SHA-256 on every curve, as the reference does (facts 1.9, verified live): such a
/// response made by openssl verifies on P-384 and P-256 keys, and one signed with SHA-384
/// under md_nid 0 does not. Before, o7s verified md_nid 0 with SHA-384 and refused the
/// reference's servers.
#[test]
fn responses_with_md_nid_0_are_signed_with_sha256_on_every_curve() {
    if !tool("openssl") {
        return;
    }
    for curve in ["P-384", "P-256"] {
        let dir = std::env::temp_dir().join(format!("o7s-md0-{}-{curve}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pki.sh");
        let o = std::process::Command::new("bash")
            .arg(script)
            .arg(&dir)
            .env("CURVE", curve)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let sec = dir.join("security");
        std::fs::create_dir_all(sec.join("cacert")).unwrap();
        std::fs::create_dir_all(sec.join("untrusted")).unwrap();
        std::fs::copy(dir.join("root/crt.pem"), sec.join("cacert/ca.pem")).unwrap();
        std::fs::copy(dir.join("sign/crt.pem"), sec.join("untrusted/sign.pem")).unwrap();
        let (trust, _) = o7s_control::auth::TrustStore::load(&sec);
        let signer = o7s_control::auth::Signer::load(
            &dir.join("server/crt.pem"),
            &dir.join("server/key.pem"),
        )
        .unwrap();
        let req = o7s_wire::oap::OapHdr::unsigned([7; 16], 5, vec![])
            .to_bytes()
            .unwrap();
        let sign = |digest: &str| {
            let mut resp = o7s_wire::oap::OapHdr::unsigned(
                [7; 16],
                6,
                o7s_control::daemon::req_hash(&req, 0).unwrap(),
            );
            resp.crt = signer.cert.clone();
            resp.md_nid = 0;
            let unsigned = resp.to_bytes().unwrap();
            let msg = dir.join("msg");
            std::fs::write(&msg, &unsigned).unwrap();
            let o = std::process::Command::new("openssl")
                .args(["dgst", digest, "-sign"])
                .arg(dir.join("server/key.pem"))
                .arg(&msg)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            resp.tail.extend_from_slice(&o.stdout);
            resp.to_bytes().unwrap()
        };
        let good = sign("-sha256");
        o7s_control::daemon::verify_response(&trust, NAME, &req, &good)
            .unwrap_or_else(|e| panic!("{curve}, md_nid 0, SHA-256: {e}"));
        let e =
            o7s_control::daemon::verify_response(&trust, NAME, &req, &sign("-sha384")).unwrap_err();
        assert!(
            matches!(e, OapCheckError::ServerSignature(AuthError::BadSignature)),
            "{curve}: {e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
