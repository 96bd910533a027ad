//! Flows over a unicast IPCP (issue 15): the flow allocator of the IPCP sets them up (a
//! directory lookup, FLOW_REQ/FLOW_REPLY in DT PDUs with an OAP exchange without
//! security), and the data plane's worker moves their SDUs (a flow with a DT end:
//! `ToDp::AddFlow { uni }`), as it forwards the layer's PDUs by the tables o7sd sends
//! (`ToDp::UniTable`).
//! A request waits (in arrival order, up to `--accept-wait`) for a process to accept its
//! name. Not yet: encryption and authentication on these flows, auto-started programs.

use super::{UniAllocated, UniIncoming};
use crate::daemon::install::{Installed, Installing};
use crate::daemon::{flow_mem, FlowRec, Owner};
use crate::error::FlowError;
use crate::eth::Peer;
use crate::registry::Accepted;
use o7s::proto::FlowInfo;
use o7s_abi::msg::{CryptSpec, ToDp};
use o7s_proto::refusal::Refusal;
use o7s_wire::oap::{OapHdr, Role};
use o7s_wire::qos::QosSpec;
use std::os::fd::AsFd;
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// A flow over a unicast IPCP (the data plane moves its SDUs): o7sd gives its endpoint
/// id back when it ends.
#[derive(Debug)]
pub(crate) struct UniFlowP {
    pub uni: usize,
    pub flow: u64,
    pub local: u64,
}

/// An accepted flow over a unicast IPCP whose installation the data plane has not
/// acknowledged yet, and the process that will get it.
#[derive(Debug)]
pub(crate) struct UniServing {
    inst: Installing,
    a: crate::registry::Acceptor,
    fp: UniFlowP,
}

impl UniServing {
    /// When it fails unless the data plane has answered.
    pub(crate) fn deadline(&self) -> Instant {
        self.inst.deadline()
    }
}

/// Where an accepted flow's installation stands.
#[derive(Debug)]
pub(crate) enum ServeStep {
    /// Installed and handed to its process: the flow's record.
    Done(UniFlowP),
    /// The data plane has not answered yet.
    Waiting(Box<UniServing>),
    /// It failed (said in the log); the process is first in line again.
    Failed,
}

/// A flow request from a peer IPCP that passed its checks.
#[derive(Debug)]
pub(crate) struct UniChecked {
    /// The name asked for.
    pub name: String,
    /// Our OAP response.
    pub resp: Vec<u8>,
    /// The flow's key, when encrypted.
    pub crypt: Option<CryptSpec>,
}

/// An allocation over a unicast IPCP in progress.
#[derive(Debug)]
pub(crate) struct UniJob {
    pub name: String,
    pub qos: QosSpec,
    pub timeout: Duration,
    pub pid: i32,
    uni: usize,
    hash: Vec<u8>,
    deadline: Instant,
    /// How long one address is given to answer.
    attempt: Duration,
    stage: UniStage,
}

enum UniStage {
    Lookup(Receiver<Vec<u64>>),
    Fa {
        rx: Receiver<Result<UniAllocated, o7s_proto::fa::FaError>>,
        oap: Box<super::super::alloc::ClientOap>,
        /// The peer IPCP's address.
        dst: u64,
        /// The other addresses the directory gave, to try when this one does not answer
        /// (a member that restarted leaves its old address in the directory until it
        /// expires).
        rest: Vec<u64>,
    },
    /// Answered: the data plane installs the flow.
    Installing(Box<(Installing, UniFlowP)>),
}

/// Where an allocation over a unicast IPCP stands.
#[derive(Debug)]
pub(crate) enum UniStep {
    Pending(UniJob),
    Done(Result<(Accepted, UniFlowP), FlowError>),
    /// The layer's directory does not know the name: try the other layers.
    Fallback(UniJob),
}

impl std::fmt::Debug for UniStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Lookup(_) => "Lookup",
            Self::Fa { .. } => "Fa",
            Self::Installing(_) => "Installing",
        })
    }
}

