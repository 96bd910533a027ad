//! The loop's clients: a new connection's one request read and routed (an allocation job, an
//! accept, the admin thread, a flow held), and each job's step applied to its connection.

use crate::daemon::alloc::Step;
use crate::daemon::event_loop::{reply_err, AdminJob, AdminWork, Conn, Doing, MAX_ADMIN_QUEUE};
use crate::daemon::Owner;
use crate::registry::{exe_of, Accepted};
use nix::sys::epoll::Epoll;
use o7s::proto::{ErrorCode, Reply, Request};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, TrySendError};
use std::time::{Duration, Instant};

/// The longest an app may have o7sd wait for its flow allocation (3x the reference's
/// `FLOW_ALLOC_TIMEOUT` of 20 s): a longer wait asked for is cut to this.
pub(crate) const MAX_ALLOC_WAIT: Duration = Duration::from_secs(60);

impl Owner {
    /// A connection is readable: its request came, or its app hung up (or spoke, which
    /// ends what it holds just the same). Returns it when it stays.
    pub(super) fn on_readable(&self, epoll: &Epoll, c: Conn, now: Instant) -> Option<Conn> {
        match c.doing {
            Doing::Reading { .. } => self.read_request(epoll, c, now),
            Doing::Allocating(_) | Doing::UniAllocating(_) | Doing::LocalAllocating(_) => {
                let pid = c.ch.peer_cred().map(|p| p.pid).unwrap_or(0);
                crate::local_log!(
                    info,
                    "Process {pid} went away while its flow was being allocated."
                );
                // What the allocation holds goes now, not when its time runs out.
                self.close(c);
                None
            }
            _ => {
                self.close(c);
                None
            }
        }
    }

