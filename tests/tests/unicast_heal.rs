//! A unicast layer cut in two and healed, on o7sd in namespaces (issue 25: the scenario of
//! proto/tests/layer_sim.rs `a_partition_heals_and_names_resolve_across_it_again`, on the
//! daemon). A - B - C - D, cut between B and C: A and B drop the directory values and
//! contacts naming C's and D's addresses (`dht_forgotten`), C and D drop A's and B's; once
//! the link is back, the directories rejoin through the members they had dropped and
//! publish again (`dht_rejoined`, o7s_proto::ipcp::departures), so A finds C's name again
//! at once. What this test cannot show: that the rejoin is needed here. With it taken out
//! A still found the name after the heal (in a layer of four some other message across
//! the old cut taught B and A a contact of C's side); the 50-IPCP simulation shows the
//! need (21 of 50 look-ups after the heal without it, 50 of 50 with it).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::unicast::{uni_chain, Chain};
use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::time::Duration;

fn row(t: &Topo, s: &str, name: &str) -> Value {
    t.ctl_json(s, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or(Value::Null)
}

fn count(t: &Topo, s: &str, name: &str, key: &str) -> u64 {
    row(t, s, name)[key].as_u64().unwrap_or(0)
}

fn ctl(t: &Topo, s: &str, args: &[&str]) {
    let o = t.cmd(s, &bin("o7sctl")).args(args).output().unwrap();
    assert!(o.status.success(), "o7sctl {args:?} in {s}: {o:?}");
}

/// The server at C, killed and reaped however the test ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_healed_layer_resolves_names_across_the_old_cut_again() {
    if !can_run() {
        return;
    }
    let t = Topo::bridged("uh", &["a", "b", "c", "d"]);
    let eth = |s: &str, reg: &str| {
        format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[{reg}]\n\n",
            t.dev(s)
        )
    };
    let chain = Chain {
        layer: "heal",
        eth: [eth("a", "\"ua\""), eth("b", "\"ub\""), eth("c", "\"uc\"")],
        name: "oping-heal",
        b_args: &[],
    };
    let (a, b, c) = uni_chain(&t, &chain);
    // D enrols through C: after the cut C still has a directory contact (D), so nothing
    // makes it join again through its enroller, and A's look-up (through B) can only
    // find C's name if the directories rejoin.
    let d = t.daemon(
        "d",
        &format!(
            "{}[unicast.ud]\nenrol=\"uc\"\nautobind=true\nconn=[\"uc\"]\n",
            eth("d", "")
        ),
    );
    let logs = || format!("{}\n{}\n{}\n{}", a.log(), b.log(), c.log(), d.log());
    assert!(
        eventually(Duration::from_secs(15), || row(&t, "d", "ud")["state"]
            == "enrolled"),
        "D enrolled through C\n{}",
        logs()
    );
    let srv = t
        .cmd("c", &bin("oping"))
        .arg("--listen")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _srv = Reap(srv);
    t.wait_accepting("c", "c", "oping-heal");
    let ping = || {
        let (s, o) = t.oping("a", &["-n", "oping-heal", "-c", "3", "-i", "10ms"]);
        (s["received"] == 3, o)
    };
    assert!(
        eventually(Duration::from_secs(20), || ping().0),
        "A reaches C's name before the cut\n{}",
        logs()
    );
    let forgotten = count(&t, "a", "ua", "dht_forgotten");
    // B and C tear their connections down (DT and Management; the eth shim has no message
    // that ends a flow at its peer, so each end does it): A and B lose their routes to C,
    // C to them.
    let ac = row(&t, "c", "uc")["address"].as_str().unwrap().to_string();
    ctl(&t, "b", &["ipcp", "disconnect", "name", "ub", "dst", &ac]);
    ctl(&t, "c", &["ipcp", "disconnect", "name", "uc", "dst", "ub"]);
    assert!(
        eventually(Duration::from_secs(10), || count(
            &t,
            "a",
            "ua",
            "dht_forgotten"
        ) > forgotten),
        "A dropped C's directory values: {}\n{}",
        row(&t, "a", "ua"),
        logs()
    );
    let (ok, o) = ping();
    assert!(
        !ok,
        "C's name is not reachable while C is cut off: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Each side knows only its own: A only B, C only D.
    let contacts = |h: &str| count(&t, h, &format!("u{h}"), "dht_contacts");
    assert!(
        eventually(Duration::from_secs(10), || contacts("a") == 1
            && contacts("c") == 1),
        "A's and C's directories dropped the other side's contacts: {}\n{}",
        row(&t, "a", "ua"),
        row(&t, "c", "uc")
    );
    // Healed: C connects to B again.
    let rejoined = count(&t, "a", "ua", "dht_rejoined");
    ctl(&t, "c", &["ipcp", "connect", "name", "uc", "dst", "ub"]);
    assert!(
        eventually(Duration::from_secs(15), || count(
            &t,
            "a",
            "ua",
            "dht_rejoined"
        ) > rejoined),
        "A's directory rejoined through C: {}\n{}",
        row(&t, "a", "ua"),
        logs()
    );
    assert!(
        eventually(Duration::from_secs(15), || ping().0),
        "A reaches C's name again after the heal: {}\n{}",
        row(&t, "a", "ua"),
        logs()
    );
    assert!(
        c.log().contains("the directory rejoins through"),
        "C's log says why it rejoined\n{}",
        c.log()
    );
}
