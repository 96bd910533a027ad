//! Tutorial 05 on one host: the udp4 layer, names resolved through /etc/hosts, and load
//! balancing of flow allocations over two server processes; bad datagrams.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use o7s_integration::{bin, can_run, eventually, Topo};
use o7s_wire::hash::HashAlgo;
use std::process::{Child, Stdio};
use std::time::Duration;

/// The server's configuration: two names served by the oping under test, auto-started.
fn server() -> String {
    let oping = bin("oping").display().to_string();
    format!(
        "[name.\"oping-server\"]\nprog=[\"{oping}\"]\nargs=[\"--listen\"]\nlb=\"round-robin\"\n\n\
         [name.\"oping-server2\"]\nprog=[\"{oping}\"]\nargs=[\"--listen\"]\n\n\
         [udp.wifi1]\nbootstrap=\"wifi-network\"\nip=\"127.0.0.2\"\nreg=[\"oping-server\", \"oping-server2\"]\n"
    )
}
const CLIENT: &str = "[udp.wifi1]\nbootstrap=\"wifi-network\"\nip=\"127.0.0.1\"\n";

fn hosts() -> String {
    format!(
        "127.0.0.2 {} #oping-server\n127.0.0.2 {} #oping-server2\n",
        HashAlgo::Md5.hex("oping-server"),
        HashAlgo::Md5.hex("oping-server2")
    )
}

struct Servers(Vec<Child>);
impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Which process the server daemon handed each flow of `name` to, in order.
fn served(log: &str, name: &str) -> Vec<String> {
    let key = format!("accepted for {name} by process ");
    log.lines()
        .filter_map(|l| {
            l.split_once(&key)
                .map(|(_, p)| p.trim_end_matches('.').to_string())
        })
        .collect()
}

