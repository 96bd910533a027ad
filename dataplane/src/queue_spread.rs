//! The RX queues of one device spread over the workers (issue 23 item 4).
//!
//! A port belongs to one worker, its owner: it attaches the XDP program, holds the port's
//! flows and sends through its own queue's socket. With several workers, the owner binds
//! AF_XDP sockets only on the queues [`queues_of`] gives it (queue 0 always among them);
//! each other queue is bound by the worker [`worker_of_queue`] names, on a UMEM of its
//! own, in the program's socket map. That worker hands every frame it receives to the
//! owner whole, through the owner's inbox ([`crate::handoff::Handed::Frame`]), where it
//! is handled as if the owner had received it (flows stay with one worker: no table is
//! shared, no lock taken per frame).
//!
//! The owner asks for its queues through [`Request`]s in the other workers' inboxes, and
//! they report in [`Shared`]: per queue, its state and how many frames came in. A queue
//! whose worker cannot bind it stays unbound: the program passes its frames to the kernel
//! (counted `NO_SOCKET`), and the owner's AF_PACKET socket receives them. Both are shown
//! in `o7sctl port list` (`rx_queues`).
//!
//! Why frames are relayed and not decided where they arrive: a NIC spreads over its
//! queues by a hash of IP addresses and ports, which eth-dix and LLC frames lack (they go
//! to queue 0), and veth spreads by the sender's queue, so frames of one flow land on any
//! queue; deciding at the receiving worker would need every worker to hold every flow of
//! the port (docs/design/rx-queues-over-workers.md).

use crate::xdp::KernelDrops;
use o7s_abi::msg::{RxQueue, RxQueueState};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A set of a device's RX queues: those whose index leaves `offset` when divided by
/// `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSet {
    step: u32,
    offset: u32,
}

impl QueueSet {
    /// Every queue.
    pub const ALL: Self = Self { step: 1, offset: 0 };

    /// Whether queue `q` is in the set.
    pub fn contains(self, q: u32) -> bool {
        q % self.step == self.offset
    }

    /// The queues of the set among a device's first `queues`.
    pub fn of(self, queues: u32) -> Vec<u32> {
        (0..queues).filter(|q| self.contains(*q)).collect()
    }
}

/// The worker that serves RX queue `q` of a port owned by worker `owner`, of `workers`:
/// queue 0 is the owner's, queue 1 the next worker's, and so on in turn.
pub fn worker_of_queue(q: u32, owner: usize, workers: usize) -> usize {
    let n = workers.max(1);
    (owner + q as usize) % n
}

/// The queues worker `w` serves of a port owned by worker `owner`, of `workers`
/// (the inverse of [`worker_of_queue`]).
pub fn queues_of(w: usize, owner: usize, workers: usize) -> QueueSet {
    let n = workers.max(1);
    // The queue below `n` that goes to `w`.
    let offset = (0..n)
        .find(|&o| worker_of_queue(u32::try_from(o).unwrap_or(0), owner, n) == w % n)
        .unwrap_or(0);
    QueueSet {
        step: u32::try_from(n).unwrap_or(u32::MAX),
        offset: u32::try_from(offset).unwrap_or(0),
    }
}

/// One queue, as the owner and the queue's worker both see it.
#[derive(Debug)]
struct Slot {
    queue: u32,
    worker: usize,
    state: Mutex<RxQueueState>,
    /// Frames received on it by another worker (its worker's count, stored as it grows).
    rx: AtomicU64,
}

/// What the owner of a port and the workers serving its other queues share.
#[derive(Debug)]
pub struct Shared {
    port: u32,
    slots: Vec<Slot>,
    /// Frames the owner's full inbox refused (it takes relayed frames up to half full:
    /// [`crate::handoff::Handoff::push_frame`]).
    dropped: AtomicU64,
    /// What the kernel dropped on each other worker's sockets, as it last read it (every
    /// 100 ms).
    kernel: Mutex<Vec<(usize, KernelDrops)>>,
    /// Requests to serve queues sent to other workers and not yet let go (refused, or
    /// stopped): the owner waits for none to be left before it lets the device go (a new
    /// port on it may bind the same queues).
    live: AtomicUsize,
}

