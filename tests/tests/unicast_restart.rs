//! A member of a unicast layer restarts (issue 24): host C goes down (its o7sd and data
//! plane killed) and comes back, so C's IPCP enrols anew with a new address while B still
//! routes C's old one over N-1 flows whose endpoint ids C's new flows may reuse. B ends
//! the old flows at once, no PDU bounces between B and C (C, a leaf, forwards nothing; it
//! drops what would go straight back, counted as `dt_drop_loop`), and A reaches the new C.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::{can_run, eventually, Topo};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn conf(t: &Topo, h: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../docs/tutorial-unicast/{h}.conf"));
    std::fs::read_to_string(p)
        .unwrap()
        .replace("dev=\"eth0\"", &format!("dev=\"{}\"", t.dev(h)))
}

fn row(t: &Topo, h: &str, n: &str) -> Value {
    t.ctl_json(h, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == n)
        .unwrap_or(Value::Null)
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// The unicast layer's link-state timers shortened: records age out after 6 s (0.23 sends no
/// withdrawal, so a neighbour's view of a link that went lasts until then), announced every
/// 2 s, the table recomputed every second.
fn conf_fast_ls(t: &Topo, h: &str) -> String {
    let c = conf(t, h);
    let at = c.find("[unicast.").unwrap();
    let end = c[at..].find('\n').unwrap() + at + 1;
    format!(
        "{}ls_t_timeo=6\nls_t_update=2\nls_t_recalc=1\n{}",
        &c[..end],
        &c[end..]
    )
}

/// Kills every process in host `h`'s namespace (o7sd and its data plane, as a host that
/// goes down) and waits until none is left.
fn kill_host(t: &Topo, h: &str) {
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &t.ns(h)])
        .output()
        .unwrap();
    for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if let Ok(p) = p.parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let gone = || {
        std::process::Command::new("ip")
            .args(["netns", "pids", &t.ns(h)])
            .output()
            .is_ok_and(|o| o.stdout.iter().all(u8::is_ascii_whitespace))
    };
    assert!(
        eventually(Duration::from_secs(5), gone),
        "{h}'s processes are gone"
    );
}

/// An address as the listings show it ("0x0000abcd", or a number).
fn addr_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_str()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
    })
}

/// Whether host `h`'s table has a route to `addr`.
fn routes_to(t: &Topo, h: &str, addr: &Value) -> bool {
    t.ctl_json(h, &["route", "list"])
        .iter()
        .any(|r| r["dst"] == *addr)
}

