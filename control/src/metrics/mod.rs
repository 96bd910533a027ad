//! A Prometheus endpoint (`o7sd --metrics ADDR:PORT`, off by default): every counter that
//! o7sctl shows, as OpenMetrics text at `/metrics`, made from the same views as o7sctl's
//! listings, so that nothing shown there is missing here.
//!
//! Names: `o7s_<listing>_<field>` with the listing's identifying columns as labels
//! (`o7s_port_rx_frames_total{port="1",dev="veth0"}`, `o7s_flow_rx_sdus_total{flow="3",
//! name="oping-server",side="accept",ipcp="wifi1"}`, `o7s_worker_sleeps_total{worker="0"}`,
//! `o7s_ipcp_up{...}`, and the daemon-wide counters of `o7sctl stats` as
//! `o7s_<counter>_total`). A row's nested object holds exact values that the listing shows
//! in another form (a flow's `ca`): its numbers become metrics of the listing
//! (`o7s_flow_rate_bps`), the columns that show them do not. The HTTP side
//! (src/metrics_http.rs) is one thread over non-blocking sockets: 2 s per connection in all,
//! 8 KiB per request, 64 connections at once (the oldest makes room).
//!
//! Types: [`METRICS`] says of every metric whether it is a counter (it only goes up; the
//! encoder adds `_total` to its samples) or a gauge (a level that also goes down: contacts,
//! neighbours, queued PDUs, a rate, a window; never `_total`), and what it measures in which
//! unit (its HELP).

use crate::daemon::Daemon;
use o7s::proto::{Ctl, Reply};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

type Labels = Vec<(String, String)>;

/// What a metric is to Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Only goes up (until o7sd or the data plane restarts): `_total`, for `rate()`.
    Counter,
    /// A level, now: may go down.
    Gauge,
}

mod catalogue;

/// Every metric of the listings: its name (a counter's without the `_total` that the
/// encoder adds), its kind, and its HELP: what it measures and in which unit (one
/// sentence; the encoder ends it with a full stop). Counts of PDUs, frames, SDUs, messages
/// or times are plain numbers.
const METRICS: [&[(&str, Kind, &str)]; 5] = [
    catalogue::IPCPS,
    catalogue::PORTS,
    catalogue::FLOWS,
    catalogue::WORKERS,
    catalogue::STATS,
];

/// Every metric of [`METRICS`], one after the other.
fn metrics() -> impl Iterator<Item = &'static (&'static str, Kind, &'static str)> {
    METRICS.iter().flat_map(|t| t.iter())
}

/// The HELP of a metric that [`METRICS`] does not know (a column added to a listing since):
/// it is still exported, as a counter; the tests fail on it.
const UNDESCRIBED: &str = "not described yet";

/// The kind and the HELP text of metric `name`.
fn spec(name: &str) -> (Kind, String) {
    metrics().find(|(n, ..)| *n == name).map_or_else(
        || (Kind::Counter, format!("{name}: {UNDESCRIBED}")),
        |(_, k, h)| (*k, (*h).to_string()),
    )
}

/// Whether a listing's `state` says up: a shim IPCP's "up" (its device up), a unicast
/// IPCP's "bootstrapped" or "enrolled", a flow's "up". Every other state is not: "down",
/// "down: <why>" (the device), "created", "created (not bootstrapped)", "enrolling through
/// <dst>", "enrolment failed: <why>", a flow's "peer timed out".
fn state_is_up(state: &str) -> bool {
    matches!(state, "up" | "bootstrapped" | "enrolled")
}

/// How a listing becomes metrics: its prefix, its identifying columns (labels), the
/// numeric columns that are not metrics, and those that show a nested object's values for
/// reading (the metrics take the nested ones).
struct Listing {
    ctl: Ctl,
    prefix: &'static str,
    labels: &'static [&'static str],
    skip: &'static [&'static str],
    shown: &'static [&'static [&'static str]],
}