impl Shared {
    /// The queues of port `port` on a device of `queues` RX queues, owned by worker
    /// `owner` of `workers`; the owner's own are [`RxQueueState::Owner`].
    pub fn new(port: u32, queues: u32, owner: usize, workers: usize) -> Arc<Self> {
        let slots = (0..queues)
            .map(|q| {
                let worker = worker_of_queue(q, owner, workers);
                Slot {
                    queue: q,
                    worker,
                    state: Mutex::new(if worker == owner {
                        RxQueueState::Owner
                    } else {
                        RxQueueState::Starting
                    }),
                    rx: AtomicU64::new(0),
                }
            })
            .collect();
        Arc::new(Self {
            port,
            slots,
            dropped: AtomicU64::new(0),
            kernel: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
        })
    }

    /// The port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The other workers and the queues each must bind.
    pub fn others(&self) -> Vec<(usize, Vec<u32>)> {
        let mut out: Vec<(usize, Vec<u32>)> = Vec::new();
        for s in self.slots.iter().filter(|s| !self.is_owners(s)) {
            match out.iter_mut().find(|(w, _)| *w == s.worker) {
                Some((_, qs)) => qs.push(s.queue),
                None => out.push((s.worker, vec![s.queue])),
            }
        }
        out
    }

    fn is_owners(&self, s: &Slot) -> bool {
        matches!(*lock(&s.state), RxQueueState::Owner)
    }

    /// Sets the state of queue `q`.
    pub fn set_state(&self, q: u32, state: RxQueueState) {
        if let Some(s) = self.slots.iter().find(|s| s.queue == q) {
            *lock(&s.state) = state;
        }
    }

