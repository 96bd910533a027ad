//! o7sctl requests: authorization and the listings.

use crate::daemon::{ca_views, Daemon};
use crate::error::CtlError;
use o7s::proto::{Ctl, ErrorCode, Reply};
use o7s_wire::ethernet::mac_string;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Instant, UNIX_EPOCH};

impl Daemon {
    /// A read-only view (a listing or the counters), as o7sctl gets it; anything else is
    /// refused.
    pub fn view(&self, c: Ctl) -> Reply {
        match crate::authz::need(&c) {
            crate::authz::Need::Anyone => self.ctl(
                c,
                &o7s::ipc::PeerCred {
                    pid: 0,
                    uid: 0,
                    gid: 0,
                },
            ),
            _ => Reply::Error {
                code: ErrorCode::Denied,
                message: "not a view".into(),
            },
        }
    }

    /// Whether `cred` may make request `c` (docs/SECURITY.md); why not.
    pub(super) fn authorize(
        &self,
        c: &Ctl,
        cred: &o7s::ipc::PeerCred,
    ) -> Result<(), crate::authz::Denied> {
        use crate::authz::{need, process_uid, verb, Denied, Need};
        let policy = &self.settings.policy;
        let admin_only = || Denied::AdminOnly {
            verb: verb(c).to_string(),
            admins: policy.admins(),
        };
        match need(c) {
            Need::Anyone => Ok(()),
            _ if policy.is_admin(cred) => Ok(()),
            Need::Admin => Err(admin_only()),
            Need::AdminOrProcessOwner => {
                let (Ctl::BindProcess { pid, name } | Ctl::UnbindProcess { pid, name }) = c else {
                    return Err(admin_only());
                };
                if process_uid(*pid) != Some(cred.uid) {
                    return Err(Denied::NotYourProcess {
                        pid: *pid,
                        verb: verb(c).to_string(),
                        admins: policy.admins(),
                    });
                }
                let owner = self.st().reg.names.get(name).map(|e| e.owner);
                if owner != Some(cred.uid) {
                    return Err(Denied::NotYourName {
                        name: name.clone(),
                        verb: verb(c).to_string(),
                        admins: policy.admins(),
                    });
                }
                Ok(())
            }
        }
    }

