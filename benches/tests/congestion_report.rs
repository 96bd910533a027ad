//! `o7s-congestion-report` end to end on the synthetic captures in `tests/data/`: two runs
//! of the blog's schedule at a tenth of its length (`--time-scale 0.1`, 8 s, 100 ms bins);
//! `mb-ecn` shares fairly (50/50 one bin after each join), `none` does not (60/40).
//! The plots need Debian's fonts-dejavu-core (`apt-get install fonts-dejavu-core`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_o7s-congestion-report");

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

fn out_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[test]
fn congestion_report_end_to_end() {
    let out = out_dir("congestion-report");
    let run = Command::new(BIN)
        .args([
            "--run",
            &format!("mb-ecn={}", data("congestion-mb-ecn.csv")),
        ])
        .args(["--run", &format!("none={}", data("congestion-none.csv"))])
        .args(["--cap-mbit", "100", "--demand-mbit", "80"])
        .args(["--schedule", "0-70,14-24,44-58,63-80", "--bin-ms", "100"])
        .args(["--time-scale", "0.1"])
        .args([
            "--counters",
            &format!("mb-ecn={}", data("congestion-mb-ecn-counters.json")),
        ])
        .args([
            "--counters",
            &format!("none={}", data("congestion-none-counters.json")),
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let j: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["parameters"]["time_scale"], 0.1);
    assert_eq!(j["parameters"]["run_order"][0], "mb-ecn");
    assert!(close(
        &j["parameters"]["schedule_entries"][1]["start_s"],
        1.4
    ));
    // Runs keyed by name, in the command line's order.
    assert!(text.find("\"mb-ecn\": {").unwrap() < text.find("\"none\": {").unwrap());

    let m = &j["runs"]["mb-ecn"];
    assert_eq!(m["bins"], 80);
    assert_eq!(m["flows"].as_array().unwrap().len(), 4);
    // Flow 3 shares its dst with flow 1 but not its eid.
    assert_eq!(m["flows"][0]["dst"], "0x0000000a");
    assert_eq!(m["flows"][0]["eid"], "0x0000000000000041");
    assert_eq!(m["flows"][2]["dst"], "0x0000000a");
    assert_eq!(m["flows"][2]["eid"], "0x0000000000000043");
    assert_eq!(m["flows"][1]["dst"], "0x0000000b");
    assert_eq!(m["ignored_flows"].as_array().unwrap().len(), 1);
    assert_eq!(m["ignored_flows"][0]["bins"], 2);
    assert_eq!(m["warnings"].as_array().unwrap().len(), 0);

    let periods = m["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 7);
    let p = &periods[1];
    assert!(close(&p["start_s"], 1.4));
    assert!(close(&p["start_schedule_s"], 14.0));
    assert_eq!(p["active"], serde_json::json!([1, 2]));
    assert_eq!(p["joined"], serde_json::json!([2]));
    assert_eq!(p["bins"], 10);
    assert!(close(&p["fair_share_mbit_s"], 50.0));
    assert!(close(&p["utilisation"], 1.0));
    assert!(close(&p["convergence_s"], 0.1));
    assert!(close(&p["convergence_unscaled_s"], 1.0));
    assert!(p["mean_jain"].as_f64().unwrap() > 0.99);
    assert!(periods[0]["mean_jain"].is_null());
    assert_eq!(periods[6]["left"], serde_json::json!([1]));

    let o = &m["overall"];
    assert!(close(&o["worst_convergence_s"], 0.1));
    assert!(close(&o["utilisation_congested"], 1.0));
    assert_eq!(o["flow_updates"], 24);
    assert_eq!(o["max_ece"], 3);
    assert!(close(&o["loss"], 1.0 - 999_800.0 / 1_000_000.0));
    assert_eq!(m["counters"]["drop_queue_full"], 0);
    assert_eq!(m["verdict"]["all_pass"], true);
    assert_eq!(m["per_bin"].as_array().unwrap().len(), 80);
    assert_eq!(m["per_bin"][14]["active"], serde_json::json!([1, 2]));
    assert!(close(&m["per_bin"][14]["jain"], 10_000.0 / 10_256.0));

    let n = &j["runs"]["none"];
    // 60/40 in every two-flow period: J = 100^2 / (2 * (3600 + 1600)), never within 10 %.
    assert!(close(&n["periods"][1]["mean_jain"], 10_000.0 / 10_400.0));
    assert!(n["periods"][1]["convergence_s"].is_null());
    assert!(n["overall"]["worst_convergence_s"].is_null());
    assert_eq!(n["overall"]["unconverged_events"], 3);
    assert_eq!(n["overall"]["flow_updates"], 0);
    assert_eq!(n["verdict"]["jain_two_flow"]["pass"], false);
    assert_eq!(n["verdict"]["convergence_after_join"]["pass"], false);
    assert_eq!(n["verdict"]["utilisation"]["pass"], true);
    assert_eq!(n["verdict"]["loss"]["pass"], false);
    assert_eq!(n["verdict"]["all_pass"], false);

    let png = std::fs::read(out.join("congestion.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000);
    let svg = std::fs::read_to_string(out.join("congestion.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("mb-ecn: mean Jain 0.997"), "title missing");
    assert!(svg.contains("none: mean Jain 0.962"), "title missing");
}

#[test]
fn congestion_report_names_the_bad_line() {
    let out = out_dir("congestion-report-bad");
    std::fs::create_dir_all(&out).unwrap();
    let csv = out.join("bad.csv");
    std::fs::write(
        &csv,
        "bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max\n\
         0,0.000,data,0x1,0x41,1,1,1.0,0,0\n\
         1,0.100,data,0x1,0x41,1,1,lots,0,0\n",
    )
    .unwrap();
    let run = Command::new(BIN)
        .arg("--run")
        .arg(format!("mb-ecn={}", csv.display()))
        .arg("--out")
        .arg(out.join("report"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("bad.csv: line 3: mbit_s `lots` is not a number"),
        "{err}"
    );
    assert!(!out.join("report").join("summary.json").exists());
}

/// A lone flow offering 80 Mbit/s of 1000-byte SDUs, captured as 1033-byte frames (82.64
/// Mbit/s), with one bin at 89.7: inside 10 % of its demand in frames (74.4-90.9), outside
/// 10 % of 80 (72-88). With `--sdu-bytes 1000` the demand is taken in frames and the flow
/// has converged from its first bin; without it, only after the high bin.
#[test]
fn the_demand_is_taken_in_frames_when_the_sdu_size_is_given() {
    let out = out_dir("congestion-report-frames");
    std::fs::create_dir_all(&out).unwrap();
    let csv = out.join("lone.csv");
    let mut text = String::from(
        "bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max,frame_bytes,frame_mbit_s\n",
    );
    for bin in 0..20 {
        let pdus: u64 = if bin == 10 { 1085 } else { 1000 };
        let frame_bytes = pdus * 1033;
        text.push_str(&format!(
            "{bin},{:.3},data,0x0000000a,0x0000000000000041,{pdus},{},{:.6},0,0,{frame_bytes},{:.6}\n",
            f64::from(bin) / 10.0,
            pdus * 1015,
            (pdus * 1015 * 8) as f64 / 1e5,
            (frame_bytes * 8) as f64 / 1e5,
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let report = |sdu: Option<&str>, dir: &str| -> Value {
        let mut cmd = Command::new(BIN);
        cmd.args(["--run", &format!("r={}", csv.display())])
            .args(["--cap-mbit", "100", "--demand-mbit", "80"])
            .args(["--schedule", "0-2", "--bin-ms", "100"])
            .arg("--out")
            .arg(out.join(dir));
        if let Some(s) = sdu {
            cmd.args(["--sdu-bytes", s]);
        }
        let run = cmd.output().unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(out.join(dir).join("summary.json")).unwrap())
            .unwrap()
    };
    let j = report(Some("1000"), "with");
    let r = &j["runs"]["r"];
    assert_eq!(j["parameters"]["sdu_bytes"], 1000);
    // 1033 bytes per PDU (1085 in one bin does not change the per-PDU mean): 80 x 1.033.
    assert!(close(&r["demand_mbit"], 82.64), "{}", r["demand_mbit"]);
    assert!(close(&r["periods"][0]["fair_share_mbit_s"], 82.64));
    assert!(
        close(&r["periods"][0]["convergence_s"], 0.0),
        "{}",
        r["periods"][0]
    );
    let j = report(None, "without");
    let r = &j["runs"]["r"];
    assert!(close(&r["demand_mbit"], 80.0));
    assert!(
        close(&r["periods"][0]["convergence_s"], 1.1),
        "{}",
        r["periods"][0]
    );
    // Zero is refused with a clear error.
    let bad = Command::new(BIN)
        .args(["--run", &format!("r={}", csv.display()), "--sdu-bytes", "0"])
        .arg("--out")
        .arg(out.join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--sdu-bytes must be positive"));
}
