//! The data-plane loop: polls the control channel, the ports and the apps' tx kicks, moves
//! SDUs between ports and flow rings, and reports management frames to `o7sd`.

mod congestion;
mod control;
#[cfg(test)]
mod delivery_tests;
mod dt_path;
mod eth_path;
mod lifecycle;
mod queue_relay;
#[cfg(test)]
mod shaper_drain_tests;
mod tap;
mod udp_path;
mod xdp_ports;

use crate::afpacket::{dev_info, PacketSocket, ETH_P_802_2};
use crate::ctl_out::CtlOut;
use crate::frames::{self, build_dix, build_dix_with, build_llc, build_llc_with, Parsed};
use crate::msg::{
    DpStats, FlowStats, FromDp, PortKind, PortStats, ToDp, UniFlowSpec, UniStats, WorkerInfo,
};
use crate::police::{Policer, Rates, Source, Verdict};
use crate::udp::UdpPort;
use nix::poll::{poll, ppoll, PollFd, PollFlags, PollTimeout};
use nix::sys::time::TimeSpec;
use o7s::ipc::Channel;
use o7s::ring::{flags, Dir, FlowMem, Kick, RingError};
use o7s_wire::{dix, ethernet, llc};
/// Flow and port tables: a fast non-cryptographic hash (keys are small integers chosen by
/// o7sd, not by the network).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Default adaptive-polling window after the last packet (`O7S_DP_SPIN_US` overrides).
const DEFAULT_SPIN_US: u64 = 200;
/// While spinning, the poll system call is made every this many turns.
const POLL_EVERY: u32 = 16;
/// Most control messages handled per turn.
const CTL_BATCH: usize = 64;
/// Most SDUs taken from one ring per turn (fairness between flows).
const TX_BATCH: usize = 64;
/// The longest the loop sleeps with nothing to do (it looks at its timers then).
const IDLE_POLL: Duration = Duration::from_millis(100);

struct Port {
    dev: String,
    /// The device's interface index when the port was opened.
    ifindex: i32,
    kind: PortKind,
    mac: [u8; 6],
    /// Management frames (and data when AF_XDP is not in use).
    sock: PacketSocket,
    /// The AF_XDP socket for data frames, when the XDP path is up.
    xdp: Option<crate::xdp::XdpPort>,
    stats: PortStats,
    /// Rate limits on management frames (per source MAC and for the port).
    police: Policer,
    /// Running captures (`o7sctl capture`), at most `tap::MAX_PER_PORT`.
    taps: Vec<tap::Tap>,
    /// Its RX queues that other workers bind ([`crate::queue_spread`]).
    spread: Option<std::sync::Arc<crate::queue_spread::Shared>>,
}

struct UPort {
    sock: UdpPort,
    /// The address it is bound to.
    addr: SocketAddr,
    stats: PortStats,
    /// Rate limits on management datagrams (per source IP and for the port).
    police: Policer,
}

struct Flow {
    crypt: Option<crate::crypt::Crypt>,
    /// Scratch for decrypted SDUs.
    plain: Vec<u8>,
    peer_addr: Option<SocketAddr>,
    port: u32,
    local: u32,
    remote: u32,
    peer: [u8; 6],
    timeout: Duration,
    last_rx: Instant,
    /// When an SDU or keepalive was last sent to the peer.
    last_tx: Instant,
    mem: FlowMem,
    tx_kick: Kick,
    rx_kick: Kick,
    /// The app sleeps on its rx ring and SDUs were pushed: kick it at the end of the batch.
    kick_due: bool,
    stats: FlowStats,
    /// The app's process (0: unknown) and a pidfd on it: readable once it exits.
    pid: i32,
    pidfd: Option<std::os::fd::OwnedFd>,
    /// o7sd's record of the flow, for the o7sd that adopts us.
    record: String,
    /// The peer's time-out as o7sd gave it.
    timeout_ms: u64,
    /// A flow over a unicast IPCP: its DT end.
    uni: Option<UniFlowSpec>,
    /// MB-ECN ends of a flow over a unicast layer that runs it.
    ca: Option<congestion::FlowCa>,
}