fn listings() -> Vec<Listing> {
    vec![
        Listing {
            ctl: Ctl::IpcpList,
            prefix: "ipcp",
            labels: &["name", "type", "layer", "dev"],
            skip: &[],
            shown: &[],
        },
        Listing {
            ctl: Ctl::PortList,
            prefix: "port",
            labels: &["port", "dev"],
            skip: &["worker"],
            shown: &[],
        },
        Listing {
            ctl: Ctl::FlowList,
            prefix: "flow",
            labels: &["flow", "name", "side", "ipcp"],
            skip: &["pid"],
            shown: &[
                crate::daemon::ca_views::CA_SHOWN,
                crate::daemon::ca_views::FRCP_SHOWN,
            ],
        },
        Listing {
            ctl: Ctl::WorkerList,
            prefix: "worker",
            labels: &["worker", "core"],
            skip: &[],
            shown: &[],
        },
        Listing {
            ctl: Ctl::Stats,
            prefix: "",
            labels: &[],
            skip: &[],
            shown: &[],
        },
    ]
}

/// A label's value as the exposition format quotes it: a backslash, a double quote and a
/// line feed escaped (OpenMetrics §"Escaping"). prometheus-client writes label values as
/// they are, and a layer's name comes from the enroller: `x",name="forged` would forge a
/// label, a trailing backslash would swallow the closing quote, and Prometheus would refuse
/// the whole scrape.
fn label_value(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if !raw.contains(['\\', '"', '\n']) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Samples by metric name: [(labels, value)].
type Samples = BTreeMap<String, Vec<(Labels, u64)>>;

fn add(samples: &mut Samples, name: String, labels: Labels, v: u64) {
    samples.entry(name).or_default().push((labels, v));
}

/// The rows of one listing as samples.
fn collect(l: &Listing, rows: &[serde_json::Map<String, Value>], samples: &mut Samples) {
    let name = |field: &str| {
        if l.prefix.is_empty() {
            format!("o7s_{field}")
        } else {
            format!("o7s_{}_{field}", l.prefix)
        }
    };
    for row in rows {
        let labels: Labels = l
            .labels
            .iter()
            .filter_map(|k| row.get(*k).map(|v| (k.to_string(), label_value(v))))
            .collect();
        for (field, v) in row {
            let f = field.as_str();
            if !(l.labels.contains(&f)
                || l.skip.contains(&f)
                || l.shown.iter().any(|c| c.contains(&f)))
            {
                column(samples, &name, &labels, f, v);
            }
        }
    }
}

/// The samples of one column of a row.
fn column(
    samples: &mut Samples,
    name: &dyn Fn(&str) -> String,
    labels: &Labels,
    field: &str,
    v: &Value,
) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_u64() {
                add(samples, name(field), labels.clone(), x);
            }
        }
        // Per-queue counters.
        Value::Array(a) if a.iter().all(Value::is_u64) && !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                let mut q = labels.clone();
                q.push(("queue".into(), i.to_string()));
                add(samples, name(field), q, x.as_u64().unwrap_or(0));
            }
        }
        // State columns: 1 when up.
        Value::String(s) if field == "state" => {
            add(
                samples,
                name("up"),
                labels.clone(),
                u64::from(state_is_up(s)),
            );
        }
        // Exact values of a group (a flow's `ca`): metrics of the listing itself.
        Value::Object(m) => {
            for (k, x) in m {
                column(samples, name, labels, k, x);
            }
        }
        _ => {}
    }
}

