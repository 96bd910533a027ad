//! Starting the data plane and talking to it.
//!
//! Nothing in o7sd blocks on the data plane: messages to it go into a bounded queue that
//! one writer thread (which holds no lock) sends from; a full queue refuses the message,
//! which is counted (`dp_queue_full` in `o7sctl stats`) and logged. The data plane does the
//! same in the other direction (dataplane/src/ctl_out.rs), so neither side can stall the
//! other, whatever arrives from the wire.

use o7s::ipc::Channel;
use o7s_abi::msg::{DpStats, FromDp, ToDp};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the data plane did not do what o7sd asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// No answer in time.
    #[error("the data plane did not answer")]
    Silent,
    /// Its queue is full.
    #[error("the data plane is busy")]
    Busy,
    /// It refused, with its reason.
    #[error("{0}")]
    Refused(String),
    /// It was restarted before it answered (what it was asked is gone with it).
    #[error("the data plane restarted before it answered")]
    Restarted,
}

/// How long o7sd gives the data plane to acknowledge a flow's installation.
pub const INSTALL_WAIT: Duration = Duration::from_secs(2);

/// Messages waiting for the writer thread at most.
pub const MAX_QUEUED: usize = 4096;

/// The running data plane.
#[derive(Debug)]
pub struct DpHandle {
    /// The control channel (sends from any thread; one reader thread receives); replaced
    /// when the data plane is restarted.
    ch: Mutex<Arc<Channel>>,
    /// The data plane: our child, or one adopted from an o7sd that went away.
    child: Mutex<DpProcess>,
    /// Settings handed to the data plane as environment (`O7S_DP_IO`, `O7S_XDP_MODE`).
    env: Vec<(String, String)>,
    port_waiters: Mutex<HashMap<u32, Sender<FromDp>>>,
    stats_waiters: Mutex<Vec<Sender<DpStats>>>,
    flow_waiters: Mutex<HashMap<u64, Sender<Result<(), DpError>>>>,
    /// Captures being started: where the data plane's answer goes.
    capture_waiters: Mutex<HashMap<u64, SyncSender<FromDp>>>,
    /// The writer thread's queue.
    queue: SyncSender<(ToDp, Vec<OwnedFd>)>,
    /// Messages refused because the queue was full.
    pub queue_full: AtomicU64,
    /// Messages the writer could not send (the data plane was gone).
    pub send_failed: AtomicU64,
}

/// The data plane's process.
#[derive(Debug)]
enum DpProcess {
    /// Started by this o7sd.
    Child(Child),
    /// Started by an o7sd that went away; adopted (not our child: watched by its pid).
    Adopted(u32),
    /// No process: a unit test's data plane, the other end of the channel.
    #[cfg(test)]
    Fake,
}

impl DpProcess {
    fn pid(&self) -> u32 {
        match self {
            Self::Child(c) => c.id(),
            Self::Adopted(p) => *p,
            #[cfg(test)]
            Self::Fake => 0,
        }
    }

    fn kill(&mut self) {
        match self {
            Self::Child(c) => {
                let _ = c.kill();
            }
            Self::Adopted(p) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(*p).unwrap_or(i32::MAX)),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            #[cfg(test)]
            Self::Fake => {}
        }
    }

    /// Whether it has exited (reaped when it was our child).
    fn exited(&mut self) -> bool {
        match self {
            Self::Child(c) => matches!(c.try_wait(), Ok(Some(_))),
            Self::Adopted(p) => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(*p).unwrap_or(i32::MAX)),
                None,
            )
            .is_err(),
            #[cfg(test)]
            Self::Fake => false,
        }
    }
}

/// What a data plane adopted at start has.
#[derive(Debug, Clone, Default)]
pub struct Adopted {
    /// Its process id.
    pub pid: u32,
    /// Its ports.
    pub ports: Vec<o7s_abi::msg::AdoptedPort>,
    /// Its flows.
    pub flows: Vec<o7s_abi::msg::AdoptedFlow>,
}

/// Where the data-plane binary is: next to `o7sd`, or `$O7S_DATAPLANE`.
pub fn dataplane_path() -> PathBuf {
    if let Some(p) = std::env::var_os("O7S_DATAPLANE") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("o7s-dataplane")))
        .unwrap_or_else(|| PathBuf::from("o7s-dataplane"))
}

