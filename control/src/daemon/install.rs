//! A flow set up on both sides the same way: its limits checked, its shared memory made,
//! its entry installed in the data plane, and what its app gets.

use crate::daemon::{dup, flow_mem, Daemon, FlowRec};
use crate::error::FlowError;
use crate::eth::Peer;
use crate::registry::Accepted;
use o7s::proto::FlowInfo;
use o7s_abi::msg::{CryptSpec, ToDp};
use o7s_wire::qos::QosSpec;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
// @@MISSING FlowError

/// What o7sd keeps of a flow in the data plane (opaque to it), so that an o7sd that adopts
/// the data plane after a crash knows the flow again.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct FlowRecord {
    pub name: String,
    pub side: String,
    pub qos: QosSpec,
    /// An N-1 flow of o7sd's own (a unicast or broadcast IPCP's): installed without a
    /// pid, so that the data plane keeps it when o7sd goes (a resumed IPCP takes it).
    #[serde(default)]
    pub own: bool,
}

impl Daemon {
    /// Sets up the shared memory and the data-plane entry of a flow, records it, and returns
    /// what the app gets.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn install_flow(
        &self,
        ipcp: usize,
        local: u32,
        remote: u32,
        peer: Peer,
        name: &str,
        qos: QosSpec,
        side: &'static str,
        pid: i32,
        crypt: Option<CryptSpec>,
    ) -> Result<Accepted, FlowError> {
        self.check_flow_limits(peer)?;
        {
            let st = self.st();
            let of_process = st.flows.values().filter(|f| f.pid == pid).count();
            if pid > 0 && of_process >= self.settings.max_flows_per_process {
                self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
                return Err(FlowError::Limit(format!(
                    "process {pid} has its maximum of {} flows (o7sd --max-flows-per-process)",
                    self.settings.max_flows_per_process
                )));
            }
        }
        let overhead = if crypt.is_some() {
            o7s_abi::CRYPT_OVERHEAD
        } else {
            0
        };
        let mtu = self
            .st()
            .ipcps
            .get(ipcp)
            .map(|i| i.mtu)
            .unwrap_or(0)
            .saturating_sub(overhead);
        let (memfd, tx, rx) = flow_mem(mtu).map_err(FlowError::Memory)?;
        let mut st = self.st();
        st.next_flow += 1;
        let flow = st.next_flow;
        let Some(i) = st.ipcps.get(ipcp) else {
            return Err(FlowError::Internal("IPCP vanished".into()));
        };
        let (port, layer) = (i.port, i.layer.clone());
        let stale = superseded(&st.flows, ipcp, peer, remote);
        st.flows.insert(
            flow,
            FlowRec {
                ipcp,
                local: u64::from(local),
                remote: u64::from(remote),
                peer,
                name: name.to_string(),
                side,
                pid,
                qos,
                down: false,
            },
        );
        drop(st);
        // The peer gave this flow an endpoint id one of our flows to it still names: it no
        // longer has that flow (it restarted, or ended it without telling: 0.23 has no
        // deallocation message), so ours goes now instead of at its peer timeout. An N-1
        // flow of a unicast IPCP ends with it (its neighbour's old links and routes).
        for old in stale {
            tracing::info!(
                "Flow {old}: {peer:?} reused endpoint id {remote:#x} for flow {flow} ({name}); its old end is gone, the flow ends."
            );
            self.dealloc(old);
            self.counters
                .flows_superseded
                .fetch_add(1, Ordering::Relaxed);
            self.wake();
        }
        let own = pid == std::process::id() as i32;
        let added = self.dp.add_flow(
            &ToDp::AddFlow {
                flow,
                port,
                local,
                remote,
                peer: peer.mac(),
                timeout_ms: u64::from(qos.timeout.max(1000)),
                peer_addr: peer.addr(),
                crypt,
                // o7sd's own flows outlive it in the data plane (o7sd ends them).
                pid: if own { 0 } else { pid },
                record: serde_json::to_string(&FlowRecord {
                    name: name.to_string(),
                    side: side.to_string(),
                    qos,
                    own,
                })
                .unwrap_or_default(),
                uni: None,
            },
            flow,
            &[memfd.as_fd(), tx.fd().as_fd(), rx.fd().as_fd()],
        );
        if let Err(e) = added {
            // Forget it here and there (the data plane may install it late).
            self.dealloc(flow);
            return Err(FlowError::Install(e));
        }
        self.counters.flows.fetch_add(1, Ordering::Relaxed);
        let fds = [dup(&memfd), dup(tx.fd()), dup(rx.fd())];
        let fds: Vec<OwnedFd> = fds.into_iter().flatten().collect();
        if fds.len() != 3 {
            self.dealloc(flow);
            return Err(FlowError::Descriptors);
        }
        Ok(Accepted {
            info: FlowInfo {
                id: flow,
                name: name.to_string(),
                qos,
                mtu,
                layer,
                local: false,
                swapped: false,
            },
            flow,
            fds,
        })
    }

    /// Whether one more flow with `peer` is within the daemon's limits (`--max-flows`,
    /// `--max-flows-per-peer`); counted and explained when not.
    pub(super) fn check_flow_limits(&self, peer: Peer) -> Result<(), FlowError> {
        let st = self.st();
        if st.flows.len() >= self.settings.max_flows {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Limit(format!(
                "this daemon has its maximum of {} flows (o7sd --max-flows)",
                self.settings.max_flows
            )));
        }
        let same_peer = |p: &Peer| match (p, &peer) {
            (Peer::Ip(a), Peer::Ip(b)) => a.ip() == b.ip(),
            (a, b) => a == b,
        };
        let of_peer = st.flows.values().filter(|f| same_peer(&f.peer)).count();
        if of_peer >= self.settings.max_flows_per_peer {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Limit(format!(
                "{peer} has its maximum of {} flows with this daemon (o7sd --max-flows-per-peer)",
                self.settings.max_flows_per_peer
            )));
        }
        Ok(())
    }
}

