//! o7sd's threads do not grow with its work (issue 25): its event loop serves flow
//! requests, allocations and management frames without a thread per request, so 100,000
//! management frames from the segment and 10,000 flow allocations (and as many
//! deallocations) leave both daemons' thread counts where they were.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use o7s_integration::{bin, can_run, Topo};
use serde_json::Value;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn o7sds_threads_stay_constant_under_100000_frames_and_10000_allocations() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("thr");
    let b = t.daemon(
        "b",
        &format!(
            "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"{}\"\nreg=[\"alloc-bench\"]\n",
            t.dev("b")
        ),
    );
    let a = t.daemon(
        "a",
        &format!("[eth-dix.e]\nbootstrap=\"l\"\ndev=\"{}\"\n", t.dev("a")),
    );
    // The server accepts and drops each flow (bound by hand: no program started by o7sd,
    // whose stderr would have a thread of its own while it runs).
    let mut server = t
        .cmd("b", &bin("o7s-bench"))
        .arg("alloc-server")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id().to_string();
    for args in [
        vec!["name", "create", "alloc-bench"],
        vec!["bind", "process", &pid, "name", "alloc-bench"],
    ] {
        let o = t.cmd("b", &bin("o7sctl")).args(&args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    // One allocation first: both daemons have served one (and the name is cached).
    let warm = t
        .cmd("a", &bin("o7s-bench"))
        .args(["alloc-client", "-n", "alloc-bench", "-c", "1"])
        .output()
        .unwrap();
    assert!(warm.status.success(), "{}", text(&warm));
    let (pa, pb) = (a.pid(), b.pid());
    let base = (threads(pa), threads(pb));
    assert!(base.0 > 0 && base.1 > 0, "{base:?}");
    // Both daemons' threads, every 5 ms while the load runs: (fewest, most) of each.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut a, mut b) = ((usize::MAX, 0), (usize::MAX, 0));
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (x, y) = (threads(pa), threads(pb));
                a = (a.0.min(x), a.1.max(x));
                b = (b.0.min(y), b.1.max(y));
                samples += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (a, b, samples)
        })
    };
    // 10,000 allocations, each deallocated before the next.
    let allocs = t
        .cmd("a", &bin("o7s-bench"))
        .args([
            "alloc-client",
            "-n",
            "alloc-bench",
            "-c",
            "10000",
            "--timeout-ms",
            "5000",
        ])
        .output()
        .unwrap();
    assert!(allocs.status.success(), "{}", text(&allocs));
    let r: Value = serde_json::from_slice(&allocs.stdout).unwrap();
    // Then 100,000 name queries at B from the segment, as fast as the socket takes them
    // (after the allocations: B's policer would drop A's FLOW_REQs while A floods).
    let flood = t
        .cmd("a", &bin("o7s-inject"))
        .args([
            "--flood",
            &t.dev("a"),
            "100000",
            "nq-req",
            "name=alloc-bench",
        ])
        .arg(format!("dst={}", t.mac("b")))
        .output()
        .unwrap();
    assert!(flood.status.success(), "{}", text(&flood));
    let sent: Value = serde_json::from_slice(&flood.stdout).unwrap();
    assert_eq!(sent["sent"], 100_000, "{sent}");
    stop.store(true, Ordering::Relaxed);
    let (ta, tb, samples) = sampler.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    eprintln!(
        "threads before {base:?}; during: A {ta:?}, B {tb:?} ({samples} samples); allocations {r}"
    );
    assert!(samples > 100, "{samples}");
    assert_eq!(
        (r["allocations"].as_u64(), r["failures"].as_u64()),
        (Some(10_000), Some(0)),
        "{r}"
    );
    assert_eq!(ta, (base.0, base.0), "A's threads moved");
    assert_eq!(tb, (base.1, base.1), "B's threads moved");
    // B saw the frames (its data plane counted them as management frames or dropped
    // them by its policer, counted).
    let stats = t.ctl_json("b", &["stats"]);
    let n = |k: &str| stats[0][k].as_u64().unwrap_or(0);
    let seen = n("dp_rx_mgmt")
        + n("dp_drop_mgmt_rate_source")
        + n("dp_drop_mgmt_rate_port")
        + n("dp_drop_mgmt_backlog")
        + n("dp_drop_socket_buffer");
    assert!(
        seen >= 90_000,
        "B's data plane saw {seen} of 100,000: {stats:?}"
    );
}
