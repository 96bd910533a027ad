//! Layer membership (issue 26 item 1): a unicast layer whose members have certificates
//! under the layer's CA (`member_ca`, `member_crt`, `member_key`) admits no one else on
//! any N-1 flow: the rogue host of the issue cannot enrol, connect or publish a name.
//!
//! Needs root (namespaces, veth pairs) and openssl (scripts/pki.sh); skips visibly
//! without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The eth-dix IPCPs of side `s` towards `others`, registering `ipcp` there.
fn eth(t: &Topo, s: &str, others: &[&str], ipcp: &str) -> String {
    others
        .iter()
        .map(|o| {
            format!(
                "[eth-dix.e{o}]\nbootstrap=\"eth-{s}{o}\"\ndev=\"{}\"\nreg=[\"{ipcp}\"]\n\n",
                t.link_dev(s, o)
            )
        })
        .collect()
}

/// `member_*` keys for the member certificate in `dir` (a folder of the PKI) under the CA
/// certificate `ca`.
fn keys(ca: &Path, dir: &Path) -> String {
    format!(
        "member_ca=\"{}\"\nmember_crt=\"{}\"\nmember_key=\"{}\"\n",
        ca.display(),
        dir.join("crt.pem").display(),
        dir.join("key.pem").display()
    )
}

