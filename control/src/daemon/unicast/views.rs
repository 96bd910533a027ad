//! `o7sctl` views of the unicast IPCPs (`ipcp list` rows, `route list`, `lsdb list`,
//! `dht list`), and their failures as they show there.

use crate::config::IpcpKind;
use crate::daemon::Owner;
use crate::error::CtlError;
use o7s_wire::unicast::pb::Component;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

/// The DT PCI of a layer with 4-byte addresses and 8-byte endpoint ids (0.23's defaults):
/// address, QoS cube, TTL, ECN, endpoint id.
const DT_PCI_LEN: usize = 4 + 1 + 1 + 1 + 8;

impl Owner {
    /// `o7sctl route list` rows.
    pub(in crate::daemon) fn uni_routes(&self) -> Vec<Value> {
        let st = self.st();
        let mut rows = vec![];
        for u in &st.unicast {
            let Some(ls) = u.ls() else { continue };
            let dt_nb = u.dt_nb();
            for (dst, hop) in ls.table() {
                let alt: Vec<String> = ls
                    .next_hops(*dst)
                    .into_iter()
                    .filter(|h| h != hop)
                    .map(|h| format!("{h:#010x}"))
                    .collect();
                // What forwarding uses now: the first next hop whose DT N-1 flow is up
                // (null: none, the destination is unreachable until the recomputation).
                let in_use = ls
                    .next_hops(*dst)
                    .into_iter()
                    .find(|h| dt_nb.contains_key(h))
                    .map(|h| format!("{h:#010x}"));
                rows.push(json!({"ipcp": u.name, "dst": format!("{dst:#010x}"),
                                 "next_hop": format!("{hop:#010x}"), "alternates": alt,
                                 "in_use": in_use}));
            }
        }
        rows
    }

    /// `o7sctl dht list` rows: each key with the name it is the hash of when this daemon
    /// knows that name (its registry, the names its IPCPs publish or looked up, its flows'
    /// names; "-" otherwise), and
    /// the seconds until the entry expires.
    pub(in crate::daemon) fn uni_dht(&self) -> Vec<Value> {
        let st = self.st();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let known: HashMap<Vec<u8>, String> = st
            .reg
            .names
            .keys()
            .cloned()
            .chain(st.unicast.iter().flat_map(|u| u.reg.iter().cloned()))
            .chain(st.flows.values().map(|f| f.name.clone()))
            .map(|n| (o7s_wire::hash::HashAlgo::Sha3_256.hash(&n).to_vec(), n))
            .chain(
                st.unicast
                    .iter()
                    .flat_map(|u| u.looked_up.iter().map(|(h, n)| (h.clone(), n.clone()))),
            )
            .collect();
        let mut rows = vec![];
        for u in &st.unicast {
            let Some(d) = u.dht() else { continue };
            for (key, addr, local, exp) in d.entries() {
                let name = known.get(key.as_slice()).map_or("-", String::as_str);
                let expires_in_s = i64::from(exp) - i64::try_from(now).unwrap_or(i64::MAX);
                // In a secured layer: the member whose signature the entry carries.
                let publisher = if local {
                    u.member
                        .as_ref()
                        .and_then(|m| crate::auth::common_name(&m.signer.cert).ok())
                } else {
                    d.signer(&key, addr).map(|s| s.publisher.clone())
                };
                rows.push(
                    json!({"ipcp": u.name, "name": name, "key": hex::encode(&key),
                                 "address": format!("{addr:#010x}"), "local": local,
                                 "expires_in_s": expires_in_s, "contacts": d.contacts(),
                                 "publisher": publisher}),
                );
            }
        }
        rows
    }

    /// `o7sctl lsdb list` rows.
    pub(in crate::daemon) fn uni_lsdb(&self) -> Vec<Value> {
        let st = self.st();
        let mut rows = vec![];
        for u in &st.unicast {
            let Some(ls) = u.ls() else { continue };
            for ((s, d), seq) in ls.lsdb() {
                rows.push(json!({"ipcp": u.name, "src": format!("{s:#010x}"),
                                 "dst": format!("{d:#010x}"), "seqno": seq}));
            }
        }
        rows
    }

