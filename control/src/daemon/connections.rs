//! App and o7sctl connections: requests, captures, accepting flows and holding them.

use super::*;
use crate::conns::Slot;

impl Daemon {
    /// Serves one connection (an app or o7sctl) until it closes.
    pub fn serve(self: &Arc<Self>, ch: Channel, slot: Option<Slot>) {
        let req = match ch.recv::<Request>() {
            Ok((r, _)) => r,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::warn!("bad request: {e}");
                    let _ = ch.send(
                        &Reply::Error {
                            code: ErrorCode::Invalid,
                            message: e.to_string(),
                        },
                        &[],
                    );
                }
                return;
            }
        };
        let cred = match ch.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("a client without credentials: {e}");
                return;
            }
        };
        let pid = cred.pid;
        match req {
            Request::Alloc { name, .. } if o7s::proto::check_name(&name).is_err() => {
                let message = o7s::proto::check_name(&name).err().unwrap_or_default();
                let _ = ch.send(
                    &Reply::Error {
                        code: ErrorCode::Invalid,
                        message,
                    },
                    &[],
                );
            }
            Request::Alloc {
                name,
                qos,
                timeout_ms,
            } => match self.alloc(&name, qos, Duration::from_millis(timeout_ms.max(1)), pid) {
                Ok(acc) => self.deliver_and_hold(ch, acc, slot),
                Err(e) => {
                    tracing::info!("Flow allocation to {name} for process {pid} failed: {e}");
                    let _ = ch.send(
                        &Reply::Error {
                            code: e.code(),
                            message: e.to_string(),
                        },
                        &[],
                    );
                }
            },
            Request::Accept { timeout_ms } => self.accept(
                ch,
                pid,
                cred.uid,
                timeout_ms.map(Duration::from_millis),
                slot,
            ),
            Request::Ctl(Ctl::Capture {
                target,
                flow,
                snaplen,
                count,
            }) => {
                let c = Ctl::Capture {
                    target: target.clone(),
                    flow,
                    snaplen,
                    count,
                };
                match self.authorize(&c, &cred) {
                    Ok(()) => self.capture(&ch, &target, flow, snaplen),
                    Err(message) => {
                        self.counters.denied.fetch_add(1, Ordering::Relaxed);
                        let _ = ch.send(
                            &Reply::Error {
                                code: ErrorCode::Denied,
                                message,
                            },
                            &[],
                        );
                    }
                }
            }
            Request::Ctl(c) => {
                let r = match self.authorize(&c, &cred) {
                    Ok(()) => self.ctl(c, &cred),
                    Err(message) => {
                        self.counters.denied.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "Refused {} for process {} (uid {}): {message}",
                            crate::authz::verb(&c),
                            cred.pid,
                            cred.uid
                        );
                        Reply::Error {
                            code: ErrorCode::Denied,
                            message,
                        }
                    }
                };
                let _ = ch.send(&r, &[]);
            }
        }
    }

    /// Runs a capture for the client on `ch`: hands it the ring the data plane copies the
    /// frames into, and stops the capture when the client hangs up.
    pub(super) fn capture(&self, ch: &Channel, target: &str, flow: Option<u64>, snaplen: u32) {
        let fail = |code, message: String| {
            let _ = ch.send(&Reply::Error { code, message }, &[]);
        };
        let port = {
            let st = self.st();
            let by_flow = flow.map(|f| st.flows.get(&f).map(|r| r.ipcp));
            let ipcp = match by_flow {
                Some(Some(i)) => st.ipcps.get(i),
                Some(None) => {
                    drop(st);
                    return fail(
                        ErrorCode::NotFound,
                        format!("no flow {}", flow.unwrap_or(0)),
                    );
                }
                None => st.ipcps.iter().find(|i| {
                    i.name == target || i.dev == target || target.parse::<u32>() == Ok(i.port)
                }),
            };
            match ipcp {
                Some(i) => i.port,
                None => {
                    drop(st);
                    return fail(
                        ErrorCode::NotFound,
                        format!("no port, device or IPCP named {target}"),
                    );
                }
            }
        };
        let id = self.capture_ids.fetch_add(1, Ordering::Relaxed) + 1;
        // The ring the data plane writes and the client reads: 1024 slots of 9216 bytes (a
        // 9000-byte frame and its header), sealed like a flow's memory.
        let (ring, memfd) = match FlowMem::create(1024, DEFAULT_SLOT_SIZE) {
            Ok(x) => x,
            Err(e) => return fail(ErrorCode::NoResources, format!("capture ring: {e}")),
        };
        let room = ring.max_sdu() - o7s_abi::msg::CaptureRecord::LEN;
        let snaplen = snaplen.min(u32::try_from(room).unwrap_or(u32::MAX));
        drop(ring);
        let start = ToDp::CaptureStart {
            id,
            port,
            flow,
            snaplen,
        };
        if let Err(e) = self.dp.capture_start(&start, id, memfd.as_fd()) {
            return fail(ErrorCode::Invalid, e);
        }
        tracing::info!(
            "Capture {id} of port {port}{} started.",
            flow.map(|f| format!(", flow {f}")).unwrap_or_default()
        );
        // The client reads the ring itself (and counts); the capture lasts until it hangs up.
        if ch
            .send(&Reply::Capturing { snaplen }, &[memfd.as_fd()])
            .is_ok()
        {
            while !wait_readable(ch.as_fd(), Some(Duration::from_millis(500))).unwrap_or(true)
                && !self.stopping.load(Ordering::Relaxed)
            {}
        }
        self.dp.capture_end(id);
        tracing::info!("Capture {id} ended.");
    }

    /// Hands a flow to its app, then holds the flow until the app closes the channel.
    pub(super) fn deliver_and_hold(&self, ch: Channel, acc: Accepted, slot: Option<Slot>) {
        let fds: Vec<_> = acc.fds.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = ch.send(&Reply::Flow(acc.info.clone()), &fds) {
            tracing::warn!(
                "flow {}: the process went away before getting it: {e}",
                acc.flow
            );
            self.dealloc(acc.flow);
            return;
        }
        drop(acc.fds);
        self.hold(acc.flow, ch, slot);
    }

    /// Frees a flow everywhere.
    pub fn dealloc(&self, flow: u64) {
        let mut st = self.st();
        if let Some(f) = st.flows.remove(&flow) {
            if let Some(i) = st.ipcps.get_mut(f.ipcp) {
                i.shim.release(f.local);
            }
            drop(st);
            self.dp.send(&ToDp::DelFlow { flow }, &[]);
            tracing::info!("Flow {flow} ({} {}) deallocated.", f.side, f.name);
        }
    }

    pub(super) fn accept(
        self: &Arc<Self>,
        ch: Channel,
        pid: i32,
        uid: u32,
        timeout: Option<Duration>,
        slot: Option<Slot>,
    ) {
        let exe = exe_of(pid);
        let (tx, rx) = sync_channel::<Accepted>(1);
        let id = {
            let mut st = self.st();
            let names = st.reg.names_of(pid, uid, exe.as_deref());
            if names.is_empty() {
                // It may be bound later (o7sctl bind process): it then joins the names.
                tracing::info!(
                    "process {pid} ({}) accepts flows but is bound to no name yet",
                    exe.as_ref()
                        .map(|e| e.display().to_string())
                        .unwrap_or_default()
                );
            }
            tracing::debug!("process {pid} accepts flows for {}", names.join(", "));
            let id = st.reg.add_acceptor(pid, &names, tx);
            self.accept_cv.notify_all();
            id
        };
        // The holder thread watches the connection from here: it delivers the flow when
        // one comes, and removes the acceptor when the process goes or its time is up.
        self.park(super::holder::Parked {
            id,
            ch,
            slot,
            rx,
            deadline: timeout.map(|t| Instant::now() + t),
        });
    }
}