fn uni_row(t: &Topo, s: &str, name: &str) -> Value {
    t.ctl_json(s, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or(Value::Null)
}

/// A (bootstraps "sl") and B (enrols through A, connects, serves oping-server) are
/// members: B enrols, A pings oping-server across the layer 10/10, and `ipcp list` shows
/// the membership and what it admitted. The rogue R, with no certificate, then with one of
/// another CA, then with an expired one of the right CA, cannot enrol through A: each is
/// refused, the reason in A's log ("no member certificate", "unknown issuer", "expired")
/// and the failure in R's; an R that bootstraps a layer of the same name cannot connect
/// to A either; the name R publishes never reaches B's directory. A layer without the
/// keys says in the log that it is open.
#[test]
fn only_members_with_the_layer_cas_certificates_enrol_connect_and_publish() {
    if !can_run() {
        return;
    }
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: openssl is missing (scripts/setup.sh installs it)");
        return;
    }
    let t = Topo::links("ms", &["a", "b", "r"], &[("a", "b"), ("a", "r")]);
    let pki = t.pki_members("P-256", &["ua", "ub=oping-server", "ur=oping-server"]);
    let ca = pki.join("root/crt.pem");
    let other_ca = pki.join("other/ca.crt.pem");
    let a = t.daemon(
        "a",
        &format!(
            "{}[unicast.ua]\nbootstrap=\"sl\"\nautobind=true\n{}",
            eth(&t, "a", &["b", "r"], "ua"),
            keys(&ca, &pki.join("members/ua"))
        ),
    );
    let b = t.daemon(
        "b",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n{}[unicast.ub]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\nreg=[\"oping-server\"]\n{}",
            bin("oping").display(),
            eth(&t, "b", &["a"], "ub"),
            keys(&ca, &pki.join("members/ub"))
        ),
    );
    let up = eventually(Duration::from_secs(15), || {
        uni_row(&t, "b", "ub")["state"] == "enrolled"
            && t.ctl_json("b", &["neighbour", "list"]).len() == 2
            && t.ctl_json("a", &["dht", "list"])
                .iter()
                .any(|r| r["local"] == false)
    });
    assert!(up, "{}\n{}", uni_row(&t, "b", "ub"), b.log());
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "20ms"]);
    assert_eq!(
        sum["received"],
        10,
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        a.log()
    );
    let m = &uni_row(&t, "a", "ua")["membership"];
    assert_eq!(m["member_ca"], ca.display().to_string(), "{m}");
    assert!(
        m["admitted"].as_u64().unwrap() >= 3,
        "enrolment, Management, DT: {m}"
    );
    assert_eq!(m["refused"], 0, "{m}");
    assert!(
        a.log()
            .contains("member ub of the layer of ua authenticated"),
        "{}",
        a.log()
    );
    assert!(
        b.log()
            .contains("member ua of the layer of ub authenticated"),
        "{}",
        b.log()
    );

    // The rogue: three ways of trying to enrol, each refused by A with its reason.
    let rogue = |extra: &str| {
        format!(
            "{}[unicast.ur]\nenrol=\"ua\"\nautobind=true\nreg=[\"oping-server\"]\n{extra}",
            eth(&t, "r", &["a"], "ur")
        )
    };
    let attempts = [
        (rogue(""), "no member certificate"),
        (
            rogue(&keys(&other_ca, &pki.join("members-other/ur"))),
            "not a member of the layer of ua",
        ),
        (
            rogue(&keys(&ca, &pki.join("members-expired/ur"))),
            "expired",
        ),
    ];
    for (n, (conf, why)) in attempts.iter().enumerate() {
        let r = t.daemon("r", conf);
        let failed = eventually(Duration::from_secs(10), || {
            uni_row(&t, "r", "ur")["state"]
                .as_str()
                .is_some_and(|s| s.starts_with("enrolment failed"))
        });
        assert!(
            failed,
            "attempt {n}: {}\n{}",
            uni_row(&t, "r", "ur"),
            r.log()
        );
        assert!(
            eventually(Duration::from_secs(3), || a.log().contains(why)),
            "attempt {n}: A's log says {why:?}:\n{}",
            a.log()
        );
        assert_eq!(
            uni_row(&t, "a", "ua")["membership"]["refused"],
            n as u64 + 1,
            "attempt {n}"
        );
        if n == 0 {
            assert!(r.log().contains("layer is open"), "{}", r.log());
        }
        drop(r);
    }
    // A rogue that makes its own layer of the same name and connects to A: refused too.
    // (It trusts the layer's CA for its own flows, so that it accepts A's connection
    // below and A's own check is what refuses it.)
    let cacert = t.dir.join("security/cacert");
    std::fs::create_dir_all(&cacert).unwrap();
    std::fs::copy(&ca, cacert.join("layer-ca.pem")).unwrap();
    let r = t.daemon(
        "r",
        &format!(
            "{}[unicast.ur]\nbootstrap=\"sl\"\nautobind=true\nreg=[\"oping-server\"]\n",
            eth(&t, "r", &["a"], "ur")
        ),
    );
    let o = t
        .cmd("r", &bin("o7sctl"))
        .args(["ipcp", "connect", "name", "ur", "dst", "ua"])
        .output()
        .unwrap();
    let _ = o;
    let refused = eventually(Duration::from_secs(10), || {
        uni_row(&t, "a", "ua")["membership"]["refused"].as_u64() >= Some(4)
    });
    assert!(refused, "{}\n{}", uni_row(&t, "a", "ua"), r.log());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        t.ctl_json("r", &["neighbour", "list"]).is_empty(),
        "{:?}",
        t.ctl_json("r", &["neighbour", "list"])
    );
    assert_eq!(
        t.ctl_json("a", &["neighbour", "list"]).len(),
        2,
        "B's two only"
    );
    // The other way round: A, the secured member, connects to R's open IPCP. R accepts
    // (A's certificate is good) and answers without a member certificate, so A refuses
    // the flow itself.
    let refused = uni_row(&t, "a", "ua")["membership"]["refused"]
        .as_u64()
        .unwrap_or(0);
    let o = t
        .cmd("a", &bin("o7sctl"))
        .args(["ipcp", "connect", "name", "ua", "dst", "ur"])
        .output()
        .unwrap();
    eprintln!(
        "A connects to R: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        eventually(Duration::from_secs(10), || uni_row(&t, "a", "ua")
            ["membership"]["refused"]
            .as_u64()
            > Some(refused)),
        "A refuses R's answer: {}\n{}",
        uni_row(&t, "a", "ua"),
        a.log()
    );
    assert!(
        a.log().contains(
            "Management connection failed: bad OAP response from ur: no member certificate"
        ),
        "{}",
        a.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        t.ctl_json("a", &["neighbour", "list"]).len(),
        2,
        "still B's two only: {}",
        a.log()
    );
    // B's directory holds oping-server at B's address only.
    let ub = uni_row(&t, "b", "ub")["address"].clone();
    let dht = t.ctl_json("b", &["dht", "list"]);
    eprintln!("B's directory: {dht:?}\nA's log:\n{}", a.log());
    assert!(!dht.is_empty());
    for r in dht {
        assert_eq!(r["address"], ub, "{r}");
    }
}