    /// The owner asked another worker to serve queues of this port.
    pub fn asked(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// A worker let a request go: it could not bind the queues, or it closed them.
    pub fn released(&self) {
        // (Never below zero: every release follows its request.)
        let _ = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Requests not let go yet.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Queue `q`'s worker has received `total` frames on it.
    pub fn set_received(&self, q: u32, total: u64) {
        if let Some(s) = self.slots.iter().find(|s| s.queue == q) {
            s.rx.store(total, Ordering::Relaxed);
        }
    }

    /// `n` frames were refused by the owner's full inbox.
    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// What the kernel dropped on worker `w`'s sockets for this port, in all.
    pub fn set_kernel(&self, w: usize, k: KernelDrops) {
        let mut all = lock(&self.kernel);
        match all.iter_mut().find(|(x, _)| *x == w) {
            Some((_, old)) => *old = k,
            None => all.push((w, k)),
        }
    }

    /// What the kernel dropped on the other workers' sockets for this port.
    pub fn kernel(&self) -> KernelDrops {
        lock(&self.kernel)
            .iter()
            .fold(KernelDrops::default(), |a, (_, k)| KernelDrops {
                rx_dropped: a.rx_dropped + k.rx_dropped,
                rx_ring_full: a.rx_ring_full + k.rx_ring_full,
                fill_ring_empty: a.fill_ring_empty + k.fill_ring_empty,
                invalid_descs: a.invalid_descs + k.invalid_descs,
            })
    }

    /// Frames the owner's inbox refused.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Frames other workers received, in all.
    pub fn relayed(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.rx.load(Ordering::Relaxed))
            .sum()
    }

    /// Every queue, with `own_rx(q)` the owner's count for its own queues.
    pub fn view(&self, own_rx: impl Fn(u32) -> u64) -> Vec<RxQueue> {
        self.slots
            .iter()
            .map(|s| {
                let state = lock(&s.state).clone();
                let rx = match state {
                    RxQueueState::Owner => own_rx(s.queue),
                    _ => s.rx.load(Ordering::Relaxed),
                };
                RxQueue {
                    queue: s.queue,
                    worker: u32::try_from(s.worker).unwrap_or(u32::MAX),
                    state,
                    rx,
                }
            })
            .collect()
    }
}

/// A lock that a panicking worker left is still used: the state it guards is whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An owner's request to another worker.
#[derive(Debug)]
pub enum Request {
    /// Bind AF_XDP sockets on `queues` of `dev` and relay their frames.
    Serve {
        /// The device.
        dev: String,
        /// Its queues to bind.
        queues: Vec<u32>,
        /// The worker that owns the port (where its frames go).
        owner: usize,
        /// The XDP program's socket map (a descriptor of it).
        xsks: OwnedFd,
        /// The port's queues and counters.
        shared: Arc<Shared>,
    },
    /// Close the sockets bound for port `port`.
    Stop {
        /// The port.
        port: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_has_exactly_one_worker_and_queue_zero_is_the_owners() {
        for workers in 1..5usize {
            for owner in 0..workers {
                for q in 0..12u32 {
                    let w = worker_of_queue(q, owner, workers);
                    assert!(w < workers);
                    let serving: Vec<usize> = (0..workers)
                        .filter(|x| queues_of(*x, owner, workers).contains(q))
                        .collect();
                    assert_eq!(serving, vec![w], "q {q} owner {owner} of {workers}");
                }
                assert_eq!(worker_of_queue(0, owner, workers), owner);
            }
        }
        // Owner 1 of 2: queue 1 goes to worker 0, queue 2 back to the owner.
        assert_eq!(worker_of_queue(1, 1, 2), 0);
        assert_eq!(worker_of_queue(2, 1, 2), 1);
        assert_eq!(queues_of(0, 1, 2).of(4), vec![1, 3]);
        assert_eq!(queues_of(1, 1, 2).of(4), vec![0, 2]);
        assert_eq!(QueueSet::ALL.of(3), vec![0, 1, 2]);
    }

    #[test]
    fn shared_lists_the_other_workers_and_counts_their_frames() {
        let s = Shared::new(7, 4, 1, 3);
        assert_eq!(s.port(), 7);
        // Queues 0..4 of owner 1 of 3: workers 1, 2, 0, 1.
        assert_eq!(s.others(), vec![(2, vec![1]), (0, vec![2])]);
        s.set_received(1, 4);
        s.set_received(1, 5);
        s.set_received(2, 3);
        s.add_dropped(2);
        s.add_dropped(0);
        assert_eq!(s.relayed(), 8);
        assert_eq!(s.dropped(), 2);
        s.set_state(1, RxQueueState::Relayed);
        s.set_state(2, RxQueueState::Failed("busy".into()));
        let v = s.view(|q| 100 + u64::from(q));
        let states: Vec<_> = v.iter().map(|q| (q.queue, q.worker, q.rx)).collect();
        assert_eq!(states, vec![(0, 1, 100), (1, 2, 5), (2, 0, 3), (3, 1, 103)]);
        assert_eq!(v[1].state, RxQueueState::Relayed);
        assert_eq!(v[2].state, RxQueueState::Failed("busy".into()));
        assert_eq!(v[3].state, RxQueueState::Owner);
        let k = |n: u64| KernelDrops {
            rx_dropped: n,
            rx_ring_full: 2 * n,
            fill_ring_empty: 3 * n,
            invalid_descs: 4 * n,
        };
        assert_eq!(s.kernel(), k(0));
        s.set_kernel(2, k(1));
        assert_eq!(s.kernel(), k(1));
        s.set_kernel(0, k(10));
        assert_eq!(s.kernel(), k(11));
        s.set_kernel(2, k(4));
        assert_eq!(s.kernel(), k(14), "each worker's last figures, summed");
        s.asked();
        s.asked();
        assert_eq!(s.live(), 2);
        s.released();
        assert_eq!(s.live(), 1);
        s.released();
        s.released();
        assert_eq!(s.live(), 0);
    }
}