    /// An N-1 flow for `comp` could not be allocated.
    pub(in crate::daemon) fn uni_failed(&self, uni: usize, comp: Component, why: &str) {
        if let Some(u) = self.st().unicast.get_mut(uni) {
            if comp == Component::Enrollment {
                tracing::error!("IPCP {}: enrolment failed: {why}", u.name);
                u.state = format!("enrolment failed: {why}");
            } else {
                tracing::error!(
                    "IPCP {}: {} connection failed: {why}",
                    u.name,
                    comp.comp_name()
                );
            }
        }
    }

    /// `o7sctl ipcp list` rows of the unicast IPCPs.
    /// `dp` holds the workers' counters of the DT path (by IPCP index).
    pub(in crate::daemon) fn uni_rows(&self, dp: Vec<o7s_abi::msg::UniStats>) -> Vec<Value> {
        let st = self.st();
        let now = Instant::now();
        st.unicast
            .iter()
            .enumerate()
            .map(|(i, u)| {
                if let Some(b) = u.bcast.as_ref() {
                    return Self::bc_row(&st, i, u, b);
                }
                let d = dp.iter().find(|s| s.ipcp as usize == i).cloned().unwrap_or_default();
                // The SDU a flow over the layer can carry: the smallest MTU of the IPCPs its
                // DT N-1 flows run over, less the DT PCI; none while it has no DT neighbour.
                let dt_nb = u.dt_nb();
                let c = u.counters();
                let mtu = dt_nb
                    .values()
                    .filter_map(|f| st.flows.get(f))
                    .filter_map(|r| st.ipcps.get(r.ipcp))
                    .map(|i| i.mtu)
                    .min()
                    .map(|m| m.saturating_sub(DT_PCI_LEN));
                let registered = if u.published() { u.reg.clone() } else { vec![] };
                let mut row = json!({"name": u.name, "type": "unicast", "layer": u.layer.clone().unwrap_or("-".into()),
                       "dev": "-", "mac": "-", "mtu": mtu, "hash": "SHA3_256", "state": u.state,
                       "io_path": "-", "registered": registered, "address": format!("{:#010x}", u.addr),
                       "dt_neighbours": dt_nb.len(),
                       "dt_dropped_in_o7sd": c.dt_dropped + c.ttl_dropped + c.no_route + c.held_dropped,
                       "dt_forwarded_in_o7sd": c.forwarded,
                       "dt_forwarded": d.forwarded, "dt_delivered": d.delivered,
                       "dt_to_o7sd": d.to_o7sd, "dt_sent": d.sent,
                       "dt_drop_short": d.drop_short, "dt_drop_ttl": d.drop_ttl,
                       "dt_drop_loop": d.drop_loop,
                       "dt_drop_no_route": d.drop_no_route,
                       "dt_drop_unknown_eid": d.drop_unknown_eid,
                       "dt_drop_reserved_eid": d.drop_reserved_eid, "dt_drop_n1": d.drop_n1,
                       "dt_via_o7sd": d.via_o7sd,
                       "dt_handed_off": d.handed_off, "dt_handed_in": d.handed_in,
                       "dt_drop_handoff": d.drop_handoff,
                       "dt_forwarded_in_place": d.forwarded_in_place,
                       "ca_updates_in": d.ca_updates_in, "ca_updates_out": d.ca_updates_out,
                       "ca_updates_unknown": d.ca_updates_unknown,
                       "ca_updates_ignored": d.ca_updates_ignored,
                       "dht_contacts": u.dht().map_or(0, |d| d.contacts()),
                       "dht_dropped": u.dht().map_or(0, |d| {
                           let c = d.counters();
                           c.dropped_bad + c.dropped_unsolicited
                       }),
                       "lsa_dropped": u.ls().map_or(0, |l| { let c = l.counters(); c.malformed + c.collisions + c.full }),
                       "address_collisions": u.ls().map_or(0, |l| l.counters().collisions),
                       "readdressed": c.readdressed,
                       "neighbours_moved": u.connections().counters().readdressed,
                       "fa_dropped": u.fa().map_or(0, |f| {
                           let c = f.counters();
                           c.malformed + c.unknown_eid
                       })});
                // When the table is next recomputed: until then a lost next hop is replaced
                // only by its loop-free alternate (routing = "lfa").
                let next_recalc = u.ls().map(|l| {
                    u64::try_from(l.next_recalc().saturating_duration_since(now).as_millis())
                        .unwrap_or(u64::MAX)
                });
                if let Some(o) = row.as_object_mut() {
                    o.insert("ls_next_recalc_ms".into(), json!(next_recalc));
                    o.insert(
                        "dt_forwarded_one_pass".into(),
                        json!(d.forwarded_one_pass),
                    );
                    o.insert(
                        "lsa_withdrawn".into(),
                        json!(u.ls().map_or(0, |l| l.counters().withdrawn)),
                    );
                    o.insert("n1_tx_dropped".into(), json!(u.n1_tx_dropped));
                    o.insert(
                        "lsa_reasserted".into(),
                        json!(u.ls().map_or(0, |l| l.counters().reasserted)),
                    );
                    o.insert("dht_forgotten".into(), json!(c.dht_forgotten));
                    o.insert("dht_rejoined".into(), json!(c.dht_rejoined));
                    o.insert("neighbour_moves_held".into(), json!(c.neighbour_moves_held));
                    o.insert(
                        "address_claims_refused".into(),
                        json!(c.address_claims_refused),
                    );
                    o.insert("resumed".into(), json!(u.resumed));
                    let lc = u.ls().map(|l| l.counters()).unwrap_or_default();
                    o.insert("lsa_stale".into(), json!(lc.stale));
                    o.insert("lsa_malformed".into(), json!(lc.malformed));
                    let cc = u.connections().counters();
                    o.insert("conn_failed".into(), json!(cc.failed));
                    o.insert("conn_unexpected".into(), json!(cc.unexpected));
                    o.insert("membership".into(), membership(u));
                    o.insert("lsa_rate_dropped".into(), json!(c.lsa_rate_dropped));
                    o.insert("dt_rate_dropped".into(), json!(c.dt_rate_dropped));
                    o.insert("readdress_held".into(), json!(c.readdress_held));
                    o.insert("dt_held_for_route".into(), json!(c.held));
                    // What `dt_dropped_in_o7sd` sums, each on its own.
                    o.insert("dt_ttl_dropped_in_o7sd".into(), json!(c.ttl_dropped));
                    o.insert("dt_no_route_in_o7sd".into(), json!(c.no_route));
                    o.insert("dt_held_dropped".into(), json!(c.held_dropped));
                    o.insert("collisions_kept".into(), json!(c.collisions_kept));
                    o.insert("dht_sign_failed".into(), json!(c.sign_failed));
                    let dc = u.dht().map(|d| d.counters()).unwrap_or_default();
                    o.insert("dht_proofs_refused".into(), json!(dc.proofs_refused));
                    o.insert("dht_superseded".into(), json!(dc.superseded));
                    o.insert("dht_received".into(), json!(dc.received));
                    o.insert("dht_sent".into(), json!(dc.sent));
                    o.insert("dht_bad".into(), json!(dc.dropped_bad));
                    o.insert("dht_store_refused".into(), json!(dc.store_refused));
                    o.insert("dht_contacts_dropped".into(), json!(dc.contacts_dropped));
                    o.insert("dht_lookups_refused".into(), json!(dc.lookups_refused));
                    o.insert("dht_lookups_cut".into(), json!(dc.lookups_cut));
                    o.insert(
                        "dht_signed".into(),
                        json!(u.dht().is_some_and(|d| d.has_proofs())),
                    );
                }
                row
            })
            .collect()
    }

