//! The broadcast layer (issue 27 item 4, `[broadcast.X]`): members enrol and connect as in
//! a unicast layer; every SDU from a neighbour or a joined process goes to every other one.
//!
//! Needs root (namespaces and veth pairs of its own); skips visibly without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::Duration;

/// The config of member `s` of a line A - B - C: an eth-dix IPCP per link, the broadcast
/// IPCP `b{s}` (A bootstraps layer "bc", B enrols through A, C through B).
fn conf(t: &Topo, s: &str) -> String {
    let nbs: &[&str] = match s {
        "a" => &["b"],
        "b" => &["a", "c"],
        _ => &["b"],
    };
    let mut c = String::new();
    for o in nbs {
        c += &format!(
            "[eth-dix.e{o}]\nbootstrap=\"eth-{s}{o}\"\ndev=\"{}\"\nreg=[\"b{s}\"]\n\n",
            t.link_dev(s, o)
        );
    }
    c += &match s {
        "a" => "[broadcast.ba]\nbootstrap=\"bc\"\nautobind=true\n".to_string(),
        "b" => "[broadcast.bb]\nenrol=\"ba\"\nautobind=true\nconn=[\"ba\"]\n".to_string(),
        _ => "[broadcast.bc]\nenrol=\"bb\"\nautobind=true\nconn=[\"bb\"]\n".to_string(),
    };
    c
}

fn row(t: &Topo, s: &str) -> Value {
    t.ctl_json(s, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["type"] == "broadcast")
        .unwrap_or(Value::Null)
}

fn listener(t: &Topo, s: &str, count: &str) -> Child {
    t.cmd(s, &bin("obc"))
        .args(["-l", "-n", "bc", "-c", count, "-t", "10000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Three members in a line: after B and C enrolled and connected, a listener on each
/// node (two on B) gets the message of each node's sender exactly once; `ipcp list` and `flow list` show the layer, its
/// neighbours and the joined processes; joining a layer that does not exist fails clearly.
#[test]
fn obc_messages_from_each_of_three_members_reach_the_others_once() {
    if !can_run() {
        return;
    }
    let sides = ["a", "b", "c"];
    let t = Topo::links("bl", &sides, &[("a", "b"), ("b", "c")]);
    let mut ds = vec![t.daemon("a", &conf(&t, "a"))];
    for s in ["b", "c"] {
        ds.push(t.daemon(s, &conf(&t, s)));
        let ok = eventually(Duration::from_secs(15), || {
            let r = row(&t, s);
            r["state"] == "enrolled" && r["neighbours"] == 1
        });
        assert!(ok, "{s}: {}\n{}", row(&t, s), ds.last().unwrap().log());
    }
    assert!(eventually(Duration::from_secs(5), || row(&t, "b")
        ["neighbours"]
        == 2));
    let b = row(&t, "b");
    assert_eq!(
        (&b["layer"], &b["mtu"], &b["hash"]),
        (
            &Value::from("bc"),
            &Value::from(1400),
            &Value::from("SHA3_256")
        ),
        "{b}"
    );

    // Nothing to join by that name: a clear error.
    let o = t
        .cmd("a", &bin("obc"))
        .args(["-n", "nosuchlayer", "-m", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("no broadcast layer nosuchlayer")
            && err.contains("bc (ba)"),
        "{err}"
    );

    // Listeners: one on A and C, two on B. Then a sender on each node writes one message:
    // every listener hears all three (a sender is a joined process of its own; only the
    // writer's own flow is left out), each once.
    let mut ls = vec![
        ("a", listener(&t, "a", "3")),
        ("b", listener(&t, "b", "3")),
        ("b", listener(&t, "b", "3")),
        ("c", listener(&t, "c", "3")),
    ];
    assert!(
        eventually(Duration::from_secs(5), || row(&t, "a")["joined"] == 1
            && row(&t, "b")["joined"] == 2
            && row(&t, "c")["joined"] == 1),
        "{} {} {}",
        row(&t, "a"),
        row(&t, "b"),
        row(&t, "c")
    );
    let flows = t.ctl_json("b", &["flow", "list"]);
    let joined: Vec<_> = flows.iter().filter(|f| f["side"] == "join").collect();
    assert_eq!(joined.len(), 2, "{flows:?}");
    assert_eq!(
        (&joined[0]["ipcp"], &joined[0]["name"]),
        (&Value::from("bb"), &Value::from("bc"))
    );
    for s in sides {
        let o = t
            .cmd(s, &bin("obc"))
            .args(["-n", "bc", "-m", &format!("hello from {s}")])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for (s, l) in ls.drain(..) {
        let o = l.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "listener on {s}: {out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut got: Vec<&str> = out.lines().collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                "Message received: hello from a",
                "Message received: hello from b",
                "Message received: hello from c"
            ],
            "listener on {s}"
        );
    }
    // Once: nothing more comes (no loop, no duplicate) within a second.
    let extra = t
        .cmd("c", &bin("obc"))
        .args(["-l", "-n", "bc", "-c", "1", "-t", "1000"])
        .output()
        .unwrap();
    assert!(
        !extra.status.success(),
        "{}",
        String::from_utf8_lossy(&extra.stdout)
    );
    // The counters: B got 1 from each neighbour and 1 from its own sender; it wrote each
    // to the other neighbour (A's to C, C's to A, its own to both: 4 copies).
    let b = row(&t, "b");
    assert_eq!(
        (
            &b["bc_from_neighbours"],
            &b["bc_from_joined"],
            &b["bc_to_neighbours"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(4)),
        "{b}"
    );
    assert_eq!(b["bc_drop_ring_full"], 0, "{b}");
    // Joined flows end with their processes.
    assert!(
        eventually(Duration::from_secs(3), || row(&t, "b")["joined"] == 0),
        "{}",
        row(&t, "b")
    );
}
