//! PDUs handed from one worker to another (issue 15 item 4, several workers): a unicast
//! IPCP's N-1 flows can be on ports of different workers, and its N+1 flows on any of
//! them. A worker that must forward a PDU on another worker's N-1 flow, or deliver one to
//! another worker's N+1 flow, pushes it into that worker's inbox, a bounded lock-free
//! queue ([`crossbeam_queue::ArrayQueue`]), and wakes it only when it sleeps. Nothing
//! goes through o7sd or the router.
//!
//! Which worker owns which flow is kept here too: each worker records the flows it adds
//! and removes (under a lock, rare), and every change bumps a version. Each worker keeps
//! its own copy ([`OwnersView`]) and takes the new tables, once per turn of its loop, only
//! when the version moved ([`Handoff::refresh`]): the per-packet lookups read the copy,
//! without a lock.
//!
//! The PDUs travel in buffers of a pool ([`Handoff::buffer`], [`Handoff::recycle`]): the
//! receiver gives each buffer back after using it, so a steady flow of handed PDUs
//! allocates nothing ([`Handoff::allocated`] counts the buffers ever made).
//!
//! Bounds: [`INBOX`] PDUs per worker; a full inbox drops the PDU and counts it
//! ([`Handoff::dropped`]), so a worker that falls behind cannot make the others wait or
//! allocate without limit; the pool keeps at most [`INBOX`] buffers per worker.

use crate::queue_spread::Request;
use crossbeam_queue::ArrayQueue;
use o7s::ring::Kick;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// PDUs an inbox holds.
pub const INBOX: usize = 4096;

/// What the receiving worker does with a handed PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// Send it, as it is (PCI ready, TTL already decremented), on N-1 flow `n1`.
    Send {
        /// The N-1 flow.
        n1: u64,
        /// A PDU another IPCP sent through us (counted `forwarded` where it leaves), not
        /// one of this IPCP's own (an N+1 flow's SDU, a keepalive, a FLOW_UPDATE: counted
        /// `sent` by the worker that made it).
        transit: bool,
    },
    /// A FLOW_UPDATE (PCI and message) for IPCP `ipcp`'s N+1 flow that the worker owns:
    /// its MB-ECN sender takes it.
    FlowUpdate {
        /// The unicast IPCP.
        ipcp: u32,
    },
    /// Deliver it (PCI and SDU) to IPCP `ipcp`'s N+1 flow with endpoint id `eid`.
    Deliver {
        /// The unicast IPCP.
        ipcp: u32,
        /// The endpoint id.
        eid: u64,
    },
    /// A whole Ethernet frame that arrived on an RX queue of port `port` served by the
    /// sending worker ([`crate::queue_spread`]): handle it as received on the port.
    Frame {
        /// The port (the receiving worker's).
        port: u32,
    },
}

/// A PDU in an inbox, for unicast IPCP `ipcp`.
#[derive(Debug)]
pub struct HandedPdu {
    /// The IPCP (its counters).
    pub ipcp: u32,
    /// What to do.
    pub what: Handed,
    /// The PDU.
    pub pdu: Vec<u8>,
}

struct Inbox {
    q: ArrayQueue<HandedPdu>,
    kick: Kick,
    /// The worker sleeps in poll(2): kick it.
    sleeping: AtomicBool,
    /// PDUs dropped because it was full.
    dropped: AtomicU64,
    /// Requests of the owners of ports whose RX queues this worker serves (rare).
    requests: Mutex<VecDeque<Request>>,
    /// `requests` is not empty (read once per turn, without the lock).
    has_requests: AtomicBool,
}

/// Most requests waiting for one worker.
pub const MAX_REQUESTS: usize = 1024;

#[derive(Default)]
struct Owners {
    /// N-1 (and any) flows by flow id.
    flows: HashMap<u64, usize>,
    /// N+1 flows over a unicast IPCP by (IPCP, endpoint id).
    eids: HashMap<(u32, u64), usize>,
}

/// A worker's copy of who owns which flow ([`Handoff::refresh`]).
#[derive(Debug, Default)]
pub struct OwnersView {
    /// The version of the tables copied (0: none yet).
    version: u64,
    flows: HashMap<u64, usize>,
    eids: HashMap<(u32, u64), usize>,
}

impl OwnersView {
    /// The worker that owns flow `flow`.
    pub fn owner_of_flow(&self, flow: u64) -> Option<usize> {
        self.flows.get(&flow).copied()
    }

