//! The unicast chain A - B - C of the facts (§8.3) that several tests set up.

use crate::{bin, eventually, Daemon, Topo};
use std::time::Duration;

/// How a chain is made.
#[derive(Debug)]
pub struct Chain<'a> {
    /// The layer A bootstraps.
    pub layer: &'a str,
    /// The N-1 tables of A, B and C (A's registers "ua" and B's "ub": the names B and C
    /// enrol through).
    pub eth: [String; 3],
    /// The name C publishes, with oping as the program to start for it.
    pub name: &'a str,
    /// Extra `o7sd` arguments for B.
    pub b_args: &'a [&'a str],
}

/// Starts A (bootstraps the layer), B (enrols through A and connects to it; waited for),
/// then C (enrols through B, connects to it, publishes the name). Panics, with B's log,
/// when B does not enrol within 10 s.
pub fn uni_chain(t: &Topo, c: &Chain<'_>) -> (Daemon, Daemon, Daemon) {
    let [ea, eb, ec] = &c.eth;
    let a = t.daemon(
        "a",
        &format!(
            "{ea}[unicast.ua]\nbootstrap=\"{}\"\nautobind=true\n",
            c.layer
        ),
    );
    let b = t.daemon_with(
        "b",
        "b",
        &format!("{eb}[unicast.ub]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\n"),
        c.b_args,
    );
    let enrolled = eventually(Duration::from_secs(10), || {
        t.ctl_json("b", &["ipcp", "list"])
            .iter()
            .any(|r| r["name"] == "ub" && r["state"] == "enrolled")
    });
    assert!(enrolled, "B enrolled through A\n{}", b.log());
    let cd = t.daemon(
        "c",
        &format!(
            "[name.\"{}\"]\nprog=[\"{}\"]\n\n{ec}[unicast.uc]\nenrol=\"ub\"\nautobind=true\nconn=[\"ub\"]\nreg=[\"{}\"]\n",
            c.name,
            bin("oping").display(),
            c.name
        ),
    );
    (a, b, cd)
}

/// The ring A - B - C - D - A (a veth per link, `Topo::links`): A bootstraps the layer
/// "ring" with `a_keys` in its table (routing, timers) and `a_args` for its o7sd, B enrols
/// through A, C through B,
/// D through C and connects to C and A. C publishes `name` with `prog` as its program and
/// runs its two ports on two workers (`--core 0,1`). Returns the daemons A, B, C, D once
/// each has enrolled (panics with the log of one that did not within 10 s).
pub fn uni_ring(t: &Topo, a_keys: &str, a_args: &[&str], name: &str, prog: &str) -> Vec<Daemon> {
    let nb = |s: &str| match s {
        "a" => ["b", "d"],
        "b" => ["a", "c"],
        "c" => ["b", "d"],
        _ => ["c", "a"],
    };
    let eth = |s: &str| {
        nb(s)
            .iter()
            .map(|o| {
                format!(
                    "[eth-dix.e{o}]\nbootstrap=\"eth-{s}{o}\"\ndev=\"{}\"\nreg=[\"u{s}\"]\n\n",
                    t.link_dev(s, o)
                )
            })
            .collect::<String>()
    };
    let a = t.daemon_with(
        "a",
        "a",
        &format!(
            "{}[unicast.ua]\nbootstrap=\"ring\"\nautobind=true\n{a_keys}\n",
            eth("a")
        ),
        a_args,
    );
    let mut ds = vec![a];
    for (s, dst, conn) in [
        ("b", "ua", "\"ua\""),
        ("c", "ub", "\"ub\""),
        ("d", "uc", "\"uc\", \"ua\""),
    ] {
        let (extra, reg) = if s == "c" {
            (
                format!("[name.\"{name}\"]\nprog=[\"{}\"]\n\n", bin(prog).display()),
                format!("reg=[\"{name}\"]\n"),
            )
        } else {
            (String::new(), String::new())
        };
        // C's two ports on two workers: PDUs for its N+1 flow arrive on either.
        let cores: &[&str] = if s == "c" { &["--core", "0,1"] } else { &[] };
        let d = t.daemon_with(
            s,
            s,
            &format!(
                "{extra}{}[unicast.u{s}]\nenrol=\"{dst}\"\nautobind=true\nconn=[{conn}]\n{reg}",
                eth(s)
            ),
            cores,
        );
        let ipcp = format!("u{s}");
        assert!(
            eventually(Duration::from_secs(10), || t
                .ctl_json(s, &["ipcp", "list"])
                .iter()
                .any(|r| r["name"] == ipcp.as_str() && r["state"] == "enrolled")),
            "{}",
            d.log()
        );
        ds.push(d);
    }
    ds
}

/// Whether the directory of `ns`'s unicast IPCPs holds `name` (its SHA3-256 key): a client
/// started before that may ask the network while the name is still on its way and give up.
pub fn dht_has(t: &Topo, ns: &str, name: &str) -> bool {
    let key = hex::encode(o7s_wire::hash::HashAlgo::Sha3_256.hash(name));
    t.ctl_json(ns, &["dht", "list"])
        .iter()
        .any(|r| r["key"] == key.as_str())
}
