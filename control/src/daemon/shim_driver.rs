//! The driver of the shim layers' protocol machines (`o7s_proto::shim::Shim`, one per
//! eth/udp IPCP, and the responder's `o7s_proto::accept::AcceptQueue`).
//!
//! Management frames from the data plane go into the IPCP's machine
//! ([`Daemon::on_mgmt`]); what the machine produces is drained by [`Daemon::pump`] under
//! the state lock and sent after it is released. One thread, [`Daemon::run_protocol`],
//! does everything that waits: it checks new flow requests (OAP, keys, limits), serves
//! them in order as processes come to accept (or starts the name's program), refuses what
//! waited too long, and fires the machines' timers. No thread is started per request, and
//! every queue is bounded: what does not fit is refused and counted.

use super::{Daemon, State};
use crate::eth::{Peer, ReplyInfo};
use crate::registry::Acceptor;
use o7s_abi::msg::CryptSpec;
use o7s_proto::accept::{Action, Plan};
use o7s_proto::refusal::Refusal;
use o7s_proto::shim::{Event, ReqId};
use o7s_wire::oap::{OapHdr, Role};
use o7s_wire::qos::QosSpec;
use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Most flow requests from the wire waiting for their checks.
pub const MAX_FRESH: usize = 256;

/// Most checked flow requests waiting for an acceptor.
pub const MAX_WAITING: usize = 256;

/// A flow request from the wire, before its checks.
#[derive(Debug)]
pub struct Fresh {
    idx: usize,
    req: ReqId,
    hash: Vec<u8>,
    peer: Peer,
    remote: u32,
    qos: QosSpec,
    oap: Vec<u8>,
}

/// A checked flow request waiting for an acceptor.
#[derive(Debug)]
pub struct Waiting {
    idx: usize,
    req: ReqId,
    name: String,
    peer: Peer,
    remote: u32,
    qos: QosSpec,
    resp: OapHdr,
    crypt: Option<CryptSpec>,
}

/// Messages to send once the state lock is released: port, destination, payload.
pub type Outbox = Vec<(u32, Peer, Vec<u8>)>;

fn add(c: &AtomicU64, now: u64, before: u64) {
    c.fetch_add(now.saturating_sub(before), Ordering::Relaxed);
}