    /// The worker that owns IPCP `ipcp`'s N+1 flow with endpoint `eid`.
    pub fn owner_of_eid(&self, ipcp: u32, eid: u64) -> Option<usize> {
        self.eids.get(&(ipcp, eid)).copied()
    }
}

/// Room a new buffer is made with (a frame's worth; a longer PDU grows it once).
const BUFFER: usize = 2048;
/// Most room a pooled buffer keeps (a jumbo frame's PDU).
const KEPT: usize = 9216 + 64;

/// The inboxes of every worker of one data plane, and who owns which flow.
pub struct Handoff {
    inboxes: Vec<Inbox>,
    owners: RwLock<Owners>,
    /// Bumped (under the write lock) on every change of `owners`.
    version: AtomicU64,
    /// Buffers handed PDUs travel in, given back by their receivers.
    pool: ArrayQueue<Vec<u8>>,
    /// Buffers made because the pool was empty.
    allocated: AtomicUsize,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("workers", &self.inboxes.len())
            .finish()
    }
}

impl Handoff {
    /// Inboxes for `workers` workers.
    pub fn new(workers: usize) -> io::Result<Arc<Self>> {
        let inboxes = (0..workers)
            .map(|_| {
                Ok(Inbox {
                    q: ArrayQueue::new(INBOX),
                    kick: Kick::new()?,
                    sleeping: AtomicBool::new(false),
                    dropped: AtomicU64::new(0),
                    requests: Mutex::new(VecDeque::new()),
                    has_requests: AtomicBool::new(false),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Arc::new(Self {
            inboxes,
            owners: RwLock::new(Owners::default()),
            version: AtomicU64::new(1),
            pool: ArrayQueue::new(INBOX * workers.max(1)),
            allocated: AtomicUsize::new(0),
        }))
    }

    /// Brings worker `view` up to date when the tables changed since it last looked (an
    /// atomic load when they did not); whether it copied them.
    pub fn refresh(&self, view: &mut OwnersView) -> bool {
        if self.version.load(Ordering::Acquire) == view.version {
            return false;
        }
        let o = self.owners();
        view.flows.clone_from(&o.flows);
        view.eids.clone_from(&o.eids);
        // Read under the lock: a change after it bumps the version again.
        view.version = self.version.load(Ordering::Acquire);
        true
    }

    /// An empty buffer for a PDU to hand over: from the pool, or a new one (counted).
    pub fn buffer(&self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| {
            self.allocated.fetch_add(1, Ordering::Relaxed);
            Vec::with_capacity(BUFFER)
        })
    }

    /// Gives a handed PDU's buffer back to the pool (dropped when the pool is full). A
    /// buffer grown past [`KEPT`] by a long PDU goes back to [`BUFFER`]: a full pool of
    /// them would otherwise hold up to 64 KiB per buffer for good.
    pub fn recycle(&self, mut b: Vec<u8>) {
        b.clear();
        if b.capacity() > KEPT {
            b.shrink_to(BUFFER);
        }
        let _ = self.pool.push(b);
    }

    /// Buffers made since the start because the pool had none.
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    fn owners_mut(&self) -> std::sync::RwLockWriteGuard<'_, Owners> {
        // A worker that panicked while holding it left whole maps behind: use them.
        self.owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn owners(&self) -> std::sync::RwLockReadGuard<'_, Owners> {
        self.owners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Worker `w` added flow `flow` (an N+1 flow over IPCP `ipcp` with endpoint `eid`).
    pub fn own(&self, w: usize, flow: u64, eid: Option<(u32, u64)>) {
        let mut o = self.owners_mut();
        o.flows.insert(flow, w);
        if let Some(k) = eid {
            o.eids.insert(k, w);
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Worker `w` removed flow `flow` (with its endpoint).
    pub fn disown(&self, w: usize, flow: u64, eid: Option<(u32, u64)>) {
        let mut o = self.owners_mut();
        if o.flows.get(&flow) == Some(&w) {
            o.flows.remove(&flow);
        }
        if let Some(k) = eid {
            if o.eids.get(&k) == Some(&w) {
                o.eids.remove(&k);
            }
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Hands `p` to worker `w`; whether its inbox took it (a full one drops and counts).
    pub fn push(&self, w: usize, p: HandedPdu) -> bool {
        let Some(i) = self.inboxes.get(w) else {
            return false;
        };
        if let Err(p) = i.q.push(p) {
            i.dropped.fetch_add(1, Ordering::Relaxed);
            self.recycle(p.pdu);
            return false;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if i.sleeping.load(Ordering::SeqCst) {
            i.kick.kick();
        }
        true
    }

    /// Hands worker `w` a frame received on a queue of one of its ports
    /// ([`Handed::Frame`]) while its inbox is less than half full; `false` (the buffer
    /// recycled, not counted here: the relay counts it) otherwise. The other half stays for
    /// the PDUs other workers hand over, so a flood on a relayed queue cannot crowd out
    /// their forwarding, deliveries and FLOW_UPDATEs.
    pub fn push_frame(&self, w: usize, p: HandedPdu) -> bool {
        if self.inboxes.get(w).is_none_or(|i| i.q.len() >= INBOX / 2) {
            self.recycle(p.pdu);
            return false;
        }
        self.push(w, p)
    }

    /// The next PDU for worker `w`.
    pub fn pop(&self, w: usize) -> Option<HandedPdu> {
        self.inboxes.get(w)?.q.pop()
    }

    /// Whether worker `w`'s inbox is empty.
    pub fn is_empty(&self, w: usize) -> bool {
        self.inboxes.get(w).is_none_or(|i| i.q.is_empty())
    }

    /// Worker `w` is about to sleep (`true`) or is awake: a push kicks it only while it
    /// sleeps. After saying it sleeps, the worker looks at its inbox once more.
    pub fn set_sleeping(&self, w: usize, sleeping: bool) {
        if let Some(i) = self.inboxes.get(w) {
            let was = i.sleeping.swap(sleeping, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            // Only a sleeper can have been kicked: no system call otherwise.
            if was && !sleeping {
                i.kick.drain();
            }
        }
    }

    /// Worker `w`'s kick, for its poll(2).
    pub fn kick_fd(&self, w: usize) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.inboxes.get(w).map(|i| i.kick.as_fd())
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// Gives worker `w` a request and wakes it; `Err` with the request when there is no
    /// such worker, or for a [`Request::Serve`] when [`MAX_REQUESTS`] wait (a
    /// [`Request::Stop`] is never refused: each follows a Serve that was taken, so they
    /// are as bounded, and a refused one would leave queues bound for good).
    pub fn request(&self, w: usize, r: Request) -> Result<(), Request> {
        let Some(i) = self.inboxes.get(w) else {
            return Err(r);
        };
        {
            let mut q = i
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if q.len() >= MAX_REQUESTS && matches!(r, Request::Serve { .. }) {
                return Err(r);
            }
            q.push_back(r);
            i.has_requests.store(true, Ordering::SeqCst);
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if i.sleeping.load(Ordering::SeqCst) {
            i.kick.kick();
        }
        Ok(())
    }

    /// Whether requests wait for worker `w` (an atomic load).
    pub fn has_requests(&self, w: usize) -> bool {
        self.inboxes
            .get(w)
            .is_some_and(|i| i.has_requests.load(Ordering::SeqCst))
    }

    /// The requests waiting for worker `w`, in the order they came.
    pub fn take_requests(&self, w: usize) -> Vec<Request> {
        let Some(i) = self.inboxes.get(w) else {
            return Vec::new();
        };
        let mut q = i
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        i.has_requests.store(false, Ordering::SeqCst);
        q.drain(..).collect()
    }

    /// PDUs worker `w`'s full inbox dropped.
    pub fn dropped(&self, w: usize) -> u64 {
        self.inboxes
            .get(w)
            .map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pdu(n: u8) -> HandedPdu {
        HandedPdu {
            ipcp: 1,
            what: Handed::Send {
                n1: 9,
                transit: true,
            },
            pdu: vec![n],
        }
    }

    #[test]
    fn owners_follow_adds_and_removes_and_a_stale_remove_is_ignored() {
        let h = Handoff::new(2).unwrap();
        let mut v = OwnersView::default();
        h.own(0, 10, None);
        h.own(1, 11, Some((3, 0x42)));
        assert!(h.refresh(&mut v));
        assert_eq!(v.owner_of_flow(10), Some(0));
        assert_eq!(v.owner_of_eid(3, 0x42), Some(1));
        // Flow 11 moved to worker 0 (re-added) before worker 1's remove came.
        h.own(0, 11, Some((3, 0x42)));
        h.disown(1, 11, Some((3, 0x42)));
        assert!(h.refresh(&mut v));
        assert_eq!(v.owner_of_flow(11), Some(0));
        assert_eq!(v.owner_of_eid(3, 0x42), Some(0));
        h.disown(0, 11, Some((3, 0x42)));
        // The copy keeps the old tables until it is refreshed.
        assert_eq!(v.owner_of_flow(11), Some(0));
        assert!(h.refresh(&mut v));
        assert_eq!((v.owner_of_flow(11), v.owner_of_eid(3, 0x42)), (None, None));
        // Nothing changed since: no copy.
        assert!(!h.refresh(&mut v));
        // A remove of a flow without an endpoint is a change too.
        h.disown(0, 10, None);
        assert!(h.refresh(&mut v));
        assert_eq!(v.owner_of_flow(10), None);
    }

    #[test]
    fn requests_reach_their_worker_in_order_and_are_bounded() {
        use crate::queue_spread::Request;
        let h = Handoff::new(2).unwrap();
        assert_eq!(h.workers(), 2);
        assert!(!h.has_requests(1));
        assert!(h.request(1, Request::Stop { port: 1 }).is_ok());
        assert!(h.request(1, Request::Stop { port: 2 }).is_ok());
        assert!(!h.has_requests(0), "worker 0 was asked nothing");
        assert!(h.has_requests(1));
        let ports: Vec<u32> = h
            .take_requests(1)
            .into_iter()
            .map(|r| match r {
                Request::Stop { port } => port,
                Request::Serve { .. } => 0,
            })
            .collect();
        assert_eq!(ports, vec![1, 2]);
        assert!(!h.has_requests(1));
        assert!(h.take_requests(1).is_empty());
        // No such worker; a full queue.
        assert!(h.request(2, Request::Stop { port: 3 }).is_err());
        for i in 0..MAX_REQUESTS {
            assert!(h.request(0, Request::Stop { port: i as u32 }).is_ok());
        }
        // A Stop is never refused (a Serve would be).
        assert!(h.request(0, Request::Stop { port: 0 }).is_ok());
        assert_eq!(h.take_requests(0).len(), MAX_REQUESTS + 1);
        // A sleeping worker is woken by a request.
        h.set_sleeping(1, true);
        assert!(h.request(1, Request::Stop { port: 4 }).is_ok());
        let fd = h.kick_fd(1).unwrap();
        assert!(o7s::ipc::wait_readable(fd, Some(std::time::Duration::ZERO)).unwrap());
    }

    #[test]
    fn a_serve_request_is_refused_when_the_queue_is_full() {
        use crate::queue_spread::{Request, Shared};
        let h = Handoff::new(1).unwrap();
        let serve = || Request::Serve {
            dev: "d".into(),
            queues: vec![1],
            owner: 0,
            xsks: std::fs::File::open("/dev/null").unwrap().into(),
            shared: Shared::new(1, 2, 0, 2),
        };
        assert!(h.request(0, serve()).is_ok());
        for i in 1..MAX_REQUESTS {
            assert!(h.request(0, Request::Stop { port: i as u32 }).is_ok());
        }
        assert!(h.request(0, serve()).is_err());
        assert_eq!(h.take_requests(0).len(), MAX_REQUESTS);
        assert!(h.request(0, serve()).is_ok());
    }

    #[test]
    fn inbox_emptiness_and_a_sleepers_kick() {
        let h = Handoff::new(2).unwrap();
        assert!(h.is_empty(1));
        assert!(h.push(1, pdu(1)));
        assert!(!h.is_empty(1));
        assert!(h.is_empty(0));
        let readable = |h: &Handoff| {
            o7s::ipc::wait_readable(h.kick_fd(1).unwrap(), Some(std::time::Duration::ZERO)).unwrap()
        };
        // Awake: a push does not kick.
        assert!(!readable(&h));
        h.set_sleeping(1, true);
        assert!(h.push(1, pdu(2)));
        assert!(readable(&h));
        // Saying it sleeps again keeps the kick; waking drains it.
        h.set_sleeping(1, true);
        assert!(readable(&h));
        h.set_sleeping(1, false);
        assert!(!readable(&h));
    }

    #[test]
    fn a_buffer_keeps_up_to_kept_bytes_of_room() {
        // A jumbo frame's PDU (9,216 + 64 bytes) keeps its room; one byte more does not.
        let h = Handoff::new(1).unwrap();
        h.recycle(Vec::with_capacity(9280));
        assert_eq!(h.buffer().capacity(), 9280);
        h.recycle(Vec::with_capacity(9281));
        let b = h.buffer();
        assert!(b.capacity() < 9280, "{}", b.capacity());
        assert!(format!("{h:?}").contains("workers: 1"));
    }

    #[test]
    fn relayed_frames_take_at_most_half_of_an_inbox() {
        let h = Handoff::new(2).unwrap();
        let frame = |h: &Handoff| HandedPdu {
            ipcp: 0,
            what: Handed::Frame { port: 1 },
            pdu: h.buffer(),
        };
        let mut taken = 0;
        while h.push_frame(1, frame(&h)) {
            taken += 1;
        }
        assert_eq!(taken, INBOX / 2);
        assert_eq!(
            h.dropped(1),
            0,
            "the relay counts its refusals, not the inbox"
        );
        // The other half is for handed PDUs.
        for n in 0..INBOX / 2 {
            assert!(h.push(1, pdu(n as u8)), "{n}");
        }
        assert!(!h.push(1, pdu(0)));
        assert!(!h.push_frame(5, frame(&h)), "no such worker");
    }

    #[test]
    fn handed_buffers_come_back_and_a_steady_flow_allocates_nothing() {
        let h = Handoff::new(2).unwrap();
        for round in 0..1000u32 {
            let mut b = h.buffer();
            assert!(b.is_empty(), "a recycled buffer comes back empty");
            b.extend_from_slice(&round.to_le_bytes());
            assert!(h.push(
                1,
                HandedPdu {
                    ipcp: 1,
                    what: Handed::Send {
                        n1: 9,
                        transit: true
                    },
                    pdu: b
                }
            ));
            let p = h.pop(1).unwrap();
            assert_eq!(p.pdu, round.to_le_bytes());
            h.recycle(p.pdu);
        }
        assert_eq!(h.allocated(), 1, "one buffer, used 1000 times");
        // A burst takes more; the pool is bounded.
        let burst: Vec<_> = (0..10).map(|_| h.buffer()).collect();
        assert_eq!(h.allocated(), 10);
        for b in burst {
            h.recycle(b);
        }
        assert_eq!(h.pool.len(), 10);
    }

    #[test]
    fn a_buffer_grown_by_a_long_pdu_goes_back_small_and_a_jumbo_one_is_kept() {
        let h = Handoff::new(1).unwrap();
        let mut b = h.buffer();
        b.extend_from_slice(&[7u8; 60_000]);
        h.recycle(b);
        let b = h.buffer();
        assert!(b.is_empty() && b.capacity() <= KEPT, "{}", b.capacity());
        let mut j = b;
        j.extend_from_slice(&[7u8; 9000]);
        let cap = j.capacity();
        h.recycle(j);
        assert_eq!(
            h.buffer().capacity(),
            cap,
            "a jumbo frame's buffer is kept as it is"
        );
        assert_eq!(h.allocated(), 1);
    }

    #[test]
    fn a_full_inbox_drops_and_counts_and_order_is_kept() {
        let h = Handoff::new(1).unwrap();
        for i in 0..INBOX {
            assert!(h.push(0, pdu(i as u8)));
        }
        assert!(!h.push(0, pdu(0)));
        assert_eq!(
            h.pool.len(),
            1,
            "the dropped PDU's buffer went back to the pool"
        );
        assert!(!h.push(1, pdu(0)), "no such worker");
        assert_eq!(h.dropped(0), 1);
        assert_eq!(h.pop(0).unwrap().pdu, vec![0]);
        assert_eq!(h.pop(0).unwrap().pdu, vec![1]);
    }

    #[test]
    fn a_sleeping_worker_is_kicked_an_awake_one_is_not() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let h = Handoff::new(1).unwrap();
        let readable = |h: &Handoff| {
            let mut fds = [PollFd::new(h.kick_fd(0).unwrap(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap() > 0
        };
        assert!(h.push(0, pdu(1)));
        assert!(!readable(&h), "awake: no kick (no system call)");
        h.set_sleeping(0, true);
        assert!(h.push(0, pdu(2)));
        assert!(readable(&h), "asleep: kicked");
        h.set_sleeping(0, false);
        assert!(!readable(&h), "the kick is drained on waking");
    }
}
