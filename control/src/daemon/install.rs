//! A flow set up on both sides the same way: its limits checked, its shared memory made,
//! its entry installed in the data plane, and what its app gets.

use crate::daemon::{flow_mem, FlowRec, Owner};
use crate::dp::{DpError, INSTALL_WAIT};
use crate::error::FlowError;
use crate::eth::Peer;
use crate::registry::Accepted;
use o7s::proto::FlowInfo;
use o7s_abi::msg::{CryptSpec, ToDp};
use o7s_wire::qos::QosSpec;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

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

/// A flow whose installation the data plane has not acknowledged yet: the descriptors
/// its app will get, kept until then.
#[derive(Debug)]
pub(crate) struct Installing {
    /// o7sd's id of the flow.
    pub(crate) flow: u64,
    ack: Receiver<Result<(), DpError>>,
    deadline: Instant,
    /// The flow's memory and its two kicks (tx, rx), for the app.
    mem: [OwnedFd; 3],
    info: FlowInfo,
}

impl Installing {
    /// The installation of flow `flow` asked for at `now`; `ack` brings the data plane's
    /// answer; `mem`: the flow's memory and kicks (tx, rx) for the app.
    pub(crate) fn new(
        flow: u64,
        ack: Receiver<Result<(), DpError>>,
        now: Instant,
        mem: [OwnedFd; 3],
        info: FlowInfo,
    ) -> Self {
        Self {
            flow,
            ack,
            deadline: now + INSTALL_WAIT,
            mem,
            info,
        }
    }

    /// When it fails unless the data plane has answered.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Where an installation stands.
#[derive(Debug)]
pub(crate) enum Installed {
    /// Acknowledged: what the app gets.
    Done(Accepted),
    /// Not yet.
    Waiting(Installing),
}

impl Owner {
    /// Sets up the shared memory of a flow, records it and asks the data plane to install
    /// it; returns at once. [`Daemon::install_poll`] finishes it when the data plane
    /// acknowledges (or fails it after [`INSTALL_WAIT`]): the loop never waits for it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn install_start(
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
        now: Instant,
    ) -> Result<Installing, FlowError> {
        self.check_flow_limits(peer)?;
        self.check_process_limit(pid)?;
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
                layer_peer: None,
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
        let ack = self.dp.add_flow_start(
            &ToDp::AddFlow {
                flow,
                port,
                local,
                remote,
                peer: peer.mac(),
                timeout_ms: peer_timeout_ms(qos.timeout),
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
        let ack = match ack {
            Ok(ack) => ack,
            Err(e) => {
                // Forget it here and there (the data plane may install it late).
                self.dealloc(flow);
                return Err(FlowError::Install(e));
            }
        };
        let info = FlowInfo {
            id: flow,
            name: name.to_string(),
            qos,
            mtu,
            layer,
            local: false,
            swapped: false,
        };
        Ok(Installing::new(
            flow,
            ack,
            now,
            [memfd, tx.into_fd(), rx.into_fd()],
            info,
        ))
    }

    /// Takes an installation a step further: the app's flow once the data plane
    /// acknowledged it, the installation back while it may still come, an error (the flow
    /// forgotten here and there) when the data plane refused it, restarted, or let
    /// [`INSTALL_WAIT`] pass.
    pub(crate) fn install_poll(&self, i: Installing, now: Instant) -> Result<Installed, FlowError> {
        let answer = match i.ack.try_recv() {
            Ok(a) => a,
            Err(TryRecvError::Empty) if now < i.deadline => return Ok(Installed::Waiting(i)),
            Err(TryRecvError::Empty) => {
                self.dp.add_flow_forget(i.flow);
                Err(DpError::Silent)
            }
            Err(TryRecvError::Disconnected) => Err(DpError::Restarted),
        };
        if let Err(e) = answer {
            self.counters.install_failed.fetch_add(1, Ordering::Relaxed);
            self.dealloc(i.flow);
            return Err(FlowError::Install(e));
        }
        self.counters.flows.fetch_add(1, Ordering::Relaxed);
        Ok(Installed::Done(Accepted {
            info: i.info,
            flow: i.flow,
            fds: i.mem.into(),
        }))
    }

    /// Whether one more flow with `peer` is within the daemon's limits (`--max-flows`,
    /// `--max-flows-per-peer`); counted and explained when not.
    pub(super) fn check_flow_limits(&self, peer: Peer) -> Result<(), FlowError> {
        let same_peer = |p: &Peer| match (p, &peer) {
            (Peer::Ip(a), Peer::Ip(b)) => a.ip() == b.ip(),
            (a, b) => a == b,
        };
        let of_peer = self
            .st()
            .flows
            .values()
            .filter(|f| f.layer_peer.is_none() && same_peer(&f.peer))
            .count();
        self.limits(of_peer, &peer.to_string())
    }

    /// Refuses (counted) when local process `pid` holds its most flows.
    pub(crate) fn check_process_limit(&self, pid: i32) -> Result<(), FlowError> {
        let of_process = self.st().flows.values().filter(|f| f.pid == pid).count();
        if pid > 0 && of_process >= self.settings.max_flows_per_process {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Limit(format!(
                "process {pid} has its maximum of {} flows (o7sd --max-flows-per-process)",
                self.settings.max_flows_per_process
            )));
        }
        Ok(())
    }

    /// [`Owner::check_flow_limits`] for a flow over a unicast layer from the IPCP at
    /// `addr`: the daemon's bound, and the peer's, counted by its address.
    pub(crate) fn check_layer_flow_limits(&self, addr: u64) -> Result<(), FlowError> {
        let of_peer = self
            .st()
            .flows
            .values()
            .filter(|f| f.layer_peer == Some(addr))
            .count();
        self.limits(of_peer, &format!("the IPCP at {addr:#010x}"))
    }

    /// Refuses (counted) when the daemon has its most flows, or a peer that has `of_peer`
    /// (named `who`) has its.
    /// Whether `adding` more flows stay within the daemon's bound (`--max-flows`); counted
    /// and explained when not.
    pub(crate) fn check_daemon_limit(&self, adding: usize) -> Result<(), FlowError> {
        let all = self.st().flows.len();
        if all + adding > self.settings.max_flows {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Limit(format!(
                "this daemon has its maximum of {} flows (o7sd --max-flows)",
                self.settings.max_flows
            )));
        }
        Ok(())
    }