impl UniJob {
    /// When to poll it even if nothing woke the loop.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Owner {
    /// Starts allocating a flow to `name` over the first unicast IPCP in a layer: `None`
    /// when there is none (every QoS cube is carried: FRCP runs in the app library).
    pub(crate) fn uni_alloc_start(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
        now: Instant,
    ) -> Option<Result<UniJob, FlowError>> {
        // The daemon's and the process's limits before the request goes out (the peer's
        // is checked when its address is known, at installation; no IPCP has address 0,
        // so the first check is the daemon's bound alone).
        let layer = self
            .st()
            .unicast
            .iter()
            .any(|u| u.dht().is_some() && u.fa().is_some());
        if layer {
            if let Err(e) = self
                .check_layer_flow_limits(0)
                .and_then(|()| self.check_process_limit(pid))
            {
                return Some(Err(e));
            }
        }
        self.uni_alloc_job(name, qos, timeout, pid, now).map(Ok)
    }

    fn uni_alloc_job(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
        now: Instant,
    ) -> Option<UniJob> {
        let unix = super::unix_now();
        let hash = o7s_wire::hash::HashAlgo::Sha3_256.hash(name);
        let mut st = self.st();
        let (uni, u) = st
            .unicast
            .iter_mut()
            .enumerate()
            .find(|(_, u)| u.dht().is_some() && u.fa().is_some())?;
        let (tx, rx) = channel();
        let id = u.m.as_mut()?.lookup(now, unix, hash.clone()).ok()?;
        u.lookups.insert(id, tx);
        if u.looked_up.len() < super::LOOKED_UP_MAX || u.looked_up.contains_key(&hash) {
            u.looked_up.insert(hash.clone(), name.to_string());
        }
        drop(st);
        self.wake();
        Some(UniJob {
            name: name.to_string(),
            qos,
            timeout,
            pid,
            uni,
            hash,
            deadline: now + self.settings.query_timeout.max(Duration::from_millis(500)),
            attempt: timeout,
            stage: UniStage::Lookup(rx),
        })
    }

    /// Sends the FLOW_REQ of `job` to the IPCP at `dst` and waits for its answer for the
    /// job's time per address; `rest` are the addresses to try after it.
    fn uni_fa_try(
        &self,
        mut job: UniJob,
        oap: Box<super::super::alloc::ClientOap>,
        dst: u64,
        rest: Vec<u64>,
        now: Instant,
    ) -> UniStep {
        let req_oap = oap.req_oap.clone();
        let (tx, rx) = channel();
        let mut st = self.st();
        let started = st.unicast.get_mut(job.uni).and_then(|u| {
            let (id, _) =
                u.m.as_mut()?
                    .alloc(now, dst, &job.hash, job.qos, &req_oap, job.attempt)
                    .ok()?;
            u.fa_waiters.insert(id, tx);
            Some(())
        });
        drop(st);
        self.wake();
        if started.is_none() {
            return UniStep::Done(Err(FlowError::Busy(
                "the unicast flow allocator has no free endpoint".into(),
            )));
        }
        job.deadline = now + job.attempt + Duration::from_millis(500);
        job.stage = UniStage::Fa { rx, oap, dst, rest };
        UniStep::Pending(job)
    }