    /// `o7sctl neighbour list` rows: each connected N-1 flow of a unicast IPCP, with the
    /// data plane's counters of that flow (`dp`: every flow's).
    pub(in crate::daemon) fn uni_neighbours(&self, dp: &[o7s_abi::msg::FlowStats]) -> Vec<Value> {
        let st = self.st();
        let mut rows = vec![];
        for u in &st.unicast {
            for (flow, comp, addr) in u.connections().connections() {
                let via = st
                    .flows
                    .get(&flow)
                    .map(|f| (f.name.clone(), f.side, f.down))
                    .unwrap_or_default();
                let c = dp
                    .iter()
                    .find(|f| f.flow == flow)
                    .cloned()
                    .unwrap_or_default();
                rows.push(json!({"ipcp": u.name, "neighbour": format!("{addr:#010x}"),
                                 "component": comp.comp_name(), "n1_flow": flow,
                                 "n1_name": via.0, "side": via.1,
                                 "state": if via.2 { "down" } else { "up" },
                                 "rx_pdus": c.rx_sdus, "rx_bytes": c.rx_bytes,
                                 "tx_pdus": c.tx_sdus, "tx_bytes": c.tx_bytes}));
            }
        }
        rows
    }

    /// `o7sctl ipcp bootstrap ... type unicast` and `ipcp enroll`: a unicast IPCP as a
    /// configuration table would make it.
    pub(in crate::daemon) fn uni_cli(
        &self,
        name: &str,
        layer: Option<&str>,
        dst: Option<&str>,
        _autobind: bool,
    ) -> Result<(), CtlError> {
        let exists = self.st().unicast.iter().any(|u| u.name == name)
            || self.st().ipcps.iter().any(|i| i.name == name);
        if exists {
            return Err(CtlError::Exists(format!("an IPCP named {name} exists")));
        }
        let conf = crate::config::IpcpConf {
            name: name.to_string(),
            kind: IpcpKind::Unicast,
            bootstrap: layer.map(str::to_string),
            enrol: dst.map(str::to_string),
            reg: vec![],
            conn: vec![],
            hash: o7s_wire::hash::HashAlgo::Sha3_256,
            dev: None,
            ethertype: o7s_wire::ethernet::ETHERTYPE_OUROBOROS,
            ip: None,
            port: o7s_wire::udp::DEFAULT_PORT,
            dns: None,
            rate_bps: None,
            queue: None,
            impair: [None, None, None, None, None],
            line: 0,
            uni: crate::config::UniSettings::default(),
            member: None,
        };
        self.unicast_create(&conf).map_err(CtlError::Invalid)
    }

