//! A flow's and the worker's life beyond o7sd: flows removed when their app exits (a
//! pidfd) or lets them go (the `APP_CLOSED` flag), o7sd going away (the worker keeps
//! forwarding), and a new o7sd adopting the worker (it gets the ports and flows).

use super::*;
use crate::msg::{AdoptedFlow, AdoptedPort};
use crate::upstream::Adoption;
use std::os::fd::{FromRawFd, OwnedFd};

/// A pidfd on process `pid` (readable once it exits); `None` when it cannot be had (no
/// pid given, the process is gone already, or an old kernel).
#[allow(unsafe_code)]
pub(super) fn pidfd(pid: i32) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    // Safety: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|f| *f >= 0)?;
    // Safety: the descriptor was just returned by the kernel and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Dataplane {
    /// [`ToDp::FlowMem`]: flow `flow` gets the memory and kicks in `fds` (`[memfd, tx
    /// kick, rx kick]`), given by an o7sd that took back its own N-1 flow.
    pub(super) fn flow_mem(&mut self, flow: u64, fds: Vec<OwnedFd>) {
        let Some(f) = self.flows.get_mut(&flow) else {
            tracing::warn!("flow {flow}: new memory for a flow there is not: ignored");
            return;
        };
        let mut it = fds.into_iter();
        let (Some(mem), Some(tx), Some(rx)) = (it.next(), it.next(), it.next()) else {
            tracing::warn!("flow {flow}: new memory without its descriptors: ignored");
            return;
        };
        let opened = FlowMem::open_sealed(&mem)
            .map_err(|e| format!("bad flow memory: {e}"))
            .and_then(|m| {
                let kick = |fd| Kick::from_fd(fd).map_err(|e| format!("bad kick: {e}"));
                Ok((m, kick(tx)?, kick(rx)?))
            });
        match opened {
            Ok((m, tx_kick, rx_kick)) => {
                f.mem = m;
                f.tx_kick = tx_kick;
                f.rx_kick = rx_kick;
                f.kick_due = false;
                tracing::info!("flow {flow}: new memory from the adopting o7sd");
            }
            Err(e) => tracing::warn!("flow {flow}: {e}: ignored"),
        }
    }

    /// Removes a flow: sends what its app wrote first (no data is lost), marks its memory
    /// closed and wakes the app.
    pub(super) fn remove_flow(&mut self, flow: u64) {
        let path = self.tx_path(flow);
        for _ in 0..64 {
            let n = self.tx_any(flow, path);
            if n == 0 {
                break;
            }
        }
        self.tables_changed = true;
        if let Some(f) = self.flows.remove(&flow) {
            if let Some((h, w)) = &self.handoff {
                h.disown(*w, flow, f.uni.map(|u| (u.ipcp, u.local_eid)));
            }
            self.tab.remove_egress(flow);
            match f.uni {
                Some(u) => {
                    if let Some(l) = self.tab.local_flows_mut(u.ipcp) {
                        l.remove(&u.local_eid);
                    }
                }
                None => {
                    self.tab.remove_flow(f.port, f.local);
                }
            }
            f.mem.flags().fetch_or(flags::CLOSED, Ordering::SeqCst);
            f.rx_kick.kick();
        }
    }

    /// Every 100 ms: flows whose app exited or let them go are removed (o7sd is told, when
    /// there is one), so that a flow does not outlive its app while no o7sd watches.
    pub(super) fn check_apps(&mut self) {
        let mut gone = Vec::new();
        {
            let mut fds = Vec::new();
            let mut ids = Vec::new();
            for (id, f) in &self.flows {
                // A ring the app corrupted (impossible indices, or a slot's length) stays
                // so: nothing more can be read or written.
                let corrupt = |d| f.mem.ring(d).len().is_err() || f.stats.drop_ring_corrupt > 0;
                if f.mem.flags().load(Ordering::SeqCst) & flags::APP_CLOSED != 0 {
                    gone.push((*id, "its app let it go"));
                } else if corrupt(Dir::Tx) || corrupt(Dir::Rx) {
                    gone.push((*id, "its app corrupted its ring"));
                } else if let Some(p) = &f.pidfd {
                    fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                    ids.push(*id);
                }
            }
            if !fds.is_empty() && poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0 {
                for (p, id) in fds.iter().zip(ids) {
                    if p.revents().is_some_and(|r| !r.is_empty()) {
                        gone.push((id, "its process exited"));
                    }
                }
            }
        }
        for (flow, why) in gone {
            let pid = self.flows.get(&flow).map_or(0, |f| f.pid);
            tracing::info!("flow {flow}: removed: {why} (pid {pid})");
            self.remove_flow(flow);
            self.out.push(FromDp::FlowGone {
                flow,
                why: why.to_string(),
            });
        }
    }

    /// o7sd closed the channel: `true` to go on without it (forwarding the flows there
    /// are until a new o7sd adopts us), `false` to stop.
    pub(super) fn lost_o7sd(&mut self) -> bool {
        self.out.clear();
        if self.up.orphan() {
            // Captures were o7sctl's: their readers went with o7sd.
            for p in self.ports.values_mut() {
                p.taps.clear();
            }
            true
        } else {
            tracing::info!("o7sd closed the control channel: exiting");
            false
        }
    }

    /// The data plane's socket or a connection on it is readable; `false` to stop.
    pub(super) fn tend_upstream(&mut self) -> bool {
        if self.up.is_orphan() {
            self.up.on_listener();
        }
        match self.up.on_pending(Instant::now()) {
            Adoption::None => true,
            Adoption::Stop => false,
            Adoption::Adopted => {
                let m = self.adopted();
                self.out.push(m);
                true
            }
        }
    }

    /// The ports and flows, for the o7sd that adopts us.
    pub(super) fn adopted(&self) -> FromDp {
        let ports = self
            .ports
            .iter()
            .map(|(id, p)| AdoptedPort {
                port: *id,
                dev: p.dev.clone(),
                kind: p.kind,
                mac: p.mac,
                mtu: p.stats.mtu,
                io_path: p.stats.io_path.clone(),
            })
            .chain(self.uports.iter().map(|(id, u)| AdoptedPort {
                port: *id,
                dev: u.stats.dev.clone(),
                kind: PortKind::Udp { addr: u.addr },
                mac: [0; 6],
                mtu: u.stats.mtu,
                io_path: u.stats.io_path.clone(),
            }))
            .collect();
        // Flows over a unicast IPCP too: an o7sd that resumes the IPCP (the same address)
        // takes them back, another closes them.
        let flows = self
            .flows
            .iter()
            .map(|(id, f)| AdoptedFlow {
                flow: *id,
                port: f.port,
                local: f.local,
                remote: f.remote,
                peer: f.peer,
                peer_addr: f.peer_addr,
                pid: f.pid,
                timeout_ms: f.timeout_ms,
                record: f.record.clone(),
                uni: f.uni,
            })
            .collect();
        FromDp::Adopted { ports, flows }
    }
}
