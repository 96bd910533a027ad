//! Several workers in one data plane (`o7sd --core 0,1`): each worker is a thread running
//! its own [`Dataplane`] loop pinned to its CPU, owning a share of the ports (assigned in
//! turn as they are added) and the flows on them, so the per-packet path stays lock-free.
//! The router, in the main thread, sits between `o7sd` and the workers on the control path
//! only: it sends each request to the worker that owns its port or flow, passes the
//! workers' messages on, and merges their counters. No data passes through it.

use crate::ctl_out::CtlOut;
use crate::msg::{AdoptedFlow, AdoptedPort, DpStats, FromDp, ToDp};
use crate::upstream::{Adoption, Upstream};
use crate::worker::Dataplane;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use o7s::ipc::Channel;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

struct Worker {
    ch: Channel,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    /// Counters it sent that wait to be merged.
    stats: VecDeque<DpStats>,
    /// Its ports and flows, for an o7sd that adopts the data plane, waiting to be merged.
    adopted: Option<(Vec<AdoptedPort>, Vec<AdoptedFlow>)>,
}

/// The router and its workers.
pub struct Router {
    /// The channel to o7sd and the socket a new o7sd adopts the data plane on.
    up: Upstream,
    /// Messages waiting for o7sd (sent without blocking).
    out: CtlOut,
    /// Management messages the router dropped because o7sd was behind, by port.
    backlog_drops: HashMap<u32, u64>,
    workers: Vec<Worker>,
    /// Which worker owns a port.
    port_owner: HashMap<u32, usize>,
    /// Which worker owns a flow.
    flow_owner: HashMap<u64, usize>,
    /// Flows of an app (pid > 0): while one is left, an orphan waits for an o7sd.
    app_flows: std::collections::HashSet<u64>,
    next: usize,
    /// Stats requests not answered yet.
    stats_wanted: usize,
    /// An adoption waits for the workers' ports and flows.
    adopt_wanted: bool,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("workers", &self.workers.len())
            .field("ports", &self.port_owner)
            .field("flows", &self.flow_owner.len())
            .finish()
    }
}

impl Router {
    /// Starts one worker per entry of `cores` (CPU numbers as given to `o7sd --core`).
    pub fn start(ctl: Channel, cores: &[String]) -> io::Result<Self> {
        let mut workers = Vec::new();
        // The workers hand each other the PDUs of flows the other one owns.
        let handoff = crate::handoff::Handoff::new(cores.len())?;
        for (i, core) in cores.iter().enumerate() {
            let (mine, theirs) = Channel::pair()?;
            let core = core.clone();
            let h = handoff.clone();
            let thread = std::thread::Builder::new()
                .name(format!("o7s-worker-{i}"))
                .spawn(move || {
                    Dataplane::with_core(theirs, Some(core))
                        .with_handoff(h, i)
                        .run()
                })?;
            workers.push(Worker {
                ch: mine,
                thread: Some(thread),
                stats: VecDeque::new(),
                adopted: None,
            });
        }
        tracing::info!("{} workers, ports assigned in turn", workers.len());
        Ok(Self {
            up: Upstream::new(ctl),
            out: CtlOut::default(),
            backlog_drops: HashMap::new(),
            workers,
            port_owner: HashMap::new(),
            flow_owner: HashMap::new(),
            app_flows: std::collections::HashSet::new(),
            next: 0,
            stats_wanted: 0,
            adopt_wanted: false,
        })
    }