    /// Reads a connection's request and starts on it.
    pub(super) fn read_request(&self, epoll: &Epoll, c: Conn, now: Instant) -> Option<Conn> {
        let Ok(cred) = c.ch.peer_cred() else {
            tracing::warn!("a client without credentials");
            return None;
        };
        match c.ch.next_is_long() {
            // Only o7sctl requests (a configuration's text) are that long; the admin
            // thread reads them, as their rest may be slow to come.
            Ok(Some(true)) => return self.to_admin(epoll, c, AdminWork::Long(cred)),
            // Nothing to read after all: the loop never blocks on a client.
            Ok(None) => return Some(c),
            // One packet (a whole request), or an error that recv reports.
            Ok(Some(false)) | Err(_) => {}
        }
        let req = match c.ch.recv::<Request>() {
            Ok((r, _)) => r,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    crate::local_log!(warn, "bad request: {e}");
                    reply_err(&c.ch, ErrorCode::Invalid, e.to_string());
                }
                return None;
            }
        };
        let pid = cred.pid;
        match req {
            Request::Alloc { name, .. } if o7s::proto::check_name(&name).is_err() => {
                let message = o7s::proto::check_name(&name).err().unwrap_or_default();
                reply_err(&c.ch, ErrorCode::Invalid, message);
                None
            }
            Request::Alloc {
                name,
                qos,
                timeout_ms,
            } => {
                // At most MAX_ALLOC_WAIT: what a waiting allocation holds (an endpoint id
                // of the layer's, its request) is the layer's, not the app's.
                let timeout = Duration::from_millis(timeout_ms.max(1)).min(MAX_ALLOC_WAIT);
                // A name in a local layer stays on this host.
                if let Some(job) = self.local_alloc_start(&name, qos, timeout, pid, now) {
                    return self.local_step(c, self.local_poll(job, now));
                }
                // A unicast layer's directory first (the reference's order), then the
                // eth and udp layers.
                match self.uni_alloc_start(&name, qos, timeout, pid, now) {
                    Some(Ok(job)) => {
                        let mut c = c;
                        c.doing = Doing::UniAllocating(job);
                        return Some(c);
                    }
                    Some(Err(e)) => return self.alloc_step(c, Step::Done(Err(e))),
                    None => {}
                }
                let step = self.alloc_start(&name, qos, timeout, pid, now);
                self.alloc_step(c, step)
            }
            Request::Join { layer } if o7s::proto::check_name(&layer).is_err() => {
                let message = o7s::proto::check_name(&layer).err().unwrap_or_default();
                reply_err(&c.ch, ErrorCode::Invalid, message);
                None
            }
            Request::Join { layer } => match self.bc_join(epoll, &layer, pid) {
                Ok(acc) => self.deliver(c, acc),
                Err(e) => {
                    crate::local_log!(info, "process {pid} cannot join {layer}: {e}");
                    reply_err(&c.ch, e.code(), e.to_string());
                    None
                }
            },
            Request::Accept { timeout_ms } => {
                Some(self.accept(c, pid, cred.uid, timeout_ms.map(Duration::from_millis), now))
            }
            Request::Ctl(ctl) => self.to_admin(epoll, c, AdminWork::Ctl(ctl, cred)),
        }
    }

    /// Queues a connection for the admin thread (it leaves the loop's set); refused when
    /// the queue is full.
    pub(super) fn to_admin(&self, epoll: &Epoll, c: Conn, work: AdminWork) -> Option<Conn> {
        let _ = epoll.delete(&c.ch);
        let job = AdminJob {
            ch: c.ch,
            slot: c.slot,
            work,
        };
        match self.lp.admin_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => {
                self.counters.admin_busy.fetch_add(1, Ordering::Relaxed);
                crate::wire_log!(
                    warn,
                    "o7sctl request refused: {MAX_ADMIN_QUEUE} requests wait already"
                );
                reply_err(
                    &j.ch,
                    ErrorCode::Busy,
                    format!(
                        "o7sd is busy: {MAX_ADMIN_QUEUE} o7sctl requests wait already; try again"
                    ),
                );
            }
        }
        None
    }

    /// Where a local allocation went.
    pub(super) fn local_step(&self, mut c: Conn, step: super::local::LocalStep) -> Option<Conn> {
        match step {
            super::local::LocalStep::Pending(job) => {
                c.doing = Doing::LocalAllocating(job);
                Some(c)
            }
            super::local::LocalStep::Done(r) => self.alloc_step(c, Step::Done(r)),
        }
    }

    /// Where an allocation went: the flow to its app, the error to it, or still waiting.
    pub(super) fn alloc_step(&self, mut c: Conn, step: Step) -> Option<Conn> {
        match step {
            Step::Pending(job) => {
                c.doing = Doing::Allocating(job);
                Some(c)
            }
            Step::Done(Ok(acc)) => self.deliver(c, acc),
            Step::Done(Err(e)) => {
                let pid = c.ch.peer_cred().map(|p| p.pid).unwrap_or(0);
                crate::local_log!(info, "Flow allocation for process {pid} failed: {e}");
                reply_err(&c.ch, e.code(), e.to_string());
                None
            }
        }
    }

    /// Hands a flow to its app; the connection then holds the flow.
    pub(super) fn deliver(&self, mut c: Conn, acc: Accepted) -> Option<Conn> {
        let fds: Vec<_> = acc.fds.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = c.ch.try_send(&Reply::Flow(acc.info.clone()), &fds) {
            tracing::warn!(
                "flow {}: the process went away before getting it: {e}",
                acc.flow
            );
            self.dealloc(acc.flow);
            return None;
        }
        c.doing = Doing::Held { flow: acc.flow };
        Some(c)
    }

    /// A process enters accept: it waits in the registry until a flow comes for one of
    /// its names.
    pub(super) fn accept(
        &self,
        mut c: Conn,
        pid: i32,
        uid: u32,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Conn {
        let exe = exe_of(pid);
        let (tx, rx) = sync_channel::<Accepted>(1);
        let (id, names) = self.st().reg.accept_as(pid, uid, exe.as_deref(), tx);
        let shown = exe
            .as_ref()
            .map(|e| e.display().to_string())
            .unwrap_or_default();
        if names.is_empty() {
            // It may be bound later (a program it runs, or its pid): it then joins the
            // names.
            crate::local_log!(
                warn,
                "process {pid} ({shown}, uid {uid}) accepts flows but no name is bound to it: bind its program (`o7sctl bind program {shown} name NAME`; a program of the same file name bound by root serves root's processes only) or the process (`o7sctl bind process {pid} name NAME`)"
            );
        } else {
            tracing::debug!(
                "process {pid} ({shown}) accepts flows for {}",
                names.join(", ")
            );
        }
        c.doing = Doing::Parked {
            id,
            rx,
            deadline: timeout.map(|t| now + t),
        };
        c
    }
}
