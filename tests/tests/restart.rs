//! The data plane outlives o7sd (issue 17): `kill -9` of an o7sd does not stop the flows
//! it set up (its data plane keeps forwarding, the apps keep their flows), and the o7sd
//! started next adopts the running data plane with its ports and flows. Each test builds
//! its own namespaces and veth pair.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

fn server_conf(dev: &str) -> String {
    format!(
        "[name.\"oping-server\"]\nprog=[\"{}\"]\n\n[name.\"ocbr\"]\nprog=[\"{}\"]\n\n\
         [eth-dix.wifi1]\nbootstrap=\"wifi-network\"\ndev=\"{dev}\"\nreg=[\"oping-server\", \"ocbr\"]\n",
        bin("oping").display(),
        bin("ocbr").display()
    )
}

fn client_conf(dev: &str) -> String {
    format!("[eth-dix.wifi1]\nbootstrap=\"wifi-network\"\ndev=\"{dev}\"\n")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The last JSON line a finished child printed.
fn summary(o: &Output) -> Value {
    let line = o
        .stdout
        .split(|c| *c == b'\n')
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    serde_json::from_slice(line).unwrap_or(Value::Null)
}

/// The data planes in side `s`'s namespace (processes named o7s-dataplane).
fn dataplane_pids(t: &Topo, s: &str) -> Vec<i32> {
    let o = std::process::Command::new("ip")
        .args(["netns", "pids", &t.ns(s)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "o7s-dataplane")
        })
        .collect()
}

fn oping_server(t: &Topo, s: &str) -> Child {
    let c = t
        .cmd(s, &bin("oping"))
        .arg("--listen")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting(s, s, "oping-server");
    c
}

/// How a crash test is set up.
#[derive(Default)]
struct Crash<'a> {
    /// Which side's o7sd is killed: "a" (the client's) or "b" (the server's).
    side: &'a str,
    /// Extra o7sd arguments (both sides).
    extra: &'a [&'a str],
    /// Encrypted flows (tutorial 06's enc.conf on both ends).
    encrypted: bool,
}

