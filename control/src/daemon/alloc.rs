//! Flow allocation as requester: resolving names, FLOW_REQ through the shim machine, the
//! flow installed in the data plane. An allocation is a job the event loop drives
//! ([`Daemon::alloc_start`], then [`Daemon::alloc_poll`] each time it wakes): it never
//! waits, so allocations in progress take no thread.

pub(super) use super::client_oap::ClientOap;
use crate::config::IpcpKind;
use crate::daemon::install::{Installed, Installing};
use crate::daemon::{Owner, State};
use crate::error::FlowError;
use crate::eth::{Peer, ReplyInfo};
use crate::registry::Accepted;
use crate::security::Ephemeral;
use o7s_abi::msg::PortKind;
use o7s_proto::shim::ShimError;
use o7s_wire::qos::QosSpec;
use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most udp name lookups (DNS or the system resolver, which block) at once.
pub const MAX_LOOKUPS: usize = 16;

/// An allocation in progress.
#[derive(Debug)]
pub(crate) struct AllocJob {
    name: String,
    qos: QosSpec,
    timeout: Duration,
    pid: i32,
    start: Instant,
    stage: Stage,
    /// Allocated for an IPCP of a secured layer: its membership signs the request and
    /// checks the response.
    member: Option<Arc<crate::membership::Membership>>,
}

#[derive(Debug)]
enum Stage {
    /// Waiting for a layer to find the name.
    Resolving {
        rx: Receiver<(usize, Peer)>,
        deadline: Instant,
        asked: String,
    },
    /// FLOW_REQ sent: waiting for the FLOW_REPLY.
    Replying(Box<Replying>),
    /// Answered: waiting for the data plane to install the flow.
    Installing(Box<InstallingAlloc>),
}

/// An allocated flow the data plane is installing, and what to give back if it does not.
#[derive(Debug)]
struct InstallingAlloc {
    inst: Installing,
    /// The IPCP and the endpoint id its shim gave the flow.
    idx: usize,
    local: u32,
    remote: u32,
    peer: Peer,
}

struct Replying {
    idx: usize,
    /// The shim's id of the allocation (its waiter's key).
    id: u64,
    local: u32,
    peer: Peer,
    rx: Receiver<Result<ReplyInfo, ShimError>>,
    deadline: Instant,
    req_oap: Vec<u8>,
    enc: Option<(o7s_proto::oap::keys::EncConf, std::path::PathBuf)>,
    eph: Option<Ephemeral>,
}

impl std::fmt::Debug for Replying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replying")
            .field("idx", &self.idx)
            .field("local", &self.local)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Where an allocation stands after a step.
#[derive(Debug)]
pub(crate) enum Step {
    /// Finished: the flow, or why not.
    Done(Result<Accepted, FlowError>),
    /// Still waiting (for a name answer or a FLOW_REPLY); poll again when woken or at
    /// [`AllocJob::deadline`].
    Pending(AllocJob),
}

impl AllocJob {
    /// Whether the job waits for the data plane to install its flow.
    #[cfg(test)]
    pub(crate) fn installing(&self) -> bool {
        matches!(self.stage, Stage::Installing(_))
    }

    /// How long the app may wait for it.
    #[cfg(test)]
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When the job must be polled even if nothing woke the loop.
    pub fn deadline(&self) -> Instant {
        match &self.stage {
            Stage::Resolving { deadline, .. } => *deadline,
            Stage::Replying(r) => r.deadline,
            Stage::Installing(a) => a.inst.deadline(),
        }
    }
}

/// How a name was found: at once (cache) or later (queries sent).
enum Found {
    Now(usize, Peer, Vec<u8>),
    Later {
        rx: Receiver<(usize, Peer)>,
        asked: String,
    },
}