/// Pushes a plaintext SDU into a flow's rx ring (counted; dropped if the ring is full).
/// A sleeping app is not woken here but once at the end of the batch (`kick_due`), so that
/// it finds a batch waiting instead of being woken (and preempting us) for every SDU.
fn push_rx(mem: &FlowMem, stats: &mut FlowStats, kick_due: &mut bool, sdu: &[u8]) {
    match mem.ring(Dir::Rx).push(sdu) {
        Ok(wake) => {
            stats.rx_sdus += 1;
            stats.rx_bytes += sdu.len() as u64;
            *kick_due |= wake;
        }
        Err(RingError::Corrupt) => stats.drop_ring_corrupt += 1,
        Err(_) => stats.drop_ring_full += 1,
    }
}

impl Flow {
    /// Hands an SDU from the peer to the app's rx ring, decrypting it first if the flow is
    /// encrypted (a copy into scratch space). `false` when it did not decrypt.
    fn deliver(&mut self, wire: &[u8], now: Instant) -> bool {
        let sdu = match &mut self.crypt {
            Some(c) => {
                if c.open(wire, &mut self.plain).is_err() {
                    self.stats.drop_decrypt += 1;
                    return false;
                }
                self.plain.as_slice()
            }
            None => wire,
        };
        self.last_rx = now;
        if sdu.is_empty() {
            self.stats.rx_keepalives += 1;
            return true;
        }
        push_rx(&self.mem, &mut self.stats, &mut self.kick_due, sdu);
        true
    }

    /// As [`Flow::deliver`], decrypting in place when the SDU uses the current key (no copy).
    /// `false` when a sealed SDU did not open (forged or corrupted, counted `drop_decrypt`):
    /// such a PDU must not count as delivered nor steer congestion control.
    fn deliver_mut(&mut self, wire: &mut [u8], now: Instant) -> bool {
        if let Some(c) = &mut self.crypt {
            match c.open_in_place(wire) {
                Ok(Some(r)) if r.is_empty() => {
                    self.last_rx = now;
                    self.stats.rx_keepalives += 1;
                    return true;
                }
                Ok(Some(r)) => {
                    self.last_rx = now;
                    push_rx(
                        &self.mem,
                        &mut self.stats,
                        &mut self.kick_due,
                        wire.get(r).unwrap_or(&[]),
                    );
                    return true;
                }
                Ok(None) => {}
                Err(_) => {
                    self.stats.drop_decrypt += 1;
                    return false;
                }
            }
        }
        self.deliver(wire, now)
    }
}

/// The data plane's state.
pub struct Dataplane {
    /// The control channel to o7sd, and the socket a new o7sd adopts us on.
    up: crate::upstream::Upstream,
    /// Messages waiting for o7sd (never a blocking send on the packet path).
    out: CtlOut,
    /// Rate limits for the management messages of new ports.
    rates: Rates,

    /// The CPU to pin to, when this is one worker of several.
    core: Option<String>,
    ports: HashMap<u32, Port>,
    uports: HashMap<u32, UPort>,
    flows: HashMap<u64, Flow>,
    /// What the packet path reads ([`crate::packet_path::classify_eth`]): flows by
    /// (port, eid), where each N-1 flow sends, the unicast IPCPs' DT tables.
    tab: crate::packet_path::Tables,
    /// Unicast IPCPs' DT N-1 flows and counters, by IPCP.
    unis: HashMap<u32, dt_path::UniState>,
    buf: Vec<u8>,
    frame: Vec<u8>,
    /// Scratch for a DT PDU copied out of a UDP port's buffers.
    pdu: Vec<u8>,
    /// The time at the start of this turn of the loop (one clock read per turn).
    now: Instant,
    /// Ports or flows were added or removed: the loop's id lists must be rebuilt.
    tables_changed: bool,
    /// Pinning and polling, as reported to o7sd.
    worker: WorkerInfo,
    /// Times the worker gave up the CPU because an app fell behind.
    yields_for_apps: u64,
    /// Times the loop slept in poll(2).
    sleeps: u64,
    /// The other workers' inboxes, and this worker's index among them (several workers).
    handoff: Option<(std::sync::Arc<crate::handoff::Handoff>, usize)>,
    /// This worker's copy of who owns which flow, brought up to date once per turn.
    owners: crate::handoff::OwnersView,
    /// Sockets on RX queues of other workers' ports, by port ([`crate::queue_spread`]).
    relays: HashMap<u32, queue_relay::Relay>,
    /// The UMEM the next AF_XDP port joins (room for another port).
    umem_pool: Option<std::rc::Rc<crate::xdp_umem::SharedUmem>>,
    /// AF_XDP ports frames were forwarded onto in place during the batch being received:
    /// kicked once at its end.
    tx_kick_due: Vec<u32>,
    /// Ports with an egress cap or queue bound set (`o7sctl port set`), by port id.
    shapers: HashMap<u32, crate::shaper::Shaper>,
    /// Ports whose received data frames are impaired (`o7sctl port set ... loss`), by id.
    impairs: HashMap<u32, crate::impair::Impair>,
    /// A held or duplicated frame is being handled again: the impairments are not applied
    /// to it twice.
    reinjecting: bool,
    /// The zero of the nanosecond clock MB-ECN's slots count on.
    epoch: Instant,
}