    /// Routes until `o7sd` says stop or closes the channel, or a worker fails.
    pub fn run(&mut self) -> io::Result<()> {
        let result = self.route();
        for w in &self.workers {
            let _ = w.ch.send(&ToDp::Shutdown, &[]);
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                match t.join() {
                    Ok(Err(e)) => tracing::warn!("worker ended: {e}"),
                    Err(_) => tracing::error!("a worker panicked"),
                    Ok(Ok(())) => {}
                }
            }
        }
        result
    }

    fn route(&mut self) -> io::Result<()> {
        loop {
            let (ready, up_ready): (Vec<bool>, bool) = {
                let ctl_events = if self.out.is_empty() {
                    PollFlags::POLLIN
                } else {
                    PollFlags::POLLIN | PollFlags::POLLOUT
                };
                let mut fds = vec![PollFd::new(self.up.ctl.as_fd(), ctl_events)];
                fds.extend(
                    self.workers
                        .iter()
                        .map(|w| PollFd::new(w.ch.as_fd(), PollFlags::POLLIN)),
                );
                let up_at = fds.len();
                fds.extend(self.up.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
                // Without o7sd: wake to see whether it is time to go.
                let timeout = if self.up.is_orphan() || self.up.has_pending() {
                    PollTimeout::from(100u16)
                } else {
                    PollTimeout::NONE
                };
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::Error::EINTR) => {}
                    Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
                }
                let hit = |p: &PollFd<'_>| {
                    p.revents().is_some_and(|r| {
                        r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                    })
                };
                (
                    fds.iter().take(up_at).map(hit).collect(),
                    fds.iter().skip(up_at).any(hit),
                )
            };
            if ready.first() == Some(&true) && !self.handle_o7sd()? {
                return Ok(());
            }
            for (i, r) in ready.iter().skip(1).enumerate() {
                if *r {
                    self.handle_worker(i)?;
                }
            }
            if up_ready || self.up.has_pending() {
                if self.up.is_orphan() {
                    self.up.on_listener();
                }
                match self.up.on_pending(std::time::Instant::now()) {
                    Adoption::None => {}
                    Adoption::Stop => return Ok(()),
                    Adoption::Adopted => {
                        self.out.clear();
                        self.adopt_wanted = true;
                        for w in &mut self.workers {
                            w.adopted = None;
                            w.ch.send(&ToDp::Adopt, &[])?;
                        }
                    }
                }
            }
            if self.up.is_orphan() {
                self.out.clear();
                if self
                    .up
                    .expired(std::time::Instant::now(), !self.app_flows.is_empty())
                {
                    tracing::info!("no o7sd and no flow left: exiting");
                    return Ok(());
                }
            } else if self.out.flush(&self.up.ctl).is_err() && !self.lost_o7sd() {
                return Ok(());
            }
        }
    }

    /// o7sd went away: `true` to go on without it.
    fn lost_o7sd(&mut self) -> bool {
        self.out.clear();
        self.stats_wanted = 0;
        for w in &mut self.workers {
            w.stats.clear();
        }
        if self.up.orphan() {
            true
        } else {
            tracing::info!("o7sd closed the control channel: exiting");
            false
        }
    }

    /// One request from `o7sd`; `false` when it is time to stop.
    fn handle_o7sd(&mut self) -> io::Result<bool> {
        let (msg, fds): (ToDp, Vec<OwnedFd>) = match self.up.ctl.recv() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!("ignoring a bad control message: {e}");
                return Ok(true);
            }
            // o7sd is gone.
            Err(_) => return Ok(self.lost_o7sd()),
        };
        let target = match &msg {
            ToDp::AddPort { port, .. } => {
                let w = self.next % self.workers.len();
                self.next += 1;
                self.port_owner.insert(*port, w);
                Some(w)
            }
            ToDp::DelPort { port } => self.port_owner.remove(port),
            ToDp::PortSet { port, .. } => self.port_owner.get(port).copied(),
            ToDp::SendMgmt { port, .. } | ToDp::SendUdp { port, .. } => {
                self.port_owner.get(port).copied()
            }
            ToDp::AddFlow {
                flow, port, pid, ..
            } => {
                let w = self.port_owner.get(port).copied();
                if let Some(w) = w {
                    self.flow_owner.insert(*flow, w);
                    if *pid > 0 {
                        self.app_flows.insert(*flow);
                    }
                }
                w
            }
            ToDp::DelFlow { flow } => {
                self.app_flows.remove(flow);
                self.flow_owner.remove(flow)
            }
            ToDp::FlowMem { flow } => self.flow_owner.get(flow).copied(),
            ToDp::CaptureStart { port, .. } => self.port_owner.get(port).copied(),
            // Every worker forwards for every unicast IPCP.
            ToDp::CaptureStop { .. } | ToDp::UniTable { .. } => {
                for w in &self.workers {
                    w.ch.send(&msg, &[])?;
                }
                return Ok(true);
            }
            ToDp::Stats => {
                self.stats_wanted += 1;
                for w in &self.workers {
                    w.ch.send(&ToDp::Stats, &[])?;
                }
                return Ok(true);
            }
            ToDp::Shutdown => return Ok(false),
            ToDp::Adopt => {
                tracing::warn!("Adopt on the control channel: ignored");
                return Ok(true);
            }
        };
        match target.and_then(|w| self.workers.get(w)) {
            Some(w) => {
                let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                w.ch.send(&msg, &b)?;
            }
            None => {
                tracing::warn!("no worker owns the target of {msg:?}: dropped");
                if let ToDp::AddFlow { flow, .. } = msg {
                    self.out.push(FromDp::FlowError {
                        flow,
                        error: "no worker owns its port".into(),
                    });
                }
            }
        }
        Ok(true)
    }

    /// One message from worker `i`: counters wait to be merged, the rest goes to `o7sd`.
    fn handle_worker(&mut self, i: usize) -> io::Result<()> {
        let Some(w) = self.workers.get_mut(i) else {
            return Ok(());
        };
        let (msg, fds): (FromDp, Vec<OwnedFd>) =
            w.ch.recv()
                .map_err(|e| io::Error::other(format!("worker {i} is gone: {e}")))?;
        match msg {
            FromDp::Stats(s) => {
                w.stats.push_back(s);
                self.merge_stats()
            }
            FromDp::Adopted { ports, flows } => {
                w.adopted = Some((ports, flows));
                self.merge_adopted();
                Ok(())
            }
            FromDp::FlowGone { flow, .. } => {
                self.flow_owner.remove(&flow);
                self.app_flows.remove(&flow);
                self.out.push(msg);
                Ok(())
            }
            FromDp::Mgmt { port, .. } | FromDp::UdpMgmt { port, .. } => {
                if !self.out.push_mgmt(msg) {
                    *self.backlog_drops.entry(port).or_default() += 1;
                }
                Ok(())
            }
            other => {
                // Workers send no descriptors.
                drop(fds);
                self.out.push(other);
                Ok(())
            }
        }
    }

    /// Answers the adopting o7sd once every worker has said what it has.
    fn merge_adopted(&mut self) {
        if !self.adopt_wanted || self.workers.iter().any(|w| w.adopted.is_none()) {
            return;
        }
        self.adopt_wanted = false;
        let (mut ports, mut flows) = (Vec::new(), Vec::new());
        for w in &mut self.workers {
            if let Some((p, f)) = w.adopted.take() {
                ports.extend(p);
                flows.extend(f);
            }
        }
        self.out.push(FromDp::Adopted { ports, flows });
    }

    /// Answers a stats request once every worker has sent its counters.
    fn merge_stats(&mut self) -> io::Result<()> {
        while self.stats_wanted > 0 && self.workers.iter().all(|w| !w.stats.is_empty()) {
            self.stats_wanted -= 1;
            let mut all = DpStats::default();
            for (i, w) in self.workers.iter_mut().enumerate() {
                let Some(mut s) = w.stats.pop_front() else {
                    continue;
                };
                for p in &mut s.ports {
                    p.worker = i as u32;
                    p.drop_mgmt_backlog += self.backlog_drops.get(&p.port).copied().unwrap_or(0);
                }
                if i == 0 {
                    all.worker = s.worker.clone();
                }
                all.ports.append(&mut s.ports);
                all.flows.append(&mut s.flows);
                all.workers.push(s.worker);
                for u in s.uni {
                    match all.uni.iter_mut().find(|a| a.ipcp == u.ipcp) {
                        Some(a) => add_uni(a, &u),
                        None => all.uni.push(u),
                    }
                }
            }
            self.out.push(FromDp::Stats(all));
        }
        Ok(())
    }
}

