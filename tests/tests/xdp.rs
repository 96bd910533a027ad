//! The XDP steering program (bpf/xdp_o7s.o): it passes the verifier, classifies frames, and
//! with no AF_XDP socket bound passes everything to the kernel, so IPv4 and the AF_PACKET
//! ports keep working. (The AF_XDP path that binds sockets is issue 4's next step.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use o7s_integration::{can_run, tool, Topo};
use std::process::Command;

fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&sh(args)).unwrap()
}

/// Map ids of the program attached to `dev` in `ns`, by map name.
fn maps(ns: &str, dev: &str) -> std::collections::HashMap<String, u64> {
    let link = json(&["ip", "-n", ns, "-j", "link", "show", "dev", dev]);
    let prog = link[0]["xdp"]["prog"]["id"]
        .as_u64()
        .expect("an XDP program is attached");
    let p = json(&["bpftool", "-j", "prog", "show", "id", &prog.to_string()]);
    p["map_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let m = json(&["bpftool", "-j", "map", "show", "id", &id.to_string()]);
            (
                m["name"].as_str().unwrap().to_string(),
                id.as_u64().unwrap(),
            )
        })
        .collect()
}

/// Sums a per-CPU counter.
fn counter(map: u64, idx: u32) -> u64 {
    let d = json(&[
        "bpftool",
        "-j",
        "map",
        "lookup",
        "id",
        &map.to_string(),
        "key",
        &idx.to_string(),
        "0",
        "0",
        "0",
    ]);
    // With BTF, bpftool gives the numbers under "formatted"; the raw "values" are bytes.
    let v = d["formatted"]["values"]
        .as_array()
        .or_else(|| d["values"].as_array())
        .unwrap();
    v.iter()
        .map(|c| match &c["value"] {
            serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
            serde_json::Value::Array(bytes) => bytes
                .iter()
                .rev()
                .map(|b| {
                    u64::from_str_radix(b.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
                        .unwrap_or(0)
                })
                .fold(0, |acc, b| acc << 8 | b),
            _ => 0,
        })
        .sum()
}

#[test]
fn xdp_program_classifies_and_passes_without_a_socket() {
    if !can_run() || !tool("bpftool") || !tool("ping") {
        return;
    }
    let obj = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bpf/xdp_o7s.o");
    let t = Topo::pair("xd");
    for s in ["a", "b"] {
        sh(&[
            "ip",
            "-n",
            &t.ns(s),
            "link",
            "set",
            "dev",
            &t.dev(s),
            "xdpgeneric",
            "obj",
            obj.to_str().unwrap(),
            "sec",
            "xdp",
        ]);
    }
    sh(&[
        "ip",
        "-n",
        &t.ns("a"),
        "addr",
        "add",
        "169.254.78.1/24",
        "dev",
        &t.dev("a"),
    ]);
    sh(&[
        "ip",
        "-n",
        &t.ns("b"),
        "addr",
        "add",
        "169.254.78.2/24",
        "dev",
        &t.dev("b"),
    ]);
    let m = maps(&t.ns("b"), &t.dev("b"));
    // Steer Ethertype 0xA000 (little-endian u16, then llc = 0, pad).
    sh(&[
        "bpftool",
        "map",
        "update",
        "id",
        &m["cfg"].to_string(),
        "key",
        "0",
        "0",
        "0",
        "0",
        "value",
        "0x00",
        "0xa0",
        "0",
        "0",
    ]);
    // IPv4 still works with the program attached.
    sh(&[
        "ip",
        "netns",
        "exec",
        &t.ns("a"),
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "169.254.78.2",
    ]);
    // And so does the eth-dix layer over AF_PACKET: without a socket, data frames pass.
    let conf = |dev: &str, reg: &str| {
        format!("[name.\"oping-server\"]\nprog=[\"/usr/bin/oping\"]\nargs=[\"-l\"]\n[eth-dix.e]\nbootstrap=\"l\"\ndev=\"{dev}\"\n{reg}")
    };
    let _b = t.daemon("b", &conf(&t.dev("b"), "reg=[\"oping-server\"]\n"));
    let _a = t.daemon("a", &conf(&t.dev("a"), ""));
    let (sum, out) = t.oping("a", &["-n", "oping-server", "-c", "5", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        5,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = m["counters"];
    let (ours, redirect, mgmt, no_socket, other) = (
        counter(c, 0),
        counter(c, 1),
        counter(c, 2),
        counter(c, 3),
        counter(c, 4),
    );
    assert!(mgmt >= 2, "NAME_QUERY_REQ and FLOW_REQ reached b: {mgmt}");
    assert!(
        no_socket >= 5,
        "the 5 echo requests were data frames without a socket: {no_socket}"
    );
    assert_eq!(redirect, 0);
    assert_eq!(ours, mgmt + no_socket);
    assert!(
        other >= 3,
        "the IPv4 pings passed as other traffic: {other}"
    );
}
