//! o7sctl requests: authorization and the listings.

use crate::daemon::{ca_views, Owner};
use crate::error::CtlError;
use o7s::proto::{Ctl, ErrorCode, Reply};
use o7s_wire::ethernet::mac_string;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Instant, UNIX_EPOCH};

impl Owner {
    /// Request `c` on the loop: a listing, with the data plane's counters `stats` the
    /// caller asked for first (see [`Daemon::serve`]), or a change.
    pub(super) fn ctl(
        &self,
        c: Ctl,
        cred: &o7s::ipc::PeerCred,
        stats: Option<o7s_abi::msg::DpStats>,
    ) -> Reply {
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
        let _err = |e: CtlError| e.reply();
        match c {
            Ctl::IpcpList => {
                // The data plane knows whether a port's device is still there.
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
                let flows = stats.map(|s| s.flows).unwrap_or_default();
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
            Ctl::FlowList => {
                let stats = stats.unwrap_or_default();
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
            c @ (Ctl::PortList | Ctl::WorkerList | Ctl::Stats) => self.dp_view(&c, stats.as_ref()),
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
        | Ctl::UnbindProcess { name, .. }
        | Ctl::IpcpCreate { name, .. }
        | Ctl::IpcpDestroy { name } => vec![name.as_str()],
        // An IPCP's and its layer's names reach listings, logs and the metrics' labels as
        // they are: the same limits as a config file's (no control characters).
        Ctl::IpcpBootstrap { name, layer, .. } => vec![name.as_str(), layer.as_str()],
        Ctl::IpcpEnroll { name, dst, .. }
        | Ctl::IpcpConnect { name, dst, .. }
        | Ctl::IpcpDisconnect { name, dst, .. } => vec![name.as_str(), dst.as_str()],
        _ => vec![],
    }
}

pub(super) fn parse_u16(s: &str) -> Option<u16> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
