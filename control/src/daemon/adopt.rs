//! Taking over from an o7sd that went away: the data plane it started kept forwarding
//! (dataplane/src/upstream.rs); this o7sd adopted it at start ([`crate::dp::Adopted`]).
//! Its ports go to the IPCPs of the configuration that name the same device (no port is
//! opened twice, the XDP program stays), its flows are known again from the records o7sd
//! gave the data plane, and their endpoint ids are taken in the layers' machines.

use super::install::FlowRecord;
use crate::daemon::{FlowRec, Owner};
use crate::eth::Peer;
use o7s_abi::msg::{AdoptedPort, PortKind, ToDp};
use std::time::Instant;

impl Owner {
    /// Keeps the adopted data plane's ports for the IPCPs the configuration creates.
    pub fn adopt_ports(&self, ports: Vec<AdoptedPort>, flows: &[o7s_abi::msg::AdoptedFlow]) {
        let mut st = self.st();
        st.adopted_eids = flows
            .iter()
            .filter(|f| f.uni.is_none())
            .map(|f| (f.port, f.local))
            .collect();
        st.next_port = st
            .next_port
            .max(ports.iter().map(|p| p.port).max().unwrap_or(0));
        st.adopted_ports = ports;
        st.dp_adopted = true;
    }

    /// The adopted port on `dev` of `kind`, if there is one (taken: it is the IPCP's now).
    pub(super) fn take_adopted_port(&self, dev: &str, kind: PortKind) -> Option<AdoptedPort> {
        let mut st = self.st();
        let i = st
            .adopted_ports
            .iter()
            .position(|p| p.dev == dev && p.kind == kind)?;
        Some(st.adopted_ports.swap_remove(i))
    }

    /// Knows the adopted data plane's flows again (after the configuration made the IPCPs):
    /// each on the IPCP that took its port. Flows and ports no IPCP took are closed, and
    /// flows whose process is gone (the previous o7sd's own, an app's that exited).
    pub fn adopt_flows(&self, flows: Vec<o7s_abi::msg::AdoptedFlow>) {
        let (mut kept, mut closed) = (0, 0);
        for f in flows {
            let record: Option<FlowRecord> = serde_json::from_str(&f.record).ok();
            let mut st = self.st();
            st.next_flow = st.next_flow.max(f.flow);
            // Its app ended it while o7sd started (the data plane removed it): nothing to
            // adopt, and an id reserved for it is free again.
            if st.gone_early.contains(&f.flow) {
                if st.adopted_eids.contains(&(f.port, f.local)) {
                    if let Some(i) = st.ipcps.iter_mut().find(|i| i.port == f.port) {
                        i.shim.release(f.local);
                    }
                }
                drop(st);
                tracing::info!("Adopted flow {} ended before it was adopted.", f.flow);
                closed += 1;
                continue;
            }
            // A flow over a unicast IPCP: its IPCP claims it when it resumes (or it goes,
            // unicast/resume.rs), unless its process is gone.
            if let (Some(_), Some(r)) = (&f.uni, &record) {
                if crate::registry::process_lives(f.pid) {
                    let now = Instant::now();
                    let Some(r) = record else { continue };
                    st.uni_adopted.push((now, f, r));
                    kept += 1;
                } else {
                    drop(st);
                    tracing::info!(
                        "Adopted flow {} ({} {}) over a unicast IPCP belonged to process {}, which is gone: closed.",
                        f.flow, r.side, r.name, f.pid
                    );
                    self.dp.send(&ToDp::DelFlow { flow: f.flow }, &[]);
                    closed += 1;
                }
                continue;
            }
            let idx = st.ipcps.iter().position(|i| i.port == f.port);
            let (Some(idx), Some(r)) = (idx, record) else {
                // An id reserved for it when its port was taken is free again.
                if st.adopted_eids.contains(&(f.port, f.local)) {
                    if let Some(i) = idx.and_then(|x| st.ipcps.get_mut(x)) {
                        i.shim.release(f.local);
                    }
                }
                drop(st);
                tracing::warn!(
                    "Adopted flow {} (port {}) belongs to no IPCP of this configuration: closed.",
                    f.flow,
                    f.port
                );
                self.dp.send(&ToDp::DelFlow { flow: f.flow }, &[]);
                closed += 1;
                continue;
            };
            // A flow whose process is gone has no end on this host any more: the N-1 flows
            // of the previous o7sd's own IPCPs (a unicast layer's Management and DT flows,
            // whose IPCP went with that o7sd) and those of an app that exited meanwhile.
            // Closed, so their endpoint ids are free again: the new IPCP's flows reuse them
            // and the neighbour, seeing an id it still knows reused, ends its old flows at
            // once (control/src/daemon/install.rs `superseded`) instead of after its
            // timeout.
            // o7sd's own N-1 flows stay for a resumed unicast IPCP to claim its DT flows
            // (until replaced); the rest (Management, Enrollment: their rings were the
            // old o7sd's) are closed when no IPCP claims them (unicast/resume.rs).
            if !r.own && !crate::registry::process_lives(f.pid) {
                if let Some(i) = st.ipcps.get_mut(idx) {
                    i.shim.release(f.local);
                }
                drop(st);
                tracing::info!(
                    "Adopted flow {} ({} {}, local {:#x}) belonged to process {}, which is gone: closed.",
                    f.flow,
                    r.side,
                    r.name,
                    f.local,
                    f.pid
                );
                self.dp.send(&ToDp::DelFlow { flow: f.flow }, &[]);
                closed += 1;
                continue;
            }
            // Reserved when the IPCP took the port; else taken now.
            let reserved = st.adopted_eids.contains(&(f.port, f.local));
            let Some(i) = st.ipcps.get_mut(idx) else {
                continue;
            };
            if !reserved && !i.shim.adopt_eid(f.local) {
                tracing::warn!(
                    "Adopted flow {}: endpoint id {:#x} is not free in {}",
                    f.flow,
                    f.local,
                    i.name
                );
            }
            let peer = match f.peer_addr {
                Some(a) => Peer::Ip(a),
                None => Peer::Mac(f.peer),
            };
            let side = if r.side == "accept" {
                "accept"
            } else {
                "alloc"
            };
            tracing::info!(
                "Adopted flow {} ({side} {}) of process {} on {}: local {:#x}, remote {:#x} at {peer}.",
                f.flow,
                r.name,
                f.pid,
                i.name,
                f.local,
                f.remote
            );
            let pid = if r.own {
                st.adopted_n1.insert(f.flow, Instant::now());
                std::process::id() as i32
            } else {
                f.pid
            };
            st.flows.insert(
                f.flow,
                FlowRec {
                    ipcp: idx,
                    local: u64::from(f.local),
                    remote: u64::from(f.remote),
                    peer,
                    name: r.name,
                    side,
                    pid,
                    qos: r.qos,
                    down: false,
                    layer_peer: None,
                },
            );
            kept += 1;
        }
        self.st().adopted_eids.clear();
        let left = std::mem::take(&mut self.st().adopted_ports);
        for p in left {
            tracing::warn!(
                "Adopted port {} ({}) belongs to no IPCP of this configuration: closed.",
                p.port,
                p.dev
            );
            self.dp.send(&ToDp::DelPort { port: p.port }, &[]);
        }
        if kept + closed > 0 {
            tracing::info!("Adopted {kept} flows ({closed} closed).");
        }
    }
}