/// The OpenMetrics text of every listing `view` gives.
pub fn render(view: &dyn Fn(Ctl) -> Reply) -> String {
    let mut samples = Samples::new();
    for l in listings() {
        if let Reply::Table { rows } = view(l.ctl.clone()) {
            collect(&l, &rows, &mut samples);
        }
    }
    let mut registry = Registry::default();
    for (name, values) in samples {
        let (kind, help) = spec(&name);
        let gauge = kind == Kind::Gauge;
        // The daemon-wide counters have no labels: plain metrics, not families.
        if let [(labels, v)] = values.as_slice() {
            if labels.is_empty() {
                if gauge {
                    let g = Gauge::<i64>::default();
                    g.set(i64::try_from(*v).unwrap_or(i64::MAX));
                    registry.register(name, help, g);
                } else {
                    let c = Counter::<u64>::default();
                    c.inc_by(*v);
                    registry.register(name, help, c);
                }
                continue;
            }
        }
        if gauge {
            let f = Family::<Labels, Gauge>::default();
            for (labels, v) in values {
                f.get_or_create(&labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
            registry.register(name, help, f);
        } else {
            let f = Family::<Labels, Counter>::default();
            for (labels, v) in values {
                f.get_or_create(&labels).inc_by(v);
            }
            // The registry appends `_total` to counters.
            registry.register(name, help, f);
        }
    }
    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// A `--metrics` value that is no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is neither ADDR:PORT (127.0.0.1:9100, [::1]:9100) nor a port (9100)")]
pub struct BadAddr(pub String);

/// `--metrics`: ADDR:PORT, or a PORT alone on the loopback address.
pub fn parse_addr(s: &str) -> Result<SocketAddr, BadAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| BadAddr(s.to_string()))
}

/// Starts the endpoint on `addr` (its HTTP side: src/metrics_http.rs).
pub fn serve(d: Arc<Daemon>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("o7sd-metrics".into())
        .spawn(move || {
            let body = || {
                let shared = crate::daemon::Shared::default();
                render(&|c| d.view_sharing(c, &shared))
            };
            let hosts = crate::metrics_http::Hosts::for_bound(&bound);
            if let Err(e) = crate::metrics_http::run(&listener, hosts, &body) {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        })?;
    tracing::info!("Prometheus metrics on http://{bound}/metrics.");
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "The metrics on {bound} are readable by anyone who reaches that address: the names, flows, ports and layers of this host."
        );
    }
    Ok(bound)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn a_port_alone_listens_on_loopback_only() {
        assert_eq!(parse_addr("9100").unwrap().to_string(), "127.0.0.1:9100");
        assert_eq!(
            parse_addr("0.0.0.0:9100").unwrap().to_string(),
            "0.0.0.0:9100"
        );
        assert_eq!(parse_addr("[::1]:9100").unwrap().to_string(), "[::1]:9100");
        let e = parse_addr("localhost").unwrap_err().to_string();
        assert!(e.contains("ADDR:PORT"), "{e}");
        assert!(parse_addr("70000").is_err());
    }

    #[test]
    fn listings_become_labelled_counters_and_gauges() {
        let view = |c: Ctl| match c {
            Ctl::PortList => table(
                json!([{"port": 1, "dev": "v0", "rx_frames": 10, "mtu": 1500,
                "io_path": "af_xdp", "rx_xdp_per_queue": [4, 6], "worker": 0}]),
            ),
            Ctl::FlowList => table(
                json!([{"flow": 3, "name": "n", "side": "accept", "ipcp": "e",
                "rx_sdus": 7, "pid": 99, "state": "up", "cipher": "-"}]),
            ),
            Ctl::Stats => table(json!([{"flows_allocated": 2, "dp_polling": "adaptive"}])),
            _ => Reply::Ok,
        };
        let text = render(&view);
        for want in [
            "# TYPE o7s_port_rx_frames counter",
            "o7s_port_rx_frames_total{port=\"1\",dev=\"v0\"} 10",
            "o7s_port_mtu{port=\"1\",dev=\"v0\"} 1500",
            "o7s_port_rx_xdp_per_queue_total{port=\"1\",dev=\"v0\",queue=\"1\"} 6",
            "o7s_flow_rx_sdus_total{flow=\"3\",name=\"n\",side=\"accept\",ipcp=\"e\"} 7",
            "o7s_flow_up{flow=\"3\",name=\"n\",side=\"accept\",ipcp=\"e\"} 1",
            "o7s_flows_allocated_total 2",
            "# EOF",
        ] {
            assert!(text.contains(want), "no {want} in\n{text}");
        }
        assert!(!text.contains("pid"), "{text}");
        assert!(!text.contains("dp_polling"), "{text}");
    }

    /// Names with a quote, a backslash and a line feed (a layer's name comes from the
    /// enroller) are escaped in labels: the scrape keeps its four labels and its lines.
    #[test]
    fn label_values_are_escaped() {
        let view = |c: Ctl| match c {
            Ctl::IpcpList => table(json!([
                {"name": "u\nfake_metric 1", "type": "unicast", "layer": "x\",name=\"forged\\",
                 "dev": "-", "state": "up"}
            ])),
            _ => Reply::Ok,
        };
        let text = render(&view);
        let line = text
            .lines()
            .find(|l| l.starts_with("o7s_ipcp_up{"))
            .unwrap_or_else(|| panic!("no o7s_ipcp_up in\n{text}"));
        assert_eq!(
            line,
            "o7s_ipcp_up{name=\"u\\nfake_metric 1\",type=\"unicast\",layer=\"x\\\",name=\\\"forged\\\\\",dev=\"-\"} 1"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("fake_metric")),
            "{text}"
        );
    }

    /// A flow's CRC failures are exact in its row: a metric of their own.
    #[test]
    fn a_flows_crc_failures_are_a_counter() {
        let view = |c: Ctl| match c {
            Ctl::FlowList => table(json!([{"flow": 3, "name": "n", "side": "accept",
                "ipcp": "e", "state": "up", "crc": "crc32", "crc_errors": 3}])),
            _ => Reply::Ok,
        };
        let text = render(&view);
        assert!(
            text.contains(
                "\no7s_flow_crc_errors_total{flow=\"3\",name=\"n\",side=\"accept\",ipcp=\"e\"} 3\n"
            ),
            "{text}"
        );
    }

    /// The views as o7sd makes them: a flow with MB-ECN (its `ca` nested) and one without, a
    /// capped port, a unicast IPCP.
    fn mb_ecn_view(c: Ctl) -> Reply {
        match c {
            Ctl::FlowList => table(json!([
                {"flow": 3, "name": "n", "side": "accept", "ipcp": "u", "pid": 9, "state": "up",
                 "congestion": "mb-ecn", "rate": "81.3M", "window": 170_500, "slot_us": 16_777,
                 "tx_ece": 2, "rx_ece": 1, "updates_in": 40, "updates_out": 41, "waits": 3,
                 "ca": {"rate_bps": 81_312_345, "window_bytes": 170_500, "slot_ns": 16_777_216,
                        "cav": true, "tx_ece": 2, "rx_ece": 1, "updates_in": 40,
                        "updates_out": 41, "rx_marked": 7, "waits": 3}},
                {"flow": 4, "name": "m", "side": "alloc", "ipcp": "e", "pid": 9, "state": "up",
                 "congestion": "-", "rate": null, "window": null, "slot_us": null,
                 "tx_ece": null, "rx_ece": null, "updates_in": null, "updates_out": null,
                 "waits": null}
            ])),
            Ctl::PortList => table(json!([
                {"port": 1, "dev": "v0", "worker": 0, "rate": "100M", "rate_bps": 100_000_000,
                 "queue_limit": 512, "queued": 4, "queued_max": 64, "shaped": 900,
                 "drop_queue_full": 5, "ecn_marked": 80}
            ])),
            Ctl::IpcpList => table(json!([
                {"name": "u", "type": "unicast", "layer": "l", "dev": "-", "state": "up",
                 "ca_updates_in": 10, "ca_updates_out": 11, "ca_updates_unknown": 1,
                 "ca_updates_ignored": 2}
            ])),
            _ => Reply::Ok,
        }
    }

    /// The `# TYPE` of every metric in `text`.
    fn types(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn mb_ecn_and_cap_metrics_are_typed_and_explained() {
        let text = render(&mb_ecn_view);
        let types = types(&text);
        let f = "{flow=\"3\",name=\"n\",side=\"accept\",ipcp=\"u\"}";
        let p = "{port=\"1\",dev=\"v0\"}";
        let gauges = [
            ("o7s_flow_rate_bps", format!("{f} 81312345")),
            ("o7s_flow_window_bytes", format!("{f} 170500")),
            ("o7s_flow_slot_ns", format!("{f} 16777216")),
            ("o7s_flow_tx_ece", format!("{f} 2")),
            ("o7s_flow_rx_ece", format!("{f} 1")),
            ("o7s_port_rate_bps", format!("{p} 100000000")),
            ("o7s_port_queue_limit", format!("{p} 512")),
            ("o7s_port_queued", format!("{p} 4")),
            ("o7s_port_queued_max", format!("{p} 64")),
        ];
        let counters = [
            ("o7s_flow_updates_in", format!("{f} 40")),
            ("o7s_flow_updates_out", format!("{f} 41")),
            ("o7s_flow_rx_marked", format!("{f} 7")),
            ("o7s_flow_waits", format!("{f} 3")),
            ("o7s_port_shaped", format!("{p} 900")),
            ("o7s_port_drop_queue_full", format!("{p} 5")),
            ("o7s_port_ecn_marked", format!("{p} 80")),
            ("o7s_ipcp_ca_updates_in", "{".to_string()),
            ("o7s_ipcp_ca_updates_out", "{".to_string()),
            ("o7s_ipcp_ca_updates_unknown", "{".to_string()),
            ("o7s_ipcp_ca_updates_ignored", "{".to_string()),
        ];
        for (name, sample) in &gauges {
            assert_eq!(
                types.get(*name).map(String::as_str),
                Some("gauge"),
                "{name}"
            );
            assert!(
                text.contains(&format!("\n{name}{sample}\n")),
                "{name} in\n{text}"
            );
        }
        for (name, sample) in &counters {
            assert_eq!(
                types.get(*name).map(String::as_str),
                Some("counter"),
                "{name}"
            );
            assert!(
                text.contains(&format!("\n{name}_total{sample}")),
                "{name} in\n{text}"
            );
        }
        for (name, _) in gauges.iter().chain(&counters) {
            let help = spec(name).1;
            let line = format!("# HELP {name} {help}.\n");
            assert!(text.contains(&line), "{line} in\n{text}");
            assert!(!help.contains("as o7sctl shows it"), "{name}");
            assert!(!help.contains(UNDESCRIBED), "{name}");
            assert!(
                !help.ends_with('.'),
                "{name}: the encoder adds the full stop"
            );
        }
        // The columns that show `ca` for reading are no metrics of their own, and a flow
        // without MB-ECN has none of its metrics.
        for shown in [
            "o7s_flow_window ",
            "o7s_flow_window{",
            "slot_us",
            "o7s_flow_rate{",
        ] {
            assert!(!text.contains(shown), "{shown} in\n{text}");
        }
        assert!(
            !text.contains("_bps_total") && !text.contains("_ece_total"),
            "{text}"
        );
        assert!(!text.contains("o7s_flow_rate_bps{flow=\"4\""), "{text}");
        assert!(!text.contains("o7s_flow_cav"), "{text}");
    }

    #[test]
    fn every_state_an_ipcp_or_a_flow_shows_is_up_or_not() {
        // The states of `o7sctl ipcp list` (shim IPCPs: views.rs; unicast IPCPs:
        // unicast.rs, unicast/views.rs) and of `o7sctl flow list`.
        for (state, up) in [
            ("up", true),
            ("bootstrapped", true),
            ("enrolled", true),
            ("down", false),
            ("down: device veth0 is gone", false),
            ("created", false),
            ("created (not bootstrapped)", false),
            ("enrolling through l", false),
            ("enrolment failed: no N-1 flow to l", false),
            ("peer timed out", false),
            ("", false),
        ] {
            assert_eq!(state_is_up(state), up, "{state:?}");
        }
    }

    /// Metrics that go down (issue 24): gauges, never counters, never `_total`.
    const LEVELS: &[&str] = &[
        "o7s_ipcp_up",
        "o7s_ipcp_mtu",
        "o7s_ipcp_dt_neighbours",
        "o7s_ipcp_dht_contacts",
        "o7s_port_mtu",
        "o7s_port_rate_bps",
        "o7s_port_queue_limit",
        "o7s_port_queued",
        "o7s_port_queued_max",
        "o7s_port_umem_frames",
        "o7s_port_umem_frames_accounted",
        "o7s_flow_up",
        "o7s_flow_rate_bps",
        "o7s_flow_window_bytes",
        "o7s_flow_slot_ns",
        "o7s_flow_tx_ece",
        "o7s_flow_rx_ece",
        "o7s_worker_ports",
        "o7s_worker_flows",
        "o7s_dp_workers",
    ];

    #[test]
    fn levels_are_gauges_not_counters() {
        let view = |c: Ctl| match c {
            Ctl::IpcpList => table(json!([
                {"name": "e", "type": "eth-dix", "layer": "l", "dev": "v0", "mtu": 1500,
                 "state": "up"},
                {"name": "u", "type": "unicast", "layer": "l", "dev": "-", "mtu": 0,
                 "state": "enrolled", "dt_neighbours": 2, "dht_contacts": 3}
            ])),
            Ctl::PortList => table(json!([
                {"port": 1, "dev": "v0", "mtu": 1500, "umem_frames": 12_288,
                 "umem_frames_accounted": 12_288, "rate_bps": 1, "queue_limit": 2,
                 "queued": 3, "queued_max": 4}
            ])),
            Ctl::WorkerList => table(json!([{"worker": 0, "core": "1", "ports": 1, "flows": 2}])),
            Ctl::Stats => table(json!([{"dp_workers": 1}])),
            other => mb_ecn_view(other),
        };
        let text = render(&view);
        let types = types(&text);
        for name in LEVELS {
            assert_eq!(spec(name).0, Kind::Gauge, "{name}");
            assert!(!name.ends_with("_total"), "{name}");
            assert_eq!(
                types.get(*name).map(String::as_str),
                Some("gauge"),
                "{name} in\n{text}"
            );
            assert!(
                !text.contains(&format!("{name}_total")),
                "{name} in\n{text}"
            );
        }
        assert!(
            text.contains(
                "\no7s_ipcp_dt_neighbours{name=\"u\",type=\"unicast\",layer=\"l\",dev=\"-\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\no7s_ipcp_up{name=\"u\",type=\"unicast\",layer=\"l\",dev=\"-\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn every_metric_is_described_once_and_typed() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, kind, help) in metrics() {
            assert!(seen.insert(*name), "{name} twice");
            assert!(name.starts_with("o7s_"), "{name}");
            // The encoder adds `_total` to a counter's samples; a gauge has none.
            assert!(!name.ends_with("_total"), "{name} ({kind:?})");
            assert!(help.len() > 20, "{name}: {help}");
            assert!(
                !help.ends_with('.'),
                "{name}: the encoder adds the full stop"
            );
            assert!(!help.contains("as o7sctl shows it"), "{name}");
        }
        assert_eq!(spec("o7s_port_new_column").0, Kind::Counter);
        assert!(spec("o7s_port_new_column").1.contains(UNDESCRIBED));
    }

    /// Every field of the data plane's port and MB-ECN counters (o7s-abi) is described:
    /// a field added there fails here until [`METRICS`] has it.
    #[test]
    fn every_port_and_ca_field_is_described() {
        let port = serde_json::to_value(o7s_abi::msg::PortStats {
            rx_xdp_per_queue: vec![1, 2],
            ..Default::default()
        })
        .unwrap();
        let ca = serde_json::to_value(o7s_abi::msg::CaStats::default()).unwrap();
        let view = |c: Ctl| match c {
            Ctl::PortList => table(json!([port])),
            Ctl::FlowList => table(json!([{"flow": 1, "name": "n", "side": "alloc",
                                           "ipcp": "u", "state": "up", "ca": ca}])),
            _ => Reply::Ok,
        };
        let text = render(&view);
        assert!(!text.contains(UNDESCRIBED), "{text}");
        assert!(text.contains("o7s_port_xdp_fill_wakeups_total{"), "{text}");
        assert!(text.contains("o7s_port_xdp_tx_batches_total{"), "{text}");
        assert!(text.contains("o7s_port_xdp_rx_ring_full_total{"), "{text}");
        assert!(text.contains("o7s_flow_rx_marked_total{"), "{text}");
    }
}
