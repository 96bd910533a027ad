//! Tutorial 06 (OAP): flows without and with encryption on one host (eth-dix on lo), key
//! negotiation, refusals, key rotation, and corrupted ciphertext.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use o7s_integration::{bin, can_run, eventually, Topo};
use std::process::{Child, Stdio};
use std::time::Duration;

const NAME: &str = "sec.oping.tut.o7s";

fn conf() -> String {
    format!("[name.\"{NAME}\"]\nprog=[\"/usr/bin/oping\"]\n\n[eth-dix.dixlo]\nbootstrap=\"lo-layer\"\ndev=\"lo\"\nreg=[\"{NAME}\"]\n")
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn setup(t: &Topo, extra: &[&str]) -> (o7s_integration::Daemon, Server) {
    for side in ["client", "server"] {
        std::fs::create_dir_all(t.dir.join("security").join(side).join(NAME)).unwrap();
    }
    let d = t.daemon_with("a", "a", &conf(), extra);
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

fn enc(t: &Topo, side: &str, file: &str, text: &str) {
    std::fs::write(
        t.dir.join("security").join(side).join(NAME).join(file),
        text,
    )
    .unwrap();
}

fn accept_flow(t: &Topo) -> serde_json::Value {
    t.ctl_json("a", &["flow", "list"])
        .into_iter()
        .find(|f| f["side"] == "accept")
        .expect("a server flow")
}

#[test]
fn tutorial06_tests_1_and_2_plain_then_encrypted() {
    if !can_run() {
        return;
    }
    let t = Topo::single("o6");
    // AF_PACKET: a capture on lo sees every frame (AF_XDP frames bypass packet taps).
    let (d, _s) = setup(&t, &["--io", "af_packet"]);
    // Test 1: no security files.
    let (sum, out) = t.oping("a", &["-n", NAME, "-c", "3", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        3,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert_eq!(accept_flow(&t)["cipher"], "none");
    // Test 2: an empty enc.cfg on the client side only (the tutorial's older name).
    enc(&t, "client", "enc.cfg", "");
    let cap = t.dir.join("enc.pcap");
    let mut capture = o7s_integration::spawn_ready(
        t.cmd("a", &bin("o7s-inject"))
            .args(["--capture", "lo", "2"])
            .arg(&cap),
    );
    let (sum, out) = t.oping("a", &["-n", NAME, "-c", "5", "-i", "20ms"]);
    assert_eq!(
        sum["received"],
        5,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(capture.wait().unwrap().success());
    let log = d.log();
    assert!(
        log.contains(&format!("Encryption enabled for {NAME}")),
        "{log}"
    );
    let server_flows: Vec<_> = t
        .ctl_json("a", &["flow", "list"])
        .into_iter()
        .filter(|f| f["side"] == "accept")
        .collect();
    assert_eq!(
        server_flows.last().unwrap()["cipher"],
        "aes-256-gcm",
        "{server_flows:?}"
    );
    // The capture holds the exchange, and no plaintext oping message.
    let file = std::fs::read(&cap).unwrap();
    let recs = o7s_wire::capfile::parse(&file).unwrap();
    let mut data = 0;
    for r in &recs {
        let Ok(Some(o7s_wire::frame::EthFrame::Dix(f))) =
            o7s_wire::frame::EthFrame::decode(r.data, &o7s_wire::frame::DecodeOpts::default())
        else {
            continue;
        };
        if let o7s_wire::frame::DixBody::Data(sdu) = &f.body {
            data += 1;
            assert_eq!(sdu.len(), 64 + 28, "IV | ciphertext | tag");
            let plain = o7s_wire::app::OpingMsg::parse(sdu)
                .map(|m| m.is_plausible())
                .unwrap_or(false);
            assert!(
                !plain,
                "a plaintext oping message crossed the wire: {}",
                hex::encode(sdu)
            );
        }
    }
    assert!(data >= 10, "{data} data frames captured");
}

#[test]
fn negotiation_and_refusals() {
    if !can_run() {
        return;
    }
    let t = Topo::single("on");
    let (d, _s) = setup(&t, &[]);
    // The server allows only P-384: a P-256 client is refused, with a log line.
    enc(&t, "server", "enc.conf", "kex=secp384r1\n");
    enc(&t, "client", "enc.conf", "kex=prime256v1\n");
    let o = t
        .cmd("a", &bin("oping"))
        .args(["-n", NAME, "-c", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused"));
    assert!(d.log().contains("weaker than this server's"), "{}", d.log());
    // P-384 with a cipher weaker than the server's: the server picks the stronger one.
    enc(
        &t,
        "server",
        "enc.conf",
        "kex=secp384r1\ncipher=chacha20-poly1305\n",
    );
    enc(
        &t,
        "client",
        "enc.conf",
        "kex=secp384r1\ncipher=aes-128-gcm\n",
    );
    let (sum, out) = t.oping("a", &["-n", NAME, "-c", "2", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        2,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let flows = t.ctl_json("a", &["flow", "list"]);
    assert!(
        flows.iter().any(|f| f["cipher"] == "chacha20-poly1305"),
        "{flows:?}"
    );
    // X25519 works too.
    enc(&t, "server", "enc.conf", "");
    enc(&t, "client", "enc.conf", "kex=X25519\n");
    let (sum, _) = t.oping("a", &["-n", NAME, "-c", "2", "-i", "10ms"]);
    assert_eq!(sum["received"], 2);
    // An unsupported value is an error that names it.
    enc(&t, "client", "enc.conf", "cipher=aes-128-cbc\n");
    let o = t
        .cmd("a", &bin("oping"))
        .args(["-n", NAME, "-c", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("aes-128-cbc") && err.contains("not supported"),
        "{err}"
    );
    // A server that requires encryption refuses a plain client.
    std::fs::remove_file(t.dir.join("security/client").join(NAME).join("enc.conf")).unwrap();
    let o = t
        .cmd("a", &bin("oping"))
        .args(["-n", NAME, "-c", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(d.log().contains("requires it"), "{}", d.log());
}

#[test]
fn key_rotation_loses_nothing_and_bad_ciphertext_is_counted() {
    if !can_run() {
        return;
    }
    let t = Topo::single("kr");
    // Rotate every 2^3 = 8 packets.
    let (d, _s) = setup(&t, &["--key-rotation-bits", "3"]);
    enc(&t, "client", "enc.conf", "");
    let ping = t
        .cmd("a", &bin("oping"))
        .args(["-n", NAME, "-c", "60", "-i", "20ms", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t
        .ctl_json("a", &["flow", "list"])
        .len()
        == 2));
    let srv = accept_flow(&t);
    let eid =
        u16::from_str_radix(srv["local"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    // Frames for the server's flow whose SDU is garbage of an encrypted SDU's size.
    let frame = format!(
        "000000000000000000000000a000{:04x}005c{}",
        eid,
        "5a".repeat(92)
    );
    for _ in 0..5 {
        let o = t
            .cmd("a", &bin("o7s-inject"))
            .args(["lo", &frame])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = ping.wait_with_output().unwrap();
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let sum: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(sum["received"], 60, "{sum}\n{}", d.log());
    let srv = accept_flow(&t);
    assert!(srv["drop_decrypt"].as_u64().unwrap() >= 5, "{srv}");
    assert!(srv["key_rotations"].as_u64().unwrap() >= 5, "{srv}");
}