#[test]
fn tutorial05_udp_load_balancing() {
    if !can_run() {
        return;
    }
    let t = Topo::single("t5");
    t.hosts("a", &hosts());
    let server = t.daemon_in("a", "b", &server());
    let _client = t.daemon_in("a", "a", CLIENT);
    assert!(
        server.log().contains("Bootstrapped IPCP wifi1 (udp4)"),
        "{}",
        server.log()
    );
    // Two servers started by hand; both accept flows for both names (bound by program).
    let servers = Servers(
        (0..2)
            .map(|_| {
                t.cmd_in("a", "b", &bin("oping"))
                    .arg("-l")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let accepting = |n: &str| {
        t.ctl_json_in("a", "b", &["name", "list"])
            .iter()
            .find(|e| e["name"] == n)
            .and_then(|e| e["accepting"].as_u64())
            == Some(2)
    };
    assert!(eventually(Duration::from_secs(5), || accepting(
        "oping-server"
    ) && accepting(
        "oping-server2"
    )));
    for name in ["oping-server", "oping-server2"] {
        for _ in 0..6 {
            let (sum, out) = t.oping_in("a", "a", &["-n", name, "-c", "1", "-Q"]);
            assert_eq!(
                sum["received"],
                1,
                "{name}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                server.log()
            );
            // The server that answered accepts again before the next client.
            assert!(eventually(Duration::from_secs(3), || accepting(name)));
        }
    }
    let log = server.log();
    let rr = served(&log, "oping-server");
    let spill = served(&log, "oping-server2");
    assert_eq!(rr.len(), 6, "{log}");
    assert_eq!(spill.len(), 6, "{log}");
    let pids: Vec<String> = servers.0.iter().map(|c| c.id().to_string()).collect();
    for w in rr.windows(2) {
        assert_ne!(w[0], w[1], "round-robin alternates: {rr:?}");
    }
    assert!(rr.iter().all(|p| pids.contains(p)), "{rr:?} vs {pids:?}");
    assert!(
        spill.iter().all(|p| *p == spill[0]),
        "spill sticks to one process: {spill:?}"
    );
}

/// `o7sctl bind process PID name N` pins a name to one process.
#[test]
fn bind_process_pins_a_name() {
    if !can_run() {
        return;
    }
    let t = Topo::single("bp");
    t.hosts("a", &format!("127.0.0.2 {}\n", HashAlgo::Md5.hex("pinned")));
    let server = t.daemon_in(
        "a",
        "b",
        "[udp4.u]\nbootstrap=\"l\"\nip=\"127.0.0.2\"\nreg=[\"pinned\"]\n",
    );
    let _client = t.daemon_in("a", "a", CLIENT);
    let s = Servers(vec![t
        .cmd_in("a", "b", &bin("oping"))
        .arg("-l")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()]);
    let pid = s.0[0].id().to_string();
    let o = t
        .cmd_in("a", "b", &bin("o7sctl"))
        .args(["bind", "process", &pid, "name", "pinned"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (sum, out) = t.oping_in("a", "a", &["-n", "pinned", "-c", "2", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        2,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert_eq!(served(&server.log(), "pinned"), vec![pid]);
}

/// Truncated datagrams, unknown eids and datagrams from an address that is not the flow's
/// peer are dropped and counted; the flow goes on.
#[test]
fn bad_datagrams_are_dropped_and_counted() {
    if !can_run() {
        return;
    }
    let t = Topo::single("bd");
    t.hosts("a", &hosts());
    let server = t.daemon_in("a", "b", &server());
    let mut client = t.daemon_in("a", "a", CLIENT);
    let ping = t
        .cmd_in("a", "a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "40", "-i", "25ms", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t
        .ctl_json_in("a", "a", &["flow", "list"])
        .len()
        == 1));
    let flows = t.ctl_json_in("a", "a", &["flow", "list"]);
    let local = u32::from_str_radix(
        flows[0]["local"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let eid = hex::encode(local.to_be_bytes());
    let bad = [
        "00".to_string(),                       // shorter than the eid
        format!("00001234{}", "00".repeat(60)), // unknown eid
        format!("{eid}{}", "00".repeat(60)),    // our flow's eid, but not from its peer
        format!("00000000{}", "ab".repeat(10)), // truncated management message
    ];
    for _ in 0..5 {
        let o = t
            .cmd_in("a", "a", &bin("o7s-inject"))
            .args(["--udp", "127.0.0.3:0", "127.0.0.1:3435"])
            .args(&bad)
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
    assert_eq!(sum["received"], 40, "{sum}\n{}", server.log());
    assert!(client.alive());
    let ports = t.ctl_json_in("a", "a", &["port", "list"]);
    let p = &ports[0];
    assert!(p["drop_truncated"].as_u64().unwrap() >= 5, "{p}");
    assert!(p["drop_unknown_eid"].as_u64().unwrap() >= 5, "{p}");
    assert!(p["drop_wrong_peer"].as_u64().unwrap() >= 5, "{p}");
    let s = &t.ctl_json_in("a", "a", &["stats"])[0];
    assert!(s["mgmt_malformed"].as_u64().unwrap() >= 5, "{s}");
}

/// A real DNS server (bind9's `named`) in the test's namespace, serving a root zone that
/// accepts dynamic updates, on 127.0.0.1:53 (the namespace's own loopback).
struct Named {
    child: Child,
}

impl Named {
    fn start(t: &Topo) -> Option<Named> {
        // Where `tool` looks: a missing one is SKIPPED, or fails with O7S_REQUIRE_ROOT=1.
        let named = o7s_integration::tool_path("named")?;
        if !o7s_integration::tool("dig") {
            return None;
        }
        let dir = t.dir.join("named");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("named.conf"),
            format!(
                "options {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; listen-on port 53 {{ 127.0.0.1; }}; \
                 listen-on-v6 {{ none; }}; recursion no; allow-query {{ any; }}; dnssec-validation no; }};\n\
                 zone \".\" {{ type primary; file \"{d}/root.zone\"; allow-update {{ any; }}; }};\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("root.zone"),
            "$TTL 86400\n@ IN SOA ns. admin. 1 3600 600 86400 60\n@ IN NS ns.\nns IN A 127.0.0.1\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("named.log")).unwrap();
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &t.ns("a")])
            .arg(named)
            .args(["-g", "-u", "root", "-c"])
            .arg(dir.join("named.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let n = Named { child };
        let up = eventually(Duration::from_secs(10), || {
            dig(t, "ns.", "A") == "127.0.0.1"
        });
        assert!(
            up,
            "named did not start: {}",
            std::fs::read_to_string(dir.join("named.log")).unwrap_or_default()
        );
        Some(n)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dig(t: &Topo, name: &str, rtype: &str) -> String {
    let o = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.ns("a"),
            "dig",
            "+short",
            "+time=1",
            "+tries=1",
            "@127.0.0.1",
            name,
            rtype,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// With `dns=`, a registering daemon adds its record to the DNS server with DNS UPDATE, the
/// client resolves through that server, and unregistering removes the record.
#[test]
fn dns_registration_and_lookup_through_bind9() {
    if !can_run() {
        return;
    }
    let t = Topo::single("dn");
    t.hosts("a", "");
    let Some(_named) = Named::start(&t) else {
        return;
    };
    let server = t.daemon_in(
        "a",
        "b",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"--listen\"]\n\
             [udp4.wifi1]\nbootstrap=\"wifi-network\"\nip=\"127.0.0.2\"\ndns=\"127.0.0.1\"\nreg=[\"oping-server\"]\n",
            bin("oping").display()
        ),
    );
    let _client = t.daemon_in(
        "a",
        "a",
        "[udp4.wifi1]\nbootstrap=\"wifi-network\"\nip=\"127.0.0.1\"\ndns=\"127.0.0.1\"\n",
    );
    let rec = format!("{}.", HashAlgo::Md5.hex("oping-server"));
    assert!(
        eventually(Duration::from_secs(5), || dig(&t, &rec, "A") == "127.0.0.2"),
        "record not added: {}",
        server.log()
    );
    let (sum, out) = t.oping_in("a", "a", &["-n", "oping-server", "-c", "2", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        2,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let o = t
        .cmd_in("a", "b", &bin("o7sctl"))
        .args(["name", "unregister", "oping-server", "ipcp", "wifi1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        eventually(Duration::from_secs(5), || dig(&t, &rec, "A").is_empty()),
        "record still there"
    );
    let o = t
        .cmd_in("a", "a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the name no longer resolves");
}

/// The udp6 layer between ::1 and ::2 (IPv6 loopback addresses of the namespace).
#[test]
fn udp6_layer() {
    if !can_run() {
        return;
    }
    let t = Topo::single("u6");
    let o = std::process::Command::new("ip")
        .args(["-n", &t.ns("a"), "addr", "add", "::2/128", "dev", "lo"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.hosts("a", &format!("::2 {}\n", HashAlgo::Md5.hex("oping-server")));
    let server = t.daemon_in(
        "a",
        "b",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n[udp6.u]\nbootstrap=\"l\"\nip=\"::2\"\nreg=[\"oping-server\"]\n",
            bin("oping").display()
        ),
    );
    let _client = t.daemon_in("a", "a", "[udp6.u]\nbootstrap=\"l\"\nip=\"::1\"\n");
    let (sum, out) = t.oping_in("a", "a", &["-n", "oping-server", "-c", "3", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        3,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let flows = t.ctl_json_in("a", "b", &["flow", "list"]);
    assert!(
        flows[0]["peer"].as_str().unwrap().starts_with("[::1]:"),
        "{flows:?}"
    );
}

/// The udp4 layer: a one-way flow outlives its peer timeout on keepalives (see
/// `one_way_flow_on_keepalives`).
#[test]
fn udp_one_way_flow_outlives_its_peer_timeout_on_keepalives() {
    if !can_run() {
        return;
    }
    let t = Topo::single("uk");
    t.hosts(
        "a",
        &format!("127.0.0.2 {} #ocbr\n", HashAlgo::Md5.hex("ocbr")),
    );
    let server = t.daemon_in(
        "a",
        "b",
        &format!(
            "[name.\"ocbr\"]\nprog=[\"{}\"]\n\n[udp.wifi1]\nbootstrap=\"wifi-network\"\nip=\"127.0.0.2\"\nreg=[\"ocbr\"]\n",
            bin("ocbr").display()
        ),
    );
    let _client = t.daemon_in("a", "a", CLIENT);
    o7s_integration::one_way_flow_on_keepalives(&t, ("a", "b"), ("a", "a"), &|| server.log());
}

/// The endpoint ids of a udp FLOW_REPLY in the reference's order (facts 1.8.3: the
/// requester's first, the opposite of eth), checked against peers that lay the messages
/// out byte by byte from the facts and use an eid different from ours, so a swapped field
/// cannot pass: o7s allocating to a reference-style server (its eid = ours + 7) sends its
/// data to the server's eid; a reference-style client (eid 153) gets a FLOW_REPLY from
/// o7s with 153 first and o7s's own eid second. Before, o7s used the eth order and only the
/// first flow between fresh daemons worked (both ends picked eid 64).
#[test]
fn udp_flow_reply_eid_order_matches_the_reference() {
    if !can_run() {
        return;
    }
    use std::io::BufRead;
    let t = Topo::single("ue");
    t.hosts(
        "a",
        &format!("127.0.0.3 {}\n", HashAlgo::Md5.hex("ref-server")),
    );
    let server = t.daemon_in("a", "b", &server());
    let client = t.daemon_in("a", "a", CLIENT);
    // o7s as the requester.
    let mut fake = t
        .cmd("a", &bin("o7s-inject"))
        .args(["--udp-ref-server", "127.0.0.3:3435", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(fake.stderr.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let (_, out) = t.oping_in(
        "a",
        "a",
        &["-n", "ref-server", "-c", "1", "--server-timeout", "1"],
    );
    let got = fake.wait_with_output().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let (req, resp) = (r["requester_eid"].as_u64(), r["responder_eid"].as_u64());
    assert!(req.is_some() && resp.is_some() && req != resp, "{r}");
    assert_eq!(
        r["data_eid"],
        r["responder_eid"],
        "o7s must send its data to the responder's eid: {r}\noping: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        client.log()
    );
    assert!(
        client
            .log()
            .contains(&format!("remote {:#x}", resp.unwrap())),
        "{}",
        client.log()
    );
    // o7s as the responder.
    let o = t
        .cmd("a", &bin("o7s-inject"))
        .args([
            "--udp-ref-client",
            "127.0.0.4:3435",
            "127.0.0.2:3435",
            "oping-server",
            "153",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["code"], 2, "{r}");
    assert_eq!(r["response"], 0, "{r}\n{}", server.log());
    assert_eq!(r["first_eid"], 153, "the requester's eid comes first: {r}");
    let theirs = r["second_eid"].as_u64().unwrap();
    assert!(theirs >= 64 && theirs != 153, "{r}");
}

/// Tutorial 05's set-up with `bind process`: a name served by an auto-started program, then
/// a process bound to it by pid: from then on every flow of the name goes to that process
/// (before, flows kept going to the auto-started one). And two allocations at the same time
/// to a name whose server is not running yet both succeed, served in arrival order.
#[test]
fn a_pinned_process_gets_every_flow_and_simultaneous_allocations_succeed() {
    if !can_run() {
        return;
    }
    let t = Topo::single("pp");
    t.hosts("a", &hosts());
    let server = t.daemon_in("a", "b", &server());
    let _client = t.daemon_in("a", "a", CLIENT);
    // Two at once, while nothing runs: the first auto-starts the server.
    for _ in 0..3 {
        let spawn = || {
            t.cmd_in("a", "a", &bin("oping"))
                .args(["-n", "oping-server2", "-c", "2", "-i", "10ms", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (p1, p2) = (spawn(), spawn());
        for p in [p1, p2] {
            let o = p.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "{}\n{}",
                String::from_utf8_lossy(&o.stderr),
                server.log()
            );
        }
    }
    // oping-server: one flow to the auto-started server, then a pinned process.
    let (sum, _) = t.oping_in("a", "a", &["-n", "oping-server", "-c", "1"]);
    assert_eq!(sum["received"], 1);
    let auto = served(&server.log(), "oping-server");
    assert_eq!(auto.len(), 1, "{}", server.log());
    let s = Servers(vec![t
        .cmd_in("a", "b", &bin("oping"))
        .arg("-l")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()]);
    let pid = s.0[0].id().to_string();
    let o = t
        .cmd_in("a", "b", &bin("o7sctl"))
        .args(["bind", "process", &pid, "name", "oping-server"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for _ in 0..4 {
        let (sum, out) = t.oping_in("a", "a", &["-n", "oping-server", "-c", "1"]);
        assert_eq!(
            sum["received"],
            1,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all = served(&server.log(), "oping-server");
    assert_eq!(
        &all[1..],
        &[pid.clone(), pid.clone(), pid.clone(), pid],
        "{all:?}"
    );
}

/// A udp4 layer made with o7sctl alone (`ipcp create ... type udp4` then `ipcp bootstrap
/// ... ip A`), a name registered in it, and a ping across; bad words are refused with a
/// suggestion. Before, o7sctl bootstrapped eth layers only, and a created udp4 IPCP could
/// never be bootstrapped.
#[test]
fn o7sctl_bootstraps_a_udp_layer() {
    if !can_run() {
        return;
    }
    let t = Topo::single("uc");
    t.hosts("a", &format!("127.0.0.2 {}\n", HashAlgo::Md5.hex("srv")));
    let oping = bin("oping").display().to_string();
    let server = t.daemon_in(
        "a",
        "b",
        &format!("[name.\"srv\"]\nprog=[\"{oping}\"]\nargs=[\"-l\"]\n"),
    );
    let _client = t.daemon_in("a", "a", CLIENT);
    let ctl = |args: &[&str]| {
        t.cmd_in("a", "b", &bin("o7sctl"))
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["ipcp", "create", "name", "u", "type", "udp4"][..],
        &[
            "ipcp",
            "bootstrap",
            "name",
            "u",
            "layer",
            "ul",
            "ip",
            "127.0.0.2",
        ],
        &["name", "register", "srv", "layer", "ul"],
    ] {
        let o = ctl(args);
        assert!(
            o.status.success(),
            "o7sctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            server.log()
        );
    }
    let (sum, out) = t.oping_in("a", "a", &["-n", "srv", "-c", "2", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        2,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let ipcps = t.ctl_json_in("a", "b", &["ipcp", "list"]);
    assert_eq!(ipcps[0]["type"], "udp4", "{ipcps:?}");
    // A typo is an error with a suggestion, and nothing runs.
    let o = ctl(&["port", "lisst"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("list"), "{o:?}");
    let o = ctl(&[
        "ipcp",
        "bootstrap",
        "name",
        "v",
        "layer",
        "ul",
        "type",
        "udp4",
        "ip",
        "::1",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not an address of a udp4"),
        "{o:?}"
    );
}

/// Impairments of a UDP port's received data datagrams (issue 27 item 3, as on Ethernet):
/// `o7sctl port set` on B's udp port loses a share of the pings reaching B (counted
/// exactly), delays them (every RTT above the delay), duplicates and holds back some (all
/// answered, counted), and flips a bit of some (a raw ocbr stream's payload check counts
/// them); `port list` says so in words; all at zero puts the port back as it was.
#[test]
fn a_udp_port_loses_delays_duplicates_reorders_and_corrupts_on_demand() {
    if !can_run() {
        return;
    }
    let t = Topo::single("ui");
    t.hosts(
        "a",
        &format!(
            "127.0.0.2 {} #oping-server\n127.0.0.2 {} #ocbr\n",
            HashAlgo::Md5.hex("oping-server"),
            HashAlgo::Md5.hex("ocbr")
        ),
    );
    let b = t.daemon_in(
        "a",
        "b",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n[name.\"ocbr\"]\nprog=[\"{}\"]\n\n[udp4.wifi1]\nbootstrap=\"wifi-network\"\nip=\"127.0.0.2\"\nreg=[\"oping-server\", \"ocbr\"]\n",
            bin("oping").display(),
            bin("ocbr").display()
        ),
    );
    let _a = t.daemon_in("a", "a", CLIENT);
    let set = |args: &[&str]| {
        let o = t
            .cmd_in("a", "b", &bin("o7sctl"))
            .args(["port", "set", "wifi1"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let port = || t.ctl_json_in("a", "b", &["port", "list"])[0].clone();
    let num = |k: &str| port()[k].as_u64().unwrap_or(0);
    let ping = |n: &str, i: &str| {
        t.oping_in("a", "a", &["-n", "oping-server", "-c", n, "-i", i])
            .0
    };
    assert_eq!(ping("3", "10ms")["received"], 3);
    set(&["loss", "20%"]);
    assert_eq!(port()["impair"], "loss 20%");
    let sum = ping("300", "2ms");
    let got = sum["received"].as_u64().unwrap();
    assert!((200..=280).contains(&got), "{sum}");
    assert_eq!(num("impair_lost"), 300 - got, "{}", port());
    set(&["loss", "0", "delay", "30ms"]);
    let sum = ping("5", "50ms");
    assert_eq!(sum["received"], 5, "{sum}");
    assert!(sum["rtt_ms"]["min"].as_f64().unwrap() >= 30.0, "{sum}");
    assert!(num("impair_delayed") >= 5, "{}", port());
    set(&["delay", "0", "dup", "100%"]);
    assert!(ping("5", "20ms")["received"].as_u64().unwrap() >= 5);
    assert!(num("impair_duplicated") >= 5, "{}", port());
    set(&["dup", "0", "reorder", "100%"]);
    assert_eq!(ping("5", "20ms")["received"], 5);
    assert!(num("impair_reordered") >= 5, "{}", port());
    set(&["reorder", "0", "corrupt", "5%"]);
    assert_eq!(port()["impair"], "corrupt 5%");
    let srv = t
        .cmd_in("a", "b", &bin("ocbr"))
        .args(["-l", "--json", "--verify", "--flows", "1", "-t", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    t.wait_accepting("a", "b", "ocbr");
    let ok = t
        .cmd_in("a", "a", &bin("ocbr"))
        .args(["-n", "ocbr", "-s", "700", "-r", "2M", "-d", "2"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = srv.wait_with_output().unwrap();
    let last: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let damaged = last["corrupt"].as_u64().unwrap_or(0);
    assert!(
        damaged > 0 && num("impair_corrupted") >= damaged,
        "{last} {}",
        port()
    );
    set(&["corrupt", "0"]);
    assert_eq!(port()["impair"], "-");
    assert_eq!(ping("20", "5ms")["received"], 20);
    assert!(
        b.log().contains("impairs the data frames it receives"),
        "{}",
        b.log()
    );
}
