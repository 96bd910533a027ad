//! A member as attacker (issue 26 item 3): a rogue member of a unicast layer
//! (`o7s-rogue-member`, which enrols and connects as an IPCP would) floods its neighbour
//! with LSAs for random addresses, DHT STOREs and FLOW_REQs while a ping crosses the layer
//! through that neighbour.
//!
//! Needs root (namespaces, veth pairs); skips visibly without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn eth(t: &Topo, s: &str, others: &[&str], ipcp: &str) -> String {
    others
        .iter()
        .map(|o| {
            format!(
                "[eth-dix.e{o}]\nbootstrap=\"eth-{s}{o}\"\ndev=\"{}\"\nreg=[\"{ipcp}\"]\n\n",
                t.link_dev(s, o)
            )
        })
        .collect()
}

fn row(t: &Topo, s: &str, name: &str) -> Value {
    t.ctl_json(s, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or(Value::Null)
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The tests of this file run one at a time: each floods a layer, and what the kernel
/// loses between the data planes (checked) follows the CPU left to them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The chain A - B - C (C serves oping-server) and a rogue member R next to B. While A
/// pings C through B (2000 pings at 5 ms), R enrols through B and floods it with 100,000
/// LSAs for random addresses, 100,000 DHT STOREs and 10,000 FLOW_REQs for random names.
/// The ping keeps >= 99 % of its replies, B's o7sd answers `ipcp list` within 1 s all the
/// while, its memory grows by less than 256 MiB, and what it refused is counted (LSAs and
/// PDUs beyond R's budget, LSAs beyond the LSDB's bound, PDUs the N-1 flow's ring had no
/// room for); the figures are printed.
#[test]
fn a_flooding_member_does_not_stop_a_ping_across_the_layer() {
    let _one = one_at_a_time();
    if !can_run() {
        return;
    }
    let t = Topo::links(
        "mf",
        &["a", "b", "c", "r"],
        &[("a", "b"), ("b", "c"), ("b", "r")],
    );
    let _a = t.daemon(
        "a",
        &format!(
            "{}[unicast.ua]\nbootstrap=\"fl\"\nautobind=true\n",
            eth(&t, "a", &["b"], "ua")
        ),
    );
    let b = t.daemon(
        "b",
        &format!(
            "{}[unicast.ub]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\n",
            eth(&t, "b", &["a", "c", "r"], "ub")
        ),
    );
    assert!(eventually(Duration::from_secs(15), || row(&t, "b", "ub")
        ["state"]
        == "enrolled"));
    let _c = t.daemon(
        "c",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n{}[unicast.uc]\nenrol=\"ub\"\nautobind=true\nconn=[\"ub\"]\nreg=[\"oping-server\"]\n",
            bin("oping").display(),
            eth(&t, "c", &["b"], "uc")
        ),
    );
    let _r = t.daemon("r", &eth(&t, "r", &["b"], "rogue"));
    let ready = eventually(Duration::from_secs(20), || {
        t.oping("a", &["-n", "oping-server", "-c", "1", "-i", "10ms"])
            .0["received"]
            == 1
    });
    assert!(ready, "A reaches oping-server at C\n{}", b.log());
    let rss0 = rss_kib(b.pid());

    let ping = t
        .cmd("a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "2000", "-i", "5ms", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let rogue = t
        .cmd("r", &bin("o7s-rogue-member"))
        .args(["ub", "100000", "100000", "10000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // o7sctl on B all the while.
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let t0 = Instant::now();
        let r = row(&t, "b", "ub");
        slowest = slowest.max(t0.elapsed());
        assert!(!r.is_null(), "B answers ipcp list");
        std::thread::sleep(Duration::from_millis(200));
    }
    let flood = rogue.wait_with_output().unwrap();
    let sent = String::from_utf8_lossy(&flood.stdout).to_string();
    assert!(
        flood.status.success(),
        "the rogue enrolled and flooded: {sent}{}",
        String::from_utf8_lossy(&flood.stderr)
    );
    let out = ping.wait_with_output().unwrap();
    let sum: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let rss1 = rss_kib(b.pid());
    let r = row(&t, "b", "ub");
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let ring_full: u64 = t
        .ctl_json("b", &["flow", "list"])
        .iter()
        .filter_map(|f| f["drop_ring_full"].as_u64())
        .sum();
    let lsdb = t.ctl_json("b", &["lsdb", "list"]).len();
    let dht = t.ctl_json("b", &["dht", "list"]).len();
    eprintln!(
        "rogue sent {sent}\nA -> C ping: {} of 2000 replies; B's o7sctl slowest {slowest:?}; B's o7sd RSS {rss0} -> {rss1} KiB; B refused: lsa_rate_dropped {}, dt_rate_dropped {}, lsa_dropped {}, N-1 rings full {ring_full}; B keeps {lsdb} LSDB records, {dht} directory entries",
        sum["received"],
        n("lsa_rate_dropped"),
        n("dt_rate_dropped"),
        n("lsa_dropped"),
    );
    assert!(
        sum["received"].as_u64().unwrap_or(0) >= 1980,
        "the ping keeps >= 99 %: {sum}"
    );
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(rss1 < rss0 + 256 * 1024, "{rss0} -> {rss1} KiB");
    assert!(
        n("lsa_rate_dropped") + ring_full > 0 && n("dt_rate_dropped") + ring_full > 0,
        "{r}"
    );
    assert!(lsdb <= 65_536 && dht <= 65_536, "{lsdb} {dht}");
    // Every LSA of the rogue is accounted for: kept (a new record each), refused beyond
    // its budget, or dropped at the full ring (B's own and its members' records are the
    // few more).
    // What reached B's o7sd on the rogue's Management flow (the data plane's count: the
    // kernel may lose a few frames between the two data planes, which neither counts).
    let rogue: Value = serde_json::from_str(sent.trim()).unwrap_or(Value::Null);
    let mgmt = t
        .ctl_json("b", &["neighbour", "list"])
        .into_iter()
        .find(|x| x["component"] == "Management" && x["neighbour"] == rogue["own_address"])
        .and_then(|x| x["n1_flow"].as_u64())
        .expect("the rogue's Management flow");
    let flow = t
        .ctl_json("b", &["flow", "list"])
        .into_iter()
        .find(|f| f["flow"] == mgmt)
        .unwrap_or(Value::Null);
    // Into o7sd's ring (`rx_sdus`) or dropped at its full ring (`drop_ring_full`). This
    // is to know the flood reached B's o7sd (the accounting below is the check): what the
    // kernel loses between the two data planes depends on the CPU o7sd leaves them (2
    // vCPUs, debug builds): 89,671 in a CI dry run on 2026-12-06 once o7sd drove the
    // unicast IPCP machine, 88,177 and 100,000 in two runs after; on 2026-12-06 in
    // alternating runs of the builds before and after the loop took the management frames
    // over: 97,077-100,001 both; two runs of the new one under 80,000 (71,784 and one not
    // kept) when the machine was loaded: at least 60,000 says
    // the flood got there.
    let (rx, full) = (
        flow["rx_sdus"].as_u64().unwrap_or(0),
        flow["drop_ring_full"].as_u64().unwrap_or(0),
    );
    eprintln!("reached B's o7sd: {rx} + {full} of 100,000 LSAs");
    assert!(
        rx + full > 60_000,
        "{rx} + {full} of 100,000 LSAs reached B"
    );
    let lsas = n("lsa_rate_dropped") + lsdb as u64;
    assert!(
        lsas.abs_diff(rx) <= 20,
        "every LSA o7sd read is kept or counted: {lsas} of {rx} ({full} more dropped at the full ring): {r}"
    );
}

/// Forged address collisions (issue 26 item 3): the chain A - B - C with the rogue member
/// R next to B. For 4 s R announces, every 10 ms, a link from B's address to an address B
/// has no link to, as another IPCP with B's address would, and follows B to each new
/// address. B moves at most once (its hold-down is 60 s), counts every collision (and
/// those it sat out), never stores or floods the forged link; once R stops, A reaches C
/// through B again.
#[test]
fn forged_collisions_move_a_member_at_most_once_and_routing_converges_after() {
    let _one = one_at_a_time();
    if !can_run() {
        return;
    }
    let t = Topo::links(
        "mx",
        &["a", "b", "c", "r"],
        &[("a", "b"), ("b", "c"), ("b", "r")],
    );
    let a = t.daemon(
        "a",
        &format!(
            "{}[unicast.ua]\nbootstrap=\"fx\"\nautobind=true\n",
            eth(&t, "a", &["b"], "ua")
        ),
    );
    let b = t.daemon(
        "b",
        &format!(
            "{}[unicast.ub]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\n",
            eth(&t, "b", &["a", "c", "r"], "ub")
        ),
    );
    assert!(eventually(Duration::from_secs(15), || row(&t, "b", "ub")
        ["state"]
        == "enrolled"));
    let _c = t.daemon(
        "c",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n{}[unicast.uc]\nenrol=\"ub\"\nautobind=true\nconn=[\"ub\"]\nreg=[\"oping-server\"]\n",
            bin("oping").display(),
            eth(&t, "c", &["b"], "uc")
        ),
    );
    let _r = t.daemon("r", &eth(&t, "r", &["b"], "rogue"));
    let reach = |secs: u64| {
        eventually(Duration::from_secs(secs), || {
            t.oping("a", &["-n", "oping-server", "-c", "3", "-i", "10ms"])
                .0["received"]
                == 3
        })
    };
    assert!(reach(20), "A reaches oping-server at C\n{}", b.log());
    let before = row(&t, "b", "ub")["address"].clone();
    let rogue = t
        .cmd("r", &bin("o7s-rogue-member"))
        .args(["ub", "0", "0", "0", "4000"])
        .output()
        .unwrap();
    let sent: Value = serde_json::from_slice(&rogue.stdout).unwrap_or(Value::Null);
    assert!(
        rogue.status.success(),
        "{sent}{}",
        String::from_utf8_lossy(&rogue.stderr)
    );
    let r = row(&t, "b", "ub");
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    eprintln!(
        "rogue: {sent}\nB: address {before} -> {}, readdressed {}, address_collisions {}, readdress_held {}",
        r["address"],
        n("readdressed"),
        n("address_collisions"),
        n("readdress_held")
    );
    let collisions = sent["collisions"].as_u64().unwrap_or(0);
    assert!(collisions >= 100, "{sent}");
    assert!(n("readdressed") <= 1, "B moved at most once: {r}");
    assert!(sent["target_moves"].as_u64() <= Some(1), "{sent}");
    // Every forged LSA that reached B was seen as a collision (a few may have been on
    // their way when B moved and named its old address).
    assert!(
        n("address_collisions") + 10 >= collisions,
        "{collisions} forged, {} seen: {r}",
        n("address_collisions")
    );
    if n("readdressed") == 1 {
        assert_ne!(r["address"], before);
        assert!(n("readdress_held") > 0, "R followed B: {r}");
    }
    // No LSDB holds a forged link from B's address: every record from it names a member.
    // (A forged LSA still on its way when B moved names an address nobody has any more:
    // an ordinary record then, which ages out.)
    let members: Vec<Value> = vec![
        row(&t, "a", "ua")["address"].clone(),
        row(&t, "c", "uc")["address"].clone(),
        sent["own_address"].clone(),
    ];
    let ours = r["address"].clone();
    for h in ["a", "b", "c"] {
        let lsdb = t.ctl_json(h, &["lsdb", "list"]);
        assert!(lsdb.iter().any(|x| x["src"] == ours), "{h}: {lsdb:?}");
        for x in lsdb.iter().filter(|x| x["src"] == ours) {
            assert!(members.contains(&x["dst"]), "{h}: forged {x}");
        }
    }
    // Routing converges once R stops: A reaches C through B again.
    let t0 = Instant::now();
    assert!(
        reach(30),
        "A reaches C after the collisions\n{}\n{}",
        a.log(),
        b.log()
    );
    eprintln!("A reached C again {:?} after R stopped", t0.elapsed());
}

/// The rest of what a member can send (issue 26 item 3): R replays one LSA 500 times, sends
/// 500 garbage SDUs on its Management flow, 500 DHT FIND_VALUE requests for random keys,
/// 500 DHT responses with more contacts than a bucket holds, and opens one more N-1 flow
/// whose CEP is garbage, while A pings C through B. B counts each kind where `ipcp list`
/// shows it, answers the FINDs (within R's budget), keeps none of it, and the ping keeps
/// every reply.
#[test]
fn a_members_replays_garbage_and_find_floods_are_counted_and_stop_nothing() {
    let _one = one_at_a_time();
    if !can_run() {
        return;
    }
    let t = Topo::links(
        "mg",
        &["a", "b", "c", "r"],
        &[("a", "b"), ("b", "c"), ("b", "r")],
    );
    let _a = t.daemon(
        "a",
        &format!(
            "{}[unicast.ua]\nbootstrap=\"fg\"\nautobind=true\n",
            eth(&t, "a", &["b"], "ua")
        ),
    );
    let b = t.daemon(
        "b",
        &format!(
            "{}[unicast.ub]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\n",
            eth(&t, "b", &["a", "c", "r"], "ub")
        ),
    );
    assert!(eventually(Duration::from_secs(15), || row(&t, "b", "ub")
        ["state"]
        == "enrolled"));
    let _c = t.daemon(
        "c",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"-l\"]\n\n{}[unicast.uc]\nenrol=\"ub\"\nautobind=true\nconn=[\"ub\"]\nreg=[\"oping-server\"]\n",
            bin("oping").display(),
            eth(&t, "c", &["b"], "uc")
        ),
    );
    let _r = t.daemon("r", &eth(&t, "r", &["b"], "rogue"));
    assert!(
        eventually(Duration::from_secs(20), || t
            .oping("a", &["-n", "oping-server", "-c", "1"])
            .0["received"]
            == 1),
        "A reaches oping-server at C\n{}",
        b.log()
    );
    let r0 = row(&t, "b", "ub");
    let ping = t
        .cmd("a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "600", "-i", "5ms", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rogue = t
        .cmd("r", &bin("o7s-rogue-member"))
        .args(["ub", "0", "0", "0", "0", "500"])
        .output()
        .unwrap();
    let sent: Value = serde_json::from_slice(&rogue.stdout).unwrap_or(Value::Null);
    assert!(
        rogue.status.success() && sent["write_errors"] == 0,
        "{sent}{}",
        String::from_utf8_lossy(&rogue.stderr)
    );
    let out = ping.wait_with_output().unwrap();
    let sum: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let settled = eventually(Duration::from_secs(5), || {
        row(&t, "b", "ub")["conn_failed"].as_u64() > r0["conn_failed"].as_u64()
    });
    let r1 = row(&t, "b", "ub");
    let d = |k: &str| r1[k].as_u64().unwrap_or(0) - r0[k].as_u64().unwrap_or(0);
    eprintln!(
        "rogue: {sent}\nB counted: lsa_stale +{}, lsa_malformed +{}, dht_received +{}, dht_sent +{}, dht_bad +{}, conn_failed +{}, lsa_rate_dropped +{}, dt_rate_dropped +{}; A -> C: {} of 600",
        d("lsa_stale"),
        d("lsa_malformed"),
        d("dht_received"),
        d("dht_sent"),
        d("dht_bad"),
        d("conn_failed"),
        d("lsa_rate_dropped"),
        d("dt_rate_dropped"),
        sum["received"]
    );
    assert!(
        settled,
        "the garbage CEP failed its flow: {r1}\n{}",
        b.log()
    );
    // Within R's budgets (2,000 a second each way), nothing is dropped for the rate: every
    // SDU is counted as what it is.
    assert_eq!(d("lsa_rate_dropped") + d("dt_rate_dropped"), 0, "{r1}");
    assert!(d("lsa_stale") >= 499, "the replays: {r1}");
    assert!(d("lsa_malformed") >= 500, "the garbage: {r1}");
    assert!(d("dht_bad") >= 500, "the oversized contact lists: {r1}");
    assert!(
        d("dht_received") >= 500 && d("dht_sent") >= 500,
        "the FINDs answered: {r1}"
    );
    // Kept: R's one link, nothing else of R's in the LSDB.
    let own = sent["own_address"].clone();
    let of_r = t
        .ctl_json("b", &["lsdb", "list"])
        .into_iter()
        .filter(|x| x["src"] == own)
        .count();
    assert!(of_r <= 2, "R's links only: {of_r}");
    assert_eq!(sum["received"], 600, "{sum}");
}
