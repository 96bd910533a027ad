//! Flows over a unicast IPCP (issue 15), interim path: the flow allocator of the IPCP sets
//! them up (a directory lookup, FLOW_REQ/FLOW_REPLY in DT PDUs with an OAP exchange
//! without security), and o7sd itself moves their SDUs between the app's rings and DT PDUs
//! on the N-1 flows (read on the app's tx kick; delivered from the DT PDUs for our
//! address). Counted and shown as such; the workers take this over with the DT path.
//! A request waits (in arrival order, up to `--accept-wait`) for a process to accept its
//! name. Not yet: encryption and authentication on these flows, auto-started programs.

use super::unicast::{UniAllocated, UniIncoming};
use super::*;
use crate::error::FlowError;
use std::sync::mpsc::{Receiver, TryRecvError};

/// A flow over a unicast IPCP that o7sd serves.
#[derive(Debug)]
pub(crate) struct UniFlowP {
    pub uni: usize,
    pub flow: u64,
    pub local: u64,
    pub remote: u64,
    pub peer: u64,
    pub mem: FlowMem,
    /// The app kicks it when it writes.
    pub from_app: Kick,
    /// We kick it when the app has SDUs.
    pub to_app: Kick,
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
    stage: UniStage,
}

#[derive(Debug)]
enum UniStage {
    Lookup(Receiver<Vec<u64>>),
    Fa {
        rx: Receiver<Result<UniAllocated, String>>,
        req_oap: Vec<u8>,
    },
}

/// Where an allocation over a unicast IPCP stands.
#[derive(Debug)]
pub(crate) enum UniStep {
    Pending(UniJob),
    Done(Result<(Accepted, UniFlowP), FlowError>),
    /// The layer's directory does not know the name: try the other layers.
    Fallback(UniJob),
}

impl UniJob {
    /// When to poll it even if nothing woke the loop.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Daemon {
    /// Starts allocating a flow to `name` over the first unicast IPCP in a layer: `None`
    /// when there is none; an error for a QoS the layer cannot give.
    pub(crate) fn uni_alloc_start(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
    ) -> Option<Result<UniJob, FlowError>> {
        let in_layer = self
            .st()
            .unicast
            .iter()
            .any(|u| u.dht.is_some() && u.fa.is_some());
        if in_layer && qos.loss == 0 {
            // Reliable delivery is FRCP's retransmission, which o7s does not have yet.
            return Some(Err(FlowError::Unsupported(format!(
                "the QoS cube {} needs reliable delivery (FRCP retransmission), which o7s does not implement yet on unicast layers: use raw or best",
                qos.preset_name().unwrap_or("asked for")
            ))));
        }
        self.uni_alloc_job(name, qos, timeout, pid).map(Ok)
    }

