//! A Prometheus endpoint (`o7sd --metrics ADDR:PORT`, off by default): every counter that
//! o7sctl shows, as OpenMetrics text at `/metrics`, made from the same views as o7sctl's
//! listings, so that nothing shown there is missing here.
//!
//! Names: `o7s_<listing>_<field>` with the listing's identifying columns as labels
//! (`o7s_port_rx_frames_total{port="1",dev="veth0"}`, `o7s_flow_rx_sdus_total{flow="3",
//! name="oping-server",side="accept",ipcp="wifi1"}`, `o7s_worker_sleeps_total{worker="0"}`,
//! `o7s_ipcp_up{...}`, and the daemon-wide counters of `o7sctl stats` as
//! `o7s_<counter>_total`). One thread serves one request at a time, with 2 s time-outs and
//! an 8 KiB request limit.

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
];

/// How a listing becomes metrics: its prefix, its identifying columns (labels) and the
/// numeric columns that are not metrics.
struct Listing {
    ctl: Ctl,
    prefix: &'static str,
    labels: &'static [&'static str],
    skip: &'static [&'static str],
}

fn listings() -> Vec<Listing> {
    vec![
        Listing {
            ctl: Ctl::IpcpList,
            prefix: "ipcp",
            labels: &["name", "type", "layer", "dev"],
            skip: &[],
        },
        Listing {
            ctl: Ctl::PortList,
            prefix: "port",
            labels: &["port", "dev"],
            skip: &["worker"],
        },
        Listing {
            ctl: Ctl::FlowList,
            prefix: "flow",
            labels: &["flow", "name", "side", "ipcp"],
            skip: &["pid"],
        },
        Listing {
            ctl: Ctl::WorkerList,
            prefix: "worker",
            labels: &["worker", "core"],
            skip: &[],
        },
        Listing {
            ctl: Ctl::Stats,
            prefix: "",
            labels: &[],
            skip: &[],
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
    for row in rows {
        let labels: Labels = l
            .labels
            .iter()
            .filter_map(|k| row.get(*k).map(|v| (k.to_string(), label_value(v))))
            .collect();
        let name = |field: &str| {
            if l.prefix.is_empty() {
                format!("o7s_{field}")
            } else {
                format!("o7s_{}_{field}", l.prefix)
            }
        };
        for (field, v) in row {
            if l.labels.contains(&field.as_str()) || l.skip.contains(&field.as_str()) {
                continue;
            }
            let gauge = GAUGES.contains(&field.as_str());
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
                _ => {}
            }
        }
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
        let help = format!("{name}, as o7sctl shows it");
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
}