/// `kill -9` of one side's o7sd during a 1000-ping run at 10 ms: every reply comes (the
/// data plane keeps forwarding, the apps keep their flows); a new o7sd adopts the data
/// plane: `o7sctl flow list` shows the old flow, a new flow works, both are listed, and the
/// data plane is the same process throughout. Returns the adopted flow's listing before
/// and after the new flow, for more checks.
fn crash_during_ping(prefix: &str, c: &Crash<'_>) -> (Value, Value) {
    let t = Topo::pair(prefix);
    if c.encrypted {
        for side in ["client", "server"] {
            let d = t.dir.join("security").join(side).join("oping-server");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("enc.conf"), "").unwrap();
        }
    }
    let conf = |s: &str| {
        if s == "b" {
            server_conf(&t.dev("b"))
        } else {
            client_conf(&t.dev("a"))
        }
    };
    let mut b = Some(t.daemon_with("b", "b", &conf("b"), c.extra));
    let mut a = Some(t.daemon_with("a", "a", &conf("a"), c.extra));
    let mut srv = oping_server(&t, "b");
    let dp_before = dataplane_pids(&t, c.side);
    assert_eq!(dp_before.len(), 1, "one data plane");
    let ping = t
        .cmd("a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "1000", "-i", "10ms", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t
        .ctl_json(c.side, &["flow", "list"])
        .iter()
        .any(|f| f["rx_sdus"].as_u64().unwrap_or(0) > 20)));
    let before = t.ctl_json(c.side, &["flow", "list"]).remove(0);
    let port_before = t.ctl_json(c.side, &["port", "list"]).remove(0);
    let killed = if c.side == "a" { &mut a } else { &mut b };
    let mut old = killed.take().unwrap();
    old.kill9();
    // The data plane notices, and goes on forwarding without an o7sd: the other end of the
    // flow receives 100 more pings (a second's worth) before a new o7sd starts.
    assert!(
        eventually(Duration::from_secs(5), || old
            .log()
            .contains("o7sd went away: forwarding the flows there are")),
        "{}",
        old.log()
    );
    let other = if c.side == "a" { "b" } else { "a" };
    let rx = || {
        t.ctl_json(other, &["flow", "list"])
            .iter()
            .find(|f| f["name"] == "oping-server")
            .and_then(|f| f["rx_sdus"].as_u64())
            .unwrap_or(0)
    };
    let orphaned = rx();
    assert!(
        eventually(Duration::from_secs(5), || rx() >= orphaned + 100),
        "the data plane forwarded {} pings without its o7sd\n{}",
        rx() - orphaned,
        old.log()
    );
    // The data plane is the same process, without an o7sd.
    assert_eq!(dataplane_pids(&t, c.side), dp_before, "{}", old.log());
    let new = t.daemon_logged(
        c.side,
        c.side,
        &conf(c.side),
        c.extra,
        &format!("o7sd-{}-2.log", c.side),
    );
    let log = new.log();
    assert!(log.contains("Adopted the running data plane"), "{log}");
    for l in log.lines().filter(|l| l.contains("dopt")) {
        eprintln!("{l}");
    }
    let flows = t.ctl_json(c.side, &["flow", "list"]);
    assert_eq!(flows.len(), 1, "the adopted flow: {flows:?}\n{log}");
    // The same port, on the same I/O path (the XDP program was kept: no fallback).
    let port = t.ctl_json(c.side, &["port", "list"]).remove(0);
    assert_eq!(port["io_path"], port_before["io_path"], "{port}");
    assert_eq!(port["port"], port_before["port"], "{port}");
    let adopted = flows[0].clone();
    assert_eq!(adopted["name"], "oping-server", "{adopted}");
    assert!(adopted["flow"].as_u64().is_some(), "{adopted}");
    assert_eq!(adopted["flow"], before["flow"], "{adopted} {before}");
    assert_eq!(adopted["pid"], before["pid"], "{adopted} {before}");
    assert_eq!(
        adopted["side"],
        if c.side == "a" { "alloc" } else { "accept" },
        "{adopted}"
    );
    // A new flow works alongside, and both are listed.
    let second = t
        .cmd("a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "100", "-i", "10ms", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), || t
            .ctl_json(c.side, &["flow", "list"])
            .len()
            == 2),
        "the adopted flow and the new one are listed"
    );
    let o = second.wait_with_output().unwrap();
    assert_eq!(summary(&o)["received"], 100, "{}\n{}", text(&o), new.log());
    let after = t
        .ctl_json(c.side, &["flow", "list"])
        .into_iter()
        .find(|f| f["flow"] == adopted["flow"])
        .unwrap_or_else(|| panic!("the adopted flow is gone"));
    assert!(
        after["rx_sdus"].as_u64().unwrap_or(0) > adopted["rx_sdus"].as_u64().unwrap_or(0),
        "the adopted flow carries traffic: {adopted} {after}"
    );
    let out = ping.wait_with_output().unwrap();
    let sum = summary(&out);
    assert_eq!(sum["received"], 1000, "{}\n{}", text(&out), old.log());
    assert_eq!(
        dataplane_pids(&t, c.side),
        dp_before,
        "still the same data plane"
    );
    if c.side == "a" {
        // The client let its flow go: the data plane removed it and told the new o7sd.
        assert!(
            eventually(Duration::from_secs(5), || t
                .ctl_json("a", &["flow", "list"])
                .is_empty()),
            "{}",
            new.log()
        );
    }
    eprintln!(
        "{prefix}: 1000/1000 across the crash; adopted flow {} ({} SDUs received before the crash, {} after the restart)",
        adopted["flow"], before["rx_sdus"], after["rx_sdus"]
    );
    let _ = srv.kill();
    let _ = srv.wait();
    drop((a, b, new));
    (before, after)
}

#[test]
fn client_o7sd_killed_and_restarted_keeps_its_flows() {
    if !can_run() {
        return;
    }
    crash_during_ping(
        "rc",
        &Crash {
            side: "a",
            ..Crash::default()
        },
    );
}

#[test]
fn two_workers_keep_their_flows_across_a_crash() {
    if !can_run() {
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        assert!(
            std::env::var_os("O7S_REQUIRE_ROOT").is_none(),
            "two workers need two CPUs"
        );
        eprintln!("SKIP: one CPU");
        return;
    }
    crash_during_ping(
        "rw",
        &Crash {
            side: "b",
            extra: &["--core", "0,1"],
            ..Crash::default()
        },
    );
}

/// An encrypted flow (AES-256-GCM, its key rotated every 16 packets) across the crash:
/// the rotations go on in the data plane while no o7sd runs.
#[test]
fn encrypted_flow_keeps_rotating_its_key_across_a_crash() {
    if !can_run() {
        return;
    }
    let (before, after) = crash_during_ping(
        "re",
        &Crash {
            side: "b",
            extra: &["--key-rotation-bits", "4"],
            encrypted: true,
        },
    );
    assert_eq!(before["cipher"], "aes-256-gcm", "{before}");
    let (r0, r1) = (
        before["key_rotations"].as_u64().unwrap(),
        after["key_rotations"].as_u64().unwrap(),
    );
    eprintln!(
        "cipher {}: {r0} key rotations before the crash, {r1} by the end",
        before["cipher"]
    );
    assert!(r0 >= 1 && r1 > r0 + 10, "rotations {r0} before, {r1} after");
}

