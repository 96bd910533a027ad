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
//! (`o7s_flow_rate_bps`), the columns that show them do not. One thread serves one request
//! at a time, with 2 s time-outs and an 8 KiB request limit.

use crate::daemon::Daemon;
use o7s::proto::{Ctl, Reply};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// Fields that are levels, not counts.
const GAUGES: &[&str] = &[
    "mtu",
    "flows",
    "ports",
    "umem_frames",
    "umem_frames_accounted",
    "dp_workers",
    "spin_us",
    "expires_in_s",
    "rate_bps",
    "window_bytes",
    "slot_ns",
    "tx_ece",
    "rx_ece",
    "queue_limit",
    "queued",
    "queued_max",
];

/// What a metric counts, where its name alone does not say it (one sentence; the encoder
/// ends it with a full stop).
const HELP: &[(&str, &str)] = &[
    (
        "o7s_flow_rate_bps",
        "The flow's MB-ECN window as a rate (bytes per slot), in bits per second",
    ),
    (
        "o7s_flow_window_bytes",
        "The flow's MB-ECN window: the bytes it may send per slot",
    ),
    (
        "o7s_flow_slot_ns",
        "The length of the flow's MB-ECN slot, in nanoseconds",
    ),
    (
        "o7s_flow_tx_ece",
        "The congestion level the flow's peer last echoed (0: none)",
    ),
    (
        "o7s_flow_rx_ece",
        "The congestion level this end echoes to the flow's peer for what it receives",
    ),
    (
        "o7s_flow_updates_in",
        "MB-ECN FLOW_UPDATEs taken from the flow's peer",
    ),
    (
        "o7s_flow_updates_out",
        "MB-ECN FLOW_UPDATEs sent to the flow's peer",
    ),
    (
        "o7s_flow_rx_marked",
        "PDUs of the flow received with a non-zero ECN byte (congestion on their path)",
    ),
    (
        "o7s_flow_waits",
        "Times the flow's writer was held until the next MB-ECN slot",
    ),
    (
        "o7s_port_rate_bps",
        "The egress cap on the port's N-1 flows, in bits per second (0: none)",
    ),
    (
        "o7s_port_queue_limit",
        "The most PDUs that may wait per N-1 flow under the port's cap",
    ),
    ("o7s_port_queued", "PDUs waiting under the port's cap now"),
    (
        "o7s_port_queued_max",
        "The most PDUs that ever waited on one N-1 flow of the port",
    ),
    (
        "o7s_port_shaped",
        "PDUs sent through the port's queue (they waited for the cap)",
    ),
    (
        "o7s_port_drop_queue_full",
        "PDUs dropped because their N-1 flow's queue on the port was full",
    ),
    (
        "o7s_port_ecn_marked",
        "PDUs whose ECN byte the port's queue raised (16 or more waiting)",
    ),
    (
        "o7s_ipcp_ca_updates_in",
        "MB-ECN FLOW_UPDATEs the data plane took for the IPCP's flows",
    ),
    (
        "o7s_ipcp_ca_updates_out",
        "MB-ECN FLOW_UPDATEs the data plane sent for the IPCP's flows",
    ),
    (
        "o7s_ipcp_ca_updates_unknown",
        "FLOW_UPDATEs dropped because their endpoint id is no flow of the IPCP",
    ),
    (
        "o7s_ipcp_ca_updates_ignored",
        "FLOW_UPDATEs dropped because their flow runs no congestion avoidance",
    ),
];

/// The HELP text of metric `name`.
fn help(name: &str) -> String {
    HELP.iter().find(|(n, _)| *n == name).map_or_else(
        || format!("{name}, as o7sctl shows it"),
        |(_, h)| (*h).to_string(),
    )
}

/// How a listing becomes metrics: its prefix, its identifying columns (labels), the
/// numeric columns that are not metrics, and those that show a nested object's values for
/// reading (the metrics take the nested ones).
struct Listing {
    ctl: Ctl,
    prefix: &'static str,
    labels: &'static [&'static str],
    skip: &'static [&'static str],
    shown: &'static [&'static str],
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
            shown: crate::daemon::ca_views::CA_SHOWN,
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

fn label_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Samples by metric name: (is a gauge, [(labels, value)]).
type Samples = BTreeMap<String, (bool, Vec<(Labels, u64)>)>;

fn add(samples: &mut Samples, name: String, gauge: bool, labels: Labels, v: u64) {
    samples
        .entry(name)
        .or_insert_with(|| (gauge, Vec::new()))
        .1
        .push((labels, v));
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
            if !(l.labels.contains(&f) || l.skip.contains(&f) || l.shown.contains(&f)) {
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
    let gauge = GAUGES.contains(&field);
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_u64() {
                add(samples, name(field), gauge, labels.clone(), x);
            }
        }
        // Per-queue counters.
        Value::Array(a) if a.iter().all(Value::is_u64) && !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                let mut q = labels.clone();
                q.push(("queue".into(), i.to_string()));
                add(samples, name(field), gauge, q, x.as_u64().unwrap_or(0));
            }
        }
        // State columns: 1 when up.
        Value::String(s) if field == "state" => {
            add(
                samples,
                name("up"),
                true,
                labels.clone(),
                u64::from(s == "up"),
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
    for (name, (gauge, values)) in samples {
        let help = help(&name);
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

/// Starts the endpoint on `addr`.
pub fn serve(d: Arc<Daemon>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("o7sd-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(s, &d) {
                            tracing::debug!("metrics request: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("metrics endpoint: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    tracing::info!("Prometheus metrics on http://{bound}/metrics.");
    Ok(bound)
}

fn answer(mut s: TcpStream, d: &Daemon) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    let line = String::from_utf8_lossy(&req);
    let first = line.lines().next().unwrap_or("");
    let (status, ctype, body) = if first.starts_with("GET /metrics ") || first == "GET /metrics" {
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(&|c| d.view(c)),
        )
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    };
    write!(
        s,
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
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
            let line = format!("# HELP {name} {}.\n", help(name));
            assert!(text.contains(&line), "{line} in\n{text}");
            assert!(!help(name).contains("as o7sctl shows it"), "{name}");
            assert!(
                !help(name).ends_with('.'),
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
}
