//! A unicast IPCP that outlives its o7sd (issue 26 item 4): the data plane keeps
//! forwarding after `kill -9` of o7sd (dataplane/src/upstream.rs), with the IPCP's last
//! forwarding table, its DT N-1 flows (o7sd's own flows are installed without a pid, so
//! the data plane does not end them with o7sd) and the flows over the layer. The next
//! o7sd that adopts that data plane resumes the IPCP:
//!
//! - its address, layer and DT neighbours come from `<rundir>/unicast-<name>.json`, which
//!   o7sd rewrites whenever the IPCP's forwarding table changes ([`UniSaved`]); only an
//!   o7sd that adopted the data plane reads it (a fresh data plane has none of the flows);
//! - the IPCP enrols (or bootstraps) again as configured but keeps the saved address; the
//!   old DT N-1 flows are its neighbours' links again at once (link state announces them,
//!   so the LSDB its neighbours send back is ours, not a collision) and stay until the new
//!   connections replace them, then go after [`RETIRE_AFTER`];
//! - the flows over the layer are known again (flow list, their endpoint ids taken in the
//!   flow allocator, released when they end);
//! - until its new table reaches every destination the old one did, or [`ADOPT_HOLD`] has
//!   passed, the old table's routes fill the new one's gaps (through the old DT flows,
//!   while they last): no PDU of a running flow meets a table that lost its route during
//!   the resumption.
//!
//! Old Management and Enrollment flows are closed at adoption (o7sd cannot read their
//! rings); adopted N-1 and layer flows no IPCP claims within [`ADOPT_HOLD`] are closed.

use super::install::FlowRecord;
use super::uni_flows::UniFlowP;
use super::*;

/// How long an adopted IPCP may keep its old table and old DT flows.
pub(super) const ADOPT_HOLD: Duration = Duration::from_secs(10);
/// How long a DT or Management N-1 flow stays after a newer one to the same member took
/// its place (PDUs in flight on it are still delivered).
pub(super) const RETIRE_AFTER: Duration = Duration::from_secs(2);

/// How long a member's new DT flow waits beside the old one before it becomes the next hop.
pub(super) const SWITCH_AFTER: Duration = Duration::from_secs(1);

/// DT flow `new` to the member at `addr` replaces the live `old`: `old` stays the next
/// hop for [`SWITCH_AFTER`] (both are DT flows for the data plane meanwhile), then `new`;
/// `old` closes after [`RETIRE_AFTER`].
pub(super) fn replace_dt(u: &mut unicast::UniIpcp, now: Instant, addr: u64, old: u64, new: u64) {
    u.dt_nb.insert(addr, old);
    u.dt_standby.insert(addr, (new, now + SWITCH_AFTER));
    let due = u.retiring.entry(old).or_insert(now + RETIRE_AFTER);
    *due = (*due).min(now + RETIRE_AFTER);
}

/// What a restarted o7sd needs to resume a unicast IPCP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct UniSaved {
    /// The IPCP's index (the data plane's id of it in tables and flows).
    pub index: usize,
    /// Its layer.
    pub layer: String,
    /// Its address.
    pub addr: u64,
    /// DT neighbours: (address, N-1 flow).
    pub dt: Vec<(u64, u64)>,
    /// Its forwarding table: (destination, N-1 flow).
    pub next_hop: Vec<(u32, u64)>,
}

/// The file of IPCP `name` in `rundir`.
pub(super) fn saved_path(rundir: &std::path::Path, name: &str) -> std::path::PathBuf {
    rundir.join(format!("unicast-{name}.json"))
}

/// Writes `s` for IPCP `name` (atomically: a crash leaves the old file or the new one).
pub(super) fn save(rundir: &std::path::Path, name: &str, s: &UniSaved) {
    let path = saved_path(rundir, name);
    let tmp = path.with_extension("json.tmp");
    let r = serde_json::to_vec(s)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = r {
        tracing::warn!(
            "IPCP {name}: cannot save its state to {} ({e}): an o7sd restart will not resume it.",
            path.display()
        );
    }
}

/// The saved state of IPCP `name` (index `index`) in layer `layer`, when the data plane
/// was adopted and the file matches; why not, for the log, otherwise.
pub(super) fn load(
    rundir: &std::path::Path,
    name: &str,
    index: usize,
    layer: &str,
) -> Result<UniSaved, String> {
    let path = saved_path(rundir, name);
    let b = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let s: UniSaved = serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?;
    if s.index != index || s.layer != layer || s.addr == 0 || s.addr > u64::from(u32::MAX) {
        return Err(format!(
            "{} is of another IPCP (index {}, layer {}, address {:#x})",
            path.display(),
            s.index,
            s.layer,
            s.addr
        ));
    }
    Ok(s)
}

/// The table to install while a resumption's hold lasts: `new`, with the routes of the
/// adopted table `old` it lacks whose N-1 flow is still `alive`. `true` with it when
/// nothing had to be added (the new table reaches all the old one did).
pub(super) fn fill_gaps(
    new: &mut Vec<(u32, u64)>,
    old: &[(u32, u64)],
    alive: impl Fn(u64) -> bool,
) -> bool {
    let missing: Vec<(u32, u64)> = old
        .iter()
        .filter(|(d, _)| !new.iter().any(|(x, _)| x == d))
        .copied()
        .collect();
    let complete = missing.is_empty();
    new.extend(missing.into_iter().filter(|(_, f)| alive(*f)));
    new.sort_unstable();
    complete
}

