//! Connections of apps holding flows. An app's connection stays open for its flow's life
//! (so a process that dies frees its flows); one thread watches all of them with poll(2)
//! and frees the flow whose connection closes or says anything. Before, each held flow
//! kept a thread of its own.

use super::*;
use crate::conns::Slot;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::unix::net::UnixDatagram;

/// A flow's connection and the user's connection slot it takes.
#[derive(Debug)]
pub(super) struct Held {
    flow: u64,
    ch: Channel,
    _slot: Option<Slot>,
}

/// Connections handed over, waiting for the holder thread to take them.
#[derive(Debug)]
pub struct Holder {
    new: Mutex<Vec<Held>>,
    wake: Option<(UnixDatagram, UnixDatagram)>,
}

impl Default for Holder {
    fn default() -> Self {
        let wake = UnixDatagram::pair().ok().and_then(|(a, b)| {
            a.set_nonblocking(true).ok()?;
            b.set_nonblocking(true).ok()?;
            Some((a, b))
        });
        Self {
            new: Mutex::new(Vec::new()),
            wake,
        }
    }
}

impl Daemon {
    /// Hands `ch`, the connection of `flow`'s app, to the holder thread.
    pub(super) fn hold(&self, flow: u64, ch: Channel, slot: Option<Slot>) {
        self.holder
            .new
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Held {
                flow,
                ch,
                _slot: slot,
            });
        if let Some((tx, _)) = &self.holder.wake {
            // A full buffer means a wake-up is pending anyway.
            let _ = tx.send(&[1]);
        }
    }

    /// The holder thread: frees flows whose app connection closes; returns when the daemon
    /// stops (freeing what it holds).
    pub fn run_holder(&self) {
        let mut held: Vec<Held> = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            held.append(&mut self.holder.new.lock().unwrap_or_else(|p| p.into_inner()));
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            let ready: Vec<usize> = {
                let mut fds: Vec<PollFd<'_>> = held
                    .iter()
                    .map(|h| PollFd::new(h.ch.as_fd(), PollFlags::POLLIN))
                    .collect();
                if let Some((_, rx)) = &self.holder.wake {
                    fds.push(PollFd::new(rx.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::from(500u16)) {
                    Ok(_) | Err(nix::Error::EINTR) => {}
                    Err(e) => {
                        tracing::warn!("holder: poll: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                fds.iter()
                    .take(held.len())
                    .enumerate()
                    .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(i, _)| i)
                    .collect()
            };
            if let Some((_, rx)) = &self.holder.wake {
                let mut b = [0u8; 64];
                while rx.recv(&mut b).is_ok() {}
            }
            // Any message or the close of the channel ends the flow.
            for i in ready.into_iter().rev() {
                let h = held.swap_remove(i);
                self.dealloc(h.flow);
            }
            // Flows freed elsewhere (their peer timed out, the data plane restarted): their
            // connections close, which tells the apps.
            if last_sweep.elapsed() >= Duration::from_millis(500) {
                last_sweep = Instant::now();
                let st = self.st();
                held.retain(|h| st.flows.contains_key(&h.flow));
            }
        }
        for h in held {
            self.dealloc(h.flow);
        }
    }
}