    /// `o7sctl ipcp connect`: Management then DT (or the one component named) to `dst`.
    pub(in crate::daemon) fn uni_connect(
        &self,
        name: &str,
        dst: &str,
        component: Option<&str>,
    ) -> Result<(), CtlError> {
        let uni = {
            let st = self.st();
            let Some((i, u)) = st.unicast.iter().enumerate().find(|(_, u)| u.name == name) else {
                return Err(CtlError::NotFound(format!("no unicast IPCP named {name}")));
            };
            if u.layer.is_none() {
                return Err(CtlError::Invalid(format!(
                    "{name} is in no layer yet (bootstrap or enrol it first)"
                )));
            }
            i
        };
        let comps = match component {
            None => vec![Component::Management, Component::DataTransfer],
            Some("mgmt" | "management") => vec![Component::Management],
            Some("dt" | "data-transfer") => vec![Component::DataTransfer],
            Some(c) => {
                return Err(CtlError::Invalid(format!(
                    "unknown component {c} (mgmt, dt)"
                )))
            }
        };
        for comp in comps {
            self.uni_request(super::UniRequest::Connect {
                uni,
                dst: dst.to_string(),
                comp,
            });
        }
        Ok(())
    }

    /// `o7sctl ipcp disconnect`: the connections of IPCP `name` to `dst` (the name its N-1
    /// flow was allocated to, or the member's address) are marked down; the loop
    /// deallocates their N-1 flows and link state forgets them (as for a flow whose peer
    /// timed out). The number torn down.
    pub(in crate::daemon) fn uni_disconnect(
        &self,
        name: &str,
        dst: &str,
        component: Option<&str>,
    ) -> Result<usize, CtlError> {
        let want = |c: Component| match component {
            None => Ok(true),
            Some("mgmt" | "management") => Ok(c == Component::Management),
            Some("dt" | "data-transfer") => Ok(c == Component::DataTransfer),
            Some(c) => Err(CtlError::Invalid(format!(
                "unknown component {c} (mgmt, dt)"
            ))),
        };
        let mut st = self.st();
        let Some(u) = st.unicast.iter().find(|u| u.name == name) else {
            return Err(CtlError::NotFound(format!("no unicast IPCP named {name}")));
        };
        let mut flows = vec![];
        for (flow, comp, addr) in u.connections().connections() {
            let named = st.flows.get(&flow).is_some_and(|f| f.name == dst);
            if want(comp)? && (named || format!("{addr:#010x}") == dst) {
                flows.push(flow);
            }
        }
        if flows.is_empty() {
            return Err(CtlError::NotFound(format!(
                "{name} has no {} connection to {dst} (o7sctl neighbour list)",
                component.unwrap_or("")
            )));
        }
        for f in &flows {
            if let Some(r) = st.flows.get_mut(f) {
                r.down = true;
            }
        }
        // Asked for: the loop logs their end at info, not as a lost link.
        if let Some(u) = st.unicast.iter_mut().find(|u| u.name == name) {
            u.disconnected.extend(flows.iter().copied());
        }
        drop(st);
        tracing::info!("IPCP {name}: connections to {dst} torn down (o7sctl).");
        self.wake();
        Ok(flows.len())
    }
}