/// Adds worker counters `b` of a unicast IPCP to `a`. Every field is named (no `..`), so a
/// new counter does not compile until it is added here too (before, `drop_loop` and the
/// MB-ECN counters showed one worker's share in `ipcp list`).
fn add_uni(a: &mut crate::msg::UniStats, b: &crate::msg::UniStats) {
    let crate::msg::UniStats {
        ipcp: _,
        forwarded,
        delivered,
        to_o7sd,
        sent,
        drop_short,
        drop_ttl,
        drop_no_route,
        drop_unknown_eid,
        drop_reserved_eid,
        drop_loop,
        drop_n1,
        via_o7sd,
        handed_off,
        handed_in,
        drop_handoff,
        forwarded_in_place,
        forwarded_one_pass,
        ca_updates_in,
        ca_updates_out,
        ca_updates_unknown,
        ca_updates_ignored,
    } = b;
    a.forwarded += forwarded;
    a.delivered += delivered;
    a.to_o7sd += to_o7sd;
    a.sent += sent;
    a.drop_short += drop_short;
    a.drop_ttl += drop_ttl;
    a.drop_no_route += drop_no_route;
    a.drop_unknown_eid += drop_unknown_eid;
    a.drop_reserved_eid += drop_reserved_eid;
    a.drop_loop += drop_loop;
    a.drop_n1 += drop_n1;
    a.via_o7sd += via_o7sd;
    a.handed_off += handed_off;
    a.handed_in += handed_in;
    a.drop_handoff += drop_handoff;
    a.forwarded_in_place += forwarded_in_place;
    a.forwarded_one_pass += forwarded_one_pass;
    a.ca_updates_in += ca_updates_in;
    a.ca_updates_out += ca_updates_out;
    a.ca_updates_unknown += ca_updates_unknown;
    a.ca_updates_ignored += ca_updates_ignored;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_workers_unicast_counters_are_summed_field_by_field() {
        // Every counter of one worker set to its position (1, 2, 3, ...): two workers
        // summed give each counter twice its value, none left out.
        let mut v = serde_json::to_value(crate::msg::UniStats::default()).unwrap();
        let m = v.as_object_mut().unwrap();
        let mut want = serde_json::Map::new();
        for (i, (k, x)) in m.iter_mut().enumerate() {
            if k != "ipcp" {
                *x = serde_json::json!(i + 1);
                want.insert(k.clone(), serde_json::json!(2 * (i + 1)));
            }
        }
        let b: crate::msg::UniStats = serde_json::from_value(v).unwrap();
        let mut a = crate::msg::UniStats::default();
        add_uni(&mut a, &b);
        add_uni(&mut a, &b);
        let mut got = serde_json::to_value(&a).unwrap();
        got.as_object_mut().unwrap().remove("ipcp");
        assert_eq!(got, serde_json::Value::Object(want));
        assert!(got.as_object().unwrap().len() >= 20);
    }
}
