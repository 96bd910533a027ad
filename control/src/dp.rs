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
}

/// Messages waiting for the writer thread at most.
pub const MAX_QUEUED: usize = 4096;

/// The running data plane.
#[derive(Debug)]
pub struct DpHandle {
    /// The control channel (sends from any thread; one reader thread receives); replaced
    /// when the data plane is restarted.
    ch: Mutex<Arc<Channel>>,
    child: Mutex<Child>,
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

    /// The current channel.
    pub fn channel(&self) -> Arc<Channel> {
        self.ch.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces a data plane that died by a new one; returns how the old one ended.
    pub fn restart(&self) -> io::Result<String> {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = c.kill();
        let status = c.wait();
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
        *c = child;
        drop(c);
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

    /// Opens a port and waits for the answer.
    pub fn add_port(&self, m: ToDp, port: u32) -> Result<FromDp, DpError> {
        let (tx, rx) = channel();
        if let Ok(mut w) = self.port_waiters.lock() {
            w.insert(port, tx);
        }
        self.send(&m, &[]);
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| DpError::Silent)
    }

    /// Installs a flow (`ToDp::AddFlow` with its descriptors) and waits until the data
    /// plane has mapped its memory, or says why it cannot.
    pub fn add_flow(&self, m: &ToDp, flow: u64, fds: &[BorrowedFd<'_>]) -> Result<(), DpError> {
        let (tx, rx) = channel();
        if let Ok(mut w) = self.flow_waiters.lock() {
            w.insert(flow, tx);
        }
        if !self.send(m, fds) {
            if let Ok(mut w) = self.flow_waiters.lock() {
                w.remove(&flow);
            }
            return Err(DpError::Busy);
        }
        let r = rx
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or(Err(DpError::Silent));
        if let Ok(mut w) = self.flow_waiters.lock() {
            w.remove(&flow);
        }
        r
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
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
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