/// Names in a secured layer (issue 26 item 2): A bootstraps "sl"; B (its certificate
/// names oping-server) and C (its certificate names uc-home only) enrol through A. Both
/// publish oping-server, C also uc-home. Every member refuses C's oping-server entry (a
/// member, but its certificate does not name it), counts it and says why in its log; A's
/// directory holds oping-server at B alone, signed by ub, and uc-home at C; A's pings go
/// to B, 10 of 10. In an open layer the last publisher would get the flows (docs/SECURITY.md).
#[test]
fn a_member_publishes_only_the_names_its_certificate_gives_it() {
    if !can_run() {
        return;
    }
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: openssl is missing (scripts/setup.sh installs it)");
        return;
    }
    let t = Topo::links("mn", &["a", "b", "c"], &[("a", "b"), ("a", "c")]);
    let pki = t.pki_members("P-256", &["ua", "ub=oping-server", "uc=uc-home"]);
    let ca = pki.join("root/crt.pem");
    let a = t.daemon(
        "a",
        &format!(
            "{}[unicast.ua]\nbootstrap=\"sl\"\nautobind=true\n{}",
            eth(&t, "a", &["b", "c"], "ua"),
            keys(&ca, &pki.join("members/ua"))
        ),
    );
    let member = |s: &str, reg: &str| {
        format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n{}[unicast.u{s}]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\nreg=[{reg}]\n{}",
            bin("oping").display(),
            eth(&t, s, &["a"], &format!("u{s}")),
            keys(&ca, &pki.join(format!("members/u{s}")))
        )
    };
    let b = t.daemon("b", &member("b", "\"oping-server\""));
    let c = t.daemon("c", &member("c", "\"oping-server\", \"uc-home\""));
    let addr = |s: &str| uni_row(&t, s, &format!("u{s}"))["address"].clone();
    let entries = |name: &str| -> Vec<Value> {
        t.ctl_json("a", &["dht", "list"])
            .into_iter()
            .filter(|r| r["key"] == hex::encode(o7s_wire::hash::HashAlgo::Sha3_256.hash(name)))
            .collect()
    };
    let settled = eventually(Duration::from_secs(20), || {
        uni_row(&t, "a", "ua")["dht_proofs_refused"].as_u64() >= Some(1)
            && !entries("oping-server").is_empty()
            && !entries("uc-home").is_empty()
    });
    assert!(
        settled,
        "{}\n{:?}\nA: {}\nC: {}",
        uni_row(&t, "a", "ua"),
        t.ctl_json("a", &["dht", "list"]),
        a.log(),
        c.log()
    );
    let row = uni_row(&t, "a", "ua");
    assert_eq!(row["dht_signed"], true, "{row}");
    let ops = entries("oping-server");
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["address"], addr("b"), "{ops:?}");
    assert_eq!(ops[0]["publisher"], "ub", "{ops:?}");
    let home = entries("uc-home");
    assert_eq!(home[0]["address"], addr("c"), "{home:?}");
    assert_eq!(home[0]["publisher"], "uc", "{home:?}");
    assert!(
        a.log()
            .contains("ignored: member uc may publish uc-home only"),
        "{}",
        a.log()
    );
    assert!(
        c.log()
            .contains("publishes oping-server, but its member certificate does not name it"),
        "{}",
        c.log()
    );
    // B refuses C's entry too.
    assert!(
        eventually(Duration::from_secs(5), || uni_row(&t, "b", "ub")
            ["dht_proofs_refused"]
            .as_u64()
            >= Some(1)),
        "{}",
        uni_row(&t, "b", "ub")
    );
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "20ms"]);
    assert_eq!(
        sum["received"],
        10,
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        a.log()
    );
    // The flow went to B: its oping-server has it, C's has none.
    let served = |s: &str| {
        t.ctl_json(s, &["flow", "list"])
            .iter()
            .filter(|f| f["name"] == "oping-server")
            .count()
    };
    assert_eq!(served("c"), 0);
    drop(b);
}