/// How a flow's SDUs leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxPath {
    /// In Ethernet frames of its port.
    Eth,
    /// In datagrams of its UDP port.
    Udp,
    /// In DT PDUs on the N-1 flow of the next hop (a flow over a unicast IPCP).
    Uni,
}

/// The loop's view of the tables, rebuilt when they change (no allocation per turn).
#[derive(Default)]
struct Ids {
    /// AF_PACKET and UDP ports (polled).
    ports: Vec<u32>,
    /// Ports with an AF_XDP socket (rings read directly).
    xdp: Vec<u32>,
    /// Other workers' ports with RX queues bound here (rings read directly).
    relays: Vec<u32>,
    /// Flows, with the path their SDUs take.
    flows: Vec<(u64, TxPath)>,
    ready: Vec<bool>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("ports", &self.ports.len())
            .field("flows", &self.flows.len())
            .finish()
    }
}

impl Dataplane {
    /// A data plane driven by `ctl`, pinned as `O7S_DP_CORE` says; it outlives its o7sd
    /// when `O7S_DP_SOCK` names its socket ([`crate::upstream`]).
    pub fn new(ctl: Channel) -> Self {
        Self::with_upstream(crate::upstream::Upstream::new(ctl), None)
    }

    /// A data plane driven by `ctl`, pinned to CPU `core` when given (else as
    /// `O7S_DP_CORE` says): one worker of several (the router deals with o7sd).
    pub fn with_core(ctl: Channel, core: Option<String>) -> Self {
        Self::with_upstream(crate::upstream::Upstream::plain(ctl), core)
    }

    fn with_upstream(up: crate::upstream::Upstream, core: Option<String>) -> Self {
        Self {
            up,
            out: CtlOut::default(),
            rates: Rates::from_env(),

            core,
            ports: HashMap::default(),
            uports: HashMap::default(),
            flows: HashMap::default(),
            tab: crate::packet_path::Tables::default(),
            unis: HashMap::default(),
            now: Instant::now(),
            tables_changed: true,
            worker: WorkerInfo::default(),
            yields_for_apps: 0,
            sleeps: 0,
            buf: vec![0u8; 65536],
            frame: Vec::with_capacity(65536),
            pdu: Vec::with_capacity(65536),
            handoff: None,
            owners: crate::handoff::OwnersView::default(),
            relays: HashMap::default(),
            umem_pool: None,
            tx_kick_due: Vec::new(),
            shapers: HashMap::default(),
            impairs: HashMap::default(),
            reinjecting: false,
            epoch: Instant::now(),
        }
    }

    /// This data plane is worker `index` of several that hand each other PDUs through
    /// `handoff`.
    pub fn with_handoff(
        mut self,
        handoff: std::sync::Arc<crate::handoff::Handoff>,
        index: usize,
    ) -> Self {
        self.handoff = Some((handoff, index));
        self
    }

    /// Runs until `o7sd` says stop (or closes the channel when the data plane has no
    /// socket to be adopted on, or an orphan has no flow left); the apps' flows are marked
    /// closed as it ends.
    pub fn run(&mut self) -> io::Result<()> {
        let r = self.run_loop();
        for f in self.flows.values() {
            f.mem.flags().fetch_or(flags::CLOSED, Ordering::SeqCst);
            f.rx_kick.kick();
        }
        r
    }

