//! The data plane outlives o7sd (issue 17): `kill -9` of an o7sd does not stop the flows
//! it set up (its data plane keeps forwarding, the apps keep their flows), and the o7sd
//! started next adopts the running data plane with its ports and flows. Each test builds
//! its own namespaces and veth pair.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::{bin, can_run, eventually, Daemon, Topo};
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

/// The data plane of side `s` (its pid), from `o7sctl`'s view of the workers... or, simpler,
/// the process named o7s-dataplane in the namespace.
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

fn restart(t: &Topo, s: &str, conf: &str, n: u32, extra: &[&str]) -> Daemon {
    t.daemon_logged(s, s, conf, extra, &format!("o7sd-{s}-{n}.log"))
}

/// `kill -9` of the server's o7sd during a 1000-ping run at 10 ms: every reply comes (the
/// data plane keeps forwarding, the server keeps its flow); a new o7sd adopts the data
/// plane: `o7sctl flow list` shows the old flow, a new flow works, and both are listed.
#[test]
fn server_o7sd_killed_and_restarted_keeps_its_flows() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("rs");
    let conf = server_conf(&t.dev("b"));
    let mut b = t.daemon("b", &conf);
    let _a = t.daemon("a", &client_conf(&t.dev("a")));
    let mut srv = oping_server(&t, "b");
    let dp_before = dataplane_pids(&t, "b");
    assert_eq!(dp_before.len(), 1, "one data plane");
    let ping = t
        .cmd("a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "1000", "-i", "10ms", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t
        .ctl_json("b", &["flow", "list"])
        .iter()
        .any(|f| f["rx_sdus"].as_u64().unwrap_or(0) > 20)));
    b.kill9();
    std::thread::sleep(Duration::from_secs(2));
    // The data plane is the same process, without an o7sd.
    assert_eq!(dataplane_pids(&t, "b"), dp_before, "{}", b.log());
    let b2 = restart(&t, "b", &conf, 2, &[]);
    let log = b2.log();
    assert!(log.contains("Adopted the running data plane"), "{log}");
    for l in log.lines().filter(|l| l.contains("dopt")) {
        eprintln!("{l}");
    }
    let flows = t.ctl_json("b", &["flow", "list"]);
    assert_eq!(flows.len(), 1, "the adopted flow: {flows:?}\n{log}");
    assert_eq!(flows[0]["name"], "oping-server", "{flows:?}");
    assert_eq!(flows[0]["side"], "accept", "{flows:?}");
    // A new flow works alongside, and both are listed.
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "20", "-i", "10ms"]);
    assert_eq!(sum["received"], 20, "{}\n{}", text(&o), b2.log());
    let out = ping.wait_with_output().unwrap();
    let sum = summary(&out);
    assert_eq!(sum["received"], 1000, "{}\n{}", text(&out), b.log());
    assert_eq!(
        dataplane_pids(&t, "b"),
        dp_before,
        "still the same data plane"
    );
    let _ = srv.kill();
    let _ = srv.wait();
}
