//! A unicast IPCP that outlives its o7sd (issue 26 item 4): the data plane keeps
//! forwarding after `kill -9` of o7sd (dataplane/src/upstream.rs), with the IPCP's last
//! forwarding table, its N-1 flows (o7sd's own flows are installed without a pid, so the
//! data plane does not end them with o7sd) and the flows over the layer. The next o7sd
//! that adopts that data plane resumes the IPCP, and its neighbours see nothing:
//!
//! - its address, layer, connections (N-1 flow, component, member) and LSDB come from
//!   `<rundir>/unicast-<name>.json` ([`UniSaved`]), which o7sd rewrites when the IPCP's
//!   forwarding table changes and twice per link-state update period; only an o7sd that
//!   adopted the data plane reads it (a fresh data plane has none of the flows);
//! - the IPCP enrols (or bootstraps) again as configured but keeps the saved address and
//!   makes no new connections: each saved connection's N-1 flow gets new shared memory
//!   that this o7sd reads (`ToDp::FlowMem`; what waited in the old rings is lost) and is
//!   up again in the connection machine, link state and DT neighbours at once;
//! - the LSDB is restored (our own links a few seqnos on, above what the neighbours hold),
//!   so the table is whole at once; should it still lack a destination the adopted table
//!   had, that route fills the gap for up to [`ADOPT_HOLD`];
//! - the flows over the layer are known again (flow list, their endpoint ids taken in the
//!   flow allocator, released when they end).
//!
//! Adopted N-1 flows and flows over a layer that no IPCP claims within [`ADOPT_HOLD`] are
//! closed (an Enrollment flow, a layer that is not in the new configuration).

use super::super::install::FlowRecord;
use super::flows::UniFlowP;
use crate::daemon::{dup, flow_mem, unicast, FlowRec, Owner};
use crate::eth::Peer;
use o7s::ring::FlowMem;
use o7s_abi::msg::ToDp;
use o7s_wire::unicast::pb::Component;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long the adopted table may fill a resumed IPCP's gaps, and adopted flows may
/// wait for their IPCP.
pub(in crate::daemon) const ADOPT_HOLD: Duration = Duration::from_secs(10);

/// What a restarted o7sd needs to resume a unicast IPCP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct UniSaved {
    /// The IPCP's index (the data plane's id of it in tables and flows).
    pub index: usize,
    /// Its layer.
    pub layer: String,
    /// Its address.
    pub addr: u64,
    /// Its connections: (N-1 flow, component name, the member's address).
    pub conns: Vec<(u64, String, u64)>,
    /// Its LSDB: ((source, destination), seqno).
    pub lsdb: Vec<((u64, u64), u64)>,
    /// Its forwarding table: (destination, N-1 flow).
    pub next_hop: Vec<(u32, u64)>,
    /// The pid of the data plane that had its flows when it was saved: state saved beside
    /// another data plane (a run before the one that crashed) is not resumed.
    #[serde(default)]
    pub dp: u32,
}

/// The file of IPCP `name` in `rundir`.
pub(in crate::daemon) fn saved_path(rundir: &std::path::Path, name: &str) -> std::path::PathBuf {
    rundir.join(format!("unicast-{name}.json"))
}

/// Writes `s` for IPCP `name` (atomically: a crash leaves the old file or the new one).
pub(in crate::daemon) fn save(rundir: &std::path::Path, name: &str, s: &UniSaved) {
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

/// Why saved state cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ResumeError {
    /// The file cannot be read (there is none: the IPCP was not running).
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It does not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// It was saved beside another data plane than the one adopted.
    #[error("{path} was saved beside data plane {saved}, not the adopted {adopted}")]
    OtherDataPlane {
        /// The file.
        path: std::path::PathBuf,
        /// Its data plane's pid.
        saved: u32,
        /// The adopted one's.
        adopted: u32,
    },
    /// It is another IPCP's (another index or layer, or no address).
    #[error("{path} is of another IPCP (index {index}, layer {layer}, address {addr:#x})")]
    Other {
        /// The file.
        path: std::path::PathBuf,
        /// Its index.
        index: usize,
        /// Its layer.
        layer: String,
        /// Its address.
        addr: u64,
    },
}

/// The saved state of IPCP `name` (index `index`) in layer `layer`, when the file matches.
pub(in crate::daemon) fn load(
    rundir: &std::path::Path,
    name: &str,
    index: usize,
    layer: &str,
    dp: u32,
) -> Result<UniSaved, ResumeError> {
    let path = saved_path(rundir, name);
    let b = std::fs::read(&path).map_err(|source| ResumeError::Read {
        path: path.clone(),
        source,
    })?;
    let s: UniSaved = serde_json::from_slice(&b).map_err(|source| ResumeError::Parse {
        path: path.clone(),
        source,
    })?;
    if s.index != index || s.layer != layer || s.addr == 0 || s.addr > u64::from(u32::MAX) {
        return Err(ResumeError::Other {
            path,
            index: s.index,
            layer: s.layer,
            addr: s.addr,
        });
    }
    if s.dp != dp {
        return Err(ResumeError::OtherDataPlane {
            path,
            saved: s.dp,
            adopted: dp,
        });
    }
    Ok(s)
}

/// The saved state of IPCP `name` (index `index`), of whichever layer: an enrolling
/// IPCP learns its layer only when enrolled (the machine takes the saved address only
/// in that layer: `UnicastIpcp::propose_address_in`).
pub(in crate::daemon) fn load_any(
    rundir: &std::path::Path,
    name: &str,
    index: usize,
    dp: u32,
) -> Result<UniSaved, ResumeError> {
    let path = saved_path(rundir, name);
    let b = std::fs::read(&path).map_err(|source| ResumeError::Read {
        path: path.clone(),
        source,
    })?;
    let s: UniSaved = serde_json::from_slice(&b).map_err(|source| ResumeError::Parse {
        path: path.clone(),
        source,
    })?;
    load(rundir, name, index, &s.layer, dp)
}