/// The flows of IPCP `ipcp` to `peer` whose remote endpoint id is `remote` and that are still
/// up: a new flow from that peer with that id supersedes them (the id is free at the peer).
pub(super) fn superseded(
    flows: &HashMap<u64, FlowRec>,
    ipcp: usize,
    peer: Peer,
    remote: u32,
) -> Vec<u64> {
    let mut v: Vec<u64> = flows
        .iter()
        .filter(|(_, f)| {
            f.ipcp == ipcp && f.peer == peer && f.remote == u64::from(remote) && !f.down
        })
        .map(|(id, _)| *id)
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(ipcp: usize, peer: Peer, remote: u32, down: bool) -> FlowRec {
        FlowRec {
            ipcp,
            local: 0x50,
            remote: u64::from(remote),
            peer,
            name: "ub".into(),
            side: "accept",
            pid: 1,
            qos: QosSpec::ZERO,
            down,
        }
    }

    #[test]
    fn a_reused_remote_id_supersedes_only_that_peers_live_flow_on_that_ipcp() {
        let c = Peer::Mac([2, 0, 0, 0, 0, 0x0c]);
        let d = Peer::Mac([2, 0, 0, 0, 0, 0x0d]);
        let mut flows = HashMap::new();
        flows.insert(1, rec(0, c, 0x40, false)); // C's old Management flow: superseded
        flows.insert(2, rec(0, c, 0x41, false)); // C's old DT flow: another id
        flows.insert(3, rec(0, d, 0x40, false)); // D's flow with the same id: another peer
        flows.insert(4, rec(1, c, 0x40, false)); // C on another IPCP (layer)
        flows.insert(5, rec(0, c, 0x40, true)); // already down
        flows.insert(6, rec(usize::MAX, c, 0x40, false)); // a unicast N+1 flow
        assert_eq!(superseded(&flows, 0, c, 0x40), vec![1]);
        assert_eq!(superseded(&flows, 0, c, 0x41), vec![2]);
        assert_eq!(superseded(&flows, 0, c, 0x42), Vec::<u64>::new());
        assert_eq!(superseded(&flows, 1, d, 0x40), Vec::<u64>::new());
    }
}