impl Daemon {
    /// Drains IPCP `idx`'s machine: events go to whoever waits for them, new flow requests
    /// to the protocol thread's queue, counters to the daemon's; returns what to send.
    pub(super) fn pump(&self, st: &mut State, idx: usize, out: &mut Outbox) {
        let now = Instant::now();
        let mut fresh = vec![];
        let mut refuse = vec![];
        // Whether an allocation waiting in the event loop got its answer.
        let mut woke = false;
        {
            let Some(i) = st.ipcps.get_mut(idx) else {
                return;
            };
            while let Some(e) = i.shim.poll_event() {
                match e {
                    Event::QueryAnswered { hash, peer } => {
                        if let Some(q) = i.query_waiters.remove(&hash) {
                            woke = true;
                            for w in q.waiters {
                                let _ = w.send((idx, peer));
                            }
                            // Bounded by the machine's cache: pruned to it at each tick.
                            i.learnt.insert(hash, (q.name, SystemTime::now()));
                        }
                    }
                    Event::QueryFailed { hash } => {
                        // Dropping the senders tells the waiters nobody answered.
                        woke |= i.query_waiters.remove(&hash).is_some();
                    }
                    Event::Allocated {
                        alloc,
                        local,
                        remote,
                        peer,
                        oap,
                    } => match i.alloc_waiters.remove(&alloc.0) {
                        Some(w) => {
                            woke = true;
                            let sent = w.send(Ok(ReplyInfo {
                                local,
                                remote,
                                peer,
                                oap,
                            }));
                            // Its app went away meanwhile.
                            if sent.is_err() {
                                i.shim.release(local);
                            }
                        }
                        // Its app went away meanwhile.
                        None => i.shim.release(local),
                    },
                    Event::AllocFailed { alloc, error } => {
                        if let Some(w) = i.alloc_waiters.remove(&alloc.0) {
                            woke = true;
                            let _ = w.send(Err(error));
                        }
                    }
                    Event::Incoming {
                        req,
                        hash,
                        peer,
                        remote,
                        qos,
                        oap,
                    } => fresh.push(Fresh {
                        idx,
                        req,
                        hash,
                        peer,
                        remote,
                        qos,
                        oap,
                    }),
                }
            }
            if woke {
                self.wake();
            }
            for f in fresh {
                if st_fresh_len(&st.fresh) >= MAX_FRESH {
                    refuse.push(f.req);
                } else {
                    st.fresh.push_back(f);
                }
            }
        }
        let Some(i) = st.ipcps.get_mut(idx) else {
            return;
        };
        for req in refuse {
            self.counters.flow_req_busy.fetch_add(1, Ordering::Relaxed);
            let _ = i.shim.refuse(now, req, -1);
        }
        while let Some(t) = i.shim.poll_transmit() {
            out.push((i.port, t.dst, crate::eth::build_mgmt(i.port_kind, &t.msg)));
        }
        let (c, b) = (i.shim.counters(), i.counted);
        let k = &self.counters;
        add(
            &k.mgmt_malformed,
            c.malformed + c.unexpected_code,
            b.malformed + b.unexpected_code,
        );
        add(&k.not_for_us, c.not_for_us, b.not_for_us);
        add(
            &k.name_reply_unsolicited,
            c.name_reply_unsolicited,
            b.name_reply_unsolicited,
        );
        add(&k.cache_full, c.cache_full, b.cache_full);
        add(&k.reply_unknown_eid, c.reply_unknown, b.reply_unknown);
        add(&k.req_bad_eid, c.req_bad_eid, b.req_bad_eid);
        add(&k.req_unknown_name, c.req_unknown_name, b.req_unknown_name);
        add(&k.flow_req_busy, c.incoming_full, b.incoming_full);
        add(&k.req_duplicate, c.req_duplicate, b.req_duplicate);
        add(
            &k.replies_not_remembered,
            c.replies_not_remembered,
            b.replies_not_remembered,
        );
        add(&k.refused, c.refused, b.refused);
        if c.reply_unknown > b.reply_unknown {
            crate::wire_log!(
                warn,
                "{}: dropped {} FLOW_REPLY(s) for no allocation waiting (or from another peer)",
                i.name,
                c.reply_unknown - b.reply_unknown
            );
        }
        if c.req_bad_eid > b.req_bad_eid {
            crate::wire_log!(
                warn,
                "{}: dropped a FLOW_REQ with an impossible endpoint id",
                i.name
            );
        }
        if c.req_unknown_name > b.req_unknown_name {
            crate::wire_log!(
                info,
                "{}: a flow request for an unregistered name: refused.",
                i.name
            );
        }
        i.counted = c;
    }

    /// Sends what [`Daemon::pump`] collected.
    pub(super) fn send_all(&self, out: Outbox) {
        for (port, dst, payload) in out {
            self.send_mgmt(port, dst, payload);
        }
    }

    /// A management frame from port `port`, from `src`, to `dst` (eth).
    pub(super) fn on_mgmt(&self, port: u32, src: Peer, dst: Option<[u8; 6]>, payload: &[u8]) {
        let mut out = vec![];
        let mut st = self.st();
        let Some(idx) = st.ipcps.iter().position(|i| i.port == port) else {
            return;
        };
        if let Some(i) = st.ipcps.get_mut(idx) {
            i.shim.handle(Instant::now(), src, dst, payload);
        }
        self.pump(&mut st, idx, &mut out);
        let wake = !st.fresh.is_empty();
        drop(st);
        self.send_all(out);
        if wake {
            self.wake();
        }
    }

