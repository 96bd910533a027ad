//! The data plane's events and restarts, periodic work, auto-started programs.

use crate::daemon::{now_ns, Daemon, Owner};
use crate::eth::Peer;
use o7s_abi::msg::{FromDp, PortKind, ToDp};
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Daemon {
    /// Sends a management message to `dst` on `port`.
    pub(super) fn send_mgmt(&self, port: u32, dst: Peer, payload: Vec<u8>) {
        let m = match dst {
            Peer::Mac(dst) => ToDp::SendMgmt { port, dst, payload },
            Peer::Ip(dst) => ToDp::SendUdp { port, dst, payload },
        };
        self.dp.send(&m, &[]);
    }

    /// Reads data-plane events; restarts the data plane when it dies (at most 5 times a
    /// minute), re-opening the ports. Flows it carried are lost: their apps see the flow
    /// go down.
    pub fn dp_events(self: &Arc<Self>) {
        let mut restarts: Vec<Instant> = vec![];
        loop {
            let ch = self.dp.channel();
            let m = match ch.recv::<FromDp>() {
                Ok((m, _)) => m,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!("bad message from the data plane: {e}");
                    continue;
                }
                Err(e) => {
                    // A SIGTERM to the whole process group (timeout, systemd) reaches the
                    // data plane and o7sd together: give o7sd's own signal a moment to be
                    // seen before taking the data plane's end for a crash.
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_millis(500)
                        && !self.stopping.load(Ordering::Relaxed)
                        && !crate::stop_requested()
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if self.stopping.load(Ordering::Relaxed) || crate::stop_requested() {
                        return;
                    }
                    restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
                    if restarts.len() >= 5 {
                        tracing::error!(
                            "the data plane died 5 times within a minute ({e}); shutting down"
                        );
                        crate::request_stop();
                        return;
                    }
                    restarts.push(Instant::now());
                    match self.dp.restart() {
                        Ok(how) => tracing::error!("the data plane died ({how}); restarted it"),
                        Err(e) => {
                            tracing::error!(
                                "the data plane died and cannot be restarted: {e}; shutting down"
                            );
                            crate::request_stop();
                            return;
                        }
                    }
                    let d = self.clone();
                    std::thread::spawn(move || d.after_dp_restart());
                    continue;
                }
            };
            self.on_dp_message(m);
        }
    }

    /// Re-opens every port in a new data plane and drops the flows the old one carried: on
    /// a thread of its own, which waits for the ports; the state changes on the loop.
    pub(super) fn after_dp_restart(&self) {
        let ports = match self.on_loop(|o| o.dp_restarted()) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("after the data plane's restart: {e}");
                return;
            }
        };
        for (port, dev, kind) in ports {
            let m = ToDp::AddPort {
                port,
                dev: dev.clone(),
                kind,
            };
            let r = self.dp.add_port(&m, port);
            if let Err(e) = self.on_loop(move |o| o.port_reopened(port, &dev, r)) {
                tracing::error!("after the data plane's restart: {e}");
                return;
            }
        }
    }
}

impl Owner {
    /// The data plane restarted: the flows it carried are gone. Returns the ports to open
    /// again (port, device, kind).
    fn dp_restarted(&self) -> Vec<(u32, String, PortKind)> {
        let flows: Vec<u64> = self.st().flows.keys().copied().collect();
        for f in flows {
            self.dealloc(f);
        }
        self.st()
            .ipcps
            .iter()
            .map(|i| (i.port, i.dev.clone(), i.port_kind))
            .collect()
    }

    /// The new data plane's answer `r` for `port` (on `dev`).
    fn port_reopened(&self, port: u32, dev: &str, r: Result<FromDp, crate::dp::DpError>) {
        let mut st = self.st();
        // By its port, not its position: an IPCP destroyed meanwhile (o7sctl, while the
        // port was waited for) shifts the positions of those after it.
        let Some(i) = st.ipcps.iter_mut().find(|i| i.port == port) else {
            return;
        };
        match r {
            Ok(FromDp::PortUp {
                mac, mtu, io_path, ..
            }) => {
                i.set_mac(mac);
                i.mtu = mtu;
                i.io_path = io_path;
                i.up = true;
                tracing::info!("IPCP {}: port on {dev} re-opened.", i.name);
                if i.shaping != (None, None) || i.impair.iter().any(Option::is_some) {
                    let (shaping, impair) = (i.shaping, i.impair);
                    drop(st);
                    if let Err(e) = self.send_shaping(port, shaping, impair) {
                        tracing::warn!("port {port}: its cap could not be set again: {e}");
                    }
                }
            }
            Ok(FromDp::PortError { error, .. }) => {
                i.up = false;
                i.io_path = format!("down: {error}");
                tracing::error!("IPCP {}: cannot re-open {dev}: {error}", i.name);
            }
            other => tracing::error!("IPCP {}: {dev}: {other:?}", i.name),
        }
    }

    /// Periodic work, on the loop every 100 ms: expire caches, reap children, forget old OAP
    /// request ids (every 50th).
    pub(super) fn tick(&self, now: Instant) {
        // Every 5 s (50 ticks): forget old OAP request ids.
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        if n % 50 == 49 {
            self.replay.borrow_mut().prune(now_ns());
        }
        let mut st = self.st();
        for i in &mut st.ipcps {
            // Names learnt stay listed while the machine's cache holds them.
            let shim = &i.shim;
            i.learnt.retain(|h, _| shim.cached(now, h).is_some());
        }
        st.children.retain_mut(|(n, c)| match c.try_wait() {
            Ok(Some(s)) => {
                tracing::info!("Process {} (started for {n}) exited: {s}.", c.id());
                false
            }
            _ => true,
        });
    }

    /// Stops auto-started programs (SIGTERM, then SIGKILL after 2 s).
    pub fn stop_children(&self) {
        // Not `st()`: this also runs while a panic unwinds, where a second panic aborts.
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        let mut kids: Vec<(String, Child)> = std::mem::take(&mut st.children);
        drop(st);
        for (_, c) in &kids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) && !kids.is_empty() {
            kids.retain_mut(|(_, c)| !matches!(c.try_wait(), Ok(Some(_))));
            std::thread::sleep(Duration::from_millis(10));
        }
        for (_, c) in &mut kids {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Logs what an auto-started program writes on stderr, line by line (lines of at most
/// 1000 bytes; longer ones are cut in pieces), on a thread of its own that ends with it.
pub(super) fn log_child_stderr(label: String, pid: u32, err: std::process::ChildStderr) {
    std::thread::spawn(move || {
        use std::io::{BufRead, Read};
        let mut r = std::io::BufReader::new(err);
        let mut line = Vec::new();
        while (&mut r)
            .take(1000)
            .read_until(b'\n', &mut line)
            .is_ok_and(|n| n > 0)
        {
            let text = String::from_utf8_lossy(&line);
            tracing::info!("{label}[{pid}]: {}", text.trim_end());
            line.clear();
        }
    });
}

/// Returns free heap memory to the system (glibc's `malloc_trim`; nothing elsewhere).
/// Called by o7sd's main thread every 5 s, not by the loop: it walks the whole heap, which
/// takes milliseconds after a flood, and the loop must not stop for that.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // Safety: malloc_trim only walks the allocator's own free lists; it is thread-safe and
    // takes no pointer from us.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