/// The table to install while a resumption's hold lasts: `new`, with the routes of the
/// adopted table `old` it lacks whose N-1 flow is still `alive`. `true` with it when
/// nothing had to be added (the new table reaches all the old one did).
pub(in crate::daemon) fn fill_gaps(
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

impl Owner {
    /// Claims what a resumed IPCP had in the adopted data plane: its LSDB, its
    /// connections (their N-1 flows get new memory this o7sd reads: the members at their
    /// other ends see nothing) and its flows over the layer.
    pub(in crate::daemon) fn uni_claim(&self, now: Instant, idx: usize, s: UniSaved) {
        let mut mems: Vec<(u64, OwnedFd, OwnedFd, OwnedFd)> = vec![];
        let mut guard = self.st();
        let st = &mut *guard;
        let Some(u) = st.unicast.get_mut(idx) else {
            return;
        };
        let mut adopted: Vec<o7s_proto::ipcp::unicast::Adopted> = vec![];
        for (flow, comp, addr) in &s.conns {
            let comp = [
                Component::Management,
                Component::DataTransfer,
                Component::Enrollment,
            ]
            .into_iter()
            .find(|c| c.comp_name() == comp.as_str());
            let (Some(comp), Some(rec)) = (comp, st.flows.get(flow)) else {
                continue;
            };
            if comp == Component::Enrollment || st.adopted_n1.remove(flow).is_none() {
                continue;
            }
            let mtu = st.ipcps.get(rec.ipcp).map_or(0, |i| i.mtu);
            let made = flow_mem(mtu).and_then(|(memfd, tx, rx)| {
                let mem = FlowMem::open(&memfd)?;
                Ok((memfd, mem, tx, rx))
            });
            let (memfd, mem, tx, rx) = match made {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!("N-1 flow {flow} of {}: no memory for it: {e}", u.name);
                    continue;
                }
            };
            // Kick us whenever an SDU arrives (we never spin on the ring).
            mem.ring(o7s::ring::Dir::Rx)
                .waiting()
                .store(1, Ordering::SeqCst);
            let (Some(t), Some(r)) = (dup(tx.fd()), dup(rx.fd())) else {
                continue;
            };
            mems.push((*flow, memfd, t, r));
            st.n1_adopted.push(unicast::N1 {
                uni: idx,
                flow: *flow,
                mem,
                tx,
                rx,
            });
            adopted.push(o7s_proto::ipcp::unicast::Adopted {
                flow: *flow,
                comp,
                peer_addr: *addr,
                link: super::link_tag(rec.ipcp, rec.peer),
            });
        }
        // The LSDB and the connections, up at once in the machine.
        let links = u.m.as_mut().map_or(0, |m| m.resume(now, &s.lsdb, &adopted));
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
            // Its app ended it meanwhile (the data plane removed it).
            if st.gone_early.contains(&f.flow) {
                tracing::info!("Adopted flow {} ended before {} resumed.", f.flow, u.name);
                continue;
            }
            let taken = u.m.as_mut().is_some_and(|m| m.adopt_eid(spec.local_eid));
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
                    layer_peer: Some(u64::from(spec.dst)),
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
            "IPCP {}: resumed at address {:#010x} in layer {} from the adopted data plane: {links} connection(s), {} LSDB record(s), {flows} flow(s) over the layer.",
            u.name,
            s.addr,
            s.layer,
            s.lsdb.len()
        );
        drop(guard);
        for (flow, memfd, tx, rx) in mems {
            self.dp.send(
                &ToDp::FlowMem { flow },
                &[memfd.as_fd(), tx.as_fd(), rx.as_fd()],
            );
        }
    }

    /// After the machines' events: resumed IPCPs claim what they had; unclaimed adopted
    /// flows go.
    pub(in crate::daemon) fn uni_after_pump(&self, now: Instant) {
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
        self.uni_sweep_adopted(now);
    }

    /// Adopted N-1 flows and flows over a unicast layer that no IPCP claimed in time:
    /// closed.
    pub(in crate::daemon) fn uni_sweep_adopted(&self, now: Instant) {
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
            conns: vec![
                (5, "Management".into(), 0x11),
                (6, "Data Transfer".into(), 0x11),
            ],
            lsdb: vec![((0x1234_5678, 0x11), 3), ((0x11, 0x1234_5678), 4)],
            next_hop: vec![(0x11, 5), (0x22, 6), (0x33, 6)],
            dp: 4711,
        };
        save(&dir, "uc", &s);
        assert_eq!(load(&dir, "uc", 1, "ul", 4711).unwrap(), s);
        let other = |e: ResumeError| matches!(e, ResumeError::Other { .. });
        assert!(load(&dir, "uc", 0, "ul", 4711).is_err_and(other));
        assert!(load(&dir, "uc", 1, "other", 4711).is_err_and(other));
        // Saved beside another data plane (an earlier run's): not this one's state.
        assert!(load(&dir, "uc", 1, "ul", 4712).is_err_and(|e| matches!(
            e,
            ResumeError::OtherDataPlane {
                saved: 4711,
                adopted: 4712,
                ..
            }
        )));
        assert!(
            load(&dir, "ub", 1, "ul", 4711).is_err_and(|e| matches!(e, ResumeError::Read { .. }))
        );
        std::fs::write(saved_path(&dir, "uc"), b"{").unwrap();
        assert!(
            load(&dir, "uc", 1, "ul", 4711).is_err_and(|e| matches!(e, ResumeError::Parse { .. }))
        );
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