/// A unicast or broadcast IPCP's membership for `ipcp list`: "open", or the layer CA and
/// how many peers it admitted and refused.
pub(in crate::daemon) fn membership(u: &super::UniIpcp) -> Value {
    use std::sync::atomic::Ordering;
    match &u.member {
        None => json!("open"),
        Some(m) => membership_row(
            &m.ca_file,
            m.admitted.load(Ordering::Relaxed),
            m.refused.load(Ordering::Relaxed),
        ),
    }
}

/// The `membership` column of an IPCP whose layer admits members only.
fn membership_row(ca_file: &str, admitted: u64, refused: u64) -> Value {
    json!({"member_ca": ca_file, "admitted": admitted, "refused": refused})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use crate::daemon::broadcast::Bcast;
    use crate::daemon::unicast::UniIpcp;
    use o7s::proto::{Ctl, Reply};
    use serde_json::Value;

    /// Every number `o7sctl ipcp list` gives of a unicast and of a broadcast IPCP is a
    /// metric the catalogue describes (a column added without its description would be
    /// exported as "not described yet").
    #[test]
    fn every_column_of_a_unicast_or_broadcast_ipcp_is_a_described_metric() {
        let (d, _dp) = crate::daemon::fake_daemon();
        d.st().unicast.push(UniIpcp::new(
            "u1",
            &[],
            &["srv".into()],
            true,
            std::time::Duration::from_secs(10),
        ));
        let mut b = UniIpcp::broadcast_base("b1", &[]);
        b.bcast = Some(Bcast::default());
        d.st().unicast.push(b);
        let rows: Vec<serde_json::Map<String, Value>> = d
            .uni_rows(vec![])
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => m,
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(rows.len(), 2);
        // An IPCP of a layer with members has its counts in the same column.
        let mut member = rows[0].clone();
        member.insert("name".into(), "u2".into());
        member.insert("membership".into(), super::membership_row("ca.pem", 3, 1));
        let mut rows = rows;
        rows.push(member);
        let table = rows.clone();
        let text = crate::metrics::render(&move |c| match c {
            Ctl::IpcpList => Reply::Table {
                rows: table.clone(),
            },
            _ => Reply::Table { rows: vec![] },
        });
        let undescribed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("# HELP") && l.contains("not described yet"))
            .collect();
        assert!(undescribed.is_empty(), "{undescribed:#?}");
        // And the rows were exported: a unicast and a broadcast column each.
        assert!(text.contains("o7s_ipcp_dt_neighbours{"), "{text}");
        assert!(
            text.contains("o7s_ipcp_bc_from_neighbours_total{"),
            "{text}"
        );
        assert!(text.contains("o7s_ipcp_admitted_total{"), "{text}");
    }
}