    pub(super) fn ctl(&self, c: Ctl, cred: &o7s::ipc::PeerCred) -> Reply {
        if let Err(e) = ctl_names(&c)
            .into_iter()
            .try_for_each(o7s::proto::check_name)
        {
            return Reply::Error {
                code: ErrorCode::Invalid,
                message: e,
            };
        }
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
            Ctl::IpcpList => {
                // The data plane knows whether a port's device is still there.
                let stats = self.dp.stats();
                let links: HashMap<u32, String> = stats
                    .as_ref()
                    .map(|s| s.ports.iter().map(|p| (p.port, p.link.clone())).collect())
                    .unwrap_or_default();
                let uni = self.uni_rows(stats.map(|s| s.uni).unwrap_or_default());
                let locals = self.local_rows();
                let st = self.st();
                table(
                    st.ipcps
                        .iter()
                        .map(|i| {
                            let state = match links.get(&i.port) {
                                _ if !i.up => "down".to_string(),
                                Some(l) if l.starts_with("down") => l.clone(),
                                _ => "up".to_string(),
                            };
                            json!({"name": i.name, "type": i.kind.as_str(), "layer": i.layer, "dev": i.dev,
                                   "mac": mac_string(&i.mac), "mtu": i.mtu, "hash": i.hash.config_name(),
                                   "state": state, "io_path": i.io_path,
                                   "registered": i.regs.values().cloned().collect::<Vec<_>>()})
                        })
                        .chain(st.created.iter().map(|(n, k)| {
                            json!({"name": n, "type": k.as_str(), "layer": "-", "dev": "-", "mac": "-", "mtu": 0,
                                   "hash": "-", "state": "created (not bootstrapped)", "io_path": "-", "registered": []})
                        }))
                        .chain(uni)
                        .chain(locals)
                        .collect(),
                )
            }
            Ctl::RouteList => table(self.uni_routes()),
            Ctl::LsdbList => table(self.uni_lsdb()),
            Ctl::DhtList => table(self.uni_dht()),
            Ctl::NeighbourList => {
                let flows = self.dp.stats().map(|s| s.flows).unwrap_or_default();
                table(self.uni_neighbours(&flows))
            }
            Ctl::NameList => {
                let st = self.st();
                table(
                    st.reg
                        .names
                        .iter()
                        .map(|(n, e)| {
                            let layers: Vec<String> = st
                                .ipcps
                                .iter()
                                .filter(|i| i.regs.values().any(|r| r == n))
                                .map(|i| i.name.clone())
                                .chain(st.unicast.iter().filter(|u| u.published() && u.reg.contains(n)).map(|u| u.name.clone()))
                                .collect();
                            json!({"name": n, "lb": e.lb.as_str(), "programs": e.progs.iter().map(|p| format!("{}{}", p.path, if p.auto { " (auto)" } else { "" })).collect::<Vec<_>>(),
                                   "processes": st.reg.processes(n), "registered_in": layers, "accepting": e.active.len()})
                        })
                        .collect(),
                )
            }
            Ctl::PortList => match self.dp.stats() {
                Some(s) => table(s.ports.iter().map(ca_views::port_row).collect()),
                None => err(CtlError::DataPlaneSilent),
            },
            Ctl::CacheList => {
                let st = self.st();
                let mut rows = vec![];
                for i in &st.ipcps {
                    for (h, peer, left) in i.shim.cache_entries(Instant::now()) {
                        let (name, learnt) = i.learnt.get(&h).cloned().unwrap_or_else(|| {
                            let n = st
                                .reg
                                .names
                                .keys()
                                .find(|n| i.hash.hash(n) == h)
                                .cloned()
                                .unwrap_or_default();
                            (n, UNIX_EPOCH)
                        });
                        let left = left.as_secs();
                        rows.push(json!({"ipcp": i.name, "hash": hex::encode(&h), "name": name, "mac": mac_string(&peer.mac()),
                                         "expires_in_s": left,
                                         "learnt": learnt.duration_since(UNIX_EPOCH).ok()
                                             .and_then(|d| x509_parser::time::ASN1Time::from_timestamp(i64::try_from(d.as_secs()).unwrap_or(0)).ok())
                                             .map(|t| t.to_string()).unwrap_or_default()}));
                    }
                }
                table(rows)
            }
            Ctl::WorkerList => match self.dp.stats() {
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
                                       "dt_forwarding": if w.forward_copy { "copy (O7S_DP_FORWARD_COPY)" } else { "in place where the ports share a UMEM" },
                                       "pin_error": w.pin_error.clone().unwrap_or_default()})
                            })
                            .collect(),
                    )
                }
                None => err(CtlError::DataPlaneSilent),
            },
            Ctl::FlowList => {
                let stats = self.dp.stats().unwrap_or_default();
                // Local flows: what their ends published in the memory they share.
                let local_ids: Vec<u64> = self
                    .st()
                    .flows
                    .iter()
                    .filter(|(_, f)| f.ipcp == super::local::LOCAL_IPCP)
                    .map(|(id, _)| *id)
                    .collect();
                let local_frcp: HashMap<u64, (Option<o7s_abi::msg::FrcpStats>, Option<u32>)> =
                    local_ids
                        .into_iter()
                        .map(|id| (id, self.local_frcp(id)))
                        .collect();
                let st = self.st();
                let mut rows = vec![];
                let mut ids: Vec<_> = st.flows.keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    let Some(f) = st.flows.get(&id) else { continue };
                    let s = stats
                        .flows
                        .iter()
                        .find(|s| s.flow == id)
                        .cloned()
                        .unwrap_or_default();
                    let local = f.ipcp == super::local::LOCAL_IPCP;
                    let ipcp = if local {
                        st.locals
                            .iter()
                            .find(|l| l.names.contains(&f.name))
                            .map(|l| l.name.clone())
                            .unwrap_or_else(|| "local".into())
                    } else if f.ipcp == super::broadcast::JOINED_IPCP {
                        st.bc_joined
                            .iter()
                            .find(|j| j.flow == id)
                            .and_then(|j| st.unicast.get(j.uni))
                            .map(|u| u.name.clone())
                            .unwrap_or_default()
                    } else {
                        st.ipcps
                            .get(f.ipcp)
                            .map(|i| i.name.clone())
                            .unwrap_or_default()
                    };
                    let s = if local {
                        o7s_abi::msg::FlowStats {
                            frcp: local_frcp.get(&id).and_then(|x| x.0),
                            crc_errors: local_frcp.get(&id).and_then(|x| x.1),
                            ..Default::default()
                        }
                    } else {
                        s
                    };
                    let peer = if local {
                        "local (shared memory)".to_string()
                    } else if f.ipcp == super::broadcast::JOINED_IPCP {
                        "every member of the layer".to_string()
                    } else {
                        f.peer.to_string()
                    };
                    let row = json!({"flow": id, "side": f.side, "name": f.name, "pid": f.pid, "ipcp": ipcp,
                                     "local": format!("{:#x}", f.local), "remote": format!("{:#x}", f.remote),
                                     "peer": peer, "qos": f.qos.preset_name().unwrap_or("custom"),
                                     "rx_sdus": s.rx_sdus, "rx_bytes": s.rx_bytes, "tx_sdus": s.tx_sdus, "tx_bytes": s.tx_bytes,
                                     "drop_ring_full": s.drop_ring_full, "drop_decrypt": s.drop_decrypt,
                                     "cipher": o7s_wire::nid::name(s.cipher).unwrap_or("-"), "key_rotations": s.key_rotations,
                                     "tx_keepalives": s.tx_keepalives, "rx_keepalives": s.rx_keepalives, "state": if f.down || s.down { "peer timed out" } else { "up" }});
                    let row = ca_views::with_frcp(row, &f.qos.cube().to_string(), s.frcp.as_ref());
                    let row = ca_views::with_crc(row, s.crc_errors);
                    rows.push(ca_views::with_ca(row, s.ca.as_ref()));
                }
                table(rows)
            }
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
                    ("flows_superseded", &c.flows_superseded),
                    ("flow_install_failed", &c.install_failed),
                    ("name_reply_unsolicited", &c.name_reply_unsolicited),
                    ("name_cache_full", &c.cache_full),
                    ("name_query_limit", &c.query_limit),
                    ("requests_denied", &c.denied),
                    ("autostart_limit", &c.autostart_limit),
                    ("ctl_busy", &c.admin_busy),
                    ("request_slow", &c.request_slow),
                    ("dp_queue_full", &self.dp.queue_full),
                    ("log_lines_suppressed", &crate::wirelog::SUPPRESSED_TOTAL),
                    ("metrics_timed_out", &crate::metrics_http::TIMED_OUT),
                    ("metrics_evicted", &crate::metrics_http::EVICTED),
                    ("metrics_bad_request", &crate::metrics_http::BAD_REQUEST),
                ] {
                    m.insert(k.into(), json!(v.load(Ordering::Relaxed)));
                }
                if let Some(s) = self.dp.stats() {
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
            other => self.ctl_change(other, cred),
        }
    }
}

/// The names a request carries (checked against the reference's limits).
pub(super) fn ctl_names(c: &Ctl) -> Vec<&str> {
    match c {
        Ctl::NameCreate { name, .. }
        | Ctl::NameDestroy { name }
        | Ctl::NameRegister { name, .. }
        | Ctl::NameUnregister { name, .. }
        | Ctl::BindProgram { name, .. }
        | Ctl::UnbindProgram { name, .. }
        | Ctl::BindProcess { name, .. }
        | Ctl::UnbindProcess { name, .. } => vec![name.as_str()],
        _ => vec![],
    }
}

pub(super) fn parse_u16(s: &str) -> Option<u16> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
