//! oecho and operf (issue 27 item 5) between two namespaces over eth-dix: the echo comes
//! back; operf's uni and bi tests are counted at both ends, raw and over FRCP.
//!
//! Needs root (namespaces); skips visibly without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use o7s_integration::{bin, can_run, Topo};
use serde_json::Value;
use std::process::Stdio;

fn server_conf(dev: &str) -> String {
    format!(
        "[name.\"oecho\"]\nprog=[\"{}\"]\n\n[name.\"operf\"]\nprog=[\"{}\"]\n\n[eth-dix.e]\nbootstrap=\"tools-net\"\ndev=\"{dev}\"\nreg=[\"oecho\", \"operf\"]\n",
        bin("oecho").display(),
        bin("operf").display()
    )
}

fn client_conf(dev: &str) -> String {
    format!("[eth-dix.e]\nbootstrap=\"tools-net\"\ndev=\"{dev}\"\n")
}

fn last_json(out: &[u8]) -> Value {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .next_back()
        .unwrap_or(Value::Null)
}

#[test]
fn oecho_echoes_and_operf_counts_uni_and_bi_tests_at_both_ends() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("tl");
    let b = t.daemon("b", &server_conf(&t.dev("b")));
    let a = t.daemon("a", &client_conf(&t.dev("a")));

    // oecho: three messages, each echoed, raw and over FRCP.
    let srv = t
        .cmd("b", &bin("oecho"))
        .args(["-l", "--flows", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", "oecho");
    for q in ["raw", "data"] {
        let o = t
            .cmd("a", &bin("oecho"))
            .args(["-m", "hello across", "-c", "3", "-q", q])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "-q {q}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            b.log()
        );
        assert_eq!(
            out.matches("Server replied: hello across").count(),
            3,
            "{out}"
        );
    }
    let o = srv.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("3 SDUs echoed").count(), 2, "{out}");
    // A name nobody serves: a clear failure, not a hang.
    let o = t
        .cmd("a", &bin("oecho"))
        .args(["-n", "nobody-here", "-t", "1000"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Failed to allocate flow"),
        "{o:?}"
    );

    // operf: uni and bi, 1 s at 2000 packets/s of 1000 bytes; over FRCP (data) nothing is
    // missing at either end, raw on a clean veth pair neither.
    for (test, q) in [
        ("uni", "raw"),
        ("uni", "data"),
        ("bi", "raw"),
        ("bi", "data"),
    ] {
        let srv = t
            .cmd("b", &bin("operf"))
            .args(["-l", "--json", "--flows", "1", "--idle", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        t.wait_accepting("b", "b", "operf");
        let o = t
            .cmd("a", &bin("operf"))
            .args([
                "-t", test, "-q", q, "-d", "1", "-r", "2000", "-s", "1000", "--json",
            ])
            .output()
            .unwrap();
        let c = last_json(&o.stdout);
        let so = srv.wait_with_output().unwrap();
        let s = last_json(&so.stdout);
        assert!(
            o.status.success(),
            "{test} {q}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            a.log()
        );
        eprintln!("operf {test} -q {q}: client {c}\nserver {s}");
        let sent = c["sent"].as_u64().unwrap();
        assert!((1500..=2100).contains(&sent), "about 2000 in 1 s: {c}");
        assert_eq!(s["test"], test, "{s}");
        assert_eq!(
            (&s["received"], &s["missing"], &s["out_of_order"]),
            (&Value::from(sent), &Value::from(0), &Value::from(0)),
            "{test} -q {q}: every packet counted at the server: {s}"
        );
        assert_eq!(s["bytes"], sent * 1000, "{s}");
        if test == "bi" {
            assert_eq!(
                (&c["echo"]["received"], &c["echo"]["missing"]),
                (&Value::from(sent), &Value::from(0)),
                "every echo back: {c}"
            );
        } else {
            assert_eq!(c["echo"], Value::Null, "{c}");
        }
        assert_eq!(c["frcp"].is_null(), q == "raw", "{c}");
        if q == "data" {
            // Nothing is lost on this path: what goes twice is a timer that did not wait
            // for the receiver's delayed ACK (it was a sixth of the packets before the
            // RTO timer included the delay). A receiver held off the CPU for a while on
            // a loaded 2-core machine makes a few such bursts too (305 of 2,000 once,
            // with a cargo build beside it, which CI does not run): a tenth still tells
            // the old defect apart.
            let rtx = c["frcp"]["retransmits"].as_u64().unwrap();
            assert!(rtx <= sent / 10, "{rtx} of {sent} sent again: {c}");
        }
    }
}