impl DpHandle {
    fn start(env: &[(String, String)]) -> io::Result<(Channel, Child)> {
        let (ours, theirs) = Channel::pair()?;
        let theirs_fd = theirs.into_fd();
        let raw = theirs_fd.as_raw_fd();
        let path = dataplane_path();
        let mut cmd = Command::new(&path);
        cmd.env("O7S_CTL_FD", "3");
        cmd.env(o7s_abi::ABI_ENV, o7s_abi::ABI_VERSION.to_string());
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // Safety: the pre-exec hook only calls dup2 and fcntl, which are async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                if libc_dup2(raw, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        drop(theirs_fd);
        tracing::info!(
            "started the data plane {} (pid {})",
            path.display(),
            child.id()
        );
        Ok((ours, child))
    }

    /// Starts the data plane with one end of a channel as its descriptor 3.
    pub fn spawn(env: Vec<(String, String)>) -> io::Result<Arc<Self>> {
        let (ours, child) = Self::start(&env)?;
        Self::with(ours, DpProcess::Child(child), env)
    }

    /// Adopts the data plane listening on `sock` (its o7sd went away) when there is one
    /// of this build, else starts one (a data plane of another build is stopped first,
    /// after its flows are closed). What an adopted one has comes back with it.
    pub fn adopt_or_spawn(
        env: Vec<(String, String)>,
        sock: &std::path::Path,
    ) -> io::Result<(Arc<Self>, Option<Adopted>)> {
        match adopt(sock) {
            Ok(Some((ch, a))) => {
                let h = Self::with(ch, DpProcess::Adopted(a.pid), env)?;
                Ok((h, Some(a)))
            }
            Ok(None) => Ok((Self::spawn(env)?, None)),
            Err(e) => Err(e),
        }
    }

    /// A data plane that is the test holding the other end of `ours` (it reads what o7sd
    /// sends; its answers are given to [`DpHandle::route`] as the events thread would).
    #[cfg(test)]
    pub(crate) fn fake(ours: Channel) -> io::Result<Arc<Self>> {
        Self::with(ours, DpProcess::Fake, vec![])
    }

    fn with(ours: Channel, child: DpProcess, env: Vec<(String, String)>) -> io::Result<Arc<Self>> {
        let (queue, rx) = sync_channel(MAX_QUEUED);
        let h = Arc::new(Self {
            ch: Mutex::new(Arc::new(ours)),
            child: Mutex::new(child),
            env,
            port_waiters: Mutex::new(HashMap::new()),
            stats_waiters: Mutex::new(Vec::new()),
            flow_waiters: Mutex::new(HashMap::new()),
            capture_waiters: Mutex::new(HashMap::new()),
            queue,
            queue_full: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&h);
        std::thread::Builder::new()
            .name("o7sd-dp-writer".into())
            .spawn(move || writer(&weak, &rx))?;
        Ok(h)
    }

    /// The data plane's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).pid()
    }