/// An ocbr stream at 100 Mbit/s while the server's o7sd is killed: every SDU the client's
/// ring took arrives (sent = received).
#[test]
fn ocbr_stream_loses_nothing_across_a_crash() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("ro");
    let conf = server_conf(&t.dev("b"));
    let mut b = t.daemon("b", &conf);
    let _a = t.daemon("a", &client_conf(&t.dev("a")));
    let srv = t
        .cmd("b", &bin("ocbr"))
        .args(["-l", "--json", "--flows", "1", "-t", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", "ocbr");
    let cl = t
        .cmd("a", &bin("ocbr"))
        .args([
            "-n", "ocbr", "--json", "-s", "1000", "-r", "100M", "-d", "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t
        .ctl_json("b", &["flow", "list"])
        .iter()
        .any(|f| f["rx_sdus"].as_u64().unwrap_or(0) > 1000)));
    b.kill9();
    let out = cl.wait_with_output().unwrap();
    assert!(out.status.success(), "ocbr client: {}", text(&out));
    let c = summary(&out);
    let sout = srv.wait_with_output().unwrap();
    let s: Value = String::from_utf8_lossy(&sout.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no server report: {}", text(&sout)));
    eprintln!("ocbr across the crash: client {c}, server {s}");
    assert!(c["sent"].as_u64().unwrap() > 20_000, "{c}");
    assert_eq!(c["sent"], s["received"], "{c} {s}");
}

/// An ocbr flood (as fast as the client can send) while the server's o7sd is killed and
/// restarted: every SDU the server's ring took reaches the server (its count equals the
/// data plane's rx_sdus of the adopted flow); what a full ring dropped is counted.
#[test]
fn ocbr_flood_loses_nothing_the_ring_took_across_a_crash() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("rf");
    let conf = server_conf(&t.dev("b"));
    let mut b = t.daemon("b", &conf);
    let _a = t.daemon("a", &client_conf(&t.dev("a")));
    let srv = t
        .cmd("b", &bin("ocbr"))
        .args(["-l", "--json", "--flows", "1", "-t", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", "ocbr");
    let cl = t
        .cmd("a", &bin("ocbr"))
        .args(["-n", "ocbr", "--json", "-s", "1000", "-f", "-d", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t
        .ctl_json("b", &["flow", "list"])
        .iter()
        .any(|f| f["rx_sdus"].as_u64().unwrap_or(0) > 1000)));
    b.kill9();
    std::thread::sleep(Duration::from_secs(1));
    let b2 = t.daemon_logged("b", "b", &conf, &[], "o7sd-b-2.log");
    let out = cl.wait_with_output().unwrap();
    assert!(out.status.success(), "ocbr client: {}", text(&out));
    let c = summary(&out);
    // The adopted flow's counters once the server has drained its ring (it stays until the
    // server's 3 s idle time-out).
    let mut last = Value::Null;
    let settled = eventually(Duration::from_secs(2), || {
        let f = t
            .ctl_json("b", &["flow", "list"])
            .into_iter()
            .find(|f| f["name"] == "ocbr")
            .unwrap_or(Value::Null);
        let same = f["rx_sdus"] == last["rx_sdus"] && !f.is_null();
        last = f;
        std::thread::sleep(Duration::from_millis(200));
        same
    });
    assert!(settled, "{last}\n{}", b2.log());
    let sout = srv.wait_with_output().unwrap();
    let s: Value = String::from_utf8_lossy(&sout.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no server report: {}", text(&sout)));
    eprintln!(
        "ocbr flood across the crash: client sent {}, the server's ring took {} (full ring: {} dropped), the server read {}",
        c["sent"], last["rx_sdus"], last["drop_ring_full"], s["received"]
    );
    assert!(c["sent"].as_u64().unwrap() > 10_000, "{c}");
    assert_eq!(
        s["received"], last["rx_sdus"],
        "every SDU the ring took was read: {s} {last}"
    );
}

/// While no o7sd runs, a flow whose app dies is freed by the data plane (its pidfd), its
/// peer learns it by the peer time-out, and the data plane, left with no flow and no o7sd,
/// exits after its grace time: no process, no XDP program on the device, no socket left.
#[test]
fn a_flow_whose_app_dies_while_o7sd_is_down_is_freed_and_nothing_is_left() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("rd");
    let conf = server_conf(&t.dev("b"));
    let mut b = t.daemon("b", &conf);
    let _a = t.daemon("a", &client_conf(&t.dev("a")));
    let mut srv = t
        .cmd("b", &bin("ocbr"))
        .args(["-l", "--json", "-t", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", "ocbr");
    let cl = t
        .cmd("a", &bin("ocbr"))
        .args(["-n", "ocbr", "--json", "-s", "100", "-r", "1M", "-d", "30"])
        .args(["--peer-timeout", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t
        .ctl_json("b", &["flow", "list"])
        .iter()
        .any(|f| f["rx_sdus"].as_u64().unwrap_or(0) > 10)));
    let dp = dataplane_pids(&t, "b");
    assert_eq!(dp.len(), 1);
    let xdp_on = || {
        let o = std::process::Command::new("ip")
            .args(["-n", &t.ns("b"), "link", "show", "dev", &t.dev("b")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).contains("xdp")
    };
    assert!(xdp_on(), "the data plane's XDP program is on the device");
    b.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let _ = srv.kill();
    let _ = srv.wait();
    // The peer's end goes down within its 1 s time-out: the client stops.
    let t0 = std::time::Instant::now();
    let out = cl.wait_with_output().unwrap();
    eprintln!(
        "client ended {:.1} s after the server died: {}",
        t0.elapsed().as_secs_f64(),
        text(&out).trim()
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{}", text(&out));
    // No flow, no o7sd: the data plane goes after its grace time (5 s).
    assert!(
        eventually(Duration::from_secs(15), || dataplane_pids(&t, "b")
            .is_empty()),
        "the data plane is still there\n{}",
        b.log()
    );
    let log = b.log();
    assert!(log.contains("removed: its process exited"), "{log}");
    assert!(log.contains("no o7sd and no flow left: exiting"), "{log}");
    assert!(!xdp_on(), "the XDP program is detached");
    assert!(
        !t.rundir("b").join("dataplane.sock").exists(),
        "the data plane's socket is removed"
    );
}

#[test]
fn server_o7sd_killed_and_restarted_keeps_its_flows() {
    if !can_run() {
        return;
    }
    crash_during_ping(
        "rs",
        &Crash {
            side: "b",
            ..Crash::default()
        },
    );
}

/// A clean stop of o7sd (SIGTERM) while `oping -l` waits in accept: the server is told
/// nothing (its connection closes), takes it for o7sd going away and waits for it; an
/// accept answered "timed out" would end it ("accept failed").
#[test]
fn a_server_waiting_in_accept_waits_for_o7sd_across_a_clean_stop() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("rc");
    let mut b = t.daemon("b", &server_conf(&t.dev("b")));
    let mut srv = oping_server(&t, "b");
    assert!(b.stop(), "o7sd did not stop on SIGTERM");
    std::thread::sleep(Duration::from_secs(1));
    let waiting = srv.try_wait().unwrap().is_none();
    let _ = srv.kill();
    let out = srv.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(waiting, "oping -l ended when o7sd stopped: {err}");
    assert!(err.contains("o7sd is away"), "{err}");
}

/// Two o7sd started together on one run directory: one runs, the other says another holds
/// the directory and exits, and there is one data plane (before the lock each could take
/// the other's socket and start a data plane of its own on the same device).
#[test]
fn two_o7sd_started_together_on_one_rundir_leave_one_running() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("tw");
    let conf = t.dir.join("a.conf");
    std::fs::write(&conf, client_conf(&t.dev("a"))).unwrap();
    let start = || {
        t.cmd("a", &bin("o7sd"))
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (mut one, mut two) = (start(), start());
    // The loser exits at once; the winner runs.
    let mut loser = None;
    assert!(eventually(Duration::from_secs(10), || {
        for (i, c) in [&mut one, &mut two].into_iter().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                loser = Some((i, status));
            }
        }
        loser.is_some()
    }));
    let (i, status) = loser.unwrap();
    let (mut lost, mut won) = if i == 0 { (one, two) } else { (two, one) };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(lost.stderr.as_mut().unwrap(), &mut err).unwrap();
    let _ = lost.wait();
    assert!(
        err.contains("another o7sd is running") && err.contains("o7sd.lock"),
        "{err}"
    );
    assert!(won.try_wait().unwrap().is_none(), "the winner runs");
    assert!(eventually(Duration::from_secs(10), || {
        t.ctl_json("a", &["ipcp", "list"])
            .iter()
            .any(|r| r["name"] == "wifi1")
    }));
    assert_eq!(dataplane_pids(&t, "a").len(), 1, "one data plane");
    let _ = won.kill();
    let _ = won.wait();
}