    fn limits(&self, of_peer: usize, who: &str) -> Result<(), FlowError> {
        self.check_daemon_limit(1)?;
        if of_peer >= self.settings.max_flows_per_peer {
            self.counters.flow_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Limit(format!(
                "{who} has its maximum of {} flows with this daemon (o7sd --max-flows-per-peer)",
                self.settings.max_flows_per_peer
            )));
        }
        Ok(())
    }
}

/// Longest a flow waits for its peer before it is down (ms): a peer's QoS may ask for up
/// to 49 days, and a flow whose peer is gone would hold its memory that long.
pub const MAX_PEER_TIMEOUT_MS: u32 = 3_600_000;

/// The data plane's liveness timeout for a flow whose QoS asks for `ms`: 1 s to
/// [`MAX_PEER_TIMEOUT_MS`].
pub(crate) fn peer_timeout_ms(ms: u32) -> u64 {
    u64::from(ms.clamp(1000, MAX_PEER_TIMEOUT_MS))
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
            layer_peer: None,
        }
    }

    #[test]
    fn a_peers_qos_timeout_is_bounded_to_an_hour() {
        assert_eq!(peer_timeout_ms(0), 1000);
        assert_eq!(peer_timeout_ms(120_000), 120_000);
        assert_eq!(peer_timeout_ms(u32::MAX), 3_600_000);
    }

    #[test]
    fn flows_over_a_unicast_layer_count_against_the_daemons_and_their_peers_limits() {
        let (o, _dp) = crate::daemon::fake_daemon();
        let (x, y) = (0x0a0a_0001u64, 0x0b0b_0002u64);
        let uni = |flow: u64, addr: u64, pid: i32| {
            let mut r = rec(usize::MAX, Peer::Mac([0; 6]), 0x40, false);
            (r.layer_peer, r.pid) = (Some(addr), pid);
            o.st().flows.insert(flow, r);
        };
        // The fake daemon's bounds: 24 flows, 16 per peer, 16 per process.
        for f in 0..15 {
            uni(f, x, 100 + f as i32);
        }
        assert!(o.check_layer_flow_limits(x).is_ok());
        uni(15, x, 200);
        let e = o.check_layer_flow_limits(x).unwrap_err().to_string();
        assert!(e.contains("the IPCP at 0x0a0a0001"), "{e}");
        // Another peer is refused only by the daemon's own bound.
        assert!(o.check_layer_flow_limits(y).is_ok());
        for f in 16..24 {
            uni(f, y, 300 + f as i32);
        }
        let e = o.check_layer_flow_limits(y).unwrap_err().to_string();
        assert!(e.contains("o7sd --max-flows)"), "{e}");
        o.st().flows.remove(&0);
        assert!(o.check_layer_flow_limits(x).is_ok());
        // Layer flows are not counted as the eth peer with the all-zero MAC's.
        assert!(o.check_flow_limits(Peer::Mac([0; 6])).is_ok());
        assert_eq!(o.counters.flow_limit.load(Ordering::Relaxed), 2);
        // A process's flows over the layer count against it.
        for f in 20..35 {
            let mut r = rec(usize::MAX, Peer::Mac([0; 6]), 0x40, false);
            r.pid = 7;
            o.st().flows.insert(f, r);
        }
        o.st().flows.retain(|id, _| *id >= 20);
        assert!(o.check_process_limit(7).is_ok());
        o.st()
            .flows
            .insert(40, rec(usize::MAX, Peer::Mac([0; 6]), 0x40, false));
        o.st().flows.get_mut(&40).unwrap().pid = 7;
        assert!(o.check_process_limit(7).is_err());
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

#[cfg(test)]
/// The data plane's acknowledgement of an installation, on a fake data plane and clock.
mod acknowledgement {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::config::IpcpKind;
    use crate::eth::EthIpcp;
    use o7s::ipc::Channel;
    use o7s_abi::msg::{FromDp, PortKind};
    use o7s_wire::hash::HashAlgo;
    use std::time::Duration;

    /// o7sd with one eth-dix IPCP on port 7 (MTU 1500) and, as its data plane, the test:
    /// the other end of the channel.
    fn daemon() -> (Owner, Channel) {
        let (d, theirs) = crate::daemon::fake_daemon();
        let mut i = EthIpcp::new(
            "e1",
            "wire",
            IpcpKind::EthDix,
            PortKind::Dix { ethertype: 0xa000 },
            "veth-test",
            HashAlgo::Sha3_256,
            7,
        );
        i.mtu = 1500;
        d.st().ipcps.push(i);
        (d, theirs)
    }

    const PEER: Peer = Peer::Mac([2, 0, 0, 0, 0, 9]);

    /// Starts installing a flow accepted for process 4242: local eid 0x11, remote 0x22.
    fn start(d: &Owner, now: Instant) -> Installing {
        d.install_start(
            0,
            0x11,
            0x22,
            PEER,
            "oping-server",
            QosSpec::RAW,
            "accept",
            4242,
            None,
            now,
        )
        .unwrap()
    }

    /// The next message o7sd sent its data plane, and the descriptors with it.
    fn sent(dp: &Channel) -> (ToDp, usize) {
        let (m, fds) = dp
            .recv_timeout::<ToDp>(Some(Duration::from_secs(2)))
            .unwrap();
        (m, fds.len())
    }

    #[test]
    fn an_installation_acknowledged_late_is_given_back_until_then_and_completes_when_it_comes() {
        let (d, dp) = daemon();
        let t0 = Instant::now();
        let inst = start(&d, t0);
        let flow = inst.flow;
        // What the data plane was asked: this flow, on the IPCP's port, the two ends'
        // endpoint ids (different, so a swap shows), with its memory and two kicks.
        match sent(&dp) {
            (
                ToDp::AddFlow {
                    flow: f,
                    port,
                    local,
                    remote,
                    peer,
                    pid,
                    ..
                },
                3,
            ) => {
                assert_eq!((f, port, local, remote), (flow, 7, 0x11, 0x22));
                assert_eq!((peer, pid), ([2, 0, 0, 0, 0, 9], 4242));
            }
            other => panic!("{other:?}"),
        }
        // Not acknowledged 1.9 s later: still waiting, given back.
        let inst = match d
            .install_poll(inst, t0 + Duration::from_millis(1900))
            .unwrap()
        {
            Installed::Waiting(i) => i,
            Installed::Done(_) => panic!("done without an acknowledgement"),
        };
        assert_eq!(d.counters.flows.load(Ordering::Relaxed), 0);
        // The acknowledgement comes (the events thread routes it) just before the deadline.
        assert!(d.dp.route(FromDp::FlowAdded { flow }).is_none());
        let acc = match d
            .install_poll(inst, t0 + Duration::from_millis(1999))
            .unwrap()
        {
            Installed::Done(acc) => acc,
            Installed::Waiting(_) => panic!("the acknowledgement was not seen"),
        };
        assert_eq!((acc.flow, acc.info.id, acc.fds.len()), (flow, flow, 3));
        assert_eq!((acc.info.mtu, acc.info.layer.as_str()), (1500, "wire"));
        assert_eq!(d.counters.flows.load(Ordering::Relaxed), 1);
        assert_eq!(d.counters.install_failed.load(Ordering::Relaxed), 0);
        assert!(d.st().flows.contains_key(&flow));
    }

    #[test]
    fn an_installation_never_acknowledged_fails_at_its_deadline_and_is_forgotten_both_sides() {
        let (d, dp) = daemon();
        let t0 = Instant::now();
        let inst = start(&d, t0);
        let flow = inst.flow;
        let _ = sent(&dp);
        assert_eq!(inst.deadline(), t0 + INSTALL_WAIT);
        match d.install_poll(inst, t0 + INSTALL_WAIT) {
            Err(FlowError::Install(DpError::Silent)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(d.counters.install_failed.load(Ordering::Relaxed), 1);
        assert_eq!(d.counters.flows.load(Ordering::Relaxed), 0);
        assert!(!d.st().flows.contains_key(&flow));
        // The data plane is told to drop it, should it install it late.
        match sent(&dp) {
            (ToDp::DelFlow { flow: f }, 0) => assert_eq!(f, flow),
            other => panic!("{other:?}"),
        }
        // Its late acknowledgement goes nowhere (and breaks nothing).
        assert!(d.dp.route(FromDp::FlowAdded { flow }).is_none());
    }

    #[test]
    fn a_refused_installation_fails_with_the_data_planes_reason() {
        let (d, dp) = daemon();
        let t0 = Instant::now();
        let inst = start(&d, t0);
        let flow = inst.flow;
        let _ = sent(&dp);
        let _ = d.dp.route(FromDp::FlowError {
            flow,
            error: "port 7 is gone".into(),
        });
        match d.install_poll(inst, t0 + Duration::from_millis(1)) {
            Err(FlowError::Install(DpError::Refused(why))) => assert_eq!(why, "port 7 is gone"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.counters.install_failed.load(Ordering::Relaxed), 1);
        assert!(!d.st().flows.contains_key(&flow));
    }

    #[test]
    fn a_data_plane_restart_ends_the_pending_installations_at_once() {
        let (d, dp) = daemon();
        let t0 = Instant::now();
        let (a, b) = (start(&d, t0), start(&d, t0));
        let _ = (sent(&dp), sent(&dp));
        d.dp.end_flow_waits();
        for inst in [a, b] {
            let flow = inst.flow;
            match d.install_poll(inst, t0 + Duration::from_millis(1)) {
                Err(FlowError::Install(DpError::Restarted)) => {}
                other => panic!("{other:?}"),
            }
            assert!(!d.st().flows.contains_key(&flow));
        }
        assert_eq!(d.counters.install_failed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn installations_are_acknowledged_each_on_its_own_in_any_order() {
        let (d, dp) = daemon();
        let t0 = Instant::now();
        let (a, b) = (start(&d, t0), start(&d, t0));
        assert_ne!(a.flow, b.flow);
        let _ = (sent(&dp), sent(&dp));
        let _ = d.dp.route(FromDp::FlowAdded { flow: b.flow });
        let t = t0 + Duration::from_millis(5);
        let a = match d.install_poll(a, t).unwrap() {
            Installed::Waiting(a) => a,
            Installed::Done(_) => panic!("a was not acknowledged"),
        };
        let (b_flow, b) = (b.flow, d.install_poll(b, t).unwrap());
        assert!(matches!(b, Installed::Done(ref acc) if acc.flow == b_flow));
        let _ = d.dp.route(FromDp::FlowAdded { flow: a.flow });
        assert!(matches!(d.install_poll(a, t).unwrap(), Installed::Done(_)));
        assert_eq!(d.counters.flows.load(Ordering::Relaxed), 2);
    }
}