    /// Refuses request `req` of IPCP `idx`; the FLOW_REPLY's response says `why` (the
    /// caller has logged it).
    fn refuse_req(&self, idx: usize, req: ReqId, why: Refusal) {
        let mut out = vec![];
        let mut st = self.st();
        if let Some(i) = st.ipcps.get_mut(idx) {
            let _ = i.shim.refuse(Instant::now(), req, why.response());
        }
        self.pump(&mut st, idx, &mut out);
        drop(st);
        self.send_all(out);
    }

    /// The event loop's protocol work: checks and serves flow requests, fires the
    /// machines' timers. Returns when it is due again at the latest (recorded, so that a
    /// machine's earlier new timer wakes the loop: [`Daemon::wake_for`]).
    pub(super) fn protocol_turn(&self) -> Instant {
        // At most this many new requests a turn: the loop's other work goes on in a flood.
        let mut budget = MAX_FRESH;
        loop {
            while budget > 0 {
                let f = self.st().fresh.pop_front();
                let Some(f) = f else { break };
                budget -= 1;
                self.check_fresh(f);
            }
            self.serve_waiting();
            let mut out = vec![];
            let mut st = self.st();
            let now = Instant::now();
            for idx in 0..st.ipcps.len() {
                let due = st
                    .ipcps
                    .get(idx)
                    .and_then(|i| i.shim.poll_timeout())
                    .is_some_and(|t| t <= now);
                if due {
                    if let Some(i) = st.ipcps.get_mut(idx) {
                        i.shim.handle_timeout(now);
                    }
                    self.pump(&mut st, idx, &mut out);
                }
            }
            if !out.is_empty() {
                drop(st);
                self.send_all(out);
                continue;
            }
            if !st.fresh.is_empty() {
                if budget == 0 {
                    st.proto_wake = Some(now);
                    return now;
                }
                continue;
            }
            let next = st
                .ipcps
                .iter()
                .filter_map(|i| i.shim.poll_timeout())
                .chain(st.accept_queue.poll_timeout())
                .min()
                .unwrap_or(now + Duration::from_millis(500))
                .min(now + Duration::from_millis(500));
            st.proto_wake = Some(next);
            return next;
        }
    }

    /// Checks a new flow request (name, OAP, keys, limits) and queues it for an acceptor,
    /// or refuses it.
    fn check_fresh(&self, f: Fresh) {
        let name = self
            .st()
            .ipcps
            .get(f.idx)
            .and_then(|i| i.regs.get(&f.hash).cloned());
        let Some(name) = name else {
            // Unregistered meanwhile.
            crate::wire_log!(
                info,
                "A flow request for a name unregistered meanwhile: refused."
            );
            self.refuse_req(f.idx, f.req, Refusal::NotRegistered);
            return;
        };
        match self.checked(&name, &f) {
            Ok((resp, crypt)) => {
                let mut st = self.st();
                let plan = self.plan_for(&st, &name);
                let key = (f.idx, f.req);
                if st
                    .accept_queue
                    .push(Instant::now(), key, &name, plan)
                    .is_err()
                {
                    drop(st);
                    self.counters.flow_req_busy.fetch_add(1, Ordering::Relaxed);
                    crate::wire_log!(
                        warn,
                        "Flow request for {name}: too many wait for an acceptor; refused."
                    );
                    self.refuse_req(f.idx, f.req, Refusal::Busy);
                    return;
                }
                st.waiting.insert(
                    key,
                    Waiting {
                        idx: f.idx,
                        req: f.req,
                        name,
                        peer: f.peer,
                        remote: f.remote,
                        qos: f.qos,
                        resp,
                        crypt,
                    },
                );
            }
            Err(why) => {
                crate::wire_log!(warn, "Flow request for {name} refused: {why}");
                let cause = match why {
                    crate::error::OapCheckError::Limit(_) => Refusal::Limit,
                    _ => Refusal::Security,
                };
                self.refuse_req(f.idx, f.req, cause);
            }
        }
    }