impl Daemon {
    /// The address IPCP `idx` takes in `layer`: the saved one when this o7sd adopted the
    /// data plane and saved state matches (the IPCP resumes, `Some` with what to claim),
    /// else a new one.
    pub(super) fn resume_or_new_addr(
        &self,
        dp_adopted: bool,
        idx: usize,
        name: &str,
        layer: &str,
    ) -> (u64, Option<UniSaved>) {
        if dp_adopted {
            match load(&self.settings.rundir, name, idx, layer) {
                Ok(s) => return (s.addr, Some(s)),
                Err(e) => tracing::info!("IPCP {name}: nothing to resume ({e})."),
            }
        }
        (unicast::random_addr(), None)
    }

    /// Claims what a resumed IPCP had in the adopted data plane: its DT N-1 flows (its
    /// neighbours' links again, until replaced) and its flows over the layer.
    pub(super) fn uni_claim(&self, now: Instant, idx: usize, s: UniSaved) {
        let mut st = self.st();
        let st = &mut *st;
        let Some(u) = st.unicast.get_mut(idx) else {
            return;
        };
        let mut links = 0;
        for (addr, flow) in &s.dt {
            if st.adopted_n1.remove(flow).is_none() || !st.flows.contains_key(flow) {
                continue;
            }
            u.dt_nb.insert(*addr, *flow);
            if let Some(ls) = u.ls.as_mut() {
                ls.add_dt(now, *addr);
            }
            u.retiring.insert(*flow, now + ADOPT_HOLD);
            links += 1;
        }
        let mut flows = 0;
        let mine: Vec<(Instant, o7s_abi::msg::AdoptedFlow, FlowRecord)> = {
            let (m, rest) = std::mem::take(&mut st.uni_adopted)
                .into_iter()
                .partition(|(_, f, _)| f.uni.as_ref().is_some_and(|x| x.ipcp as usize == idx));
            st.uni_adopted = rest;
            m
        };
        for (_, f, r) in mine {
            let Some(spec) = f.uni else { continue };
            let taken = u.fa.as_mut().is_some_and(|fa| fa.adopt_eid(spec.local_eid));
            if !taken || u64::from(spec.dst) == 0 {
                tracing::warn!(
                    "Adopted flow {} over {}: endpoint id {:#x} is not free: closed.",
                    f.flow,
                    u.name,
                    spec.local_eid
                );
                self.dp.send(&ToDp::DelFlow { flow: f.flow }, &[]);
                continue;
            }
            let side = if r.side == "accept" {
                "accept"
            } else {
                "alloc"
            };
            tracing::info!(
                "Adopted flow {} ({side} {}) of process {} over {}: local {:#x}, remote {:#x} at {:#010x}.",
                f.flow,
                r.name,
                f.pid,
                u.name,
                spec.local_eid,
                spec.remote_eid,
                spec.dst
            );
            st.flows.insert(
                f.flow,
                FlowRec {
                    ipcp: usize::MAX,
                    local: spec.local_eid,
                    remote: spec.remote_eid,
                    peer: Peer::Mac([0; 6]),
                    name: r.name,
                    side,
                    pid: f.pid,
                    qos: r.qos,
                    down: false,
                },
            );
            st.uni_flows_adopted.push(UniFlowP {
                uni: idx,
                flow: f.flow,
                local: spec.local_eid,
            });
            flows += 1;
        }
        u.adopt_hold = Some((now + ADOPT_HOLD, s.next_hop.clone()));
        u.resumed = true;
        tracing::info!(
            "IPCP {}: resumed at address {:#010x} in layer {} from the adopted data plane: {links} DT neighbour(s), {flows} flow(s) over the layer; the old forwarding table stays until the new one reaches its {} destination(s) (at most {} s).",
            u.name,
            s.addr,
            s.layer,
            s.next_hop.len(),
            ADOPT_HOLD.as_secs()
        );
    }

