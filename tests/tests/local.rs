//! The local layer (issue 27 item 4, `[local.X]`): flows between processes of one host,
//! through one shared memory and no data plane.
//!
//! Needs root (a namespace of its own for the daemon); skips visibly without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;

fn conf() -> String {
    format!(
        "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n[name.\"ocbr\"]\nprog=[\"{}\"]\n\n[local.lo]\nbootstrap=\"local-layer\"\nreg=[\"oping-server\", \"ocbr\", \"nobody\"]\n",
        bin("oping").display(),
        bin("ocbr").display()
    )
}

/// oping over the local layer (the server auto-started), raw and over FRCP; `ipcp list`
/// and `flow list` show the layer and its flows; a 1 s flood arrives whole (a local flow
/// has no port to lose at: a full ring holds the writer); a name nobody serves fails
/// clearly at its time-out; a client killed mid-flow ends the server's flow at once.
#[test]
fn oping_and_ocbr_over_the_local_layer() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("lc");
    let a = t.daemon("a", &conf());
    for q in ["raw", "data"] {
        let (sum, o) = t.oping(
            "a",
            &["-n", "oping-server", "-c", "10", "-i", "10ms", "-q", q],
        );
        assert_eq!(
            sum["received"],
            10,
            "-q {q}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            a.log()
        );
    }
    assert!(
        a.log().contains("over local layer local-layer"),
        "{}",
        a.log()
    );
    let ipcps = t.ctl_json("a", &["ipcp", "list"]);
    let lo = ipcps
        .iter()
        .find(|r| r["name"] == "lo")
        .expect("the local IPCP");
    assert_eq!(
        (&lo["type"], &lo["layer"], &lo["state"]),
        (
            &Value::from("local"),
            &Value::from("local-layer"),
            &Value::from("up")
        )
    );
    assert!(
        lo["registered"]
            .as_array()
            .unwrap()
            .contains(&Value::from("oping-server")),
        "{lo}"
    );

    // ocbr: a flood for 1 s, every SDU counted; flow list meanwhile.
    let srv = t
        .cmd("a", &bin("ocbr"))
        .args(["-l", "--json", "--verify", "--flows", "1", "-t", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting("a", "a", "ocbr");
    let mut cl = t
        .cmd("a", &bin("ocbr"))
        .args(["-n", "ocbr", "-s", "1400", "-f", "-d", "1", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rows = vec![];
    let seen = eventually(Duration::from_secs(2), || {
        rows = t
            .ctl_json("a", &["flow", "list"])
            .into_iter()
            .filter(|r| r["name"] == "ocbr")
            .collect();
        rows.len() == 2
    });
    assert!(seen, "both ends of the local flow listed: {rows:?}");
    for r in &rows {
        assert_eq!(
            (&r["ipcp"], &r["peer"]),
            (&Value::from("lo"), &Value::from("local (shared memory)")),
            "{r}"
        );
    }
    assert!(cl.wait().unwrap().success());
    let mut out = String::new();
    std::io::Read::read_to_string(cl.stdout.as_mut().unwrap(), &mut out).unwrap();
    let c: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let so = srv.wait_with_output().unwrap();
    let s: Value =
        serde_json::from_str(String::from_utf8_lossy(&so.stdout).lines().last().unwrap()).unwrap();
    eprintln!("local ocbr flood: client {c}\nserver {s}");
    assert!(c["sent"].as_u64().unwrap() > 10_000, "{c}");
    assert_eq!(
        (
            &s["received"],
            &s["lost"],
            &s["out_of_order"],
            &s["corrupt"]
        ),
        (
            &c["sent"],
            &Value::from(0),
            &Value::from(0),
            &Value::from(0)
        ),
        "every SDU of the flood: {s}"
    );
    // Both ends gone: no flow left.
    assert!(
        eventually(Duration::from_secs(2), || t
            .ctl_json("a", &["flow", "list"])
            .is_empty()),
        "{:?}",
        t.ctl_json("a", &["flow", "list"])
    );

    // A name registered in the layer that no process serves and no program starts.
    let start = std::time::Instant::now();
    let o = t
        .cmd("a", &bin("oecho"))
        .args(["-n", "nobody", "-t", "1000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("no process accepted nobody in time") || err.contains("timed out"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // A client killed mid-flow: the server's end goes at once (not at a peer time-out).
    let srv = t
        .cmd("a", &bin("ocbr"))
        .args(["-l", "--json", "--flows", "1", "-t", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting("a", "a", "ocbr");
    let mut cl = t
        .cmd("a", &bin("ocbr"))
        .args(["-n", "ocbr", "-r", "1M", "-d", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || t
        .ctl_json("a", &["flow", "list"])
        .len()
        == 2));
    std::thread::sleep(Duration::from_millis(300));
    cl.kill().unwrap();
    let _ = cl.wait();
    let killed = std::time::Instant::now();
    let so = srv.wait_with_output().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "the server's flow ended {:?} after the kill (its idle time-out is 30 s)",
        killed.elapsed()
    );
    let s: Value =
        serde_json::from_str(String::from_utf8_lossy(&so.stdout).lines().last().unwrap()).unwrap();
    assert!(s["received"].as_u64().unwrap() > 0, "{s}");
    assert!(t.ctl_json("a", &["flow", "list"]).is_empty());
}

/// A local flow is two of the daemon's flows and counts against its bounds as any other:
/// with `--max-flows 2`, a second pair is refused (counted, said) while the first is held.
#[test]
fn local_flows_count_against_the_daemon_s_flow_limit() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("lm");
    let a = t.daemon_with("a", "a", &conf(), &["--max-flows", "2"]);
    // The first pair: an oping that runs for a while (the server auto-started).
    let mut first = t
        .cmd("a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "300", "-i", "10ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        t.ctl_json("a", &["flow", "list"]).len() >= 2
    }));
    let (_, o) = t.oping("a", &["-n", "oping-server", "-c", "1", "-i", "10ms"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("maximum of 2 flows"), "{err}\n{}", a.log());
    let stats = t.ctl_json("a", &["stats"]).remove(0);
    assert!(stats["flow_limit"].as_u64().unwrap_or(0) >= 1, "{stats}");
    let _ = first.kill();
    let _ = first.wait();
}
