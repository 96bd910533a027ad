//! Flow requests that reached a shim IPCP, on the accepting side: checked (limits, OAP),
//! planned (a process waiting in accept, a program to start, or a wait), served with a
//! FLOW_REPLY or refused; the waiting room and its expiry.

use crate::daemon::install::Installed;
use crate::daemon::shim_driver::{Fresh, Waiting};
use crate::daemon::{Owner, State};
use crate::registry::{Accepted, Acceptor};
use o7s_abi::msg::CryptSpec;
use o7s_proto::accept::{Action, Plan};
use o7s_proto::refusal::Refusal;
use o7s_wire::oap::{OapHdr, Role};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Owner {
    /// Checks a new flow request (name, OAP, keys, limits) and queues it for an acceptor,
    /// or refuses it.
    pub(super) fn check_fresh(&self, f: Fresh, now: Instant) {
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
            self.refuse_req(f.idx, f.req, Refusal::NotRegistered, now);
            return;
        };
        match self.checked(&name, &f) {
            Ok((resp, crypt)) => {
                let mut st = self.st();
                let plan = self.plan_for(&st, &name);
                let key = (f.idx, f.req);
                if st.accept_queue.push(now, key, &name, plan).is_err() {
                    drop(st);
                    self.counters.flow_req_busy.fetch_add(1, Ordering::Relaxed);
                    crate::wire_log!(
                        warn,
                        "Flow request for {name}: too many wait for an acceptor; refused."
                    );
                    self.refuse_req(f.idx, f.req, Refusal::Busy, now);
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
                self.refuse_req(f.idx, f.req, cause, now);
            }
        }
    }

    /// The OAP response and keys for a request, or why it is refused.
    pub(super) fn checked(
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
                crate::wire_log!(
                    info,
                    "{name}: member {cn} of the layer of {} authenticated.",
                    m.ipcp
                );
            }
            None => self.check_request(
                &req,
                &f.oap,
                super::oap_glue::source_key(Some(&f.peer), None),
            )?,
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
    pub(super) fn plan_for(&self, st: &State, name: &str) -> Plan {
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
    pub(super) fn serve_waiting(&self, now: Instant) {
        loop {
            let mut st = self.st();
            let st2 = &mut *st;
            let reg = &st2.reg;
            let action = st2.accept_queue.next(now, &mut |n| {
                reg.has_acceptor(n, &crate::registry::process_lives)
            });
            let Some(action) = action else { return };
            match action {
                Action::Serve { key, name } => {
                    let acc = st.reg.take_acceptor(&name, &crate::registry::process_lives);
                    let w = st.waiting.remove(&key);
                    drop(st);
                    match (w, acc) {
                        (Some(w), Some(a)) => self.serve_request(w, a, now),
                        (Some(w), None) => {
                            crate::wire_log!(
                                warn,
                                "Flow request for {name} refused: its process left accept."
                            );
                            self.refuse_req(w.idx, w.req, Refusal::NoAcceptor, now)
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
                            self.refuse_req(w.idx, w.req, Refusal::NoProgram, now);
                        }
                    }
                }
                Action::Expire { key, name } => {
                    let w = st.waiting.remove(&key);
                    drop(st);
                    if let Some(w) = w {
                        let why = self.why_no_acceptor(&name);
                        crate::wire_log!(warn, "Flow request for {name} refused: {why}");
                        self.refuse_req(w.idx, w.req, Refusal::NoAcceptor, now);
                    }
                }
            }
        }
    }

    /// Sets the flow up for `a` and sends the FLOW_REPLY.
    pub(super) fn serve_request(&self, w: Waiting, a: Acceptor, now: Instant) {
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
            self.refuse_req(w.idx, w.req, Refusal::NoResources, now);
            return;
        };
        match self.install_start(
            w.idx,
            local,
            w.remote,
            w.peer,
            &w.name,
            w.qos,
            "accept",
            a.pid,
            w.crypt.clone(),
            now,
        ) {
            // The FLOW_REPLY goes once the data plane has the flow (serve_installing).
            Ok(inst) => self.st().shim_serving.push((w, a, inst)),
            Err(e) => self.serve_failed(w, a, &e, now),
        }
    }

    /// The accepted flows whose installation the data plane acknowledged go to their
    /// processes and their FLOW_REPLYs to the requesters; those it refused (or did not
    /// answer in time) are refused. Nothing waits here.
    pub(super) fn serve_installing(&self, now: Instant) {
        let pending = std::mem::take(&mut self.st().shim_serving);
        for (w, a, inst) in pending {
            match self.install_poll(inst, now) {
                Ok(Installed::Waiting(inst)) => self.st().shim_serving.push((w, a, inst)),
                Ok(Installed::Done(acc)) => self.serve_installed(w, a, acc, now),
                Err(e) => self.serve_failed(w, a, &e, now),
            }
        }
    }

    /// A request whose flow could not be set up: refused, its process first in line again.
    fn serve_failed(&self, w: Waiting, a: Acceptor, e: &crate::error::FlowError, now: Instant) {
        crate::wire_log!(warn, "Flow request for {} refused: {e}", w.name);
        // The process was picked but got nothing: it is first in line again.
        self.st().reg.restore(a);
        self.wake();
        let cause = match e {
            crate::error::FlowError::Limit(_) => Refusal::Limit,
            _ => Refusal::NoResources,
        };
        self.refuse_req(w.idx, w.req, cause, now);
    }

    /// The flow of request `w`, installed: to its process, and the FLOW_REPLY out.
    fn serve_installed(&self, w: Waiting, a: Acceptor, acc: Accepted, now: Instant) {
        let flow = acc.flow;
        if a.handle.send(acc).is_err() {
            crate::wire_log!(
                warn,
                "Flow request for {} refused: the process accepting it went away.",
                w.name
            );
            self.dealloc(flow);
            self.refuse_req(w.idx, w.req, Refusal::NoAcceptor, now);
            return;
        }
        // The holder thread hands it to the waiting process.
        self.wake();
        let mut out = vec![];
        let mut st = self.st();
        if let Some(i) = st.ipcps.get_mut(w.idx) {
            let _ = i
                .shim
                .reply(now, w.req, w.resp.to_bytes().unwrap_or_default());
        }
        self.pump(&mut st, w.idx, &mut out, now);
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
}