    /// The current channel.
    pub fn channel(&self) -> Arc<Channel> {
        self.ch.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces a data plane that died by a new one; returns how the old one ended.
    pub fn restart(&self) -> io::Result<String> {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        c.kill();
        let status = match &mut *c {
            DpProcess::Child(c) => c.wait(),
            DpProcess::Adopted(pid) => Err(io::Error::other(format!(
                "the adopted data plane (pid {pid}) went away"
            ))),
            #[cfg(test)]
            DpProcess::Fake => Err(io::Error::other("a test's data plane")),
        };
        if let Ok(s) = &status {
            if s.code() == Some(i32::from(o7s_abi::EXIT_ABI_MISMATCH)) {
                return Err(io::Error::other(format!(
                    "{} is of another build (its ABI is not o7sd's {}): install both from the same build",
                    dataplane_path().display(),
                    o7s_abi::ABI_VERSION
                )));
            }
        }
        let old = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let (ours, child) = Self::start(&self.env)?;
        *c = DpProcess::Child(child);
        drop(c);
        self.end_flow_waits();
        *self.ch.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(ours);
        Ok(old)
    }

    /// Queues a message for the data plane (never blocks); whether it was taken. The
    /// descriptors are duplicated: the caller keeps its own.
    pub fn send(&self, m: &ToDp, fds: &[BorrowedFd<'_>]) -> bool {
        let mut owned = Vec::with_capacity(fds.len());
        for f in fds {
            match f.try_clone_to_owned() {
                Ok(o) => owned.push(o),
                Err(e) => {
                    tracing::error!("cannot pass a descriptor to the data plane: {e}");
                    return false;
                }
            }
        }
        match self.queue.try_send((m.clone(), owned)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let n = self.queue_full.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(
                        "the data plane is behind: {} messages refused so far",
                        n + 1
                    );
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Opens a port and waits for the answer (5 s at most).
    pub fn add_port(&self, m: &ToDp, port: u32) -> Result<FromDp, DpError> {
        let rx = self.add_port_start(m, port)?;
        rx.recv_timeout(Duration::from_secs(5)).map_err(|_| {
            self.add_port_forget(port);
            DpError::Silent
        })
    }

    /// Asks the data plane to open port `port` (`m`, a `ToDp::AddPort`) and returns at
    /// once: its answer (`PortUp` or `PortError`) comes on the receiver. `Err(Busy)` when
    /// the queue is full.
    pub fn add_port_start(&self, m: &ToDp, port: u32) -> Result<Receiver<FromDp>, DpError> {
        let (tx, rx) = channel();
        if let Ok(mut w) = self.port_waiters.lock() {
            w.insert(port, tx);
        }
        if !self.send(m, &[]) {
            self.add_port_forget(port);
            return Err(DpError::Busy);
        }
        Ok(rx)
    }

    /// Forgets the wait for port `port`'s answer (its time is up).
    pub fn add_port_forget(&self, port: u32) {
        if let Ok(mut w) = self.port_waiters.lock() {
            w.remove(&port);
        }
    }

    /// Asks the data plane to install a flow (`m`, a `ToDp::AddFlow` for `flow`, with its
    /// descriptors) and returns at once: its answer comes on the receiver, which the events
    /// thread fills (and then wakes the loop). `Err(Busy)` when the queue is full. A data
    /// plane restarted before it answers drops the sender (the receiver sees it gone).
    pub fn add_flow_start(
        &self,
        m: &ToDp,
        flow: u64,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Receiver<Result<(), DpError>>, DpError> {
        let (tx, rx) = channel();
        if let Ok(mut w) = self.flow_waiters.lock() {
            w.insert(flow, tx);
        }
        if !self.send(m, fds) {
            self.add_flow_forget(flow);
            return Err(DpError::Busy);
        }
        Ok(rx)
    }

    /// Ends every wait for an installation's acknowledgement: the data plane that was asked
    /// is gone (restarted), and with it the flows being installed.
    pub fn end_flow_waits(&self) {
        if let Ok(mut w) = self.flow_waiters.lock() {
            w.clear();
        }
    }

    /// Forgets the wait for flow `flow`'s acknowledgement (its time is up).
    pub fn add_flow_forget(&self, flow: u64) {
        if let Ok(mut w) = self.flow_waiters.lock() {
            w.remove(&flow);
        }
    }

    /// Starts capture `id` into the ring `mem` (`ToDp::CaptureStart` with it) and waits
    /// for the data plane's answer: `Err` with its reason when it refuses.
    pub fn capture_start(&self, m: &ToDp, id: u64, mem: BorrowedFd<'_>) -> Result<(), DpError> {
        let (tx, rx) = sync_channel(1);
        if let Ok(mut w) = self.capture_waiters.lock() {
            w.insert(id, tx);
        }
        let r = if self.send(m, &[mem]) {
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok(FromDp::CaptureRefused { error, .. }) => Err(DpError::Refused(error)),
                Ok(_) => Ok(()),
                Err(_) => Err(DpError::Silent),
            }
        } else {
            Err(DpError::Busy)
        };
        if let Ok(mut w) = self.capture_waiters.lock() {
            w.remove(&id);
        }
        // A worker that answers late still starts the capture, and its answer finds no
        // one waiting: stopped now (a stop of a capture that never started is nothing), or
        // it would cost every frame of the port and hold one of its capture slots for good.
        if matches!(r, Err(DpError::Silent)) {
            self.capture_end(id);
        }
        r
    }

    /// Tells the data plane to stop capture `id`.
    pub fn capture_end(&self, id: u64) {
        self.send(&ToDp::CaptureStop { id }, &[]);
    }

    /// Counters.
    pub fn stats(&self) -> Option<DpStats> {
        let (tx, rx) = channel();
        if let Ok(mut w) = self.stats_waiters.lock() {
            w.push(tx);
        }
        self.send(&ToDp::Stats, &[]);
        rx.recv_timeout(Duration::from_secs(2)).ok()
    }

    /// Routes a reply to its waiter; returns messages that are events for the daemon.
    pub fn route(&self, m: FromDp) -> Option<FromDp> {
        match m {
            FromDp::PortUp { port, .. } | FromDp::PortError { port, .. } => {
                let w = self
                    .port_waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&port));
                if let Some(w) = w {
                    let _ = w.send(m);
                }
                None
            }
            FromDp::FlowAdded { flow } | FromDp::FlowError { flow, .. } => {
                let w = self
                    .flow_waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&flow));
                if let Some(w) = w {
                    let _ = w.send(match m {
                        FromDp::FlowError { error, .. } => Err(DpError::Refused(error)),
                        _ => Ok(()),
                    });
                }
                None
            }
            FromDp::CaptureStarted { id } | FromDp::CaptureRefused { id, .. } => {
                let w = self
                    .capture_waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&id));
                if let Some(tx) = w {
                    let _ = tx.try_send(m);
                }
                None
            }
            FromDp::Stats(s) => {
                if let Ok(mut w) = self.stats_waiters.lock() {
                    for t in w.drain(..) {
                        let _ = t.send(s.clone());
                    }
                }
                None
            }
            other => Some(other),
        }
    }

    /// Asks the data plane to exit and waits for it (killing it after 2 s).
    pub fn stop(&self) {
        self.send(&ToDp::Shutdown, &[]);
        if let Ok(mut c) = self.child.lock() {
            for _ in 0..200 {
                if c.exited() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            c.kill();
            if let DpProcess::Child(c) = &mut *c {
                let _ = c.wait();
            }
        }
    }
}

