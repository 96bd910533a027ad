//! The XDP steering program (bpf/xdp_o7s.o): it passes the verifier, classifies frames, and
//! with no AF_XDP socket bound passes everything to the kernel, so IPv4 and the AF_PACKET
//! ports keep working; the AF_XDP sockets: one per RX queue on a shared UMEM, the UMEM on
//! hugepages when the machine has free ones.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use o7s_integration::{bin, can_run, eventually, tool, Topo};
use std::process::Command;
use std::time::Duration;

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

/// An eth-dix layer "l" on `dev` with an oping server program, registered when `reg` says so.
fn eth_conf(dev: &str, reg: &str) -> String {
    let oping = o7s_integration::bin("oping").display().to_string();
    format!("[name.\"oping-server\"]\nprog=[\"{oping}\"]\nargs=[\"-l\"]\n[eth-dix.e]\nbootstrap=\"l\"\ndev=\"{dev}\"\n{reg}")
}

/// Host b's daemon (`b_args`, an oping server registered) and host a's, on AF_PACKET.
fn server_and_client(
    t: &Topo,
    b_args: &[&str],
) -> (o7s_integration::Daemon, o7s_integration::Daemon) {
    let b = t.daemon_with(
        "b",
        "b",
        &eth_conf(&t.dev("b"), "reg=[\"oping-server\"]\n"),
        b_args,
    );
    let a = t.daemon_with("a", "a", &eth_conf(&t.dev("a"), ""), &["--io", "af_packet"]);
    (b, a)
}

