//! The local layer (`[local.X]`, the reference's `ipcpd-local`): flows between processes of
//! this host. o7sd pairs an allocating process with one accepting the name (starting the
//! name's program if it has one to auto-start) and gives both the same flow memory, the
//! accepting end with its rings the other way round (`FlowInfo::swapped`): each process
//! writes straight into the other's receive ring, with no data plane and no copy between.
//! The kicks cross the same way (one's tx kick is the other's rx kick).
//!
//! A flow ends when either process lets it go: its library marks the shared memory
//! (`APP_CLOSED`, which a local flow's other end reads as the end) and its connection
//! closes; o7sd then marks the memory `PEER_DOWN`, wakes both ends and closes the other
//! end's connection with a word. The two processes share only the rings, which each
//! side's library already treats as untrusted (indices and lengths checked, slots copied
//! out before use).

use crate::daemon::{dup, FlowRec, Owner};
use crate::error::FlowError;
use crate::eth::Peer;
use crate::registry::Accepted;
use o7s::proto::FlowInfo;
use o7s::ring::{FlowMem, Kick, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE};
use o7s_abi::ring::flags;
use o7s_wire::qos::QosSpec;
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The largest SDU of a local flow (lo's MTU, as the data plane's slots).
pub const LOCAL_MTU: usize = 9000;

/// The IPCP index local flows carry in their [`FlowRec`] (they are in no eth/udp IPCP;
/// flows over a unicast layer carry `usize::MAX`).
pub const LOCAL_IPCP: usize = usize::MAX - 1;

/// A local IPCP.
#[derive(Debug)]
pub struct LocalIpcp {
    /// Its name.
    pub name: String,
    /// Its layer.
    pub layer: String,
    /// Names registered in it.
    pub names: BTreeSet<String>,
}

/// Both ends of a local flow and what o7sd keeps to end it.
#[derive(Debug)]
pub struct LocalPair {
    /// The allocating end's flow id.
    pub a: u64,
    /// The accepting end's flow id.
    pub b: u64,
    /// The local IPCP's name.
    pub ipcp: String,
    mem: FlowMem,
    a_tx: Kick,
    a_rx: Kick,
}

/// An allocation over the local layer waiting for a process to accept.
#[derive(Debug)]
pub struct LocalJob {
    name: String,
    qos: QosSpec,
    pid: i32,
    ipcp: String,
    deadline: Instant,
    /// The name's program was started for it.
    started: bool,
}

impl LocalJob {
    /// When to poll it even if nothing woke the loop.
    pub fn deadline(&self, now: Instant) -> Instant {
        // Acceptors arrive without waking the loop: look every 20 ms.
        self.deadline.min(now + Duration::from_millis(20))
    }
}

/// Where a local allocation is.
#[derive(Debug)]
pub enum LocalStep {
    /// No process accepts yet.
    Pending(LocalJob),
    /// The flow for the allocating process, or why there is none.
    Done(Result<Accepted, FlowError>),
}

impl Owner {
    /// Creates the local IPCP of a `[local.X]` table and registers its names.
    pub(super) fn local_create(&self, i: &crate::config::IpcpConf) {
        let layer = i.bootstrap.clone().unwrap_or_else(|| i.name.clone());
        let mut st = self.st();
        if st.locals.iter().any(|l| l.name == i.name) {
            return;
        }
        st.locals.push(LocalIpcp {
            name: i.name.clone(),
            layer: layer.clone(),
            names: i.reg.iter().cloned().collect(),
        });
        drop(st);
        tracing::info!(
            "IPCP {} (local) bootstrapped in layer {layer}{}.",
            i.name,
            if i.reg.is_empty() {
                String::new()
            } else {
                format!("; registered {}", i.reg.join(", "))
            }
        );
    }

    /// Registers `name` in the local IPCP `ipcp`; false if there is none of that name.
    pub(super) fn local_register(&self, name: &str, ipcp: &str) -> bool {
        let mut st = self.st();
        let Some(l) = st
            .locals
            .iter_mut()
            .find(|l| l.name == ipcp || l.layer == ipcp)
        else {
            return false;
        };
        l.names.insert(name.to_string());
        true
    }

    /// Starts an allocation over the local layer when a local IPCP has `name`.
    pub(crate) fn local_alloc_start(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
        now: Instant,
    ) -> Option<LocalJob> {
        let st = self.st();
        let l = st.locals.iter().find(|l| l.names.contains(name))?;
        Some(LocalJob {
            name: name.to_string(),
            qos,
            pid,
            ipcp: l.name.clone(),
            deadline: now + timeout,
            started: false,
        })
    }

    /// Pairs the allocation with a process accepting its name, if one does now; starts the
    /// name's program once if none does; gives up at the time-out.
    pub(crate) fn local_poll(&self, mut job: LocalJob, now: Instant) -> LocalStep {
        let acc = self
            .st()
            .reg
            .take_acceptor(&job.name, &crate::registry::process_lives);
        if let Some(a) = acc {
            return LocalStep::Done(self.local_pair(&job, a));
        }
        if !job.started {
            job.started = true;
            let auto = self.st().reg.auto_prog(&job.name).is_some();
            if auto && !self.start_program(&job.name) {
                tracing::warn!(
                    "{}: the program of {} could not be started.",
                    job.ipcp,
                    job.name
                );
            }
        }
        if now >= job.deadline {
            let why = self.why_no_acceptor(&job.name);
            return LocalStep::Done(Err(FlowError::NoAcceptor {
                name: job.name,
                layer: job.ipcp,
                why,
            }));
        }
        LocalStep::Pending(job)
    }

