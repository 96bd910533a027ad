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