    fn run_loop(&mut self) -> io::Result<()> {
        self.setup_worker();
        let spin = Duration::from_micros(self.worker.spin_us);
        let mut last_check = Instant::now();
        let mut last_work = Instant::now()
            .checked_sub(spin)
            .unwrap_or_else(Instant::now);
        let mut ids = Ids::default();
        let mut turn: u32 = 0;
        loop {
            if std::mem::take(&mut self.tables_changed) {
                self.rebuild_ids(&mut ids);
            }
            self.now = Instant::now();
            // Who owns which flow, when another worker changed it (an atomic load otherwise).
            let requests = match &self.handoff {
                Some((h, w)) => {
                    h.refresh(&mut self.owners);
                    h.has_requests(*w)
                }
                None => false,
            };
            // Another worker asks this one to bind or close RX queues of its port.
            if requests {
                self.serve_requests();
            }
            let spinning = self.now.duration_since(last_work) < spin;
            turn = turn.wrapping_add(1);
            // While spinning, the AF_XDP and flow rings are read directly; the system call
            // that looks at the control channel, the sockets and the kicks is made every
            // POLL_EVERY turns only.
            let mut work = 0;
            if !spinning || turn % POLL_EVERY == 0 {
                let (ctl_ready, up_ready) = self.poll_once(&mut ids, spinning)?;
                if up_ready && !self.tend_upstream() {
                    return Ok(());
                }
                // Up to CTL_BATCH messages from o7sd at once: a request (o7sctl stats) must
                // not wait behind frames to send one per turn.
                if ctl_ready {
                    for _ in 0..CTL_BATCH {
                        if !self.handle_ctl()? {
                            return Ok(());
                        }
                        if self.tables_changed
                            || !o7s::ipc::wait_readable(self.up.ctl.as_fd(), Some(Duration::ZERO))?
                        {
                            break;
                        }
                    }
                }
                if self.tables_changed {
                    continue;
                }
                for (i, id) in ids.ports.iter().enumerate() {
                    if !ids.ready.get(i).copied().unwrap_or(false) {
                        continue;
                    }
                    work += if self.uports.contains_key(id) {
                        self.rx_udp(*id)
                    } else {
                        self.rx_port(*id)
                    };
                }
            }
            for id in &ids.xdp {
                work += self.rx_xdp(*id);
            }
            for id in &ids.relays {
                work += self.rx_relay(*id);
            }
            for &(id, path) in &ids.flows {
                work += self.tx_any(id, path);
            }
            work += self.drain_handoff();
            work += self.drain_shapers();
            work += self.release_impaired();
            work += self.flush_staged_tx();
            self.kick_apps();
            if self.up.is_orphan() {
                // Nobody reads it until an o7sd adopts us (which gets the state then).
                self.out.clear();
            } else if !self.out.is_empty() && self.flush_out().is_err() && !self.lost_o7sd() {
                return Ok(());
            }
            if work > 0 {
                last_work = self.now;
            } else if spinning {
                std::thread::yield_now();
            }
            if self.now.duration_since(last_check) >= Duration::from_millis(100) {
                last_check = self.now;
                self.check_timeouts()?;
                self.check_apps();
                self.report_relays();
                if self.up.has_pending() && !self.tend_upstream() {
                    return Ok(());
                }
                // o7sd's own N-1 flows (pid 0) do not keep an orphan alive: only apps' do.
                if self
                    .up
                    .expired(self.now, self.flows.values().any(|f| f.pid > 0))
                {
                    tracing::info!("no o7sd and no flow left: exiting");
                    return Ok(());
                }
            }
        }
    }

