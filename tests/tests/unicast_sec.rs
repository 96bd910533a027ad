//! Tutorial 06 over a unicast layer (issue 15): the encrypted and authenticated oping of
//! tests 3 and 4, between A and C of a chain A - B - C over eth-dix, B forwarding in its
//! data plane. The OAP exchange travels in the flow allocator's DT PDUs as on the eth and
//! udp layers; the key it gives encrypts the SDUs after the DT PCI.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::unicast::{uni_chain, Chain};
use o7s_integration::{bin, can_run, eventually, tool, Topo};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;

const NAME: &str = "sec.oping.tut.o7s";

fn uni_row(t: &Topo, s: &str, name: &str) -> Value {
    t.ctl_json(s, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or(Value::Null)
}

fn n(r: &Value, k: &str) -> u64 {
    r[k].as_u64().unwrap_or(0)
}

#[test]
fn tutorial06_encrypted_and_authenticated_oping_over_a_unicast_layer() {
    if !can_run() || !tool("openssl") {
        return;
    }
    let t = Topo::bridged("us", &["a", "b", "c"]);
    // The security directory all three daemons read (beside their configurations): the
    // root CA trusted, the signing CA untrusted, the server's certificate for NAME, and
    // the client asking for encryption.
    let pki = t.pki("P-384");
    let sec = t.dir.join("security");
    for d in ["cacert", "untrusted"] {
        std::fs::create_dir_all(sec.join(d)).unwrap();
    }
    let (srv_dir, cli_dir) = (sec.join("server").join(NAME), sec.join("client").join(NAME));
    std::fs::create_dir_all(&srv_dir).unwrap();
    std::fs::create_dir_all(&cli_dir).unwrap();
    std::fs::copy(pki.join("root/crt.pem"), sec.join("cacert/ca.crt.pem")).unwrap();
    std::fs::copy(pki.join("sign/crt.pem"), sec.join("untrusted/sign.crt.pem")).unwrap();
    std::fs::copy(pki.join("server/crt.pem"), srv_dir.join("crt.pem")).unwrap();
    std::fs::copy(pki.join("server/key.pem"), srv_dir.join("key.pem")).unwrap();
    std::fs::write(cli_dir.join("enc.cfg"), "").unwrap();

    let eth = |s: &str, reg: &str| {
        format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[{reg}]\n\n",
            t.dev(s)
        )
    };
    let chain = Chain {
        layer: "sec",
        eth: [eth("a", "\"ua\""), eth("b", "\"ub\""), eth("c", "")],
        name: NAME,
        b_args: &[],
    };
    let (a, b, c) = uni_chain(&t, &chain);
    let mut srv = t
        .cmd("c", &bin("oping"))
        .arg("--listen")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", NAME);
    // Once the name is in A's directory, the flow goes A -> B -> C.
    let ping = |count: &str| {
        let (sum, o) = t.oping("a", &["-n", NAME, "-c", count, "-i", "10ms"]);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).to_string(),
            sum,
        )
    };
    let found = eventually(Duration::from_secs(15), || ping("1").0);
    assert!(found, "{}\n{}\n{}", a.log(), b.log(), c.log());
    // A ping of `count` in the background, and the server's end of its flow at C as
    // `o7sctl flow list` shows it while the flow carries the pings.
    let ping_and_server_flow = |count: &str| {
        let known: Vec<Value> = t
            .ctl_json("c", &["flow", "list"])
            .iter()
            .map(|f| f["flow"].clone())
            .collect();
        let child = t
            .cmd("a", &bin("oping"))
            .args(["-n", NAME, "-c", count, "-i", "10ms", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut flow = Value::Null;
        eventually(Duration::from_secs(10), || {
            flow = t
                .ctl_json("c", &["flow", "list"])
                .into_iter()
                .find(|f| {
                    f["name"] == NAME
                        && !known.contains(&f["flow"])
                        && f["rx_sdus"].as_u64().unwrap_or(0) > 0
                })
                .unwrap_or(Value::Null);
            !flow.is_null()
        });
        let o = child.wait_with_output().unwrap();
        let sum: Value = serde_json::from_str(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or(""),
        )
        .unwrap_or(Value::Null);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).to_string(),
            sum,
            flow,
        )
    };

    // Test 3: authentication and encryption.
    let before = uni_row(&t, "b", "ub");
    let (ok, err, sum, f) = ping_and_server_flow("20");
    assert!(ok, "test 3: {err}\n{}\n{}", a.log(), c.log());
    assert_eq!(sum["received"], 20, "{sum}");
    let log = a.log();
    for line in [
        format!("Encryption enabled for {NAME}"),
        format!("Successfully verified peer certificate for {NAME}."),
        format!("Successfully authenticated {NAME}."),
    ] {
        assert!(log.contains(&line), "missing '{line}' in A's log\n{log}");
    }
    assert!(c.log().contains("over unicast layer sec"), "{}", c.log());
    // B's data plane forwarded the 40 encrypted PDUs; its o7sd saw none of them.
    let after = uni_row(&t, "b", "ub");
    assert!(
        n(&after, "dt_forwarded") >= n(&before, "dt_forwarded") + 40
            && n(&after, "dt_forwarded_in_o7sd") == n(&before, "dt_forwarded_in_o7sd"),
        "{before} -> {after}"
    );
    // The server's end of the flow is encrypted (AES-256-GCM by default) and decrypted
    // every ping without a failure.
    assert_eq!(f["cipher"], "aes-256-gcm", "{f}");
    assert_eq!(f["drop_decrypt"], 0, "{f}");
    eprintln!("tutorial 06 test 3 over the unicast layer: {sum}; C's flow: {f}");

    // Test 4: authentication without encryption: the flow's data plane has no cipher
    // ("none"; "-" would be a flow the data plane does not know).
    std::fs::remove_file(cli_dir.join("enc.cfg")).unwrap();
    let (ok, err, sum, f) = ping_and_server_flow("20");
    assert!(ok, "test 4: {err}");
    assert_eq!(sum["received"], 20, "{sum}");
    assert_eq!(f["cipher"], "none", "{f}");
    assert!(a.log().matches("Successfully authenticated").count() >= 2);

    // A server certificate for another name is refused by the client.
    std::fs::copy(pki.join("wrongcn/crt.pem"), srv_dir.join("crt.pem")).unwrap();
    std::fs::copy(pki.join("wrongcn/key.pem"), srv_dir.join("key.pem")).unwrap();
    let (ok, err, _) = ping("1");
    assert!(!ok, "a wrong certificate must be refused");
    assert!(err.contains("security check failed"), "{err}");
    let _ = srv.kill();
    let _ = srv.wait();
}
