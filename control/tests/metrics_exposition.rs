//! The Prometheus text of o7sd (`o7s_control::metrics::render`) for a representative
//! state (an eth IPCP, an enrolled unicast IPCP, one enrolling, a flow with MB-ECN state, a
//! flow without, a capped port, a worker, the daemon's counters), read back by an
//! independent parser (prometheus-parse): every family typed and explained, counters
//! `_total` and gauges not, `o7s_ipcp_up` 1 for the enrolled unicast IPCP (issue 24).
#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use o7s::proto::{Ctl, Reply};
use o7s_abi::msg::{CaStats, PortStats};
use prometheus_parse::{LineInfo, SampleType, Scrape, Value as PValue};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn table(v: Value) -> Reply {
    Reply::Table {
        rows: v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect(),
    }
}

/// A unicast IPCP's `ipcp list` row, with every column unicast/views.rs gives it.
fn unicast(name: &str, state: &str, n: u64) -> Value {
    json!({"name": name, "type": "unicast", "layer": "l", "dev": "-", "mac": "-", "mtu": 0,
           "hash": "SHA3_256", "state": state, "io_path": "-", "registered": [],
           "address": "0x0000002a", "dt_neighbours": 2, "dt_dropped_in_o7sd": n,
           "dt_forwarded_in_o7sd": n, "dt_forwarded": n, "dt_delivered": n, "dt_to_o7sd": n,
           "dt_sent": n, "dt_drop_short": n, "dt_drop_ttl": n, "dt_drop_no_route": n,
           "dt_drop_unknown_eid": n, "dt_drop_reserved_eid": n, "dt_drop_n1": n,
           "dt_via_o7sd": n, "dt_handed_off": n, "dt_handed_in": n, "dt_drop_handoff": n,
           "dt_forwarded_in_place": n, "lsa_reasserted": n, "n1_tx_dropped": n, "dt_forwarded_one_pass": n, "ca_updates_in": n, "ca_updates_out": n,
           "ca_updates_unknown": n, "ca_updates_ignored": n, "dht_contacts": 3,
           "dht_dropped": n, "lsa_dropped": n, "address_collisions": n, "readdressed": n,
           "neighbours_moved": n, "fa_dropped": n})
}

/// A flow's `flow list` row as views.rs and ca_views.rs make it.
fn flow(id: u64, name: &str, ipcp: &str, ca: Option<&CaStats>) -> Value {
    let mut row = json!({"flow": id, "side": "accept", "name": name, "pid": 99, "ipcp": ipcp,
        "local": "0x41", "remote": "0x42", "peer": "0x0000002b", "qos": "raw",
        "rx_sdus": 7, "rx_bytes": 7000, "tx_sdus": 8, "tx_bytes": 8000,
        "drop_ring_full": 0, "drop_decrypt": 0, "cipher": "-", "key_rotations": 0,
        "tx_keepalives": 1, "rx_keepalives": 2, "state": "up"});
    let m = row.as_object_mut().unwrap();
    match ca {
        Some(c) => {
            for (k, v) in [
                ("congestion", json!("mb-ecn")),
                ("rate", json!("81.3M")),
                ("window", json!(c.window_bytes)),
                ("slot_us", json!(c.slot_ns / 1000)),
                ("tx_ece", json!(c.tx_ece)),
                ("rx_ece", json!(c.rx_ece)),
                ("updates_in", json!(c.updates_in)),
                ("updates_out", json!(c.updates_out)),
                ("waits", json!(c.waits)),
                ("ca", serde_json::to_value(c).unwrap()),
            ] {
                m.insert(k.into(), v);
            }
        }
        None => {
            for k in [
                "rate",
                "window",
                "slot_us",
                "tx_ece",
                "rx_ece",
                "updates_in",
                "updates_out",
                "waits",
            ] {
                m.insert(k.into(), Value::Null);
            }
            m.insert("congestion".into(), json!("-"));
        }
    }
    row
}