#[test]
fn a_host_that_restarts_during_an_oping_is_reached_again_and_nothing_bounces() {
    if !can_run() {
        return;
    }
    let t = Topo::bridged("ur", &["a", "b", "c"]);
    let a = t.daemon("a", &conf_fast_ls(&t, "a"));
    assert!(eventually(Duration::from_secs(10), || row(&t, "a", "ua")
        ["state"]
        == "bootstrapped"));
    let b = t.daemon("b", &conf_fast_ls(&t, "b"));
    assert!(
        eventually(Duration::from_secs(10), || row(&t, "b", "ub")["state"]
            == "enrolled"),
        "{}",
        b.log()
    );
    let c = t.daemon("c", &conf_fast_ls(&t, "c"));
    assert!(
        eventually(Duration::from_secs(10), || row(&t, "c", "uc")["state"]
            == "enrolled"),
        "{}",
        c.log()
    );
    let ping = |what: &str| {
        let mut got = 0;
        let ok = eventually(Duration::from_secs(30), || {
            let (sum, _) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "20ms"]);
            got = sum["received"].as_u64().unwrap_or(0);
            got == 10
        });
        (ok, format!("{what}: {got}/10"))
    };
    let (ok, why) = ping("before");
    assert!(ok, "{why}\n{}\n{}", a.log(), b.log());
    let old = row(&t, "c", "uc")["address"].clone();
    assert!(routes_to(&t, "a", &old) && routes_to(&t, "b", &old));
    // The directory at A and B: where C's name is stored, with which addresses.
    let key = hex::encode(o7s_wire::hash::HashAlgo::Sha3_256.hash("oping-server"));
    let dht_addrs = |h: &str| -> Vec<u64> {
        t.ctl_json(h, &["dht", "list"])
            .iter()
            .filter(|r| r["key"] == key.as_str())
            .filter_map(|r| addr_of(&r["address"]))
            .collect()
    };
    let old_addr = addr_of(&old).unwrap();
    assert!(
        dht_addrs("a").contains(&old_addr) || dht_addrs("b").contains(&old_addr),
        "C's name is stored at neither A nor B: {:?} {:?}",
        t.ctl_json("a", &["dht", "list"]),
        t.ctl_json("b", &["dht", "list"])
    );
    // An oping from A to the old C runs on while C goes down and comes back (a new IPCP
    // with a new address): its PDUs for the old address keep reaching B.
    let long = t
        .cmd("a", &o7s_integration::bin("oping"))
        .args(["-n", "oping-server", "-c", "600", "-i", "10ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let b_before = row(&t, "b", "ub");
    let a_before = row(&t, "a", "ua");
    kill_host(&t, "c");
    let c2 = t.daemon("c", &conf_fast_ls(&t, "c"));
    assert!(
        eventually(Duration::from_secs(15), || row(&t, "c", "uc")["state"]
            == "enrolled"),
        "{}",
        c2.log()
    );
    let new = row(&t, "c", "uc")["address"].clone();
    assert_ne!(old, new, "C drew a new address");
    // B, the neighbour that saw C's links end, drops the old address at once and floods
    // the withdrawal of its link to it; A, which knew of it only from link state, deletes
    // that link and drops the route as it arrives: both within one update period (2 s)
    // of C's new IPCP enrolling, where ageing out would take t_timeo (6 s) and more.
    let a_withdrawn = n(&row(&t, "a", "ua"), "lsa_withdrawn");
    assert!(
        eventually(Duration::from_secs(2), || !routes_to(&t, "b", &old)),
        "B still routes C's old address: {:?}",
        t.ctl_json("b", &["route", "list"])
    );
    assert!(
        eventually(Duration::from_secs(2), || !routes_to(&t, "a", &old)),
        "A still routes C's old address: {:?}\nA {}",
        t.ctl_json("a", &["route", "list"]),
        row(&t, "a", "ua")
    );
    let a_row = row(&t, "a", "ua");
    assert!(
        n(&a_row, "lsa_withdrawn") >= 1,
        "A's route went without a withdrawal (was {a_withdrawn}): {a_row}"
    );
    assert!(eventually(Duration::from_secs(10), || routes_to(
        &t, "a", &new
    )));
    // Nor does their directory name it after a second without a route (o7s: 0.23 keeps
    // the values until they expire, and lookups answer the dead address among the live).
    for h in ["a", "b"] {
        assert!(
            eventually(Duration::from_secs(3), || !dht_addrs(h).contains(&old_addr)),
            "{h}'s directory still names C's old address: {:?}",
            t.ctl_json(h, &["dht", "list"])
        );
    }
    assert!(
        n(&row(&t, "a", "ua"), "dht_forgotten") + n(&row(&t, "b", "ub"), "dht_forgotten") >= 1,
        "A {}\nB {}",
        row(&t, "a", "ua"),
        row(&t, "b", "ub")
    );
    let _ = long.wait_with_output();
    let (ra, rb, rc) = (row(&t, "a", "ua"), row(&t, "b", "ub"), row(&t, "c", "uc"));
    // The oping's PDUs for the old address stopped at B, the first hop that knew C was
    // gone, or at A once the withdrawal reached it; none came back from C (a leaf forwards
    // nothing), none ran out of TTL.
    let dropped = |r: &Value| {
        ["dt_drop_no_route", "dt_drop_n1", "dt_drop_loop"]
            .iter()
            .map(|k| n(r, k))
            .sum::<u64>()
    };
    assert!(
        dropped(&ra) + dropped(&rb) > dropped(&a_before) + dropped(&b_before),
        "A and B dropped nothing for the old address: before A {a_before}\nB {b_before}\nafter A {ra}\nB {rb}"
    );
    assert_eq!(n(&rc, "dt_forwarded"), 0, "C forwarded PDUs: {rc}");
    assert_eq!(
        n(&rb, "dt_drop_ttl") + n(&rc, "dt_drop_ttl"),
        0,
        "TTL ran out: B {rb}\nC {rc}"
    );
    let (ok, why) = ping("after the restart");
    assert!(ok, "{why}\nB {rb}\nC {rc}\n{}\n{}", a.log(), c2.log());
}

/// The stats counter `k` of side `h`'s o7sd.
fn stat(t: &Topo, h: &str, k: &str) -> u64 {
    t.ctl_json(h, &["stats"]).first().map_or(0, |r| n(r, k))
}

#[test]
fn a_restarted_member_s_old_links_go_at_once_at_its_neighbour() {
    if !can_run() {
        return;
    }
    let t = Topo::bridged("uq", &["a", "b", "c"]);
    let a = t.daemon("a", &conf(&t, "a"));
    assert!(eventually(Duration::from_secs(10), || row(&t, "a", "ua")
        ["state"]
        == "bootstrapped"));
    let b = t.daemon("b", &conf(&t, "b"));
    assert!(
        eventually(Duration::from_secs(10), || row(&t, "b", "ub")["state"]
            == "enrolled"),
        "{}",
        b.log()
    );
    let c = t.daemon("c", &conf(&t, "c"));
    assert!(
        eventually(Duration::from_secs(10), || row(&t, "c", "uc")["state"]
            == "enrolled"),
        "{}",
        c.log()
    );
    let old = row(&t, "c", "uc")["address"].clone();
    let links_to = |addr: &Value| {
        t.ctl_json("b", &["neighbour", "list"])
            .into_iter()
            .filter(|r| r["neighbour"] == *addr)
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || links_to(&old) == 2),
        "B has Management and DT links to C"
    );
    // C goes down as a host does: its o7sd and its data plane (which would otherwise
    // outlive o7sd and keep C's endpoint ids taken).
    kill_host(&t, "c");
    let c2 = t.daemon("c", &conf(&t, "c"));
    assert!(
        eventually(Duration::from_secs(15), || row(&t, "c", "uc")["state"]
            == "enrolled"),
        "{}",
        c2.log()
    );
    let new = row(&t, "c", "uc")["address"].clone();
    assert_ne!(old, new);
    // C's new flows reuse the endpoint ids of its old ones: B ends the old flows at once
    // (not at their 120 s peer timeout), and its links to the old address with them.
    let gone = eventually(Duration::from_secs(5), || {
        links_to(&old) == 0 && links_to(&new) == 2
    });
    assert!(
        gone,
        "B's links: {:?}\nB's flows: {:?}\nC's flows: {:?}",
        t.ctl_json("b", &["neighbour", "list"]),
        t.ctl_json("b", &["flow", "list"])
            .iter()
            .map(|f| format!(
                "{} {} local {} remote {} {} {}",
                f["flow"], f["name"], f["local"], f["remote"], f["peer"], f["state"]
            ))
            .collect::<Vec<_>>(),
        t.ctl_json("c", &["flow", "list"])
            .iter()
            .map(|f| format!(
                "{} {} local {} remote {} {} {}",
                f["flow"], f["name"], f["local"], f["remote"], f["peer"], f["state"]
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        stat(&t, "b", "flows_superseded") >= 2,
        "{:?}",
        t.ctl_json("b", &["stats"])
    );
    assert!(
        b.log().contains("reused endpoint id"),
        "B says why the old flows ended\n{}",
        b.log()
    );
    // And A still reaches C, at its new address.
    let mut got = 0;
    let ok = eventually(Duration::from_secs(30), || {
        let (sum, _) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "20ms"]);
        got = sum["received"].as_u64().unwrap_or(0);
        got == 10
    });
    assert!(ok, "{got}/10\n{}", a.log());
}