    /// The OAP response and keys for a request, or why it is refused.
    fn checked(
        &self,
        name: &str,
        f: &Fresh,
    ) -> Result<(OapHdr, Option<CryptSpec>), crate::error::OapCheckError> {
        use crate::error::OapCheckError;
        let req = OapHdr::parse_as(&f.oap, Role::Request, 0).inspect_err(|_| {
            self.counters.mgmt_malformed.fetch_add(1, Ordering::Relaxed);
        })?;
        crate::wire_log!(info, "Flow request arrived for {name}.");
        // A name of an IPCP of a secured layer admits members only.
        let member = self.st().members.get(name).cloned();
        match &member {
            Some(m) => {
                let cn = self.check_member_request(m, &req, &f.oap)?;
                tracing::info!(
                    "{name}: member {cn} of the layer of {} authenticated.",
                    m.ipcp
                );
            }
            None => self.check_request(&req, &f.oap)?,
        }
        let conf = self
            .enc_conf("server", name)
            .map_err(OapCheckError::Settings)?;
        let (resp, crypt) = super::oap_glue::server_key(conf.map(|c| c.0), &req, &f.oap)?;
        let resp = match &member {
            Some(m) => crate::auth::sign_header(&m.signer, resp),
            None => self.sign_response(name, resp),
        }
        .map_err(OapCheckError::Signer)?;
        let crypt = crypt.map(|c| CryptSpec {
            rotation_bits: self.settings.key_rotation_bits,
            ..c
        });
        // The limits first: a request that will be refused must not take an acceptor or
        // start a program.
        self.check_flow_limits(f.peer)
            .map_err(|e| OapCheckError::Limit(Box::new(e)))?;
        Ok((resp, crypt))
    }

    /// How a request for `name` waits: for a bound process, then for its program.
    fn plan_for(&self, st: &State, name: &str) -> Plan {
        let auto = st.reg.auto_prog(name);
        let e = st.reg.names.get(name);
        let bound = e.is_some_and(|e| !e.progs.is_empty() || !e.pids.is_empty());
        let pinned = e.is_some_and(|e| e.pids.iter().any(|p| crate::registry::process_lives(*p)));
        let running = st.children.iter().any(|(n, _)| n == name);
        let s = &self.settings;
        if pinned {
            // A process bound by pid serves the name alone: wait for it, start nothing.
            return Plan {
                wait: s.accept_wait,
                autostart: None,
            };
        }
        // A bound process may be between two accepts: give it a moment.
        let wait = if bound && (auto.is_none() || running) {
            s.accept_wait
        } else {
            Duration::ZERO
        };
        Plan {
            wait,
            autostart: auto.map(|_| s.autostart_wait),
        }
    }

    /// Why no process accepts flows for `name` now, and what to do: for the log line of
    /// a refusal.
    pub(super) fn why_no_acceptor(&self, name: &str) -> String {
        let st = self.st();
        let mut why = vec!["no process accepts flows for it".to_string()];
        let live: Vec<String> = st
            .reg
            .processes(name)
            .into_iter()
            .filter(|p| crate::registry::process_lives(*p))
            .map(|p| p.to_string())
            .collect();
        if !live.is_empty() {
            why.push(format!(
                "its process(es) {} did not come back to accept in time",
                live.join(", ")
            ));
        }
        match st.reg.names.get(name) {
            Some(e) if e.progs.is_empty() && e.pids.is_empty() => {
                why.push("no program or process is bound to it".into())
            }
            Some(e) => {
                for p in e.progs.iter().filter(|p| p.auto && !p.startable()) {
                    why.push(format!(
                        "its program {} cannot be started (not found)",
                        p.path
                    ));
                }
                if !e.progs.iter().any(|p| p.auto) && live.is_empty() {
                    why.push("none of its programs is auto-started".into());
                }
            }
            None => why.push("the name does not exist here".into()),
        }
        for (pid, exe) in st.reg.unbound_acceptors() {
            why.push(format!(
                "process {pid} ({}) accepts but is bound to no name",
                exe.map(|e| e.display().to_string()).unwrap_or_default()
            ));
        }
        format!(
            "{}; start its server (e.g. `oping -l`), or `o7sctl bind program PATH name {name} auto -- ARGS`, or `o7sctl bind process PID name {name}`.",
            why.join("; ")
        )
    }