impl Owner {
    /// Finds the IPCP and peer behind `name`: the cache first, else a name query on every
    /// eth IPCP and a lookup on every udp IPCP at once (the first answer wins).
    fn resolve_start(
        &self,
        name: &str,
        timeout: Duration,
        now: Instant,
    ) -> Result<Found, FlowError> {
        let (tx, rx) = channel::<(usize, Peer)>();
        let mut asked = vec![];
        let mut out = vec![];
        {
            let mut st = self.st();
            let mut order: Vec<(usize, IpcpKind)> = st
                .ipcps
                .iter()
                .enumerate()
                .filter(|(_, i)| i.up)
                .map(|(n, i)| (n, i.kind))
                .collect();
            order.sort_by_key(|(_, k)| *k);
            let order: Vec<usize> = order.into_iter().map(|(n, _)| n).collect();
            if order.is_empty() {
                return Err(FlowError::NoLayer {
                    name: name.to_string(),
                });
            }
            for idx in &order {
                let Some(i) = st.ipcps.get(*idx) else {
                    continue;
                };
                let h = i.hash.hash(name);
                if let Some(peer) = i.shim.cached(now, &h) {
                    return Ok(Found::Now(*idx, peer, h));
                }
            }
            for idx in order {
                let Some(i) = st.ipcps.get_mut(idx) else {
                    continue;
                };
                let h = i.hash.hash(name);
                if let PortKind::Udp { addr } = i.port_kind {
                    let host = hex::encode(&h);
                    let dns = i.dns;
                    let via = dns
                        .map(|d| format!("DNS server {d}"))
                        .unwrap_or("system resolver".into());
                    asked.push(format!("{} {} ({via}: {host})", i.kind.as_str(), i.name));
                    self.lookup_udp(idx, host, addr, dns, timeout, tx.clone())?;
                    continue;
                }
                asked.push(format!("{} {}", i.kind.as_str(), i.name));
                // The answer comes on `tx` (the first of any layer wins).
                self.query(&mut st, idx, name, &h, timeout, tx.clone(), &mut out, now)?;
            }
        }
        self.send_all(out);
        Ok(Found::Later {
            rx,
            asked: asked.join(", "),
        })
    }