    /// Pins the worker (`O7S_DP_CORE`) and sets its polling (`O7S_DP_BUSY_POLL`,
    /// `O7S_DP_SPIN_US`): adaptive polling keeps polling without sleeping for `spin_us` after
    /// the last packet, so that a reply in flight does not pay for a wake-up; busy polling
    /// never sleeps.
    fn setup_worker(&mut self) {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let busy = env("O7S_DP_BUSY_POLL").is_some_and(|v| v != "0");
        let spin_us = if busy {
            u64::MAX / 4
        } else {
            env("O7S_DP_SPIN_US")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_SPIN_US)
        };
        let forward_copy = env("O7S_DP_FORWARD_COPY").is_some_and(|v| v != "0");
        if forward_copy {
            tracing::info!(
                "O7S_DP_FORWARD_COPY: DT PDUs between AF_XDP ports are copied, not forwarded in place"
            );
        }
        self.worker = WorkerInfo {
            core: None,
            pin_error: None,
            busy_poll: busy,
            spin_us,
            forward_copy,
            ..WorkerInfo::default()
        };
        if let Some(c) = self.core.clone().or_else(|| env("O7S_DP_CORE")) {
            match pin_to(&c) {
                Ok(core) => {
                    tracing::info!("worker pinned to CPU {core}");
                    self.worker.core = Some(core);
                }
                Err(e) => {
                    tracing::warn!("worker not pinned: {e}");
                    self.worker.pin_error = Some(e.to_string());
                }
            }
        }
        if busy {
            tracing::info!("busy polling: the worker never sleeps");
        }
    }

    fn rebuild_ids(&self, ids: &mut Ids) {
        ids.ports.clear();
        ids.ports.extend(self.ports.keys().copied());
        ids.ports.extend(self.uports.keys().copied());
        ids.xdp.clear();
        ids.xdp.extend(
            self.ports
                .iter()
                .filter(|(_, p)| p.xdp.is_some())
                .map(|(k, _)| *k),
        );
        ids.relays.clear();
        ids.relays.extend(self.relays.keys().copied());
        ids.flows.clear();
        ids.flows
            .extend(self.flows.keys().map(|id| (*id, self.tx_path(*id))));
    }

    /// One poll over the control channel, the AF_PACKET/UDP sockets and the flows' tx kicks
    /// (sleeping up to 100 ms unless `spinning` or an app's ring has SDUs). Sets
    /// `ids.ready` for the ports; returns whether the control channel is readable.
    fn poll_once(&mut self, ids: &mut Ids, spinning: bool) -> io::Result<(bool, bool)> {
        let mut fds = Vec::with_capacity(1 + ids.ports.len() + ids.flows.len());
        // Room in the control channel matters only while messages wait for o7sd.
        let ctl_events = if self.out.is_empty() {
            PollFlags::POLLIN
        } else {
            PollFlags::POLLIN | PollFlags::POLLOUT
        };
        fds.push(PollFd::new(self.up.ctl.as_fd(), ctl_events));
        for id in &ids.ports {
            if let Some(p) = self.ports.get(id) {
                fds.push(PollFd::new(p.sock.as_fd(), PollFlags::POLLIN));
            } else if let Some(u) = self.uports.get(id) {
                fds.push(PollFd::new(u.sock.as_fd(), PollFlags::POLLIN));
            }
        }
        let mut pending_tx = false;
        for (id, _) in &ids.flows {
            if let Some(f) = self.flows.get(id) {
                // Ask the app to kick us when it writes (not needed while spinning).
                f.mem
                    .ring(Dir::Tx)
                    .waiting()
                    .store(u32::from(!spinning), Ordering::SeqCst);
                fds.push(PollFd::new(f.tx_kick.as_fd(), PollFlags::POLLIN));
            }
        }
        let up_at = fds.len();
        fds.extend(self.up.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        let up_len = fds.len() - up_at;
        // Other workers kick us when they hand us a PDU while we sleep.
        if let Some(fd) = self.handoff.as_ref().and_then(|(h, w)| h.kick_fd(*w)) {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        if !spinning {
            for id in &ids.xdp {
                if let Some(x) = self.ports.get(id).and_then(|p| p.xdp.as_ref()) {
                    fds.extend(x.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
                }
            }
            for r in self.relays.values() {
                fds.extend(r.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
            }
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        for (id, _) in &ids.flows {
            if let Some(f) = self.flows.get(id) {
                // A writer held by its MB-ECN window waits for its time, below.
                let held = f.ca.as_ref().is_some_and(|c| c.held(self.now));
                // A corrupt ring is no work (its flow is removed at the next look at the
                // apps): with it as work the loop would never sleep.
                pending_tx |= !held && f.mem.ring(Dir::Tx).len().is_ok_and(|n| n > 0);
            }
        }
        if let Some((h, w)) = &self.handoff {
            // Say we may sleep, then look once more: a PDU pushed after this kicks us.
            h.set_sleeping(*w, !(pending_tx || spinning));
            pending_tx |= !h.is_empty(*w) || h.has_requests(*w);
        }
        // Egress caps and held writers wake the loop when their time comes, to the
        // microsecond (ppoll): woken on whole milliseconds, as poll's timeout counts, paced
        // writers sent a millisecond's PDUs at once and the one that went second saw the
        // first one's behind it in the capped port's queue, marked higher every time and
        // kept a smaller share (proto/tests/mbecn_sim.rs).
        let timed = self.time_deadline();
        let timeout = if pending_tx || spinning || timed == Some(Duration::ZERO) {
            Duration::ZERO
        } else {
            self.sleeps += 1;
            timed.map_or(IDLE_POLL, |d| d.min(IDLE_POLL))
        };
        let polled = ppoll(&mut fds, Some(TimeSpec::from(timeout)), None);
        if let Some((h, w)) = &self.handoff {
            h.set_sleeping(*w, false);
        }
        if !timeout.is_zero() {
            // We may have slept: the turn's time is now, not when it began. (With the
            // time before the sleep, the work that woke us looked as old as the sleep was
            // long, and the loop went back to sleep instead of spinning for the reply.)
            self.now = Instant::now();
        }
        match polled {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
        let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
        let ctl_ready = fds.first().is_some_and(|p| {
            p.revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        });
        ids.ready.clear();
        ids.ready
            .extend(fds.iter().skip(1).take(ids.ports.len()).map(ready));
        let kicked: Vec<bool> = fds
            .iter()
            .skip(1 + ids.ports.len())
            .take(ids.flows.len())
            .map(ready)
            .collect();
        let up_ready = fds.iter().skip(up_at).take(up_len).any(ready);
        drop(fds);
        for ((id, _), k) in ids.flows.iter().zip(kicked) {
            if k {
                if let Some(f) = self.flows.get(id) {
                    f.tx_kick.drain();
                }
            }
        }
        Ok((ctl_ready, up_ready))
    }

    /// Flushes the AF_XDP ports whose tx queue still holds frames (their ring was full at
    /// the last flush): they go as soon as the ring has room, not with the port's next
    /// traffic. How many ports had some (work: the loop keeps polling while they wait).
    fn flush_staged_tx(&mut self) -> usize {
        let mut n = 0;
        for p in self.ports.values_mut() {
            if let Some(x) = p.xdp.as_mut().filter(|x| x.has_staged()) {
                x.flush();
                n += 1;
            }
        }
        n
    }

    /// Wakes the apps that sleep on an rx ring that received SDUs in this batch. When an
    /// app's ring is more than half full, gives up the CPU once: the app may share it with
    /// us, and while we keep busy it would only run when the scheduler preempts us, by which
    /// time its ring can overflow. (Frames wait meanwhile in the port's own ring.)
    fn kick_apps(&mut self) {
        let mut behind = false;
        for f in self.flows.values_mut() {
            if std::mem::take(&mut f.kick_due) {
                f.rx_kick.kick();
            }
            let rx = f.mem.ring(Dir::Rx);
            behind |= rx.len().is_ok_and(|n| n > f.mem.slots() / 2);
        }
        if behind {
            self.yields_for_apps += 1;
            std::thread::yield_now();
        }
    }

    /// Marks an Ethernet port down, once, when its device is gone or was replaced by another
    /// of the same name (new interface index): the port's sockets are bound to the old one.
    fn check_links(&mut self) {
        let mut gone = Vec::new();
        for (id, p) in &mut self.ports {
            if p.stats.link != "up" {
                continue;
            }
            let why = match nix::net::if_::if_nametoindex(p.dev.as_str()) {
                Ok(i) if i as i32 == p.ifindex => continue,
                Ok(i) => format!("device replaced (interface index {} -> {i})", p.ifindex),
                Err(e) => format!("device gone ({e})"),
            };
            tracing::warn!(
                "port {id}: {}: {why}; the port is down (destroy its IPCP, or restart o7sd once the device is back)",
                p.dev
            );
            p.stats.link = format!("down: {why}");
            gone.push(*id);
        }
        // Its flows are down at once (not after their peer time-out): their apps and o7sd
        // learn it now (a unicast layer moves to another next hop).
        for port in gone {
            let flows: Vec<u64> = self
                .flows
                .iter()
                .filter(|(_, f)| f.port == port && !f.stats.down && f.uni.is_none())
                .map(|(id, _)| *id)
                .collect();
            for flow in flows {
                if let Some(f) = self.flows.get_mut(&flow) {
                    f.stats.down = true;
                    f.mem.flags().fetch_or(flags::PEER_DOWN, Ordering::SeqCst);
                    f.rx_kick.kick();
                }
                tracing::info!("flow {flow}: its port's device is gone: down");
                self.out.push(FromDp::FlowDown { flow });
            }
        }
    }

    /// How `flow`'s SDUs leave.
    fn tx_path(&self, flow: u64) -> TxPath {
        match self.flows.get(&flow) {
            Some(f) if f.uni.is_some() => TxPath::Uni,
            Some(f) if self.uports.contains_key(&f.port) => TxPath::Udp,
            _ => TxPath::Eth,
        }
    }

    /// Sends what waits in `flow`'s tx ring (a batch).
    fn tx_any(&mut self, flow: u64, path: TxPath) -> usize {
        match path {
            TxPath::Eth => self.tx_flow(flow),
            TxPath::Udp => self.tx_udp(flow),
            TxPath::Uni => self.tx_uni(flow),
        }
    }

    /// Every 100 ms: flows whose peer has been silent for their timeout go down; flows that
    /// have sent nothing for a quarter of it send a keepalive (an empty SDU), so that a flow
    /// that only receives, or is idle, stays up at its peer (o7s behaviour: the facts
    /// describe no keepalive on the unicast layer's N-1 flows, unicast facts §2.3).
    fn check_timeouts(&mut self) -> io::Result<()> {
        self.check_links();
        let now = Instant::now();
        let mut down = Vec::new();
        let mut quiet = Vec::new();
        for (id, f) in &mut self.flows {
            if f.stats.down {
                continue;
            }
            if now.duration_since(f.last_rx) > f.timeout {
                f.stats.down = true;
                f.mem.flags().fetch_or(flags::PEER_DOWN, Ordering::SeqCst);
                f.rx_kick.kick();
                down.push(*id);
            } else if now.duration_since(f.last_tx) >= f.timeout / 4 {
                quiet.push(*id);
            }
        }
        for flow in quiet {
            let sent = match self.tx_path(flow) {
                TxPath::Udp => self.keepalive_udp(flow),
                TxPath::Eth => self.keepalive_eth(flow),
                TxPath::Uni => self.keepalive_uni(flow),
            };
            if let Some(f) = self.flows.get_mut(&flow) {
                // Counted and timed even when the port refused it: retried a quarter
                // timeout later, not every 100 ms.
                f.last_tx = now;
                if sent {
                    f.stats.tx_keepalives += 1;
                }
            }
        }
        for flow in down {
            tracing::info!("flow {flow}: peer timed out");
            self.out.push(FromDp::FlowDown { flow });
        }
        Ok(())
    }
}

impl Dataplane {
    /// Sends what waits for o7sd as far as the channel takes it now; `Err` when o7sd is
    /// gone.
    fn flush_out(&mut self) -> io::Result<()> {
        self.out.flush(&self.up.ctl)
    }

    /// Queues a management frame or datagram of port `port` for o7sd; counted on the port
    /// when o7sd is behind and it is dropped.
    fn mgmt_to_o7sd(&mut self, msg: FromDp, port: u32) {
        if !self.out.push_mgmt(msg) {
            if let Some(p) = self.ports.get_mut(&port) {
                p.stats.drop_mgmt_backlog += 1;
            } else if let Some(u) = self.uports.get_mut(&port) {
                u.stats.drop_mgmt_backlog += 1;
            }
        }
    }
}

/// Counts a policer's verdict on a port; whether the message may go on.
fn policed(v: Verdict, stats: &mut PortStats) -> bool {
    match v {
        Verdict::Pass => true,
        Verdict::SourceLimit => {
            stats.drop_mgmt_rate_source += 1;
            false
        }
        Verdict::PortLimit => {
            stats.drop_mgmt_rate_port += 1;
            false
        }
    }
}

/// Why a worker could not be pinned to its CPU (it runs unpinned, and says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The CPU is not a number.
    #[error("CPU '{0}' is not a number")]
    NotANumber(String),
    /// The CPUs this process may use cannot be listed.
    #[error("cannot list the CPUs this process may use")]
    NoList,
    /// The CPU is not one of them.
    #[error("CPU {0} is not available to this process")]
    Unavailable(usize),
    /// The kernel refused.
    #[error("sched_setaffinity to CPU {0} failed")]
    Refused(usize),
}

/// Pins the calling thread to CPU `spec` (a number).
fn pin_to(spec: &str) -> Result<usize, PinError> {
    let want: usize = spec
        .parse()
        .map_err(|_| PinError::NotANumber(spec.to_string()))?;
    let ids = core_affinity::get_core_ids().ok_or(PinError::NoList)?;
    let id = ids
        .into_iter()
        .find(|c| c.id == want)
        .ok_or(PinError::Unavailable(want))?;
    if core_affinity::set_for_current(id) {
        Ok(want)
    } else {
        Err(PinError::Refused(want))
    }
}