    fn uni_alloc_job(
        &self,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
        pid: i32,
    ) -> Option<UniJob> {
        let now = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let hash = o7s_wire::hash::HashAlgo::Sha3_256.hash(name);
        let mut st = self.st();
        let (uni, u) = st
            .unicast
            .iter_mut()
            .enumerate()
            .find(|(_, u)| u.dht.is_some() && u.fa.is_some())?;
        let (tx, rx) = channel();
        let id = u.dht.as_mut()?.lookup(now, unix, hash.clone())?;
        u.lookups.insert(id, tx);
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
            stage: UniStage::Lookup(rx),
        })
    }

    /// Takes an allocation over a unicast IPCP a step further.
    pub(crate) fn uni_alloc_poll(&self, mut job: UniJob, now: Instant) -> UniStep {
        match std::mem::replace(&mut job.stage, UniStage::Lookup(channel().1)) {
            UniStage::Lookup(rx) => match rx.try_recv() {
                Ok(addrs) if !addrs.is_empty() => {
                    let dst = addrs.first().copied().unwrap_or(0);
                    let req = OapHdr::unsigned(rand::random(), now_ns(), vec![]);
                    let Ok(req_oap) = req.to_bytes() else {
                        return UniStep::Done(Err(FlowError::Internal("OAP request".into())));
                    };
                    let (tx, rx) = channel();
                    let mut st = self.st();
                    let started = st.unicast.get_mut(job.uni).and_then(|u| {
                        let (id, _) =
                            u.fa.as_mut()?
                                .alloc(now, dst, &job.hash, job.qos, &req_oap, job.timeout)
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
                    job.deadline = now + job.timeout + Duration::from_millis(500);
                    job.stage = UniStage::Fa { rx, req_oap };
                    UniStep::Pending(job)
                }
                Err(TryRecvError::Empty) if now < job.deadline => {
                    job.stage = UniStage::Lookup(rx);
                    UniStep::Pending(job)
                }
                _ => UniStep::Fallback(job),
            },
            UniStage::Fa { rx, req_oap } => match rx.try_recv() {
                Ok(Ok(a)) => {
                    if let Err(source) = o7s_proto::oap::check_response(&req_oap, &a.oap) {
                        self.uni_release(job.uni, a.local);
                        return UniStep::Done(Err(FlowError::BadResponse {
                            name: job.name.clone(),
                            source,
                        }));
                    }
                    let r = self.uni_install(
                        job.uni, a.local, a.remote, a.peer, &job.name, job.qos, "alloc", job.pid,
                    );
                    if r.is_err() {
                        self.uni_release(job.uni, a.local);
                    }
                    UniStep::Done(r)
                }
                Ok(Err(why)) => UniStep::Done(Err(FlowError::Refused {
                    name: format!("{} ({why})", job.name),
                    response: -1,
                })),
                Err(TryRecvError::Empty) if now < job.deadline => {
                    job.stage = UniStage::Fa { rx, req_oap };
                    UniStep::Pending(job)
                }
                Err(_) => UniStep::Done(Err(FlowError::Timeout {
                    name: job.name.clone(),
                    ms: job.timeout.as_millis(),
                })),
            },
        }
    }

    fn uni_release(&self, uni: usize, local: u64) {
        if let Some(f) = self.st().unicast.get_mut(uni).and_then(|u| u.fa.as_mut()) {
            f.release(local);
        }
    }

    /// Sets up the memory of a flow over IPCP `uni` for its app and for o7sd, and records
    /// the flow.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn uni_install(
        &self,
        uni: usize,
        local: u64,
        remote: u64,
        peer: u64,
        name: &str,
        qos: QosSpec,
        side: &'static str,
        pid: i32,
    ) -> Result<(Accepted, UniFlowP), FlowError> {
        // An N-1 eth frame's room less the DT PCI.
        let mtu = 1400;
        let (memfd, tx, rx) = flow_mem(mtu).map_err(FlowError::Memory)?;
        let mem = FlowMem::open(&memfd).map_err(FlowError::Memory)?;
        // The app's writes kick us.
        mem.ring(o7s::ring::Dir::Tx)
            .waiting()
            .store(1, Ordering::SeqCst);
        let (Some(from_app), Some(to_app)) = (dup(tx.fd()), dup(rx.fd())) else {
            return Err(FlowError::Descriptors);
        };
        let (layer, flow) = {
            let mut st = self.st();
            st.next_flow += 1;
            let flow = st.next_flow;
            let layer = st
                .unicast
                .get(uni)
                .and_then(|u| u.layer.clone())
                .unwrap_or_default();
            st.flows.insert(
                flow,
                FlowRec {
                    // No eth/udp IPCP: the flow is a unicast IPCP's.
                    ipcp: usize::MAX,
                    local: local as u32,
                    remote: remote as u32,
                    peer: Peer::Mac([0; 6]),
                    name: name.to_string(),
                    side,
                    pid,
                    qos,
                    down: false,
                },
            );
            (layer, flow)
        };
        self.counters.flows.fetch_add(1, Ordering::Relaxed);
        let fds = [dup(&memfd), dup(tx.fd()), dup(rx.fd())];
        let fds: Vec<OwnedFd> = fds.into_iter().flatten().collect();
        if fds.len() != 3 {
            self.dealloc(flow);
            return Err(FlowError::Descriptors);
        }
        tracing::info!(
            "Flow {flow} ({side} {name}) over unicast layer {layer}: local {local:#x}, remote {remote:#x} at {peer:#010x}."
        );
        Ok((
            Accepted {
                info: FlowInfo {
                    id: flow,
                    name: name.to_string(),
                    qos,
                    mtu,
                    layer,
                },
                flow,
                fds,
            },
            UniFlowP {
                uni,
                flow,
                local,
                remote,
                peer,
                mem,
                from_app: Kick::from_fd(from_app),
                to_app: Kick::from_fd(to_app),
            },
        ))
    }

    /// Checks a flow request from a peer IPCP: the name it asks for (registered in this
    /// IPCP) and the OAP response; refused (and `None`) when either is missing.
    pub(crate) fn uni_check(&self, r: &UniIncoming) -> Option<(String, Vec<u8>)> {
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
            self.uni_refuse(r, "the name is not registered in this IPCP");
            return None;
        };
        let resp = OapHdr::parse_as(&r.oap, Role::Request, 0)
            .ok()
            .and_then(|req| super::oap_glue::server_key(None, &req, &r.oap).ok())
            .and_then(|(h, _)| h.to_bytes().ok());
        let Some(resp) = resp else {
            self.uni_refuse(r, "a bad OAP request");
            return None;
        };
        Some((name, resp))
    }

    /// Refuses a flow request from a peer IPCP.
    pub(crate) fn uni_refuse(&self, r: &UniIncoming, why: &str) {
        crate::wire_log!(warn, "Unicast flow request refused: {why}.");
        if let Some(f) = self.st().unicast.get_mut(r.uni).and_then(|u| u.fa.as_mut()) {
            let _ = f.refuse(r.req, -1);
        }
    }

    /// Serves a checked flow request if a process accepts flows for `name` now: `Err(r)`
    /// gives the request back to wait (it is served in arrival order as processes come
    /// back to accept, or refused after `--accept-wait`).
    pub(crate) fn uni_serve(
        &self,
        r: UniIncoming,
        name: &str,
        resp: &[u8],
    ) -> Result<Option<UniFlowP>, UniIncoming> {
        let acc = self
            .st()
            .reg
            .take_acceptor(name, &crate::registry::process_lives);
        let Some(a) = acc else {
            return Err(r);
        };
        let local = self
            .st()
            .unicast
            .get_mut(r.uni)
            .and_then(|u| u.fa.as_mut())
            .and_then(|f| f.accept(r.req, resp).ok());
        let Some((local, remote, peer)) = local else {
            self.st().reg.restore(a);
            return Ok(None);
        };
        match self.uni_install(r.uni, local, remote, peer, name, r.qos, "accept", a.pid) {
            Ok((acc, fp)) => {
                if a.handle.send(acc).is_err() {
                    self.dealloc(fp.flow);
                    return Ok(None);
                }
                self.wake();
                Ok(Some(fp))
            }
            Err(e) => {
                tracing::warn!("unicast flow for {name}: {e}");
                self.st().reg.restore(a);
                Ok(None)
            }
        }
    }

    /// The app of `f` wrote: its SDUs go out in DT PDUs.
    pub(crate) fn uni_from_app(&self, f: &UniFlowP) {
        f.from_app.drain();
        let ring = f.mem.ring(o7s::ring::Dir::Tx);
        let mut buf = vec![0u8; 65_536];
        let mut st = self.st();
        let Some(u) = st.unicast.get_mut(f.uni) else {
            return;
        };
        loop {
            while let Ok(Some(n)) = ring.pop(&mut buf) {
                if n > 0 {
                    u.send_sdu(f.peer, f.remote, buf.get(..n).unwrap_or(&[]));
                }
            }
            ring.waiting().store(1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if ring.is_empty() {
                break;
            }
        }
    }

    /// SDUs that arrived for the flows o7sd serves go to their apps.
    pub(crate) fn uni_to_apps(&self, flows: &HashMap<u64, UniFlowP>) {
        let pending: Vec<(usize, u64, Vec<u8>)> = {
            let mut st = self.st();
            st.unicast
                .iter_mut()
                .enumerate()
                .flat_map(|(i, u)| {
                    std::mem::take(&mut u.rx_pending)
                        .into_iter()
                        .map(move |(e, s)| (i, e, s))
                })
                .collect()
        };
        for (uni, eid, sdu) in pending {
            if let Some(f) = flows.values().find(|f| f.uni == uni && f.local == eid) {
                if let Ok(wake) = f.mem.ring(o7s::ring::Dir::Rx).push(&sdu) {
                    if wake {
                        f.to_app.kick();
                    }
                }
            }
        }
    }
}