    /// After the machines' events: members that connected again have their older flows
    /// retired (when both were the member's requests: two members that connected to each
    /// other keep both); resumed IPCPs claim what they had; retired flows whose time came
    /// join `close`; unclaimed adopted flows go.
    pub(super) fn uni_after_pump(
        &self,
        now: Instant,
        reconnected: Vec<(usize, u64, Vec<u64>)>,
        close: &mut Vec<u64>,
    ) {
        if !reconnected.is_empty() {
            let mut st = self.st();
            let st = &mut *st;
            for (idx, flow, older) in reconnected {
                let accepted = |f: &u64| st.flows.get(f).is_some_and(|r| r.side == "accept");
                if !accepted(&flow) {
                    continue;
                }
                let olds: Vec<u64> = older.into_iter().filter(|f| accepted(f)).collect();
                let Some(u) = st.unicast.get_mut(idx) else {
                    continue;
                };
                for o in olds {
                    tracing::info!(
                        "IPCP {}: N-1 flow {o} replaced by {flow} (the member connected again): it goes in {} s.",
                        u.name,
                        RETIRE_AFTER.as_secs()
                    );
                    match u.dt_nb.iter().find(|(_, f)| **f == flow).map(|(a, _)| *a) {
                        // The new one is a DT flow: the old stays the next hop a while.
                        Some(addr) => replace_dt(u, now, addr, o, flow),
                        None => {
                            u.retiring.entry(o).or_insert(now + RETIRE_AFTER);
                        }
                    }
                }
            }
        }
        let resuming: Vec<(usize, UniSaved)> = self
            .st()
            .unicast
            .iter_mut()
            .enumerate()
            .filter_map(|(i, u)| u.resume.take().map(|s| (i, s)))
            .collect();
        for (i, s) in resuming {
            self.uni_claim(now, i, s);
        }
        {
            let mut st = self.st();
            let st = &mut *st;
            let mut down = vec![];
            for u in &mut st.unicast {
                let switch: Vec<u64> = u
                    .dt_standby
                    .iter()
                    .filter(|(_, (_, t))| *t <= now)
                    .map(|(a, _)| *a)
                    .collect();
                for a in switch {
                    if let Some((new, _)) = u.dt_standby.remove(&a) {
                        u.dt_nb.insert(a, new);
                    }
                }
                let due: Vec<u64> = u
                    .retiring
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(f, _)| *f)
                    .collect();
                for f in due {
                    u.retiring.remove(&f);
                    if u.conn.connected(f).is_some() {
                        // A connection of this o7sd's: marked down, the loop's next turn
                        // has its component forget it and closes it.
                        u.retired.insert(f);
                        down.push(f);
                        continue;
                    }
                    // An adopted DT flow nothing replaced: its member's link goes with it.
                    if let Some(a) = u.dt_nb.iter().find(|(_, x)| **x == f).map(|(a, _)| *a) {
                        u.dt_nb.remove(&a);
                        if let Some(ls) = u.ls.as_mut() {
                            ls.remove_dt(a);
                        }
                    }
                    close.push(f);
                }
            }
            for f in down {
                if let Some(r) = st.flows.get_mut(&f) {
                    r.down = true;
                }
            }
        }
        self.uni_sweep_adopted(now);
    }

    /// Adopted N-1 flows and flows over a unicast layer that no IPCP claimed in time:
    /// closed.
    pub(super) fn uni_sweep_adopted(&self, now: Instant) {
        let (n1, flows) = {
            let mut st = self.st();
            let n1: Vec<u64> = st
                .adopted_n1
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(**t) >= ADOPT_HOLD)
                .map(|(f, _)| *f)
                .collect();
            for f in &n1 {
                st.adopted_n1.remove(f);
            }
            let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.uni_adopted)
                .into_iter()
                .partition(|(t, _, _)| now.saturating_duration_since(*t) >= ADOPT_HOLD);
            st.uni_adopted = keep;
            (n1, old)
        };
        for f in n1 {
            tracing::info!("Adopted N-1 flow {f}: no unicast IPCP resumed with it: closed.");
            self.dealloc(f);
        }
        for (_, f, r) in flows {
            tracing::info!(
                "Adopted flow {} ({}) over a unicast IPCP that did not resume: closed.",
                f.flow,
                r.name
            );
            self.dp.send(&ToDp::DelFlow { flow: f.flow }, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn saved_state_is_read_back_only_for_the_same_ipcp() {
        let dir = std::env::temp_dir().join(format!("o7s-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = UniSaved {
            index: 1,
            layer: "ul".into(),
            addr: 0x1234_5678,
            dt: vec![(0x11, 5), (0x22, 6)],
            next_hop: vec![(0x11, 5), (0x22, 6), (0x33, 6)],
        };
        save(&dir, "uc", &s);
        assert_eq!(load(&dir, "uc", 1, "ul").unwrap(), s);
        assert!(load(&dir, "uc", 0, "ul")
            .unwrap_err()
            .contains("another IPCP"));
        assert!(load(&dir, "uc", 1, "other")
            .unwrap_err()
            .contains("another IPCP"));
        assert!(load(&dir, "ub", 1, "ul").is_err());
        std::fs::write(saved_path(&dir, "uc"), b"{").unwrap();
        assert!(load(&dir, "uc", 1, "ul").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_old_tables_routes_fill_the_new_ones_gaps_while_their_flows_live() {
        let old = [(1, 5), (2, 5), (3, 6)];
        // Only the neighbour so far (new DT flow 9): 2 through old flow 5, 3's flow is gone.
        let mut new = vec![(1, 9)];
        assert!(!fill_gaps(&mut new, &old, |f| f == 5));
        assert_eq!(new, [(1, 9), (2, 5)]);
        // The new table reaches all: nothing added, complete.
        let mut new = vec![(3, 9), (1, 9), (2, 9), (4, 9)];
        assert!(fill_gaps(&mut new, &old, |_| true));
        assert_eq!(new, [(1, 9), (2, 9), (3, 9), (4, 9)]);
    }
}