/// Connects to a data plane's socket: `Ok(None)` when there is none (no socket, or a stale
/// one), `Ok(Some)` with the channel and what it has once adopted; a data plane of another
/// build is stopped (`Ok(None)` then: start a new one).
fn adopt(sock: &std::path::Path) -> io::Result<Option<(Channel, Adopted)>> {
    let ch = match Channel::connect(sock) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            tracing::info!("{}: {e}: no data plane to adopt", sock.display());
            let _ = std::fs::remove_file(sock);
            return Ok(None);
        }
    };
    let wait = Some(Duration::from_secs(3));
    let hello = match ch.recv_timeout::<FromDp>(wait) {
        Ok((FromDp::Hello { abi, pid, busy }, _)) => (abi, pid, busy),
        Ok((other, _)) => {
            return Err(io::Error::other(format!(
                "{}: the data plane said {other:?} instead of hello",
                sock.display()
            )))
        }
        Err(e) => {
            // Not even its hello can be read: another build. Ask it to stop (Shutdown
            // reads the same in every build).
            tracing::warn!(
                "{}: the data plane there does not speak this build's ABI ({e}): stopping it",
                sock.display()
            );
            let _ = ch.send(&ToDp::Shutdown, &[]);
            let _ = ch.recv_timeout::<FromDp>(Some(Duration::from_secs(5)));
            return Ok(None);
        }
    };
    let (abi, said_pid, busy) = hello;
    // The pid o7sd may signal is the kernel's record of the socket's peer, not what the
    // other side says (a pid of 0 would signal o7sd's own process group).
    let pid = match ch.peer_cred() {
        Ok(c) if c.pid > 1 => c.pid.unsigned_abs(),
        other => {
            return Err(io::Error::other(format!(
                "{}: the data plane's process cannot be told ({other:?}; it says pid {said_pid})",
                sock.display()
            )))
        }
    };
    if said_pid != pid {
        tracing::warn!(
            "{}: the data plane says pid {said_pid}, the kernel {pid}: {pid} is taken",
            sock.display()
        );
    }
    if busy {
        return Err(io::Error::other(format!(
            "the data plane (pid {pid}) at {} is driven by another o7sd",
            sock.display()
        )));
    }
    if abi != o7s_abi::ABI_VERSION {
        tracing::warn!(
            "The running data plane (pid {pid}) is of another build (ABI {abi}, this o7sd's {}): its flows cannot be adopted; stopping it and starting a new one.",
            o7s_abi::ABI_VERSION
        );
        let _ = ch.send(&ToDp::Shutdown, &[]);
        // It closes the channel as it exits (its flows are closed, their apps told).
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(5)
            && !matches!(ch.recv_timeout::<serde_json::Value>(Some(Duration::from_millis(500))), Err(e) if e.kind() == io::ErrorKind::UnexpectedEof)
        {
        }
        return Ok(None);
    }
    ch.send(&ToDp::Adopt, &[])?;
    match ch.recv_timeout::<FromDp>(Some(Duration::from_secs(5))) {
        Ok((FromDp::Adopted { ports, flows }, _)) => {
            tracing::info!(
                "Adopted the running data plane (pid {pid}): {} ports, {} flows.",
                ports.len(),
                flows.len()
            );
            Ok(Some((ch, Adopted { pid, ports, flows })))
        }
        Ok((other, _)) => Err(io::Error::other(format!(
            "the data plane answered {other:?} to Adopt"
        ))),
        Err(e) => Err(io::Error::other(format!(
            "the data plane did not say what it has: {e}"
        ))),
    }
}