    /// Takes an allocation over a unicast IPCP a step further.
    pub(crate) fn uni_alloc_poll(&self, mut job: UniJob, now: Instant) -> UniStep {
        match std::mem::replace(&mut job.stage, UniStage::Lookup(channel().1)) {
            UniStage::Lookup(rx) => match rx.try_recv() {
                Ok(addrs) if !addrs.is_empty() => {
                    // OAP as on every layer: encrypted and signed as the name's settings say.
                    let oap = match self.client_oap(&job.name, job.pid) {
                        Ok(o) => o,
                        Err(e) => return UniStep::Done(Err(e)),
                    };
                    // Each address gets an equal part of the time (at least a second).
                    let n = u32::try_from(addrs.len()).unwrap_or(u32::MAX);
                    job.attempt = (job.timeout / n)
                        .max(Duration::from_secs(1))
                        .min(job.timeout);
                    let mut addrs = addrs.into_iter();
                    let dst = addrs.next().unwrap_or(0);
                    self.uni_fa_try(job, Box::new(oap), dst, addrs.collect(), now)
                }
                Err(TryRecvError::Empty) if now < job.deadline => {
                    job.stage = UniStage::Lookup(rx);
                    UniStep::Pending(job)
                }
                _ => UniStep::Fallback(job),
            },
            UniStage::Fa {
                rx,
                oap,
                dst,
                mut rest,
            } => match rx.try_recv() {
                Ok(Ok(a)) => {
                    let crypt = match self.client_finish(&job.name, *oap, &a.oap) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("Flow allocation to {} refused: {e}", job.name);
                            self.uni_release(job.uni, a.local);
                            return UniStep::Done(Err(e));
                        }
                    };
                    match self.uni_install_start(
                        job.uni, a.local, a.remote, a.peer, &job.name, job.qos, "alloc", job.pid,
                        crypt, now,
                    ) {
                        Ok((inst, fp)) => {
                            job.deadline = inst.deadline();
                            job.stage = UniStage::Installing(Box::new((inst, fp)));
                            UniStep::Pending(job)
                        }
                        Err(e) => {
                            self.uni_release(job.uni, a.local);
                            UniStep::Done(Err(e))
                        }
                    }
                }
                Ok(Err(o7s_proto::fa::FaError::Refused(response))) => {
                    UniStep::Done(Err(FlowError::Refused {
                        name: job.name.clone(),
                        peer: format!("{dst:#010x}"),
                        response,
                    }))
                }
                Ok(Err(o7s_proto::fa::FaError::NoEid)) => UniStep::Done(Err(FlowError::Busy(
                    "the unicast flow allocator has no free endpoint".into(),
                ))),
                Err(TryRecvError::Empty) if now < job.deadline => {
                    job.stage = UniStage::Fa { rx, oap, dst, rest };
                    UniStep::Pending(job)
                }
                // No answer from this address: the next one the directory gave, if any.
                _ if !rest.is_empty() => {
                    let next = rest.remove(0);
                    tracing::info!(
                        "Flow allocation to {} at {dst:#010x}: no answer; trying {next:#010x}.",
                        job.name
                    );
                    self.uni_fa_try(job, oap, next, rest, now)
                }
                _ => UniStep::Done(Err(FlowError::Timeout {
                    name: job.name.clone(),
                    ms: job.timeout.as_millis(),
                })),
            },
            UniStage::Installing(b) => {
                let (inst, fp) = *b;
                match self.install_poll(inst, now) {
                    Ok(Installed::Waiting(inst)) => {
                        job.stage = UniStage::Installing(Box::new((inst, fp)));
                        UniStep::Pending(job)
                    }
                    Ok(Installed::Done(acc)) => UniStep::Done(Ok((acc, fp))),
                    Err(e) => {
                        tracing::warn!("Flow allocation to {}: {e}", job.name);
                        self.uni_release(fp.uni, fp.local);
                        UniStep::Done(Err(e))
                    }
                }
            }
        }
    }

    /// Gives up allocation `job`, whose app went away: a flow being installed is freed now
    /// (an answer still to come is released when it comes: its waiter is gone).
    pub(crate) fn uni_alloc_abandon(&self, job: UniJob) {
        if let UniStage::Installing(b) = job.stage {
            let (inst, fp) = *b;
            self.dp.add_flow_forget(inst.flow);
            self.dealloc(inst.flow);
            self.uni_release(fp.uni, fp.local);
        }
    }

    fn uni_release(&self, uni: usize, local: u64) {
        if let Some(m) = self.st().unicast.get_mut(uni).and_then(|u| u.m.as_mut()) {
            m.release_flow(local);
        }
    }

    /// Sets up a flow over IPCP `uni`: its memory for the app, o7sd's record, and asks the
    /// data plane to install it (its worker moves the SDUs in DT PDUs); returns at once:
    /// [`Daemon::install_poll`] finishes it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn uni_install_start(
        &self,
        uni: usize,
        local: u64,
        remote: u64,
        peer: u64,
        name: &str,
        qos: QosSpec,
        side: &'static str,
        pid: i32,
        crypt: Option<CryptSpec>,
        now: Instant,
    ) -> Result<(Installing, UniFlowP), FlowError> {
        // An N-1 eth frame's room less the DT PCI (and IV and tag when encrypted).
        let mtu = if crypt.is_some() {
            1400 - o7s_abi::CRYPT_OVERHEAD
        } else {
            1400
        };
        // The port of the next hop's N-1 flow places the flow on that port's worker.
        let (layer, port, ttl, mb_ecn) = {
            let st = self.st();
            let u = st.unicast.get(uni);
            let port = u
                .and_then(|u| u.m.as_ref()?.next_hop(peer))
                .and_then(|n1| st.flows.get(&n1))
                .and_then(|f| st.ipcps.get(f.ipcp))
                .map(|i| i.port);
            (
                u.and_then(|u| u.layer.clone()).unwrap_or_default(),
                port,
                u.map_or(64, |u| u.max_ttl()),
                u.is_some_and(|u| u.mb_ecn()),
            )
        };
        let Some(port) = port else {
            return Err(FlowError::NoRoute { layer, peer });
        };
        self.check_layer_flow_limits(peer)?;
        self.check_process_limit(pid)?;
        let (memfd, tx, rx) = flow_mem(mtu).map_err(FlowError::Memory)?;
        let flow = {
            let mut st = self.st();
            st.next_flow += 1;
            let flow = st.next_flow;
            st.flows.insert(
                flow,
                FlowRec {
                    // No eth/udp IPCP: the flow is a unicast IPCP's.
                    ipcp: usize::MAX,
                    local,
                    remote,
                    peer: Peer::Mac([0; 6]),
                    name: name.to_string(),
                    side,
                    pid,
                    qos,
                    down: false,
                    layer_peer: Some(peer),
                },
            );
            flow
        };
        let ack = self.dp.add_flow_start(
            &ToDp::AddFlow {
                flow,
                port,
                local: local as u32,
                remote: remote as u32,
                peer: [0; 6],
                timeout_ms: super::super::install::peer_timeout_ms(qos.timeout),
                peer_addr: None,
                crypt,
                pid,
                // Taken back by an o7sd that resumes the IPCP (unicast/resume.rs).
                record: serde_json::to_string(&super::super::install::FlowRecord {
                    name: name.to_string(),
                    side: side.to_string(),
                    qos,
                    own: false,
                })
                .unwrap_or_default(),
                uni: Some(o7s_abi::msg::UniFlowSpec {
                    ipcp: uni as u32,
                    dst: peer as u32,
                    local_eid: local,
                    remote_eid: remote,
                    ttl,
                    mb_ecn,
                }),
            },
            flow,
            &[memfd.as_fd(), tx.fd().as_fd(), rx.fd().as_fd()],
        );
        let ack = match ack {
            Ok(ack) => ack,
            Err(e) => {
                self.dealloc(flow);
                return Err(FlowError::Install(e));
            }
        };
        tracing::info!(
            "Flow {flow} ({side} {name}) over unicast layer {layer}: local {local:#x}, remote {remote:#x} at {peer:#010x}."
        );
        let info = FlowInfo {
            id: flow,
            name: name.to_string(),
            qos,
            mtu,
            layer,
            local: false,
            swapped: false,
        };
        Ok((
            Installing::new(flow, ack, now, [memfd, tx.into_fd(), rx.into_fd()], info),
            UniFlowP { uni, flow, local },
        ))
    }

    /// Checks a flow request from a peer IPCP: the name it asks for (registered in this
    /// IPCP) and its OAP request (signature and certificate when it has them, the key
    /// exchange when it asks for encryption, as on the eth and udp layers: tutorial 06);
    /// refused (and `None`) when either fails.
    pub(crate) fn uni_check(&self, r: &UniIncoming, now: Instant) -> Option<UniChecked> {
        let name = {
            let st = self.st();
            st.unicast.get(r.uni).and_then(|u| {
                u.reg
                    .iter()
                    .find(|n| o7s_wire::hash::HashAlgo::Sha3_256.hash(n) == r.hash)
                    .cloned()
            })
        };
        let Some(name) = name else {
            self.uni_refuse(
                r,
                Refusal::NotRegistered,
                "the name is not registered in this IPCP",
                now,
            );
            return None;
        };
        // The daemon's and the requester's flow limits, before any work for the request.
        if let Err(e) = self.check_layer_flow_limits(r.peer) {
            self.uni_refuse(r, Refusal::Limit, &format!("{name}: {e}"), now);
            return None;
        }
        match self.uni_oap(&name, &r.oap, r.peer) {
            Ok((resp, crypt)) => Some(UniChecked { name, resp, crypt }),
            Err(e) => {
                let cause = match e {
                    crate::error::OapCheckError::Limit(_) => Refusal::Limit,
                    _ => Refusal::Security,
                };
                self.uni_refuse(r, cause, &format!("{name}: {e}"), now);
                None
            }
        }
    }

    /// The OAP response (signed when the name has a server certificate) and the flow's key.
    fn uni_oap(
        &self,
        name: &str,
        oap: &[u8],
        peer: u64,
    ) -> Result<(Vec<u8>, Option<CryptSpec>), crate::error::OapCheckError> {
        use crate::error::OapCheckError;
        let req = OapHdr::parse_as(oap, Role::Request, 0)?;
        crate::wire_log!(info, "Flow request arrived for {name} (unicast layer).");
        self.check_request(
            &req,
            oap,
            super::super::oap_glue::source_key(None, Some(peer)),
        )?;
        let conf = self
            .enc_conf("server", name)
            .map_err(OapCheckError::Settings)?;
        let (resp, crypt) = super::super::oap_glue::server_key(conf.map(|c| c.0), &req, oap)?;
        let resp = self
            .sign_response(name, resp)
            .map_err(OapCheckError::Signer)?;
        let resp = resp.to_bytes().map_err(OapCheckError::Malformed)?;
        let crypt = crypt.map(|c| CryptSpec {
            rotation_bits: self.settings.key_rotation_bits,
            ..c
        });
        Ok((resp, crypt))
    }

    /// Refuses a flow request from a peer IPCP: `why` goes to the log, `cause` in the
    /// FLOW_REPLY's response to the requester.
    pub(crate) fn uni_refuse(&self, r: &UniIncoming, cause: Refusal, why: &str, now: Instant) {
        crate::wire_log!(
            warn,
            "Unicast flow request from {:#010x} refused: {why}",
            r.peer
        );
        if let Some(m) = self.st().unicast.get_mut(r.uni).and_then(|u| u.m.as_mut()) {
            let _ = m.refuse_flow(now, r.req, cause.response());
        }
    }

    /// Serves a checked flow request if a process accepts flows for `name` now: the flow
    /// accepted in the flow allocator and its installation asked of the data plane (the
    /// acceptor gets it when [`Daemon::install_poll`] says it is done); `Err(r)` gives the
    /// request back to wait (it is served in arrival order as processes come back to
    /// accept, or refused after `--accept-wait`).
    pub(crate) fn uni_serve(
        &self,
        r: UniIncoming,
        c: &UniChecked,
        now: Instant,
    ) -> Result<Option<UniServing>, UniIncoming> {
        let (name, resp) = (c.name.as_str(), c.resp.as_slice());
        let acc = self
            .st()
            .reg
            .take_acceptor(name, &crate::registry::process_lives);
        let Some(a) = acc else {
            return Err(r);
        };
        // The limits again, now that the acceptor is known, before the flow allocator
        // answers: a flow refused after that would stay at the requester until its timeout.
        if let Err(e) = self
            .check_layer_flow_limits(r.peer)
            .and_then(|()| self.check_process_limit(a.pid))
        {
            self.st().reg.restore(a);
            self.uni_refuse(&r, Refusal::Limit, &format!("{name}: {e}"), now);
            return Ok(None);
        }
        let local = self
            .st()
            .unicast
            .get_mut(r.uni)
            .and_then(|u| u.m.as_mut())
            .and_then(|m| m.accept_flow(now, r.req, resp).ok());
        let Some((local, remote, peer)) = local else {
            self.st().reg.restore(a);
            return Ok(None);
        };
        let crypt = c.crypt.clone();
        match self.uni_install_start(
            r.uni, local, remote, peer, name, r.qos, "accept", a.pid, crypt, now,
        ) {
            Ok((inst, fp)) => Ok(Some(UniServing { inst, a, fp })),
            Err(e) => {
                crate::wire_log!(warn, "unicast flow for {name}: {e}");
                self.uni_release(r.uni, local);
                self.st().reg.restore(a);
                Ok(None)
            }
        }
    }

    /// Takes an accepted flow's installation a step further: the flow to its acceptor
    /// once installed (its record back), the serving back while the data plane has not
    /// answered, nothing when it failed (the acceptor is first in line again).
    pub(crate) fn uni_serving_poll(&self, s: UniServing, now: Instant) -> ServeStep {
        let UniServing { inst, a, fp } = s;
        match self.install_poll(inst, now) {
            Ok(Installed::Waiting(inst)) => {
                ServeStep::Waiting(Box::new(UniServing { inst, a, fp }))
            }
            Ok(Installed::Done(acc)) => {
                if a.handle.send(acc).is_err() {
                    tracing::warn!(
                        "unicast flow {}: the process accepting it (pid {}) went away before it was installed; ended",
                        fp.flow,
                        a.pid
                    );
                    self.dealloc(fp.flow);
                    self.uni_release(fp.uni, fp.local);
                    return ServeStep::Failed;
                }
                self.wake();
                ServeStep::Done(fp)
            }
            Err(e) => {
                tracing::warn!("unicast flow {}: {e}", fp.flow);
                // Its endpoint id is free again; the process is first in line again.
                self.uni_release(fp.uni, fp.local);
                self.st().reg.restore(a);
                self.wake();
                ServeStep::Failed
            }
        }
    }
}
