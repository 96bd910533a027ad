//! o7sd's event loop: one thread, one epoll set (level-triggered), and nothing in it waits.
//!
//! It accepts app and o7sctl connections and reads their one request each; drives flow
//! allocations ([`AllocJob`]) as their name answers and FLOW_REPLYs come; keeps processes
//! waiting in accept and the connections of flows' apps (a connection that closes or says
//! anything frees its flow); does the protocol machines' work
//! ([`Daemon::protocol_turn`]: new flow requests from the wire, serving them, timers); and
//! sleeps until a connection is readable, the wake socket is written (a machine event, a
//! lookup done, a flow for an acceptor) or the earliest deadline.
//!
//! o7sctl requests go to one admin thread through a bounded queue (they may wait on the
//! data plane: opening a port, its counters), and a capture comes back to the loop once
//! started. A request in progress takes no thread: a full queue is refused and counted.

use super::alloc::{AllocJob, Step};
use super::unicast::tend::{UniLoop, N1_TOKENS};
use crate::conns::{Conns, Slot};
use crate::daemon::{Daemon, Owner};
use crate::registry::Accepted;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use o7s::ipc::Channel;
use o7s::ipc::{Listener, PeerCred};
use o7s::proto::{Ctl, ErrorCode, Reply};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LISTENER: u64 = 0;
const WAKE: u64 = 1;

/// How long a new connection may take to send its request.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

/// Most o7sctl requests waiting for the admin thread; more are refused (busy) and counted.
pub const MAX_ADMIN_QUEUE: usize = 64;

/// How long the admin thread waits on one client (to take a reply, or to send the rest
/// of a long request).
pub(super) const ADMIN_CLIENT_WAIT: Duration = Duration::from_secs(5);

/// Most connections accepted in one turn of the loop (others wait in the backlog).
const ACCEPTS_PER_TURN: usize = 64;

/// How often the loop does its periodic work ([`Daemon::tick`]).
const TICK: Duration = Duration::from_millis(100);

/// Wakes the event loop from any thread: a [`o7s::ring::Kick`] the loop watches (a kick
/// never blocks; the loop clears however many came with one drain).
#[derive(Debug, Clone, Default)]
pub struct Waker(Option<Arc<o7s::ring::Kick>>);

impl Waker {
    /// Wakes the loop.
    pub fn wake(&self) {
        if let Some(k) = &self.0 {
            k.kick();
        }
    }
}

/// What a connection is doing.
#[derive(Debug)]
pub(super) enum Doing {
    /// Accepted: its request has not come yet.
    Reading { since: Instant },
    /// Its flow is being allocated.
    Allocating(AllocJob),
    /// Its flow is being allocated over a unicast IPCP.
    UniAllocating(super::unicast::flows::UniJob),
    /// Its flow waits for a process of this host to accept (the local layer).
    LocalAllocating(super::local::LocalJob),
    /// Its process waits in accept (acceptor `id` in the registry).
    Parked {
        id: u64,
        rx: Receiver<Accepted>,
        deadline: Option<Instant>,
    },
    /// It holds flow `flow` open.
    Held { flow: u64 },
    /// It reads capture `id`.
    Capturing { id: u64 },
}

/// A client connection, with the user's connection slot it takes.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(super) ch: Channel,
    pub(super) slot: Option<Slot>,
    pub(super) doing: Doing,
}

/// Work for the admin thread.
#[derive(Debug)]
pub(crate) enum AdminWork {
    /// An o7sctl request.
    Ctl(Ctl, PeerCred),
    /// A request of several packets, not read yet.
    Long(PeerCred),
}

/// A connection and its work, for the admin thread.
#[derive(Debug)]
pub(crate) struct AdminJob {
    pub(super) ch: Channel,
    pub(super) slot: Option<Slot>,
    pub(super) work: AdminWork,
}