/// Ten oping requests from host a to oping-server: all answered.
fn ten_pings(t: &Topo, what: &str) {
    let (sum, out) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        10,
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    // The port's settings (bpf/xdp_o7s.c `struct port_cfg`): Ethertype 0xA000
    // (little-endian u16), llc, a pad byte, b's MAC, two pad bytes.
    let b_mac = t.mac("b");
    let cfg_id = m["cfg"].to_string();
    let set_cfg = |llc: &str| {
        let mut args: Vec<String> = [
            "bpftool", "map", "update", "id", &cfg_id, "key", "0", "0", "0", "0", "value", "0x00",
            "0xa0", llc, "0",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(b_mac.split(':').map(|h| format!("0x{h}")));
        args.extend(["0".to_string(), "0".to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        sh(&refs);
    };
    set_cfg("0");
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
    // (--io af_packet: under auto the data plane would take the program as stale and
    // replace it with its own.)
    let af_packet = ["--io", "af_packet"];
    let _b = t.daemon_with(
        "b",
        "b",
        &eth_conf(&t.dev("b"), "reg=[\"oping-server\"]\n"),
        &af_packet,
    );
    let _a = t.daemon_with("a", "a", &eth_conf(&t.dev("a"), ""), &af_packet);
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

    // Frames that are not this port's pass to the kernel as other traffic, whatever
    // their type: a data frame of the layer's Ethertype to another station (a bridge
    // port, a macvlan child), and with LLC on, STP, SNAP and null-SAP frames; an LLC data
    // frame to b (logical SAP 2, 0x40 on the wire) is ours.
    set_cfg("1");
    let a_mac = t.mac("a").replace(':', "");
    let b_hex = b_mac.replace(':', "");
    let pad = |f: String| format!("{f:0<120}");
    let frames = [
        // eth-dix data (eid 0x41, 4 bytes) to 02:00:00:00:00:99.
        pad(format!("020000000099{a_mac}a000004100046869686f")),
        // STP BPDU (01:80:c2:00:00:00, DSAP/SSAP 0x42, UI).
        pad(format!("0180c2000000{a_mac}0026424203000000")),
        // SNAP (CDP-like) to b.
        pad(format!("{b_hex}{a_mac}0026aaaa0300000c2000")),
        // The null SAP to b.
        pad(format!("{b_hex}{a_mac}0026000003")),
        // A group DSAP (logical 0xC1) to b.
        pad(format!("{b_hex}{a_mac}0026830203")),
    ];
    let before = (counter(c, 0), counter(c, 3), counter(c, 4));
    let o = t
        .cmd("a", &bin("o7s-inject"))
        .arg(t.dev("a"))
        .args(&frames)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        eventually(Duration::from_secs(2), || counter(c, 4) >= before.2 + 5),
        "other: {} -> {}",
        before.2,
        counter(c, 4)
    );
    assert_eq!(
        (counter(c, 0), counter(c, 3)),
        (before.0, before.1),
        "none of them is ours"
    );
    let llc_data = pad(format!("{b_hex}{a_mac}0007404003686921"));
    let o = t
        .cmd("a", &bin("o7s-inject"))
        .arg(t.dev("a"))
        .arg(&llc_data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        eventually(Duration::from_secs(2), || counter(c, 3) == before.1 + 1),
        "an LLC data frame to b is ours (no socket: passed): {}",
        counter(c, 3)
    );
    assert_eq!(counter(c, 0), before.0 + 1);
}

/// `vm.nr_hugepages`, restored when dropped.
struct Hugepages(String);

impl Hugepages {
    const PATH: &'static str = "/proc/sys/vm/nr_hugepages";
    fn raise(by: u64) -> Self {
        let old = std::fs::read_to_string(Self::PATH)
            .unwrap()
            .trim()
            .to_string();
        let n: u64 = old.parse().unwrap();
        std::fs::write(Self::PATH, (n + by).to_string()).unwrap();
        Hugepages(old)
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

fn hugepages_free() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The UMEM goes on 2 MiB hugepages when the machine has free ones and on normal pages
/// otherwise; `o7sctl port list` says which, and oping works either way.
#[test]
fn umem_on_hugepages_when_available() {
    if !can_run() {
        return;
    }
    let check = |t: &Topo, pages: &[&str]| {
        let _b = t.daemon("b", &eth_conf(&t.dev("b"), "reg=[\"oping-server\"]\n"));
        let _a = t.daemon("a", &eth_conf(&t.dev("a"), ""));
        let p = t.ctl_json("b", &["port", "list"]).remove(0);
        let path = p["io_path"].as_str().unwrap().to_string();
        if !o7s_integration::on_af_xdp(&path) {
            return false;
        }
        for p in pages {
            assert!(path.contains(p), "expected UMEM on {p}: {path}");
        }
        assert!(
            path.contains("copy (XDP skb mode has no zero-copy)"),
            "{path}"
        );
        let (sum, out) = t.oping("a", &["-n", "oping-server", "-c", "5", "-i", "10ms"]);
        assert_eq!(
            sum["received"],
            5,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    };
    // Without enough free hugepages (the default here: a worker's UMEM, room for two ports
    // of one RX queue, is 48 MiB), normal pages and the reason: how many it needed.
    if hugepages_free() < 24 {
        let t = Topo::pair("hn");
        if !check(&t, &["4 KiB pages (2 MiB hugepages: ", "it needs 24, "]) {
            return;
        }
    } else {
        eprintln!("fallback to normal pages not checked: this machine has free hugepages");
    }
    // With some reserved (two daemons need 24 each; other tests may take some), hugepages.
    let _h = Hugepages::raise(64);
    if hugepages_free() < 48 {
        eprintln!("SKIPPED (hugepage check): the kernel could not reserve 2 MiB pages");
        return;
    }
    let t = Topo::pair("hh");
    check(&t, &["UMEM on 2 MiB hugepages (24)"]);
}

/// A CPU mask of all CPUs in the format of sysfs (comma-separated 32-bit groups).
fn all_cpus_mask() -> String {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut groups = Vec::new();
    let mut left = n;
    while left > 0 {
        let bits = left.min(32);
        let g: u64 = (1u64 << bits) - 1;
        groups.push(format!("{g:08x}"));
        left -= bits;
    }
    groups.reverse();
    groups.join(",")
}

/// Sends side `a`'s frames through veth TX queue `q` only (XPS), so that they arrive on the
/// peer's RX queue `q` (veth in native XDP mode keeps the queue index).
fn steer(t: &Topo, q: usize, queues: usize) {
    for i in 0..queues {
        let mask = if i == q { all_cpus_mask() } else { "0".into() };
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.ns("a"),
            "sh",
            "-c",
            &format!(
                "echo {mask} > /sys/class/net/{}/queues/tx-{i}/xps_cpus",
                t.dev("a")
            ),
        ]);
    }
}

/// A device with two RX queues gets an AF_XDP socket on each, sharing one UMEM: frames
/// steered to either queue arrive through that queue's socket, and every frame of the
/// larger UMEM is accounted for afterwards.
#[test]
fn af_xdp_binds_every_rx_queue() {
    if !can_run() {
        return;
    }
    let t = Topo::pair_with_queues("xq", 2);
    let (_b, _a) = server_and_client(&t, &["--xdp-mode", "driver"]);
    let port = || t.ctl_json("b", &["port", "list"]).remove(0);
    let p = port();
    if !o7s_integration::on_af_xdp(p["io_path"].as_str().unwrap()) {
        return;
    }
    let path = p["io_path"].as_str().unwrap();
    assert!(path.contains("2 RX queues"), "{p}");
    // veth has no zero-copy: the driver-mode port tried it and says why it copies.
    assert!(
        path.contains("copy (zero-copy refused: bind queue 0"),
        "{p}"
    );
    assert_eq!(p["umem_frames"], 2 * 8192 + 4096, "{p}");
    let per_queue = |p: &serde_json::Value| -> Vec<u64> {
        p["rx_xdp_per_queue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let mut before = per_queue(&p);
    for q in [1, 0] {
        steer(&t, q, 2);
        ten_pings(&t, &format!("steered to queue {q}"));
        let p = port();
        let now = per_queue(&p);
        assert!(
            now[q] >= before[q] + 10,
            "queue {q} should have received the pings: {before:?} -> {now:?}"
        );
        assert_eq!(
            now.iter().sum::<u64>(),
            p["rx_xdp"].as_u64().unwrap(),
            "{p}"
        );
        before = now;
    }
    let ok = o7s_integration::eventually(Duration::from_secs(3), || {
        port()["umem_frames_accounted"] == 2 * 8192 + 4096
    });
    assert!(ok, "every UMEM frame is back: {}", port());
}

/// `o7sd --core 0,1` on a device with two RX queues (issue 23 item 4): the port's worker
/// binds queue 0, the other worker queue 1 on a UMEM of its own and hands what arrives
/// there to the port's worker. Pings steered to either queue are answered, `port list`
/// says which worker has which queue, and the frames of queue 1, and only they, are
/// counted as relayed. The IPCP destroyed, the other worker closes queue 1; made again,
/// its port goes to the other worker, and the first one binds its queue 1.
#[test]
fn rx_queues_are_spread_over_workers() {
    if !can_run() {
        return;
    }
    let t = Topo::pair_with_queues("xw", 2);
    let (b, _a) = server_and_client(&t, &["--xdp-mode", "driver", "--core", "0,1"]);
    let port = || t.ctl_json("b", &["port", "list"]).remove(0);
    let p = port();
    if !o7s_integration::on_af_xdp(p["io_path"].as_str().unwrap()) {
        return;
    }
    let owner = p["worker"].as_u64().unwrap();
    let other = 1 - owner;
    let relayed = o7s_integration::eventually(Duration::from_secs(3), || {
        port()["rx_queues"][1]["state"] == "relayed"
    });
    let p = port();
    assert!(relayed, "queue 1 should be bound by the other worker: {p}");
    assert_eq!(
        p["rx_queues"],
        serde_json::json!([
            {"queue": 0, "worker": owner, "state": "owner", "rx": p["rx_queues"][0]["rx"]},
            {"queue": 1, "worker": other, "state": "relayed", "rx": p["rx_queues"][1]["rx"]},
        ]),
        "{p}"
    );
    let path = p["io_path"].as_str().unwrap();
    assert!(
        path.contains("1 RX queue here and 1 on 1 other worker (rx_queues)"),
        "{p}"
    );
    // The port's own UMEM holds its one queue's frames, not two.
    assert_eq!(p["umem_frames"], 8192 + 4096, "{p}");
    assert!(
        b.log()
            .contains(&format!("receiving RX queues [1] for worker {owner}")),
        "{}",
        b.log()
    );
    let per_queue = |p: &serde_json::Value| -> Vec<u64> {
        p["rx_xdp_per_queue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let mut before = p;
    for q in [1, 0] {
        steer(&t, q, 2);
        ten_pings(
            &t,
            &format!("steered to queue {q} of a port with its queues on two workers"),
        );
        let now = port();
        let (was, is) = (per_queue(&before), per_queue(&now));
        assert!(
            is[q] >= was[q] + 10,
            "queue {q} should have received the pings: {was:?} -> {is:?}"
        );
        assert_eq!(
            is.iter().sum::<u64>(),
            now["rx_xdp"].as_u64().unwrap(),
            "{now}"
        );
        let relayed = |p: &serde_json::Value| p["queue_relayed"].as_u64().unwrap();
        if q == 1 {
            assert!(relayed(&now) >= relayed(&before) + 10, "{before} -> {now}");
        } else {
            assert_eq!(
                relayed(&now),
                relayed(&before),
                "queue 0 is the owner's: {now}"
            );
        }
        assert_eq!(now["queue_relay_dropped"], 0, "{now}");
        before = now;
    }
    // `worker list` says which worker binds queues for another's port.
    let workers = t.ctl_json("b", &["worker", "list"]);
    let (w_owner, w_other) = (&workers[owner as usize], &workers[other as usize]);
    assert_eq!(w_owner["queues_for_others"], 0, "{workers:?}");
    assert_eq!(w_other["queues_for_others"], 1, "{workers:?}");
    assert!(
        w_other["relayed_frames"].as_u64().unwrap() >= before["queue_relayed"].as_u64().unwrap(),
        "{workers:?} {before}"
    );
    assert_eq!(w_owner["relayed_frames"], 0, "{workers:?}");
    // The port goes with its IPCP, and the other worker closes queue 1 first: the IPCP
    // made again gets a port on the other worker (ports are dealt in turn), whose queue 1
    // the first worker binds now.
    let ctl = |args: &[&str]| {
        let o = t
            .cmd("b", &o7s_integration::bin("o7sctl"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // The server's flows end with it (o7sd starts it again for the next one).
    for f in t.ctl_json("b", &["flow", "list"]) {
        if let Some(pid) = f["pid"].as_i64().filter(|p| *p > 0) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
    let mut why = String::new();
    let gone = o7s_integration::eventually(Duration::from_secs(5), || {
        let o = t
            .cmd("b", &o7s_integration::bin("o7sctl"))
            .args(["ipcp", "destroy", "name", "e"])
            .output()
            .unwrap();
        why = String::from_utf8_lossy(&o.stderr).into_owned();
        o.status.success()
    });
    assert!(
        gone,
        "the eth IPCP is destroyed once its flows are gone: {why}: {:?}",
        t.ctl_json("b", &["flow", "list"])
    );
    let closed = o7s_integration::eventually(Duration::from_secs(3), || {
        b.log()
            .contains(&format!("closed RX queues [1] of worker {owner}"))
    });
    assert!(closed, "{}", b.log());
    ctl(&[
        "ipcp",
        "bootstrap",
        "name",
        "e",
        "layer",
        "l",
        "type",
        "eth-dix",
        "dev",
        &t.dev("b"),
    ]);
    ctl(&["name", "register", "oping-server", "layer", "l"]);
    let moved = o7s_integration::eventually(Duration::from_secs(3), || {
        let p = port();
        p["worker"] == other && p["rx_queues"][1]["state"] == "relayed"
    });
    assert!(moved, "{}", port());
    assert_eq!(port()["rx_queues"][1]["worker"], owner, "{}", port());
    for q in [1, 0] {
        steer(&t, q, 2);
        ten_pings(
            &t,
            &format!("queue {q}, the port made again on the other worker"),
        );
    }
    assert!(
        port()["queue_relayed"].as_u64().unwrap() >= 10,
        "{}",
        port()
    );
}

/// The id of the XDP program attached to `dev` in `ns`, if any.
fn xdp_prog(ns: &str, dev: &str) -> Option<u64> {
    json(&["ip", "-n", ns, "-j", "link", "show", "dev", dev])[0]["xdp"]["prog"]["id"].as_u64()
}

#[test]
fn stale_program_is_removed_and_a_live_one_is_left_alone() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("xs");
    let (ns, dev) = (t.ns("b"), t.dev("b"));
    // What a crashed run attached through netlink (not a bpf link) would leave: our
    // program, attached with iproute2 so that it outlives the process that attached it.
    let obj = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf/xdp_o7s.o");
    sh(&[
        "ip",
        "-n",
        &ns,
        "link",
        "set",
        "dev",
        &dev,
        "xdpgeneric",
        "obj",
        obj,
        "sec",
        "xdp",
    ]);
    let stale = xdp_prog(&ns, &dev).expect("the stale program is attached");
    let mut b = t.daemon_with("b", "b", &eth_conf(&dev, "reg=[\"oping-server\"]\n"), &[]);
    let _a = t.daemon_with("a", "a", &eth_conf(&t.dev("a"), ""), &["--io", "af_packet"]);
    let p = t.ctl_json("b", &["port", "list"]).remove(0);
    let path = p["io_path"].as_str().unwrap();
    if !o7s_integration::on_af_xdp(path) {
        return;
    }
    assert!(
        path.contains(&format!(
            "stale XDP program o7s_xdp (id {stale}, skb mode) removed"
        )),
        "{p}"
    );
    assert!(
        b.log().contains("removed the stale XDP program o7s_xdp"),
        "{}",
        b.log()
    );
    let ours = xdp_prog(&ns, &dev).expect("the data plane's program is attached");
    assert_ne!(ours, stale);
    let ping = |what: &str| ten_pings(&t, what);
    ping("after the stale program was replaced");
    // A second daemon on the same device finds a program held by a live bpf link: it must
    // not take it away; its port falls back to AF_PACKET and says why.
    let mut b2 = t.daemon_with("b", "b2", &eth_conf(&dev, ""), &[]);
    let p2 = t.ctl_json_in("b", "b2", &["port", "list"]).remove(0);
    let path2 = p2["io_path"].as_str().unwrap();
    assert!(path2.starts_with("af_packet (fallback"), "{p2}");
    assert!(path2.contains("held by a live process"), "{p2}");
    assert_eq!(xdp_prog(&ns, &dev), Some(ours), "the live program stays");
    // (Both daemons answer flow requests on the device while b2 runs, as two hosts with one
    // MAC address would: ping once it is gone.)
    assert!(b2.stop());
    assert_eq!(xdp_prog(&ns, &dev), Some(ours), "b2 leaves b's program");
    ping("after the second daemon stopped");
    assert!(b.stop());
    assert_eq!(
        xdp_prog(&ns, &dev),
        None,
        "the program goes with the data plane"
    );
}

#[test]
fn auto_attach_mode_takes_driver_mode_where_the_driver_has_it() {
    if !can_run() {
        return;
    }
    // veth has native XDP: auto attaches in the driver.
    let t = Topo::pair("xm");
    let (_b, _a) = server_and_client(&t, &["--xdp-mode", "auto"]);
    let p = t.ctl_json("b", &["port", "list"]).remove(0);
    let path = p["io_path"].as_str().unwrap();
    if !o7s_integration::on_af_xdp(path) {
        return;
    }
    assert!(path.contains("XDP driver mode (auto)"), "{p}");
    let link = json(&[
        "ip",
        "-n",
        &t.ns("b"),
        "-j",
        "link",
        "show",
        "dev",
        &t.dev("b"),
    ]);
    assert_eq!(link[0]["xdp"]["mode"], 1, "native (driver) XDP: {link}");
    ten_pings(&t, "driver mode chosen by auto");
    // lo has no native XDP: auto falls back to skb mode and says why.
    let s = Topo::single("xl");
    let _d = s.daemon_with("a", "a", &eth_conf("lo", ""), &["--xdp-mode", "auto"]);
    let p = s.ctl_json("a", &["port", "list"]).remove(0);
    let path = p["io_path"].as_str().unwrap();
    assert!(
        path.contains("XDP skb mode (auto: driver mode refused: attach: "),
        "{p}"
    );
}

/// The io_path of the port on `dev` at side `s`.
fn io_path_of(t: &Topo, s: &str, dev: &str) -> String {
    t.ctl_json(s, &["port", "list"])
        .iter()
        .find(|p| p["dev"] == dev)
        .and_then(|p| p["io_path"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The AF_XDP ports of one worker share a UMEM (a PDU between them is forwarded without a
/// copy): the second port says so. When the first port goes (its IPCP destroyed), the
/// UMEM's own socket, bound to that device's queue, goes with it: a new IPCP on the same
/// device binds AF_XDP again (EBUSY while that socket lived on in the UMEM), and the
/// second port keeps carrying flows.
#[test]
fn ports_share_a_umem_and_its_first_port_can_go_and_come_back() {
    if !can_run() {
        return;
    }
    let t = Topo::links("xs", &["a", "b", "c"], &[("a", "b"), ("b", "c")]);
    let (ba, bc) = (t.link_dev("b", "a"), t.link_dev("b", "c"));
    let b = t.daemon(
        "b",
        &format!(
            "[eth-dix.e0]\nbootstrap=\"l0\"\ndev=\"{ba}\"\n\n[eth-dix.e1]\nbootstrap=\"l1\"\ndev=\"{bc}\"\n"
        ),
    );
    let server = |s: &str, layer: &str, dev: &str| {
        t.daemon(
            s,
            &format!(
                "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n[eth-dix.e]\nbootstrap=\"{layer}\"\ndev=\"{dev}\"\nreg=[\"oping-server\"]\n",
                o7s_integration::bin("oping").display()
            ),
        )
    };
    let _a = server("a", "l0", &t.link_dev("a", "b"));
    let _c = server("c", "l1", &t.link_dev("c", "b"));
    let (first, second) = (io_path_of(&t, "b", &ba), io_path_of(&t, "b", &bc));
    if !o7s_integration::on_af_xdp(&first) || !o7s_integration::on_af_xdp(&second) {
        return;
    }
    assert!(
        second.contains("shared with another port") && !first.contains("shared"),
        "{first}\n{second}"
    );
    let ping = |what: &str| {
        let (sum, o) = t.oping("b", &["-n", "oping-server", "-c", "5", "-i", "10ms"]);
        assert_eq!(
            sum["received"],
            5,
            "{what}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            b.log()
        );
    };
    ping("with both ports");
    let ctl = |args: &[&str]| {
        let o = t
            .cmd("b", &o7s_integration::bin("o7sctl"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "o7sctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ctl(&["ipcp", "destroy", "name", "e0"]);
    assert!(
        o7s_integration::eventually(Duration::from_secs(3), || io_path_of(&t, "b", &ba)
            .is_empty()),
        "the first port is gone"
    );
    // The second port goes on with the UMEM (the kernel keeps it while a socket uses
    // it) and still carries a flow (the ping goes over l1 now: l0 is gone).
    ping("after the first port went");
    ctl(&["ipcp", "create", "name", "e2", "type", "eth-dix"]);
    ctl(&["ipcp", "bootstrap", "name", "e2", "layer", "l0", "dev", &ba]);
    let again = io_path_of(&t, "b", &ba);
    assert!(
        again.starts_with("af_xdp"),
        "AF_XDP again on {ba}: {again}\n{}",
        b.log()
    );
}

/// Stops (SIGSTOP) every data plane of side `s` until dropped (SIGCONT), so that a failed
/// assertion leaves no stopped process behind.
struct Stopped(Vec<i32>);

impl Stopped {
    fn data_planes(t: &Topo, s: &str) -> Stopped {
        let o = Command::new("ip")
            .args(["netns", "pids", &t.ns(s)])
            .output()
            .unwrap();
        let pids: Vec<i32> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "o7s-dataplane")
            })
            .collect();
        assert!(!pids.is_empty(), "side {s} runs a data plane");
        for p in &pids {
            sh(&["kill", "-STOP", &p.to_string()]);
        }
        Stopped(pids)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("kill")
                .args(["-CONT", &p.to_string()])
                .status();
        }
    }
}

/// Frames the kernel drops between the XDP program's redirect and the worker are counted
/// (XDP_STATISTICS): with host b's data plane stopped, a flood of eth-dix data frames
/// takes every buffer of the fill ring and the kernel drops the rest; once the data plane
/// runs again `o7sctl port list` shows them (`xdp_rx_dropped`, `xdp_rx_ring_full`), every
/// redirected frame is either received or counted dropped, no descriptor was refused, and
/// every UMEM frame is back.
#[test]
fn kernel_drops_before_the_worker_reads_are_counted() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("xk");
    let _b = t.daemon_with("b", "b", &eth_conf(&t.dev("b"), ""), &[]);
    let port = || t.ctl_json("b", &["port", "list"]).remove(0);
    let p = port();
    if !o7s_integration::on_af_xdp(p["io_path"].as_str().unwrap()) {
        return;
    }
    let n = |p: &serde_json::Value, k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k}: {p}"));
    assert_eq!(
        n(&p, "xdp_rx_dropped") + n(&p, "xdp_rx_ring_full"),
        0,
        "{p}"
    );
    let gen = |secs: &str| {
        let out = t
            .cmd("a", &o7s_integration::bin("o7s-bench"))
            .args(["xdp-gen", "--dev", &t.dev("a"), "--dst-mac", &t.mac("b")])
            .args(["--eid", "5", "-s", "60", "-d", secs])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "xdp-gen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    {
        let _stopped = Stopped::data_planes(&t, "b");
        gen("0.5");
    }
    let settled = |p: &serde_json::Value| {
        n(p, "xdp_redirected") == n(p, "rx_xdp") + n(p, "xdp_rx_dropped") + n(p, "xdp_rx_ring_full")
    };
    let ok = o7s_integration::eventually(Duration::from_secs(5), || settled(&port()));
    let p = port();
    assert!(ok, "redirected = received + dropped by the kernel: {p}");
    eprintln!(
        "redirected {}, received {}, kernel drops: no buffer {}, rx ring full {}, fill ring empty {}",
        n(&p, "xdp_redirected"),
        n(&p, "rx_xdp"),
        n(&p, "xdp_rx_dropped"),
        n(&p, "xdp_rx_ring_full"),
        n(&p, "xdp_fill_ring_empty")
    );
    // 8192 buffers on the fill ring: a flood of half a second is more than that.
    assert!(n(&p, "rx_xdp") >= 8192, "{p}");
    assert!(
        n(&p, "xdp_rx_dropped") + n(&p, "xdp_rx_ring_full") > 0,
        "{p}"
    );
    assert_eq!(n(&p, "xdp_invalid_descs"), 0, "{p}");
    let ok = o7s_integration::eventually(Duration::from_secs(3), || {
        port()["umem_frames_accounted"] == port()["umem_frames"]
    });
    assert!(ok, "every UMEM frame is back: {}", port());
}
