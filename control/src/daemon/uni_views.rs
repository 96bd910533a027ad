//! `o7sctl` views of the unicast IPCPs (`ipcp list` rows, `route list`, `lsdb list`,
//! `dht list`), and their failures as they show there.

use super::*;
use o7s_wire::unicast::pb::Component;

impl Daemon {
    /// `o7sctl route list` rows.
    pub(super) fn uni_routes(&self) -> Vec<Value> {
        let st = self.st();
        let mut rows = vec![];
        for u in &st.unicast {
            let Some(ls) = &u.ls else { continue };
            for (dst, hop) in ls.table() {
                let alt: Vec<String> = ls
                    .next_hops(*dst)
                    .into_iter()
                    .filter(|h| h != hop)
                    .map(|h| format!("{h:#010x}"))
                    .collect();
                rows.push(json!({"ipcp": u.name, "dst": format!("{dst:#010x}"),
                                 "next_hop": format!("{hop:#010x}"), "alternates": alt}));
            }
        }
        rows
    }

    /// `o7sctl dht list` rows.
    pub(super) fn uni_dht(&self) -> Vec<Value> {
        let st = self.st();
        let mut rows = vec![];
        for u in &st.unicast {
            let Some(d) = &u.dht else { continue };
            for (key, addr, local, exp) in d.entries() {
                rows.push(json!({"ipcp": u.name, "key": hex::encode(&key), "address": format!("{addr:#010x}"),
                                 "local": local, "expires": exp, "contacts": d.contacts()}));
            }
        }
        rows
    }

    /// `o7sctl lsdb list` rows.
    pub(super) fn uni_lsdb(&self) -> Vec<Value> {
        let st = self.st();
        let mut rows = vec![];
        for u in &st.unicast {
            let Some(ls) = &u.ls else { continue };
            for ((s, d), seq) in ls.lsdb() {
                rows.push(json!({"ipcp": u.name, "src": format!("{s:#010x}"),
                                 "dst": format!("{d:#010x}"), "seqno": seq}));
            }
        }
        rows
    }

    /// An N-1 flow for `comp` could not be allocated.
    pub(super) fn uni_failed(&self, uni: usize, comp: Component, why: &str) {
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
    pub(super) fn uni_rows(&self) -> Vec<Value> {
        self.st()
            .unicast
            .iter()
            .map(|u| {
                json!({"name": u.name, "type": "unicast", "layer": u.layer.clone().unwrap_or("-".into()),
                       "dev": "-", "mac": "-", "mtu": 0, "hash": "SHA3_256", "state": u.state,
                       "io_path": "-", "registered": [], "address": format!("{:#010x}", u.addr),
                       "dt_neighbours": u.dt_nb.len(), "dt_dropped_in_o7sd": u.dt_dropped,
                       "dt_forwarded_in_o7sd": u.dt_forwarded,
                       "dht_contacts": u.dht.as_ref().map_or(0, |d| d.contacts()),
                       "dht_dropped": u.dht.as_ref().map_or(0, |d| {
                           let c = d.counters();
                           c.dropped_bad + c.dropped_unsolicited
                       }),
                       "lsa_dropped": u.ls.as_ref().map_or(0, |l| l.counters().malformed + l.counters().collisions),
                       "fa_dropped": u.fa.as_ref().map_or(0, |f| {
                           let c = f.counters();
                           c.malformed + c.unknown_eid
                       })})
            })
            .collect()
    }
}