/// What the loop shares with other threads.
#[derive(Debug)]
pub struct LoopShared {
    waker: Waker,
    pub(super) admin_tx: SyncSender<AdminJob>,
    pub(super) admin_rx: Mutex<Option<Receiver<AdminJob>>>,
    /// Management frames and flow events from the events thread.
    pub(super) from_dp: super::from_dp::FromDpQueue,
    /// Steps other threads post for the loop ([`Daemon::on_loop`]).
    pub(super) inbox_tx: SyncSender<super::inbox::Job>,
    inbox_rx: Mutex<Option<Receiver<super::inbox::Job>>>,
    /// Start-up is done: the loop takes clients and does its protocol work (until then it
    /// runs only the steps start-up posts).
    ready: std::sync::atomic::AtomicBool,
}

impl Default for LoopShared {
    fn default() -> Self {
        let waker = match o7s::ring::Kick::new() {
            Ok(k) => Waker(Some(Arc::new(k))),
            Err(e) => {
                tracing::error!("cannot make the event loop's waker: {e}");
                Waker(None)
            }
        };
        let (admin_tx, admin_rx) = sync_channel(MAX_ADMIN_QUEUE);
        let (inbox_tx, inbox_rx) = super::inbox::pair();
        Self {
            waker,
            admin_tx,
            admin_rx: Mutex::new(Some(admin_rx)),
            from_dp: super::from_dp::FromDpQueue::default(),
            inbox_tx,
            inbox_rx: Mutex::new(Some(inbox_rx)),
            ready: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl LoopShared {
    /// The loop's end of the inbox, for its one owner (`None` once taken).
    pub(super) fn take_inbox(&self) -> Option<super::inbox::Inbox> {
        let rx = self
            .inbox_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(super::inbox::Inbox::new(rx))
    }
}

/// epoll's time-out for a sleep of `left`: whole milliseconds, rounded up. Rounded down,
/// the last millisecond before a deadline (the 100 ms tick's, a machine's timer) was spent
/// in turns that waited 0 ms, taking a core from the data plane and the apps: 1 % of
/// `scripts/bench-alloc.sh`'s allocations were ~0.4 ms slower (p99 1.23-1.33x its
/// baseline; 0.96x with the tick every second).
fn sleep_for(left: Duration) -> EpollTimeout {
    let ms = left.as_micros().div_ceil(1000);
    u64::try_from(ms)
        .ok()
        .and_then(|ms| EpollTimeout::try_from(Duration::from_millis(ms)).ok())
        .unwrap_or(EpollTimeout::MAX)
}

pub(super) fn reply_err(ch: &Channel, code: ErrorCode, message: String) {
    // A client whose socket is full is not waited for: it asked one thing and reads it.
    let _ = ch.try_send(&Reply::Error { code, message }, &[]);
}

impl Daemon {
    /// A handle that wakes the event loop.
    pub fn waker(&self) -> Waker {
        self.lp.waker.clone()
    }

    /// Wakes the event loop.
    pub(super) fn wake(&self) {
        self.lp.waker.wake();
    }

    /// Start-up is done: the loop takes clients and does its protocol work from now on.
    pub fn started(&self) {
        self.lp.ready.store(true, Ordering::Release);
        self.wake();
    }
}

impl Owner {
    /// The event loop (see the module's text); returns when the daemon stops, freeing what
    /// its connections hold.
    pub fn run_loop(&self, listener: &Listener, conns: &Arc<Conns>) {
        let epoll = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot make the event loop's epoll set: {e}; stopping");
                crate::request_stop();
                return;
            }
        };
        if let Err(e) = listener.set_nonblocking() {
            tracing::error!("cannot make the control socket non-blocking: {e}; stopping");
            crate::request_stop();
            return;
        }
        // The control socket is watched once start-up is done (clients wait in its backlog
        // until then).
        let mut listening = false;
        let added = match &self.lp.waker.0 {
            Some(k) => epoll.add(k.fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE)),
            None => Ok(()),
        };
        if let Err(e) = added {
            tracing::error!("event loop: epoll: {e}; stopping");
            crate::request_stop();
            return;
        }
        let mut open: HashMap<u64, Conn> = HashMap::new();
        let mut next_token = 2u64;
        let mut uni = UniLoop::default();
        let mut events = vec![EpollEvent::empty(); 256];
        let mut last_sweep = Instant::now();
        // The periodic work (caches, children, memory): every TICK.
        let mut next_tick = last_sweep;
        let mut last_accept_error: Option<Instant> = None;
        // The first turn does not wait.
        let mut wait = EpollTimeout::ZERO;
        while !self.stopping.load(Ordering::Relaxed) {
            let n = match epoll.wait(&mut events, wait) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => 0,
                Err(e) => {
                    tracing::warn!("event loop: epoll_wait: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            // Woken to stop: the connections are closed without a word (below), which tells
            // waiting servers that o7sd went away (they wait for it), not that their accept
            // timed out.
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            // The turn's time: what this turn decides, it decides at this instant.
            let now = Instant::now();
            for ev in events.iter().take(n) {
                match ev.data() {
                    LISTENER => {
                        for _ in 0..ACCEPTS_PER_TURN {
                            match listener.accept() {
                                Ok(ch) => {
                                    let Some(slot) = conns.admit(&ch) else {
                                        continue;
                                    };
                                    let c = Conn {
                                        ch,
                                        slot: Some(slot),
                                        doing: Doing::Reading { since: now },
                                    };
                                    self.watch(&epoll, &mut open, &mut next_token, c);
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(e) => {
                                    // Out of descriptors, say: once every 5 s in the log;
                                    // clients wait in the backlog meanwhile.
                                    if last_accept_error.is_none_or(|t| {
                                        now.duration_since(t) >= Duration::from_secs(5)
                                    }) {
                                        tracing::warn!("cannot accept a client: {e}");
                                        last_accept_error = Some(now);
                                    }
                                    break;
                                }
                            }
                        }
                    }
                    WAKE => {
                        if let Some(k) = &self.lp.waker.0 {
                            k.drain();
                        }
                    }
                    token if token >= N1_TOKENS => {
                        if let Some(n1) = uni.n1s.get(&token) {
                            self.uni_read(now, n1);
                        }
                    }
                    token if token >= super::broadcast::JOIN_TOKENS => self.bc_app_read(token),
                    token => {
                        if let Some(c) = open.remove(&token) {
                            if let Some(c) = self.on_readable(&epoll, c, now) {
                                open.insert(token, c);
                            }
                        }
                    }
                }
            }
            // Other threads' steps (o7sctl, metrics, start-up): the loop does not wait for
            // them, they wait for it.
            let served = self.serve_inbox();
            if !listening {
                if !self.lp.ready.load(Ordering::Acquire) {
                    // Start-up: only its steps, until it says it is done.
                    wait = EpollTimeout::try_from(TICK).unwrap_or(EpollTimeout::ZERO);
                    continue;
                }
                if let Err(e) = epoll.add(listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
                {
                    tracing::error!("event loop: epoll: {e}; stopping");
                    crate::request_stop();
                    break;
                }
                listening = true;
            }
            let proto_next = self.protocol_turn(now);
            let back = std::mem::take(&mut *self.handed_back.borrow_mut());
            for c in back {
                self.watch(&epoll, &mut open, &mut next_token, c);
            }
            let due = self.tend(&mut open, now, &mut uni.new_flows);
            self.tend_uni(&epoll, &mut uni, now);
            let due = due.min(self.uni_timeout().unwrap_or(due));
            // Accepted flows over unicast layers fail if the data plane does not install them.
            let due = uni
                .serving
                .iter()
                .map(|s| s.deadline())
                .fold(due, Instant::min);
            if now.duration_since(last_sweep) >= Duration::from_millis(500) {
                last_sweep = now;
                // Bound processes that exited without a connection open to o7sd.
                self.unbind_gone();
                // Flows freed elsewhere (their peer timed out, the data plane restarted):
                // their connections close, which tells the apps.
                let st = self.st();
                open.retain(|_, c| match c.doing {
                    Doing::Held { flow } if !st.flows.contains_key(&flow) => {
                        // A word first: the app then knows o7sd ended the flow (a
                        // connection closed without one means o7sd went away).
                        let _ = c.ch.try_send(&Reply::Ok, &[]);
                        false
                    }
                    _ => true,
                });
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.tick(now);
            }
            let wake_at = proto_next
                .min(due)
                .min(next_tick)
                .min(now + Duration::from_millis(500));
            // The sleep is counted from the end of the turn's work.
            let left = wake_at.saturating_duration_since(Instant::now());
            wait = if self.take_again() || served == super::inbox::INBOX_BOUND {
                // Work this turn left, or more steps may wait.
                EpollTimeout::ZERO
            } else {
                sleep_for(left)
            };
        }
        self.close_all(open);
        // The programs it started go with it (when the owner is dropped: `Owner`'s Drop).
    }

    /// Takes a connection the admin thread handed over (a started capture): watched from
    /// the next turn, closed (its capture ended) if the loop ends first.
    pub(super) fn hand_back(&self, c: Conn) {
        self.handed_back.borrow_mut().push(c);
    }

    /// Ends every connection as the loop ends: those it watched and those handed over
    /// since its last turn (a capture among them ends with it).
    pub(super) fn close_all(&self, open: HashMap<u64, Conn>) {
        let back = std::mem::take(&mut *self.handed_back.borrow_mut());
        for c in open.into_values().chain(back) {
            self.close(c);
        }
    }

    fn watch(&self, epoll: &Epoll, open: &mut HashMap<u64, Conn>, next: &mut u64, c: Conn) {
        let token = *next;
        *next += 1;
        match epoll.add(&c.ch, EpollEvent::new(EpollFlags::EPOLLIN, token)) {
            Ok(()) => {
                open.insert(token, c);
            }
            Err(e) => {
                tracing::warn!("event loop: cannot watch a connection: {e}");
                self.close(c);
            }
        }
    }

    /// Unbinds processes that exited from the names they were bound to (by pid or
    /// through their program), at once: `o7sctl name list` no longer shows them.
    fn unbind_gone(&self) {
        let gone = self.st().reg.unbind_gone(&crate::registry::process_lives);
        for (pid, name) in gone {
            tracing::info!("Process {pid} exited: unbound from name {name}.");
        }
    }

    /// [`Owner::unbind_gone`] for process `pid` alone (its connection closed): one look
    /// at `/proc`, not one per bound process, however often a client connects and closes;
    /// the others are swept every 500 ms.
    fn unbind_gone_of(&self, pid: Option<i32>) {
        let Some(pid) = pid else { return };
        let lives = |p: i32| p != pid || crate::registry::process_lives(p);
        let gone = self.st().reg.unbind_gone(&lives);
        for (pid, name) in gone {
            tracing::info!("Process {pid} exited: unbound from name {name}.");
        }
    }

    /// Ends what a closing connection held.
    pub(super) fn close(&self, c: Conn) {
        let pid = c.ch.peer_cred().ok().map(|p| p.pid);
        match c.doing {
            Doing::Held { flow } => {
                // The app did not end it: say so (see the sweep in `run_loop`).
                let _ = c.ch.try_send(&Reply::Ok, &[]);
                self.dealloc(flow);
                // Its process may have exited (a process that exits closes its
                // connections after the kernel marks it exiting).
                self.unbind_gone_of(pid);
            }
            Doing::Parked { id, rx, .. } => {
                self.st().reg.remove_acceptor(id);
                if let Ok(a) = rx.try_recv() {
                    self.dealloc(a.flow);
                }
                self.unbind_gone_of(pid);
            }
            Doing::Capturing { id } => {
                self.dp.capture_end(id);
                tracing::info!("Capture {id} ended.");
            }
            // What an allocation holds is freed now, not when its time runs out.
            Doing::Allocating(job) => self.alloc_abandon(job),
            Doing::UniAllocating(job) => self.uni_alloc_abandon(job),
            Doing::Reading { .. } | Doing::LocalAllocating(_) => {}
        }
    }

    /// Connections that wait for something other than their socket: requests that do not
    /// come, allocations, acceptors. Returns the earliest deadline among them.
    pub(super) fn tend(
        &self,
        open: &mut HashMap<u64, Conn>,
        now: Instant,
        new_flows: &mut Vec<super::unicast::flows::UniFlowP>,
    ) -> Instant {
        let mut due = now + Duration::from_secs(3600);
        let tokens: Vec<u64> = open
            .iter()
            .filter(|(_, c)| !matches!(c.doing, Doing::Held { .. } | Doing::Capturing { .. }))
            .map(|(t, _)| *t)
            .collect();
        // o7sd stopping does not end an accept here: the loop leaves at its next turn and
        // closes the connections without a word, which tells a waiting server that o7sd
        // went away (it waits for it), not that its accept timed out (it would exit).
        for t in tokens {
            let Some(mut c) = open.remove(&t) else {
                continue;
            };
            let doing = std::mem::replace(&mut c.doing, Doing::Reading { since: now });
            let kept = match doing {
                Doing::Reading { since } if now.duration_since(since) >= REQUEST_WAIT => {
                    self.counters.request_slow.fetch_add(1, Ordering::Relaxed);
                    crate::local_log!(
                        info,
                        "a client sent no request within {} s: closed",
                        REQUEST_WAIT.as_secs()
                    );
                    None
                }
                Doing::Allocating(job) => self.alloc_step(c, self.alloc_poll(job, now)),
                Doing::LocalAllocating(job) => self.local_step(c, self.local_poll(job, now)),
                Doing::UniAllocating(job) => {
                    use super::unicast::flows::UniStep;
                    match self.uni_alloc_poll(job, now) {
                        UniStep::Pending(job) => {
                            c.doing = Doing::UniAllocating(job);
                            Some(c)
                        }
                        UniStep::Done(Ok((acc, fp))) => {
                            new_flows.push(fp);
                            self.deliver(c, acc)
                        }
                        UniStep::Done(Err(e)) => self.alloc_step(c, Step::Done(Err(e))),
                        UniStep::Fallback(job) => {
                            let step =
                                self.alloc_start(&job.name, job.qos, job.timeout, job.pid, now);
                            self.alloc_step(c, step)
                        }
                    }
                }
                Doing::Parked { id, rx, deadline } => match rx.try_recv() {
                    Ok(a) => self.deliver(c, a),
                    // Removed from the registry elsewhere: the connection closes.
                    Err(TryRecvError::Disconnected) => None,
                    Err(TryRecvError::Empty) if deadline.is_some_and(|d| now >= d) => {
                        let removed = self.st().reg.remove_acceptor(id);
                        // A flow handed over just before the removal is still delivered.
                        match rx.try_recv() {
                            Ok(a) => self.deliver(c, a),
                            // Not in the registry but its channel open: a flow was taken
                            // for it and the data plane is installing it. It comes, or
                            // the acceptor is put back, within INSTALL_WAIT.
                            Err(TryRecvError::Empty) if removed.is_none() => {
                                c.doing = Doing::Parked {
                                    id,
                                    rx,
                                    deadline: Some(now + crate::dp::INSTALL_WAIT),
                                };
                                Some(c)
                            }
                            Err(_) => {
                                reply_err(&c.ch, ErrorCode::Timeout, "no flow arrived".into());
                                None
                            }
                        }
                    }
                    Err(TryRecvError::Empty) => {
                        c.doing = Doing::Parked { id, rx, deadline };
                        Some(c)
                    }
                },
                other => {
                    c.doing = other;
                    Some(c)
                }
            };
            if let Some(c) = kept {
                match &c.doing {
                    Doing::Reading { since } => due = due.min(*since + REQUEST_WAIT),
                    Doing::Allocating(job) => due = due.min(job.deadline()),
                    Doing::UniAllocating(job) => due = due.min(job.deadline()),
                    Doing::LocalAllocating(job) => due = due.min(job.deadline(now)),
                    Doing::Parked {
                        deadline: Some(d), ..
                    } => due = due.min(*d),
                    _ => {}
                }
                open.insert(t, c);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::sleep_for;
    use nix::sys::epoll::EpollTimeout;
    use std::time::Duration;

    #[test]
    fn the_loop_sleeps_whole_milliseconds_rounded_up_and_not_at_all_when_due() {
        let ms = |m: u64| EpollTimeout::try_from(Duration::from_millis(m)).ok();
        assert_eq!(Some(sleep_for(Duration::ZERO)), Some(EpollTimeout::ZERO));
        assert_eq!(Some(sleep_for(Duration::from_micros(1))), ms(1));
        assert_eq!(Some(sleep_for(Duration::from_micros(300))), ms(1));
        assert_eq!(Some(sleep_for(Duration::from_millis(1))), ms(1));
        assert_eq!(Some(sleep_for(Duration::from_micros(1001))), ms(2));
        assert_eq!(Some(sleep_for(Duration::from_millis(500))), ms(500));
    }
}
