//! Loop-free alternates told from reconvergence (issue 29): on the ring A - B - C - D - A a
//! one-way ocbr flow from A to C loses its next hop's link (the veth is deleted). With
//! `routing = "lfa"` A forwards on the alternate at once; with `routing = "link-state"`
//! nothing replaces the lost next hop until the table is recomputed. The timers are long
//! (`ls_t_recalc`, `ls_t_update` 30 s) and the cut comes right after a recomputation, so no
//! recomputation or LSA refresh falls in the flow's time: what keeps the flow is LFA alone.
//! Only the forward direction is measured (SDUs sent by A, received by C). Both runs use the
//! reference's link state (`ls_withdraw = false`): with o7s's withdrawal A would recompute
//! at once when its own link goes, and nothing would tell LFA's alternate from that.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::unicast::{dht_has, uni_ring};
use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

/// SDUs a second (1000-byte SDUs at 8 Mbit/s) and seconds the flow lasts; the cut comes
/// after `BEFORE_CUT`.
const RATE: &str = "8M";
const SECS: u64 = 5;
const BEFORE_CUT: Duration = Duration::from_millis(1500);

struct Cut {
    sent: u64,
    received: u64,
    /// A's next hop towards C in use before the cut and after it (null: none).
    before: Option<String>,
    after: Option<String>,
    /// Ms to A's next recomputation when the link was cut.
    recalc_in_ms: u64,
}

fn row<'a>(rows: &'a [Value], key: &str, val: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r[key] == val)
}

fn in_use(t: &Topo, dst: &str) -> Option<String> {
    let rows = t.ctl_json("a", &["route", "list"]);
    row(&rows, "dst", dst).and_then(|r| r["in_use"].as_str().map(str::to_string))
}

fn ipcp(t: &Topo, s: &str, name: &str) -> Value {
    let rows = t.ctl_json(s, &["ipcp", "list"]);
    row(&rows, "name", name).cloned().unwrap_or(Value::Null)
}

/// The ring with `routing`, a one-way flow A -> C, A's link to its next hop cut during it.
fn cut_during_a_one_way_flow(prefix: &str, routing: &str) -> Cut {
    let t = Topo::links(
        prefix,
        &["a", "b", "c", "d"],
        &[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")],
    );
    let _ds = uni_ring(
        &t,
        &format!(
            "routing=\"{routing}\"\nls_t_recalc=30\nls_t_update=30\nls_t_timeo=90\nls_withdraw=false"
        ),
        &[],
        "ocbr",
        "ocbr",
    );
    let ac = ipcp(&t, "c", "uc")["address"].as_str().unwrap().to_string();
    let ready = eventually(Duration::from_secs(20), || {
        in_use(&t, &ac).is_some() && dht_has(&t, "a", "ocbr")
    });
    assert!(
        ready,
        "A routes to C: {:?}",
        t.ctl_json("a", &["route", "list"])
    );
    // One flow, reported when it has been idle 3 s (longer than any gap LFA leaves).
    let srv = t
        .cmd("c", &bin("ocbr"))
        .args(["-l", "--json", "--flows", "1", "-t", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", "ocbr");
    // Just after one of A's recomputations: the next is 30 s away, far beyond the flow.
    let recalc_in = || {
        ipcp(&t, "a", "ua")["ls_next_recalc_ms"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(35), || recalc_in() >= 24_000),
        "A's next recomputation: {} ms",
        recalc_in()
    );
    let client = t
        .cmd("a", &bin("ocbr"))
        .args([
            "-n",
            "ocbr",
            "-s",
            "1000",
            "-r",
            RATE,
            "-d",
            &SECS.to_string(),
        ])
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(BEFORE_CUT);
    let before = in_use(&t, &ac);
    let via = if before == ipcp(&t, "b", "ub")["address"].as_str().map(str::to_string) {
        "b"
    } else {
        "d"
    };
    let recalc_in_ms = recalc_in();
    let o = Command::new("ip")
        .args(["-n", &t.ns("a"), "link", "del", &t.link_dev("a", via)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = client.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let sum: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let sent = sum["sent"].as_u64().unwrap_or(0);
    let after = in_use(&t, &ac);
    // What reached C: the server's report of the flow (it exits after it).
    let report = srv.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&report.stdout).to_string();
    let received = report
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["received"].as_u64())
        .unwrap_or_else(|| panic!("no report from C's server: {report}"));
    assert!(
        sent >= SECS * 900,
        "the client sent {sent}: {line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Cut {
        sent,
        received,
        before,
        after,
        recalc_in_ms,
    }
}

#[test]
fn lfa_keeps_a_one_way_flow_through_a_cut_link_where_link_state_loses_it_until_it_recomputes() {
    if !can_run() {
        return;
    }
    let lfa = cut_during_a_one_way_flow("lf", "lfa");
    let ls = cut_during_a_one_way_flow("ls", "link-state");
    for (name, c) in [("lfa", &lfa), ("link-state", &ls)] {
        eprintln!(
            "{name}: sent {}, received {}, lost {}; A's next hop to C {:?} -> {:?}; next recomputation {} ms after the cut",
            c.sent,
            c.received,
            c.sent.saturating_sub(c.received),
            c.before,
            c.after,
            c.recalc_in_ms
        );
        // No recomputation while the flow ran: what the flow kept, routing kept without one.
        let after_cut = Duration::from_secs(SECS).saturating_sub(BEFORE_CUT);
        assert!(
            c.recalc_in_ms > after_cut.as_millis() as u64 + 2_000,
            "{name}: a recomputation {} ms after the cut falls in the flow",
            c.recalc_in_ms
        );
        assert!(
            c.before.is_some(),
            "{name}: A forwarded to C before the cut"
        );
    }
    // LFA: the alternate at once; the loss is the time to notice the device is gone.
    let lost = lfa.sent.saturating_sub(lfa.received);
    assert!(
        lost <= 1_000,
        "lfa lost {lost} of {} (more than 1 s of the flow)",
        lfa.sent
    );
    assert!(
        lfa.after.is_some() && lfa.after != lfa.before,
        "lfa: A forwards to C on the alternate: {:?} -> {:?}",
        lfa.before,
        lfa.after
    );
    // Link state without LFA: no next hop until the recomputation, so everything sent after
    // the cut (3.5 s of the 5) is lost.
    let lost = ls.sent.saturating_sub(ls.received);
    assert!(
        lost >= ls.sent * 6 / 10,
        "link-state lost only {lost} of {}: something other than LFA kept the flow",
        ls.sent
    );
    assert_eq!(ls.after, None, "link-state: no next hop to C after the cut");
}