/// The writer thread: sends queued messages on the current channel, holding no lock while
/// it waits for room; ends with the handle.
fn writer(weak: &std::sync::Weak<DpHandle>, rx: &Receiver<(ToDp, Vec<OwnedFd>)>) {
    while let Ok((m, fds)) = rx.recv() {
        let Some(h) = weak.upgrade() else { return };
        let ch = h.channel();
        drop(h);
        let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = ch.send(&m, &b) {
            if let Some(h) = weak.upgrade() {
                h.send_failed.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!("cannot reach the data plane: {e}");
        }
    }
}

fn libc_dup2(from: i32, to: i32) -> i32 {
    // Safety: dup2/fcntl on descriptors this process owns; called between fork and exec.
    #[allow(unsafe_code)]
    unsafe {
        if from == to {
            // Already in place: only clear close-on-exec.
            return libc::fcntl(to, libc::F_SETFD, 0);
        }
        libc::dup2(from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o7s::ipc::Listener;

    /// A stand-in for a running data plane on its socket: says `hello`, then answers
    /// Adopt with no ports or flows; returns what o7sd sent it.
    fn fake_dataplane(
        path: &std::path::Path,
        hello: FromDp,
    ) -> std::thread::JoinHandle<Vec<String>> {
        let l = Listener::bind(path).unwrap_or_else(|e| panic!("bind: {e}"));
        std::thread::spawn(move || {
            let Ok(ch) = l.accept() else {
                return vec![];
            };
            let _ = ch.send(&hello, &[]);
            let mut got = vec![];
            while let Ok((m, _)) = ch.recv_timeout::<ToDp>(Some(Duration::from_secs(5))) {
                got.push(format!("{m:?}"));
                match m {
                    ToDp::Adopt => {
                        let _ = ch.send(
                            &FromDp::Adopted {
                                ports: vec![],
                                flows: vec![],
                            },
                            &[],
                        );
                    }
                    _ => break,
                }
            }
            got
        })
    }

    fn sock(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("o7s-dp-test-{}-{name}.sock", std::process::id()))
    }

    #[test]
    fn a_data_plane_of_another_build_is_stopped_not_adopted() {
        let p = sock("abi");
        let fake = fake_dataplane(
            &p,
            FromDp::Hello {
                abi: o7s_abi::ABI_VERSION + 1,
                pid: 1,
                busy: false,
            },
        );
        let r = adopt(&p);
        assert!(matches!(r, Ok(None)), "{r:?}");
        assert_eq!(
            fake.join().unwrap_or_default(),
            vec!["Shutdown".to_string()]
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_data_plane_of_this_build_is_adopted() {
        let p = sock("same");
        let fake = fake_dataplane(
            &p,
            FromDp::Hello {
                abi: o7s_abi::ABI_VERSION,
                pid: 42,
                busy: false,
            },
        );
        let r = adopt(&p);
        let Ok(Some((_ch, a))) = r else {
            panic!("not adopted: {r:?}");
        };
        // The pid is the kernel's record of the socket's peer (this test process, whose
        // thread plays the data plane), not the 42 its hello says.
        assert_eq!(
            (a.pid, a.ports.len(), a.flows.len()),
            (std::process::id(), 0, 0)
        );
        drop(_ch);
        assert_eq!(fake.join().unwrap_or_default(), vec!["Adopt".to_string()]);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_data_plane_with_an_o7sd_is_not_taken_and_no_socket_means_none() {
        let p = sock("busy");
        let _fake = fake_dataplane(
            &p,
            FromDp::Hello {
                abi: o7s_abi::ABI_VERSION,
                pid: 7,
                busy: true,
            },
        );
        let r = adopt(&p);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.to_string().contains("driven by another o7sd")),
            "{r:?}"
        );
        let _ = std::fs::remove_file(&p);
        assert!(matches!(adopt(&sock("none")), Ok(None)));
    }
}