/// Issue 26 item 4: a flow over the unicast layer survives `kill -9` of o7sd. A pings C's
/// oping-server (started by hand, not by o7sd) through B, 1000 times at 10 ms; C's o7sd is
/// killed mid-run and a new one started: it adopts the data plane (which forwarded
/// meanwhile), resumes C's IPCP at its old address with its old DT link to B until the
/// new connections replace it, and knows the flow again (same id, same pid). Every ping
/// is answered; B ends its old links to C within seconds (C connected again), leaving
/// two; a new flow works beside the adopted one.
#[test]
fn a_flow_over_the_layer_survives_kill_9_of_o7sd() {
    if !can_run() {
        return;
    }
    let t = Topo::bridged("ur", &["a", "b", "c"]);
    let a = t.daemon("a", &conf(&t, "a"));
    assert!(eventually(Duration::from_secs(10), || row(&t, "a", "ua")
        ["state"]
        == "bootstrapped"));
    let b = t.daemon("b", &conf(&t, "b"));
    assert!(
        eventually(Duration::from_secs(10), || row(&t, "b", "ub")["state"]
            == "enrolled"),
        "{}",
        b.log()
    );
    // C serves oping-server with a process of its own (o7sd starts none).
    // (bound to the oping under test, without args: not auto-started).
    let c_conf = conf(&t, "c")
        .lines()
        .filter(|l| !l.starts_with("args="))
        .map(|l| {
            if l.starts_with("prog=") {
                format!("prog=[\"{}\"]", o7s_integration::bin("oping").display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut c = t.daemon("c", &c_conf);
    assert!(
        eventually(Duration::from_secs(10), || row(&t, "c", "uc")["state"]
            == "enrolled"),
        "{}",
        c.log()
    );
    let mut srv = t
        .cmd("c", &o7s_integration::bin("oping"))
        .arg("--listen")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", "oping-server");
    // Once A's directory has C's name.
    assert!(eventually(Duration::from_secs(30), || t
        .oping("a", &["-n", "oping-server", "-c", "1"])
        .0["received"]
        == 1));
    let addr = row(&t, "c", "uc")["address"].clone();
    let links_to = |addr: &Value| {
        t.ctl_json("b", &["neighbour", "list"])
            .into_iter()
            .filter(|r| r["neighbour"] == *addr)
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || links_to(&addr) == 2),
        "B has Management and DT links to C"
    );
    let ping = t
        .cmd("a", &o7s_integration::bin("oping"))
        .args(["-n", "oping-server", "-c", "1000", "-i", "10ms", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The served flow of the 1000-ping run (the one-ping flow before it has ended).
    let served = |h: &str| {
        t.ctl_json(h, &["flow", "list"])
            .into_iter()
            .filter(|f| f["name"] == "oping-server" && f["side"] == "accept")
            .max_by_key(|f| f["flow"].as_u64())
    };
    assert!(
        eventually(Duration::from_secs(5), || served("c").is_some_and(|f| f
            ["rx_sdus"]
            .as_u64()
            .unwrap_or(0)
            > 20)),
        "{:?}",
        t.ctl_json("c", &["flow", "list"])
    );
    let before = served("c").unwrap();
    let links = |h: &str, of: &Value| -> Vec<Value> {
        let mut v: Vec<Value> = t
            .ctl_json(h, &["neighbour", "list"])
            .into_iter()
            .filter(|r| r["neighbour"] == *of)
            .map(|r| r["n1_flow"].clone())
            .collect();
        v.sort_by_key(|f| f.as_u64());
        v
    };
    let b_addr = row(&t, "b", "ub")["address"].clone();
    let a_addr = row(&t, "a", "ua")["address"].clone();
    let c_links = links("c", &b_addr);
    let b_links = (links("b", &a_addr), links("b", &addr));
    assert_eq!(c_links.len(), 2, "{c_links:?}");
    // C's o7sd goes (C connected to B: it initiated its links).
    c.kill9();
    assert!(
        eventually(Duration::from_secs(5), || c
            .log()
            .contains("o7sd went away: forwarding the flows there are")),
        "{}",
        c.log()
    );
    // A second of pings through C's data plane alone.
    std::thread::sleep(Duration::from_millis(1000));
    let c2 = t.daemon_logged("c", "c", &c_conf, &[], "o7sd-c-2.log");
    let log = c2.log();
    assert!(log.contains("Adopted the running data plane"), "{log}");
    assert!(
        eventually(Duration::from_secs(10), || c2
            .log()
            .contains("resumed at address")),
        "{}",
        c2.log()
    );
    assert_eq!(row(&t, "c", "uc")["address"], addr, "the same address");
    assert_eq!(row(&t, "c", "uc")["resumed"], true);
    let adopted = served("c").unwrap_or(Value::Null);
    assert_eq!(adopted["flow"], before["flow"], "{adopted}\n{}", c2.log());
    assert_eq!(adopted["pid"], before["pid"], "{adopted}");
    // Its links are its old N-1 flows, taken back; B saw nothing.
    assert_eq!(links("c", &b_addr), c_links, "{}", c2.log());
    assert_eq!(links("b", &addr), b_links.1);
    // B's o7sd goes too: B is the transit, it accepted C's links and made A's.
    let mut b = b;
    b.kill9();
    std::thread::sleep(Duration::from_millis(1000));
    let b2 = t.daemon_logged("b", "b", &conf(&t, "b"), &[], "o7sd-b-2.log");
    assert!(
        eventually(Duration::from_secs(10), || b2
            .log()
            .contains("resumed at address")),
        "{}",
        b2.log()
    );
    assert_eq!(row(&t, "b", "ub")["address"], b_addr, "the same address");
    assert_eq!(
        (links("b", &a_addr), links("b", &addr)),
        b_links,
        "{}",
        b2.log()
    );
    assert_eq!(links("c", &b_addr), c_links);
    // A new flow beside the adopted one.
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "20", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        20,
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        c2.log()
    );
    let out = ping.wait_with_output().unwrap();
    std::fs::write(t.dir.join("oping-1000.out"), &out.stdout).unwrap();
    let line = out
        .stdout
        .split(|x| *x == b'\n')
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    let sum: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let after = t
        .ctl_json("c", &["flow", "list"])
        .into_iter()
        .find(|f| f["flow"] == before["flow"]);
    eprintln!(
        "1000-ping run across kill -9 of C's o7sd: {sum}\nC's flow before {before}\nafter {after:?}"
    );
    assert_eq!(
        sum["received"],
        1000,
        "{}\nA: {}\nB (new): {}\nC (old): {}\nC (new): {}",
        String::from_utf8_lossy(&out.stderr),
        a.log(),
        b2.log(),
        c.log(),
        c2.log()
    );
    let _ = srv.kill();
    let _ = srv.wait();
    drop((a, b2, c2));
}
