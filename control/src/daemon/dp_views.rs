//! The listings that need no state, only the data plane's counters and o7sd's own
//! (`port list`, `worker list`, `stats`): built on the thread that asked the data plane,
//! without the loop.

use crate::daemon::{ca_views, Daemon};
use crate::error::CtlError;
use o7s::proto::{Ctl, Reply};
use o7s_abi::msg::DpStats;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

impl Daemon {
    /// `port list`, `worker list` or `stats` from the data plane's counters `stats`
    /// (`None`: it did not answer); anything else is refused.
    pub(super) fn dp_view(&self, c: &Ctl, stats: Option<&DpStats>) -> Reply {
        let table = |rows: Vec<Value>| Reply::Table {
            rows: rows
                .into_iter()
                .filter_map(|v| {
                    if let Value::Object(m) = v {
                        Some(m)
                    } else {
                        None
                    }
                })
                .collect(),
        };
        let err = |e: CtlError| e.reply();
        match c {
            Ctl::PortList => match stats {
                Some(s) => table(s.ports.iter().map(ca_views::port_row).collect()),
                None => err(CtlError::DataPlaneSilent),
            },
            Ctl::WorkerList => match stats {
                Some(s) => {
                    let workers = if s.workers.is_empty() {
                        std::slice::from_ref(&s.worker)
                    } else {
                        s.workers.as_slice()
                    };
                    table(
                            workers
                                .iter()
                                .enumerate()
                                .map(|(i, w)| {
                                    json!({"worker": i,
                                           "core": w.core.map_or("unpinned".to_string(), |c| c.to_string()),
                                           "polling": if w.busy_poll { "busy".to_string() } else { format!("adaptive, {} us", w.spin_us) },
                                           "ports": w.ports, "flows": w.flows,
                                           "rx_frames": w.rx_frames, "tx_frames": w.tx_frames,
                                           "sleeps": w.sleeps, "yields_for_apps": w.yields_for_apps,
                                           "queues_for_others": w.queues_for_others, "relayed_frames": w.relayed_frames,
                                           "dt_forwarding": if w.forward_copy { "copy (O7S_DP_FORWARD_COPY)" } else { "in place where the ports share a UMEM" },
                                           "pin_error": w.pin_error.clone().unwrap_or_default()})
                                })
                                .collect(),
                        )
                }
                None => err(CtlError::DataPlaneSilent),
            },
            Ctl::Stats => {
                let c = &self.counters;
                let mut m = Map::new();
                for (k, v) in [
                    ("flows_allocated", &c.flows),
                    ("mgmt_malformed", &c.mgmt_malformed),
                    ("flow_reply_unknown_eid", &c.reply_unknown_eid),
                    ("flow_req_bad_eid", &c.req_bad_eid),
                    ("flow_req_unknown_name", &c.req_unknown_name),
                    ("mgmt_not_for_us", &c.not_for_us),
                    ("flow_req_refused", &c.refused),
                    ("flow_req_busy", &c.flow_req_busy),
                    ("mgmt_queue_full", &c.mgmt_queue_full),
                    ("flow_req_duplicate", &c.req_duplicate),
                    ("flow_replies_not_remembered", &c.replies_not_remembered),
                    ("flow_limit", &c.flow_limit),
                    ("oap_replay_unchecked", &c.oap_replay_unchecked),
                    ("flows_superseded", &c.flows_superseded),
                    ("flow_install_failed", &c.install_failed),
                    ("name_reply_unsolicited", &c.name_reply_unsolicited),
                    ("name_cache_full", &c.cache_full),
                    ("name_query_limit", &c.query_limit),
                    ("requests_denied", &c.denied),
                    ("autostart_limit", &c.autostart_limit),
                    ("ctl_busy", &c.admin_busy),
                    ("loop_inbox_full", &c.inbox_full),
                    ("request_slow", &c.request_slow),
                    ("dp_queue_full", &self.dp.queue_full),
                    ("log_lines_suppressed", &crate::wirelog::WIRE.total),
                    ("log_lines_suppressed_local", &crate::wirelog::LOCAL.total),
                    ("metrics_timed_out", &crate::metrics_http::TIMED_OUT),
                    ("metrics_evicted", &crate::metrics_http::EVICTED),
                    ("metrics_bad_request", &crate::metrics_http::BAD_REQUEST),
                ] {
                    m.insert(k.into(), json!(v.load(Ordering::Relaxed)));
                }
                if let Some(s) = stats {
                    let sum =
                        |f: fn(&o7s_abi::msg::PortStats) -> u64| s.ports.iter().map(f).sum::<u64>();
                    m.insert(
                        "dp_drop_unknown_eid".into(),
                        json!(sum(|p| p.drop_unknown_eid)),
                    );
                    m.insert("dp_drop_malformed".into(), json!(sum(|p| p.drop_malformed)));
                    m.insert("dp_rx_mgmt".into(), json!(sum(|p| p.rx_mgmt)));
                    m.insert(
                        "dp_drop_mgmt_rate_source".into(),
                        json!(sum(|p| p.drop_mgmt_rate_source)),
                    );
                    m.insert(
                        "dp_drop_mgmt_rate_port".into(),
                        json!(sum(|p| p.drop_mgmt_rate_port)),
                    );
                    m.insert(
                        "dp_drop_mgmt_backlog".into(),
                        json!(sum(|p| p.drop_mgmt_backlog)),
                    );
                    m.insert(
                        "dp_drop_mgmt_bad_source".into(),
                        json!(sum(|p| p.drop_mgmt_bad_source)),
                    );
                    m.insert(
                        "dp_drop_wrong_peer".into(),
                        json!(sum(|p| p.drop_wrong_peer)),
                    );
                    m.insert(
                        "dp_drop_socket_buffer".into(),
                        json!(sum(|p| p.drop_socket_buffer)),
                    );
                    let core = |w: &o7s_abi::msg::WorkerInfo| {
                        w.core.map_or("unpinned".to_string(), |c| c.to_string())
                    };
                    let workers = if s.workers.is_empty() {
                        std::slice::from_ref(&s.worker)
                    } else {
                        s.workers.as_slice()
                    };
                    m.insert("dp_workers".into(), json!(workers.len()));
                    m.insert(
                        "dp_worker_core".into(),
                        json!(workers.iter().map(core).collect::<Vec<_>>().join(",")),
                    );
                    m.insert(
                        "dp_yields_for_apps".into(),
                        json!(workers.iter().map(|w| w.yields_for_apps).sum::<u64>()),
                    );
                    let errors: Vec<&String> = workers
                        .iter()
                        .filter_map(|w| w.pin_error.as_ref())
                        .collect();
                    if !errors.is_empty() {
                        m.insert("dp_worker_pin_error".into(), json!(errors));
                    }
                    m.insert(
                        "dp_polling".into(),
                        json!(if s.worker.busy_poll {
                            "busy".to_string()
                        } else {
                            format!("adaptive, {} us", s.worker.spin_us)
                        }),
                    );
                }
                Reply::Table { rows: vec![m] }
            }
            _ => err(CtlError::Invalid("not a listing of the data plane".into())),
        }
    }
}