    /// Makes the shared memory of a local flow, hands the accepting end to `a` and returns
    /// the allocating end's.
    fn local_pair(
        &self,
        job: &LocalJob,
        a: crate::registry::Acceptor,
    ) -> Result<Accepted, FlowError> {
        // Two flows of this daemon's: within its bounds as any other (the whole, and each
        // of the two processes').
        let limits = self
            .check_daemon_limit(2)
            .and_then(|()| self.check_process_limit(job.pid))
            .and_then(|()| self.check_process_limit(a.pid));
        if let Err(e) = limits {
            self.st().reg.restore(a);
            return Err(e);
        }
        let made = FlowMem::create(DEFAULT_SLOTS, DEFAULT_SLOT_SIZE)
            .and_then(|(mem, fd)| Ok((mem, fd, Kick::new()?, Kick::new()?)));
        let (mem, memfd, a_tx, a_rx) = match made {
            Ok(x) => x,
            Err(e) => {
                self.st().reg.restore(a);
                return Err(FlowError::Memory(e));
            }
        };
        let mtu = LOCAL_MTU.min(mem.max_sdu());
        // The kicks on descriptions of their own for each process (we keep ours: a dup would
        // share its O_NONBLOCK with them).
        let fds = |tx: &Kick, rx: &Kick| -> Option<Vec<OwnedFd>> {
            [dup(&memfd), tx.share().ok(), rx.share().ok()]
                .into_iter()
                .collect()
        };
        // The allocating end: as any flow. The accepting end: the rings and kicks crossed.
        let (Some(fa), Some(fb)) = (fds(&a_tx, &a_rx), fds(&a_rx, &a_tx)) else {
            self.st().reg.restore(a);
            return Err(FlowError::Descriptors);
        };
        let mut st = self.st();
        let layer = st
            .locals
            .iter()
            .find(|l| l.name == job.ipcp)
            .map(|l| l.layer.clone())
            .unwrap_or_default();
        st.next_flow += 2;
        let (ida, idb) = (st.next_flow - 1, st.next_flow);
        let rec = |side: &'static str, pid: i32, local: u64, remote: u64| FlowRec {
            ipcp: LOCAL_IPCP,
            local,
            remote,
            peer: Peer::Mac([0; 6]),
            name: job.name.clone(),
            side,
            pid,
            qos: job.qos,
            down: false,
            layer_peer: None,
        };
        st.flows.insert(ida, rec("alloc", job.pid, ida, idb));
        st.flows.insert(idb, rec("accept", a.pid, idb, ida));
        st.local_pairs.push(LocalPair {
            a: ida,
            b: idb,
            ipcp: job.ipcp.clone(),
            mem,
            a_tx,
            a_rx,
        });
        drop(st);
        let info = |id: u64, swapped: bool| FlowInfo {
            id,
            name: job.name.clone(),
            qos: job.qos,
            mtu,
            layer: layer.clone(),
            local: true,
            swapped,
        };
        let (apid, bpid) = (job.pid, a.pid);
        if a.handle
            .send(Accepted {
                info: info(idb, true),
                flow: idb,
                fds: fb,
            })
            .is_err()
        {
            self.dealloc(idb);
            return Err(FlowError::Internal(format!(
                "the process accepting {} went away",
                job.name
            )));
        }
        self.wake();
        self.counters.flows.fetch_add(2, Ordering::Relaxed);
        tracing::info!(
            "Flow {ida} (process {apid}) and flow {idb} (process {bpid}) to {} over local layer {layer}: one shared memory.",
            job.name
        );
        Ok(Accepted {
            info: info(ida, false),
            flow: ida,
            fds: fa,
        })
    }

    /// Ends the local flow `flow` and its other end, if it is one: the memory says so to
    /// both processes (woken), and the other end's connection is closed by the loop's
    /// sweep. False if `flow` is no local flow.
    pub(super) fn local_dealloc(&self, flow: u64) -> bool {
        let mut st = self.st();
        let Some(i) = st
            .local_pairs
            .iter()
            .position(|p| p.a == flow || p.b == flow)
        else {
            return false;
        };
        let p = st.local_pairs.swap_remove(i);
        st.flows.remove(&p.a);
        st.flows.remove(&p.b);
        drop(st);
        p.mem.flags().fetch_or(flags::PEER_DOWN, Ordering::SeqCst);
        p.a_tx.kick();
        p.a_rx.kick();
        self.wake();
        tracing::info!("Flows {} and {} (local {}) deallocated.", p.a, p.b, p.ipcp);
        true
    }

    /// The FRCP and CRC state a local flow's allocating end publishes, for `flow list`.
    pub(super) fn local_frcp(&self, flow: u64) -> (Option<o7s_abi::msg::FrcpStats>, Option<u32>) {
        let st = self.st();
        st.local_pairs
            .iter()
            .find(|p| p.a == flow || p.b == flow)
            .map_or((None, None), |p| (p.mem.frcp(), p.mem.crc()))
    }

    /// The local IPCPs' rows of `ipcp list`.
    pub(super) fn local_rows(&self) -> Vec<serde_json::Value> {
        self.st()
            .locals
            .iter()
            .map(|l| {
                serde_json::json!({"name": l.name, "type": "local", "layer": l.layer, "dev": "-",
                    "mac": "-", "mtu": LOCAL_MTU, "hash": "-", "state": "up", "io_path": "shared memory",
                    "registered": l.names.iter().collect::<Vec<_>>()})
            })
            .collect()
    }
}