fn view(c: Ctl) -> Reply {
    match c {
        Ctl::IpcpList => table(json!([
            {"name": "e", "type": "eth-dix", "layer": "l", "dev": "veth0",
             "mac": "02:00:00:00:00:01", "mtu": 1500, "hash": "SHA3_256", "state": "up",
             "io_path": "af_xdp", "registered": ["l"]},
            unicast("u", "enrolled", 5),
            unicast("w", "enrolling through l", 0),
            {"name": "c", "type": "eth-llc", "layer": "-", "dev": "-", "mac": "-", "mtu": 0,
             "hash": "-", "state": "created (not bootstrapped)", "io_path": "-",
             "registered": []}
        ])),
        Ctl::PortList => {
            // As ca_views::port_row makes it: every PortStats field, and `rate`.
            let mut p = serde_json::to_value(PortStats {
                port: 1,
                dev: "veth0".into(),
                mac: "02:00:00:00:00:01".into(),
                mtu: 1500,
                io_path: "af_xdp".into(),
                link: "up".into(),
                rx_frames: 10,
                tx_frames: 11,
                rate_bps: 100_000_000,
                queue_limit: 512,
                queued: 4,
                queued_max: 64,
                shaped: 900,
                umem_frames: 12_288,
                umem_frames_accounted: 12_288,
                rx_xdp_per_queue: vec![4, 6],
                ..PortStats::default()
            })
            .unwrap();
            p.as_object_mut()
                .unwrap()
                .insert("rate".into(), json!("100M"));
            table(json!([p]))
        }
        Ctl::FlowList => {
            let ca = CaStats {
                rate_bps: 81_312_345,
                window_bytes: 170_500,
                slot_ns: 16_777_216,
                cav: true,
                tx_ece: 2,
                rx_ece: 1,
                updates_in: 40,
                updates_refused: 2,
                updates_out: 41,
                rx_marked: 7,
                waits: 3,
            };
            table(json!([
                flow(3, "oping", "u", Some(&ca)),
                flow(4, "n1", "e", None)
            ]))
        }
        Ctl::WorkerList => table(json!([
            {"worker": 0, "core": "1", "polling": "adaptive, 50 us", "ports": 1, "flows": 2,
             "rx_frames": 100, "tx_frames": 90, "sleeps": 12, "yields_for_apps": 0,
             "dt_forwarding": "in place where the ports share a UMEM", "pin_error": ""}
        ])),
        Ctl::Stats => {
            let mut m = serde_json::Map::new();
            for k in [
                "flows_allocated",
                "mgmt_malformed",
                "flow_reply_unknown_eid",
                "flow_req_bad_eid",
                "flow_req_unknown_name",
                "mgmt_not_for_us",
                "flow_req_refused",
                "flow_req_busy",
                "flow_req_duplicate",
                "flow_limit",
                "name_reply_unsolicited",
                "name_cache_full",
                "name_query_limit",
                "requests_denied",
                "autostart_limit",
                "ctl_busy",
                "request_slow",
                "dp_queue_full",
                "log_lines_suppressed",
                "dp_drop_unknown_eid",
                "dp_drop_malformed",
                "dp_rx_mgmt",
                "dp_drop_mgmt_rate_source",
                "dp_drop_mgmt_rate_port",
                "dp_drop_mgmt_backlog",
                "dp_drop_mgmt_bad_source",
                "dp_drop_wrong_peer",
                "dp_drop_socket_buffer",
                "dp_yields_for_apps",
            ] {
                m.insert(k.into(), json!(1));
            }
            m.insert("dp_workers".into(), json!(1));
            m.insert("dp_worker_core".into(), json!("1"));
            m.insert("dp_polling".into(), json!("adaptive, 50 us"));
            Reply::Table { rows: vec![m] }
        }
        _ => Reply::Ok,
    }
}

/// A sample line's family: its own name, or a counter's without `_total`.
fn family<'a>(sample: &'a str, types: &BTreeMap<String, SampleType>) -> Option<&'a str> {
    if types.contains_key(sample) {
        return Some(sample);
    }
    sample
        .strip_suffix("_total")
        .filter(|f| types.get(*f) == Some(&SampleType::Counter))
}

