//! Connections of apps waiting in accept and of apps holding flows. An app's connection
//! stays open for its flow's life (so a process that dies frees its flows); one thread
//! watches all of them with poll(2): it hands a waiting acceptor its flow when one comes
//! (or says that none came in time), drops an acceptor whose process went away, and frees
//! the flow whose connection closes or says anything. Before, each of them kept a thread.

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

/// A process waiting in accept: its acceptor id in the registry, where its flow comes.
#[derive(Debug)]
pub(super) struct Parked {
    pub id: u64,
    pub ch: Channel,
    pub slot: Option<Slot>,
    pub rx: std::sync::mpsc::Receiver<Accepted>,
    pub deadline: Option<Instant>,
}

/// Connections handed over, waiting for the holder thread to take them.
#[derive(Debug)]
pub struct Holder {
    new: Mutex<Vec<Held>>,
    parked: Mutex<Vec<Parked>>,
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
            parked: Mutex::new(Vec::new()),
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
        self.wake_holder();
    }

    /// Hands a process waiting in accept to the holder thread.
    pub(super) fn park(&self, p: Parked) {
        self.holder
            .parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(p);
        self.wake_holder();
    }

    /// Wakes the holder thread (a flow was handed to an acceptor, or a connection came).
    pub(super) fn wake_holder(&self) {
        if let Some((tx, _)) = &self.holder.wake {
            // A full buffer means a wake-up is pending anyway.
            let _ = tx.send(&[1]);
        }
    }

    /// Waiting acceptors: delivers the flows that came, drops those whose process went
    /// away or whose time is up. `gone[i]`: the connection of `parked[i]` is readable.
    fn tend_parked(&self, parked: &mut Vec<Parked>, gone: &[bool]) {
        use std::sync::mpsc::TryRecvError;
        let now = Instant::now();
        let stopping = self.stopping.load(Ordering::Relaxed);
        for (i, p) in std::mem::take(parked).into_iter().enumerate() {
            let gone = gone.get(i).copied().unwrap_or(false);
            let expired = p.deadline.is_some_and(|d| now >= d);
            match p.rx.try_recv() {
                Ok(a) if gone => {
                    self.st().reg.remove_acceptor(p.id);
                    self.dealloc(a.flow);
                }
                Ok(a) => self.deliver_and_hold(p.ch, a, p.slot),
                // Removed from the registry elsewhere: the connection closes.
                Err(TryRecvError::Disconnected) => {}
                Err(TryRecvError::Empty) if gone || expired || stopping => {
                    self.st().reg.remove_acceptor(p.id);
                    // A flow handed over just before the removal is still delivered.
                    match p.rx.try_recv() {
                        Ok(a) if !gone => self.deliver_and_hold(p.ch, a, p.slot),
                        Ok(a) => self.dealloc(a.flow),
                        Err(_) if gone => {}
                        Err(_) => {
                            let _ = p.ch.send(
                                &Reply::Error {
                                    code: ErrorCode::Timeout,
                                    message: "no flow arrived".into(),
                                },
                                &[],
                            );
                        }
                    }
                }
                Err(TryRecvError::Empty) => parked.push(p),
            }
        }
    }

    /// The holder thread: frees flows whose app connection closes; returns when the daemon
    /// stops (freeing what it holds).
    pub fn run_holder(&self) {
        let mut held: Vec<Held> = Vec::new();
        let mut parked: Vec<Parked> = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            parked.append(&mut self.holder.parked.lock().unwrap_or_else(|p| p.into_inner()));
            self.tend_parked(&mut parked, &[]);
            held.append(&mut self.holder.new.lock().unwrap_or_else(|p| p.into_inner()));
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            // Wake for the earliest accept deadline, or in 500 ms.
            let now = Instant::now();
            let wait = parked
                .iter()
                .filter_map(|p| p.deadline)
                .map(|d| d.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(500))
                .min(Duration::from_millis(500));
            let wait = PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::ZERO);
            let (ready, gone): (Vec<usize>, Vec<bool>) = {
                let mut fds: Vec<PollFd<'_>> = held
                    .iter()
                    .map(|h| PollFd::new(h.ch.as_fd(), PollFlags::POLLIN))
                    .chain(
                        parked
                            .iter()
                            .map(|p| PollFd::new(p.ch.as_fd(), PollFlags::POLLIN)),
                    )
                    .collect();
                if let Some((_, rx)) = &self.holder.wake {
                    fds.push(PollFd::new(rx.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, wait) {
                    Ok(_) | Err(nix::Error::EINTR) => {}
                    Err(e) => {
                        tracing::warn!("holder: poll: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                let hit = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
                (
                    fds.iter()
                        .take(held.len())
                        .enumerate()
                        .filter(|(_, p)| hit(p))
                        .map(|(i, _)| i)
                        .collect(),
                    fds.iter()
                        .skip(held.len())
                        .take(parked.len())
                        .map(hit)
                        .collect(),
                )
            };
            self.tend_parked(&mut parked, &gone);
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
        for p in parked {
            self.st().reg.remove_acceptor(p.id);
        }
    }
}