    /// Does what the accept queue says: serve, start a program, refuse.
    fn serve_waiting(&self) {
        loop {
            let mut st = self.st();
            let st2 = &mut *st;
            let reg = &st2.reg;
            let action = st2.accept_queue.next(Instant::now(), &mut |n| {
                reg.has_acceptor(n, &crate::registry::process_lives)
            });
            let Some(action) = action else { return };
            match action {
                Action::Serve { key, name } => {
                    let acc = st.reg.take_acceptor(&name, &crate::registry::process_lives);
                    let w = st.waiting.remove(&key);
                    drop(st);
                    match (w, acc) {
                        (Some(w), Some(a)) => self.serve_request(w, a),
                        (Some(w), None) => {
                            crate::wire_log!(
                                warn,
                                "Flow request for {name} refused: its process left accept."
                            );
                            self.refuse_req(w.idx, w.req, Refusal::NoAcceptor)
                        }
                        (None, Some(a)) => {
                            self.st().reg.restore(a);
                        }
                        (None, None) => {}
                    }
                }
                Action::Start { key, name } => {
                    drop(st);
                    if !self.start_program(&name) {
                        let mut st = self.st();
                        st.accept_queue.remove(&key);
                        let w = st.waiting.remove(&key);
                        drop(st);
                        if let Some(w) = w {
                            crate::wire_log!(
                                warn,
                                "Flow request for {name} refused: no process accepts flows for it and its program cannot be started (see above)."
                            );
                            self.refuse_req(w.idx, w.req, Refusal::NoProgram);
                        }
                    }
                }
                Action::Expire { key, name } => {
                    let w = st.waiting.remove(&key);
                    drop(st);
                    if let Some(w) = w {
                        let why = self.why_no_acceptor(&name);
                        crate::wire_log!(warn, "Flow request for {name} refused: {why}");
                        self.refuse_req(w.idx, w.req, Refusal::NoAcceptor);
                    }
                }
            }
        }
    }

    /// Sets the flow up for `a` and sends the FLOW_REPLY.
    fn serve_request(&self, w: Waiting, a: Acceptor) {
        let local = {
            let mut st = self.st();
            st.ipcps.get_mut(w.idx).map(|i| i.shim.take_eid(w.req))
        };
        let Some(Ok(local)) = local else {
            self.st().reg.restore(a);
            self.wake();
            crate::wire_log!(
                warn,
                "Flow request for {} refused: no endpoint id is free.",
                w.name
            );
            self.refuse_req(w.idx, w.req, Refusal::NoResources);
            return;
        };
        let acc = match self.install_flow(
            w.idx, local, w.remote, w.peer, &w.name, w.qos, "accept", a.pid, w.crypt,
        ) {
            Ok(acc) => acc,
            Err(e) => {
                crate::wire_log!(warn, "Flow request for {} refused: {e}", w.name);
                // The process was picked but got nothing: it is first in line again.
                self.st().reg.restore(a);
                self.wake();
                let cause = match e {
                    crate::error::FlowError::Limit(_) => Refusal::Limit,
                    _ => Refusal::NoResources,
                };
                self.refuse_req(w.idx, w.req, cause);
                return;
            }
        };
        let flow = acc.flow;
        if a.handle.send(acc).is_err() {
            crate::wire_log!(
                warn,
                "Flow request for {} refused: the process accepting it went away.",
                w.name
            );
            self.dealloc(flow);
            self.refuse_req(w.idx, w.req, Refusal::NoAcceptor);
            return;
        }
        // The holder thread hands it to the waiting process.
        self.wake();
        let mut out = vec![];
        let mut st = self.st();
        if let Some(i) = st.ipcps.get_mut(w.idx) {
            let _ = i
                .shim
                .reply(Instant::now(), w.req, w.resp.to_bytes().unwrap_or_default());
        }
        self.pump(&mut st, w.idx, &mut out);
        drop(st);
        self.send_all(out);
        crate::wire_log!(
            info,
            "Flow {flow} accepted for {} by process {}.",
            w.name,
            a.pid
        );
    }