    /// udp layers: the hex MD5 through the layer's DNS server, or the system resolver (so
    /// /etc/hosts works). Both block, so a lookup runs on a thread of its own; at most
    /// [`MAX_LOOKUPS`] at once (more are refused and counted).
    fn lookup_udp(
        &self,
        idx: usize,
        host: String,
        addr: std::net::SocketAddr,
        dns: Option<std::net::SocketAddr>,
        timeout: Duration,
        tx: std::sync::mpsc::Sender<(usize, Peer)>,
    ) -> Result<(), FlowError> {
        let running = self.lookups.clone();
        if running.fetch_add(1, Ordering::SeqCst) >= MAX_LOOKUPS {
            running.fetch_sub(1, Ordering::SeqCst);
            self.counters.query_limit.fetch_add(1, Ordering::Relaxed);
            return Err(FlowError::Busy(format!(
                "{MAX_LOOKUPS} udp name lookups are in progress already"
            )));
        }
        let waker = self.waker();
        let spawned = std::thread::Builder::new()
            .name("o7sd-lookup".into())
            .spawn(move || {
                use std::net::ToSocketAddrs;
                let found = match dns {
                    Some(server) => crate::dns::lookup(server, &host, addr.is_ipv4(), timeout)
                        .ok()
                        .flatten()
                        .map(|ip| std::net::SocketAddr::new(ip, addr.port())),
                    None => (host.as_str(), addr.port())
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut it| it.find(|a| a.is_ipv4() == addr.is_ipv4())),
                };
                if let Some(a) = found {
                    let _ = tx.send((idx, Peer::Ip(a)));
                }
                drop(tx);
                running.fetch_sub(1, Ordering::SeqCst);
                waker.wake();
            });
        if let Err(e) = spawned {
            self.lookups.fetch_sub(1, Ordering::SeqCst);
            return Err(FlowError::Busy(format!("cannot start a name lookup: {e}")));
        }
        Ok(())
    }

    /// Starts allocating a flow to `name` for process `pid`: finished at once (a cached
    /// name, or an error), or a job to poll.
    pub(crate) fn alloc_start(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
        now: Instant,
    ) -> Step {
        self.alloc_start_as(name, qos, timeout, pid, None, now)
    }

    /// [`Daemon::alloc_start`] for an IPCP of a secured layer (`member`): the request is
    /// signed with its member certificate and the response must prove membership too.
    pub(crate) fn alloc_start_as(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
        member: Option<Arc<crate::membership::Membership>>,
        now: Instant,
    ) -> Step {
        let start = now;
        let qt = self.settings.query_timeout.min(timeout);
        let job = AllocJob {
            member,
            name: name.to_string(),
            qos,
            timeout,
            pid,
            start,
            stage: Stage::Resolving {
                rx: channel().1,
                deadline: start + qt,
                asked: String::new(),
            },
        };
        match self.resolve_start(name, qt, now) {
            Err(e) => Step::Done(Err(e)),
            Ok(Found::Now(idx, peer, hash)) => self.alloc_send(job, idx, peer, &hash, now),
            Ok(Found::Later { rx, asked }) => Step::Pending(AllocJob {
                stage: Stage::Resolving {
                    rx,
                    deadline: start + qt,
                    asked,
                },
                ..job
            }),
        }
    }

    /// Takes an allocation one step further if what it waits for came (or its time is up).
    pub(crate) fn alloc_poll(&self, job: AllocJob, now: Instant) -> Step {
        let AllocJob {
            name,
            qos,
            timeout,
            pid,
            start,
            stage,
            member,
        } = job;
        match stage {
            Stage::Resolving {
                rx,
                deadline,
                asked,
            } => match rx.try_recv() {
                Ok((idx, peer)) => {
                    let hash = self
                        .st()
                        .ipcps
                        .get(idx)
                        .map(|i| i.hash.hash(&name))
                        .unwrap_or_default();
                    let job = AllocJob {
                        name,
                        qos,
                        timeout,
                        pid,
                        start,
                        member,
                        stage: Stage::Resolving {
                            rx,
                            deadline,
                            asked,
                        },
                    };
                    self.alloc_send(job, idx, peer, &hash, now)
                }
                Err(TryRecvError::Empty) if now < deadline => Step::Pending(AllocJob {
                    name,
                    qos,
                    timeout,
                    pid,
                    start,
                    member,
                    stage: Stage::Resolving {
                        rx,
                        deadline,
                        asked,
                    },
                }),
                // Every layer asked gave up, or the time is up.
                Err(_) => Step::Done(Err(FlowError::UnknownName {
                    name,
                    ms: self.settings.query_timeout.min(timeout).as_millis(),
                    asked,
                })),
            },
            Stage::Replying(r) => {
                let reply = match r.rx.try_recv() {
                    Err(TryRecvError::Empty) if now < r.deadline => {
                        return Step::Pending(AllocJob {
                            name,
                            qos,
                            timeout,
                            pid,
                            start,
                            member,
                            stage: Stage::Replying(r),
                        });
                    }
                    Ok(x) => Ok(x),
                    Err(_) => Err(()),
                };
                let job = AllocJob {
                    name,
                    qos,
                    timeout,
                    pid,
                    start,
                    member,
                    stage: Stage::Resolving {
                        rx: channel().1,
                        deadline: now,
                        asked: String::new(),
                    },
                };
                match self.alloc_finish(&job, *r, reply, now) {
                    Ok(a) => Step::Pending(AllocJob {
                        stage: Stage::Installing(Box::new(a)),
                        ..job
                    }),
                    Err(e) => Step::Done(Err(e)),
                }
            }
            Stage::Installing(a) => {
                let InstallingAlloc {
                    inst,
                    idx,
                    local,
                    remote,
                    peer,
                } = *a;
                match self.install_poll(inst, now) {
                    Ok(Installed::Waiting(inst)) => Step::Pending(AllocJob {
                        name,
                        qos,
                        timeout,
                        pid,
                        start,
                        member,
                        stage: Stage::Installing(Box::new(InstallingAlloc {
                            inst,
                            idx,
                            local,
                            remote,
                            peer,
                        })),
                    }),
                    Ok(Installed::Done(acc)) => {
                        tracing::info!(
                            "Flow {} allocated to {name} for process {pid}: local {local:#x}, remote {remote:#x} at {peer} in {:.3} ms.",
                            acc.flow,
                            start.elapsed().as_secs_f64() * 1000.0
                        );
                        Step::Done(Ok(acc))
                    }
                    Err(e) => {
                        if let Some(i) = self.st().ipcps.get_mut(idx) {
                            i.shim.release(local);
                        }
                        tracing::warn!("Flow allocation to {name}: {e}");
                        Step::Done(Err(e))
                    }
                }
            }
        }
    }

    /// Gives up allocation `job`, whose app went away: the shim's request (its endpoint
    /// id) or the flow being installed is freed now, not when its time would have run out.
    pub(crate) fn alloc_abandon(&self, job: AllocJob) {
        match job.stage {
            Stage::Resolving { .. } => {}
            Stage::Replying(r) => {
                if let Some(i) = self.st().ipcps.get_mut(r.idx) {
                    // Still waiting (its waiter is there): the request and its id go. Its
                    // time ran out already (the waiter was told): the id may be another
                    // request's now, left alone. Answered (the reply waits here): the
                    // flow's id is freed.
                    if i.alloc_waiters.remove(&r.id).is_some() {
                        i.shim.cancel(r.local);
                    } else if let Ok(Ok(reply)) = r.rx.try_recv() {
                        i.shim.release(reply.local);
                    }
                }
                crate::local_log!(
                    info,
                    "Flow allocation to {}: its process left; given up.",
                    job.name
                );
            }
            Stage::Installing(a) => {
                self.dp.add_flow_forget(a.inst.flow);
                self.dealloc(a.inst.flow);
            }
        }
    }

    /// Sends the FLOW_REQ (with its OAP request) to `peer` on IPCP `idx`.
    fn alloc_send(&self, job: AllocJob, idx: usize, peer: Peer, hash: &[u8], now: Instant) -> Step {
        match self.alloc_request(&job, idx, peer, hash, now) {
            Ok(r) => Step::Pending(AllocJob {
                stage: Stage::Replying(Box::new(r)),
                ..job
            }),
            Err(e) => Step::Done(Err(e)),
        }
    }

    fn alloc_request(
        &self,
        job: &AllocJob,
        idx: usize,
        peer: Peer,
        hash: &[u8],
        now: Instant,
    ) -> Result<Replying, FlowError> {
        let (name, pid, qos, timeout) = (job.name.as_str(), job.pid, job.qos, job.timeout);
        let ClientOap { req_oap, enc, eph } =
            self.client_oap_as(name, pid, job.member.as_deref())?;
        let (tx, rx) = channel();
        let mut out = vec![];
        let left = timeout.saturating_sub(now.saturating_duration_since(job.start));
        let (id, local) = {
            let mut st = self.st();
            let i = st
                .ipcps
                .get_mut(idx)
                .ok_or_else(|| FlowError::Internal("IPCP vanished".into()))?;
            // Allocations whose time is up go first.
            i.shim.handle_timeout(now);
            let (id, local) =
                i.shim
                    .alloc(now, peer, hash, qos, &req_oap, left)
                    .map_err(|source| FlowError::Layer {
                        ipcp: i.name.clone(),
                        source,
                    })?;
            i.alloc_waiters.insert(id.0, tx);
            self.pump(&mut st, idx, &mut out, now);
            self.wake_for(&st, now + left);
            (id.0, local)
        };
        self.send_all(out);
        Ok(Replying {
            idx,
            id,
            local,
            peer,
            rx,
            // The machine ends the wait (reply, refusal or its deadline, fired by the event
            // loop); the margin covers a late timer.
            deadline: now + left + Duration::from_millis(500),
            req_oap,
            enc,
            eph,
        })
    }

    /// Checks the FLOW_REPLY (OAP response, server authentication, keys) and asks the data
    /// plane to install the flow.
    fn alloc_finish(
        &self,
        job: &AllocJob,
        r: Replying,
        reply: Result<Result<ReplyInfo, ShimError>, ()>,
        now: Instant,
    ) -> Result<InstallingAlloc, FlowError> {
        let name = job.name.as_str();
        let (idx, local) = (r.idx, r.local);
        let free = |st: &mut State| {
            if let Some(i) = st.ipcps.get_mut(idx) {
                i.shim.release(local);
            }
        };
        let reply = match reply {
            Ok(Ok(x)) => x,
            Ok(Err(ShimError::Refused(response))) => {
                return Err(FlowError::Refused {
                    name: name.to_string(),
                    peer: r.peer.to_string(),
                    response,
                });
            }
            Ok(Err(_)) | Err(()) => {
                free(&mut self.st());
                return Err(FlowError::Timeout {
                    name: name.to_string(),
                    ms: job.timeout.as_millis(),
                });
            }
        };
        let client = ClientOap {
            req_oap: r.req_oap,
            enc: r.enc,
            eph: r.eph,
        };
        let crypt = match self.client_finish_as(name, client, &reply.oap, job.member.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                free(&mut self.st());
                tracing::warn!("Flow allocation to {name} refused: {e}");
                return Err(e);
            }
        };
        let inst = self
            .install_start(
                idx,
                local,
                reply.remote,
                reply.peer,
                name,
                job.qos,
                "alloc",
                job.pid,
                crypt,
                now,
            )
            .inspect_err(|_| free(&mut self.st()))?;
        Ok(InstallingAlloc {
            inst,
            idx,
            local,
            remote: reply.remote,
            peer: reply.peer,
        })
    }
}
