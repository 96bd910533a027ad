//! Programs and processes (issue 24, item 2), as a new user meets them following the
//! tutorials: a configuration binds a name to `/usr/bin/oping` (which does not exist here,
//! nor is oping on the daemon's PATH, as under sudo), the server is started by hand, a
//! refusal says why, rebinding replaces, and a server that exits leaves `name list` at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use o7s_integration::{bin, bin_dir, can_run, eventually, unique, Topo};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The daemon's PATH: the system's, without the workspace's binaries.
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn server_conf(dev: &str, name: &str) -> String {
    format!("[name.\"{name}\"]\nprog=[\"/usr/bin/oping\"]\n\n[eth-dix.e1]\nbootstrap=\"prog-layer\"\ndev=\"{dev}\"\nreg=[\"{name}\"]\n")
}

fn client_conf(dev: &str) -> String {
    format!("[eth-dix.e1]\nbootstrap=\"prog-layer\"\ndev=\"{dev}\"\n")
}

/// The pids `name list` shows bound to `name` at side `s`.
fn processes(t: &Topo, s: &str, name: &str) -> Vec<i64> {
    t.ctl_json(s, &["name", "list"])
        .iter()
        .find(|n| n["name"] == name)
        .map(|n| {
            n["processes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(serde_json::Value::as_i64)
                .collect()
        })
        .unwrap_or_default()
}

fn start_server(t: &Topo, s: &str) -> Child {
    t.cmd(s, &bin("oping"))
        .arg("-l")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The tutorial's configuration (`prog=["/usr/bin/oping"]`, no args), o7sd without oping
/// on its PATH, `oping -l` started by hand: it is bound to the name by its file name and
/// serves 10 of 10; killed, it leaves `name list` within a second.
#[test]
fn a_hand_started_server_serves_a_name_bound_to_a_missing_path() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("pgh");
    let name = unique("hand-srv");
    let b = t.daemon_path("b", &server_conf(&t.dev("b"), &name), SYSTEM_PATH);
    let _a = t.daemon("a", &client_conf(&t.dev("a")));
    assert!(
        b.log().contains("program /usr/bin/oping not found"),
        "{}",
        b.log()
    );
    let mut srv = start_server(&t, "b");
    let pid = i64::from(srv.id());
    t.wait_accepting("b", "b", &name);
    assert_eq!(processes(&t, "b", &name), vec![pid], "{}", b.log());
    let (sum, out) = t.oping("a", &["-n", &name, "-c", "10", "-i", "20ms"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert_eq!(sum["received"], 10, "{sum}");
    assert!(
        !b.log().contains("bound to no name"),
        "the server was found: {}",
        b.log()
    );
    // Killed (and reaped): gone from `name list` within a second.
    srv.kill().unwrap();
    srv.wait().unwrap();
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || processes(&t, "b", &name)
            .is_empty()),
        "pid {pid} still bound {:?} after {:?}: {}",
        processes(&t, "b", &name),
        killed.elapsed(),
        b.log()
    );
    assert!(
        b.log().contains(&format!("Process {pid} exited")),
        "{}",
        b.log()
    );
}

/// Nobody accepts: the client's error says "refused" once and names the cause; binding
/// the real program again replaces the tutorial's binding (one program listed), and with
/// auto-start the next request is served.
#[test]
fn a_refusal_names_its_cause_and_rebinding_replaces() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("pgr");
    let name = unique("nobody");
    let b = t.daemon_path("b", &server_conf(&t.dev("b"), &name), SYSTEM_PATH);
    let _a = t.daemon("a", &client_conf(&t.dev("a")));
    let o = t
        .cmd("a", &bin("oping"))
        .args(["-n", &name, "-c", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("refused").count(), 1, "{err}");
    assert!(
        err.contains(&name) && err.contains("no process accepts") && err.contains("oping -l"),
        "{err}"
    );
    let log = b.log();
    assert!(
        log.contains(&format!(
            "Flow request for {name} refused: no process accepts"
        )),
        "{log}"
    );
    // `bind program` with the real path, auto-started: it replaces the tutorial's binding
    // of the same program (a second `(auto)` binding of /usr/bin/oping would be tried
    // first and could not start).
    let real = bin_dir().join("oping");
    let real = real.to_str().unwrap();
    let o = t
        .cmd("b", &bin("o7sctl"))
        .args(["bind", "program", real, "name", &name, "auto", "--", "-l"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = t.ctl_json("b", &["name", "list"]);
    let n = names.iter().find(|n| n["name"] == name).unwrap();
    assert_eq!(
        n["programs"],
        serde_json::json!([format!("{real} (auto)")]),
        "{n}"
    );
    assert!(
        b.log().contains("replaces the binding of /usr/bin/oping"),
        "{}",
        b.log()
    );
    let (sum, out) = t.oping("a", &["-n", &name, "-c", "3", "-i", "20ms"]);
    assert_eq!(
        sum["received"],
        3,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
}

/// The user's case on a unicast layer (tutorial-unicast): the name published by B with the
/// tutorial's `prog`, nobody accepting: A's allocation says "refused" once and why; then
/// `oping -l` started by hand on B serves A 10 of 10.
#[test]
fn over_a_unicast_layer_the_refusal_says_why_and_a_hand_started_server_serves() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("pgu");
    let name = unique("uni-srv");
    let _a = t.daemon(
        "a",
        &format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[\"ua\"]\n\n[unicast.ua]\nbootstrap=\"ulayer\"\nautobind=true\n",
            t.dev("a")
        ),
    );
    let b = t.daemon_path(
        "b",
        &format!(
            "[name.\"{name}\"]\nprog=[\"/usr/bin/oping\"]\n\n[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\n\n[unicast.ub]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\nreg=[\"{name}\"]\n",
            t.dev("b")
        ),
        SYSTEM_PATH,
    );
    let key: String = o7s_wire::hash::HashAlgo::Sha3_256
        .hash(&name)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        eventually(Duration::from_secs(15), || t
            .ctl_json("a", &["dht", "list"])
            .iter()
            .any(|r| r["key"] == key.as_str())),
        "A's directory has {name}: {}",
        b.log()
    );
    let o = t
        .cmd("a", &bin("oping"))
        .args(["-n", &name, "-c", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("refused").count(), 1, "{err}");
    assert!(
        err.contains(&name) && err.contains("no process accepts") && err.contains("oping -l"),
        "{err}\n{}",
        b.log()
    );
    assert!(
        b.log()
            .contains(&format!("refused: {name}: no process accepts")),
        "{}",
        b.log()
    );
    let mut srv = start_server(&t, "b");
    t.wait_accepting("b", "b", &name);
    let (sum, out) = t.oping("a", &["-n", &name, "-c", "10", "-i", "20ms"]);
    let _ = srv.kill();
    let _ = srv.wait();
    assert_eq!(
        sum["received"],
        10,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
}