    /// Starts the program bound to `name` with auto-start; false if it cannot.
    pub(super) fn start_program(&self, name: &str) -> bool {
        let (prog, running_n) = {
            let st = self.st();
            (
                st.reg.auto_prog(name),
                st.children.iter().filter(|(n, _)| n == name).count(),
            )
        };
        let Some(prog) = prog else { return false };
        let Some(exe) = prog.exe.clone() else {
            crate::wire_log!(
                warn,
                "Cannot start {} for {name}: it does not exist, nor is {} in o7sd's PATH; start the server by hand (it is found by its file name) or bind the program by its full path.",
                prog.path,
                std::path::Path::new(&prog.path)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            return false;
        };
        if running_n >= super::MAX_AUTOSTARTED_PER_NAME {
            self.counters
                .autostart_limit
                .fetch_add(1, Ordering::Relaxed);
            crate::wire_log!(
                warn,
                "{running_n} instances of {} already run for {name} and none accepts: not starting another.",
                exe.display()
            );
            return false;
        }
        tracing::info!("Starting {} for {name}.", exe.display());
        let mut cmd = Command::new(&exe);
        // The program talks to this daemon, whatever the environment o7sd was started in,
        // and what it says on stderr goes to this log.
        cmd.args(&prog.args)
            .env(o7s::proto::RUNDIR_ENV, &self.settings.rundir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = prog.run_as {
            // Never as root for a program a non-root administrator bound (std drops the
            // supplementary groups too).
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
            tracing::info!("{} runs as uid {uid} gid {gid}.", exe.display());
        }
        match cmd.spawn() {
            Ok(mut c) => {
                if let Some(err) = c.stderr.take() {
                    let label = exe
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    super::supervise::log_child_stderr(label, c.id(), err);
                }
                self.st().children.push((name.to_string(), c));
                true
            }
            Err(e) => {
                tracing::error!("cannot start {}: {e}", exe.display());
                false
            }
        }
    }

    /// Starts a name query for `name` (hash `h`) on IPCP `idx`; the answer comes on `tx`
    /// (nothing when nobody answers); `Err` when too many queries wait.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn query(
        &self,
        st: &mut State,
        idx: usize,
        name: &str,
        h: &[u8],
        timeout: Duration,
        tx: std::sync::mpsc::Sender<(usize, Peer)>,
        out: &mut Outbox,
    ) -> Result<(), crate::error::FlowError> {
        let Some(i) = st.ipcps.get_mut(idx) else {
            return Err(crate::error::FlowError::Internal("IPCP vanished".into()));
        };
        let now = Instant::now();
        // Queries whose time is up go first (the protocol thread may be asleep).
        i.shim.handle_timeout(now);
        if let Err(source) = i.shim.query(now, h.to_vec(), timeout) {
            self.counters.query_limit.fetch_add(1, Ordering::Relaxed);
            return Err(crate::error::FlowError::Layer {
                ipcp: i.name.clone(),
                source,
            });
        }
        i.query_waiters
            .entry(h.to_vec())
            .or_insert_with(|| crate::eth::PendingQuery {
                name: name.to_string(),
                waiters: Vec::new(),
            })
            .waiters
            .push(tx);
        self.pump(st, idx, out);
        self.wake_for(st, now + timeout);
        Ok(())
    }

    /// Wakes the event loop if it sleeps past `deadline` (a new timer of a machine).
    pub(super) fn wake_for(&self, st: &State, deadline: Instant) {
        if st.proto_wake.is_none_or(|w| deadline < w) {
            self.wake();
        }
    }
}

fn st_fresh_len(q: &VecDeque<Fresh>) -> usize {
    q.len()
}
