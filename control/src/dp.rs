//! Starting the data plane and talking to it.

use o7s::ipc::Channel;
use o7s_dataplane::msg::{DpStats, FromDp, ToDp};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        Ok(Arc::new(Self {
            ch: Mutex::new(Arc::new(ours)),
            child: Mutex::new(child),
            env,
            port_waiters: Mutex::new(HashMap::new()),
            stats_waiters: Mutex::new(Vec::new()),
        }))
    }

    /// The current channel.
    pub fn channel(&self) -> Arc<Channel> {
        self.ch.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces a data plane that died by a new one; returns how the old one ended.
    pub fn restart(&self) -> io::Result<String> {
        let (ours, child) = Self::start(&self.env)?;
        let old = {
            let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
            let _ = c.kill();
            let status = c
                .wait()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            *c = child;
            status
        };
        *self.ch.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(ours);
        Ok(old)
    }

    /// Sends a message.
    pub fn send(&self, m: &ToDp, fds: &[BorrowedFd<'_>]) {
        if let Err(e) = self.channel().send(m, fds) {
            tracing::error!("cannot reach the data plane: {e}");
        }
    }

    /// Opens a port and waits for the answer.
    pub fn add_port(&self, m: ToDp, port: u32) -> Result<FromDp, String> {
        let (tx, rx) = channel();
        if let Ok(mut w) = self.port_waiters.lock() {
            w.insert(port, tx);
        }
        self.send(&m, &[]);
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the data plane did not answer".to_string())
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