#[test]
fn every_family_is_typed_explained_and_named_by_its_kind() {
    let text = o7s_control::metrics::render(&view);
    assert!(text.ends_with("# EOF\n"), "{text}");

    let mut types: BTreeMap<String, SampleType> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<&str> = vec![];
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Type {
                metric_name,
                sample_type,
                ..
            } => {
                assert!(
                    types.insert(metric_name.clone(), sample_type).is_none(),
                    "{metric_name} typed twice"
                );
            }
            LineInfo::Doc { metric_name, doc } => {
                helps.insert(metric_name.to_string(), doc.to_string());
            }
            LineInfo::Sample { metric_name, .. } => samples.push(metric_name),
            LineInfo::Empty | LineInfo::Ignored => {}
        }
    }
    assert!(types.len() > 100, "{} families in\n{text}", types.len());

    for (name, t) in &types {
        let help = helps
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no HELP"));
        assert!(!help.contains("as o7sctl shows it"), "{name}: {help}");
        assert!(!help.contains("not described yet"), "{name}: {help}");
        assert!(help.len() > 20, "{name}: {help}");
        match t {
            SampleType::Counter | SampleType::Gauge => {}
            other => panic!("{name} is {other:?}"),
        }
        assert!(!name.ends_with("_total"), "family {name} ({t:?})");
    }
    for name in helps.keys() {
        assert!(types.contains_key(name), "{name} has a HELP and no TYPE");
    }
    for s in &samples {
        let f = family(s, &types).unwrap_or_else(|| panic!("sample {s} has no TYPE"));
        match types[f] {
            SampleType::Counter => assert!(s.ends_with("_total"), "counter sample {s}"),
            _ => assert!(!s.ends_with("_total"), "gauge sample {s}"),
        }
    }
    // Every family has samples.
    for name in types.keys() {
        assert!(
            samples
                .iter()
                .any(|s| family(s, &types) == Some(name.as_str())),
            "{name} has no sample"
        );
    }

    // The metrics of issue 24: levels are gauges.
    for g in [
        "o7s_ipcp_up",
        "o7s_ipcp_dt_neighbours",
        "o7s_ipcp_dht_contacts",
        "o7s_port_queued",
        "o7s_port_rate_bps",
        "o7s_flow_rate_bps",
        "o7s_flow_window_bytes",
        "o7s_worker_flows",
        "o7s_dp_workers",
    ] {
        assert_eq!(types.get(g), Some(&SampleType::Gauge), "{g}");
    }
    for c in [
        "o7s_port_rx_frames",
        "o7s_flow_rx_sdus",
        "o7s_flows_allocated",
    ] {
        assert_eq!(types.get(c), Some(&SampleType::Counter), "{c}");
    }
}

#[test]
fn an_enrolled_unicast_ipcp_is_up() {
    let text = o7s_control::metrics::render(&view);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let up = |ipcp: &str| {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == "o7s_ipcp_up" && s.labels.get("name") == Some(ipcp))
            .unwrap_or_else(|| panic!("no o7s_ipcp_up for {ipcp} in\n{text}"));
        match s.value {
            PValue::Gauge(v) => v,
            ref other => panic!("o7s_ipcp_up is {other:?}"),
        }
    };
    assert_eq!(up("u"), 1.0, "enrolled");
    assert_eq!(up("e"), 1.0, "eth IPCP up");
    assert_eq!(up("w"), 0.0, "enrolling");
    assert_eq!(up("c"), 0.0, "created");
    let u = scrape
        .samples
        .iter()
        .find(|s| s.metric == "o7s_ipcp_up" && s.labels.get("name") == Some("u"))
        .unwrap();
    assert_eq!(u.labels.get("type"), Some("unicast"));
    assert_eq!(u.labels.get("layer"), Some("l"));
    // The docs prometheus-parse read are the HELP lines.
    assert!(scrape.docs["o7s_ipcp_up"].starts_with("1 while the IPCP is up"));
    // The flow's MB-ECN state and the port's cap, as gauges with their values.
    let gauge = |metric: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric)
            .map(|s| s.value.clone())
    };
    assert_eq!(
        gauge("o7s_flow_rate_bps"),
        Some(PValue::Gauge(81_312_345.0))
    );
    assert_eq!(gauge("o7s_port_queued"), Some(PValue::Gauge(4.0)));
    assert_eq!(gauge("o7s_ipcp_dht_contacts"), Some(PValue::Gauge(3.0)));
}
