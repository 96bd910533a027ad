//! The data-plane loop: polls the control channel, the ports and the apps' tx kicks, moves
//! SDUs between ports and flow rings, and reports management frames to `o7sd`.

use crate::afpacket::{dev_info, PacketSocket, ETH_P_802_2};
use crate::frames::{self, build_dix, build_dix_with, build_llc, build_llc_with, Parsed};
use crate::msg::{DpStats, FlowStats, FromDp, PortKind, PortStats, ToDp, WorkerInfo};
use crate::udp::UdpPort;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
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
/// Most SDUs taken from one ring per turn (fairness between flows).
const TX_BATCH: usize = 64;

struct Port {
    dev: String,
    kind: PortKind,
    mac: [u8; 6],
    /// Management frames (and data when AF_XDP is not in use).
    sock: PacketSocket,
    /// The AF_XDP socket for data frames, when the XDP path is up.
    xdp: Option<crate::xdp::XdpPort>,
    stats: PortStats,
}

struct UPort {
    sock: UdpPort,
    stats: PortStats,
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
    mem: FlowMem,
    tx_kick: Kick,
    rx_kick: Kick,
    /// The app sleeps on its rx ring and SDUs were pushed: kick it at the end of the batch.
    kick_due: bool,
    stats: FlowStats,
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
    /// encrypted (a copy into scratch space).
    fn deliver(&mut self, wire: &[u8], now: Instant) {
        let sdu = match &mut self.crypt {
            Some(c) => {
                if c.open(wire, &mut self.plain).is_err() {
                    self.stats.drop_decrypt += 1;
                    return;
                }
                self.plain.as_slice()
            }
            None => wire,
        };
        self.last_rx = now;
        push_rx(&self.mem, &mut self.stats, &mut self.kick_due, sdu);
    }

    /// As [`Flow::deliver`], decrypting in place when the SDU uses the current key (no copy).
    fn deliver_mut(&mut self, wire: &mut [u8], now: Instant) {
        if let Some(c) = &mut self.crypt {
            match c.open_in_place(wire) {
                Ok(Some(r)) => {
                    self.last_rx = now;
                    push_rx(
                        &self.mem,
                        &mut self.stats,
                        &mut self.kick_due,
                        wire.get(r).unwrap_or(&[]),
                    );
                    return;
                }
                Ok(None) => {}
                Err(_) => {
                    self.stats.drop_decrypt += 1;
                    return;
                }
            }
        }
        self.deliver(wire, now);
    }
}

/// The data plane's state.
pub struct Dataplane {
    ctl: Channel,
    /// The CPU to pin to, when this is one worker of several.
    core: Option<String>,
    ports: HashMap<u32, Port>,
    uports: HashMap<u32, UPort>,
    flows: HashMap<u64, Flow>,
    by_local: HashMap<(u32, u32), u64>,
    buf: Vec<u8>,
    frame: Vec<u8>,
    /// The time at the start of this turn of the loop (one clock read per turn).
    now: Instant,
    /// Ports or flows were added or removed: the loop's id lists must be rebuilt.
    tables_changed: bool,
    /// Pinning and polling, as reported to o7sd.
    worker: WorkerInfo,
    /// Times the worker gave up the CPU because an app fell behind.
    yields_for_apps: u64,
}

/// The loop's view of the tables, rebuilt when they change (no allocation per turn).
#[derive(Default)]
struct Ids {
    /// AF_PACKET and UDP ports (polled).
    ports: Vec<u32>,
    /// Ports with an AF_XDP socket (rings read directly).
    xdp: Vec<u32>,
    /// Flows, with whether they go over UDP.
    flows: Vec<(u64, bool)>,
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
    /// A data plane driven by `ctl`, pinned as `O7S_DP_CORE` says.
    pub fn new(ctl: Channel) -> Self {
        Self::with_core(ctl, None)
    }

    /// A data plane driven by `ctl`, pinned to CPU `core` when given (else as
    /// `O7S_DP_CORE` says): one worker of several.
    pub fn with_core(ctl: Channel, core: Option<String>) -> Self {
        Self {
            ctl,
            core,
            ports: HashMap::default(),
            uports: HashMap::default(),
            flows: HashMap::default(),
            by_local: HashMap::default(),
            now: Instant::now(),
            tables_changed: true,
            worker: WorkerInfo::default(),
            yields_for_apps: 0,
            buf: vec![0u8; 65536],
            frame: Vec::with_capacity(65536),
        }
    }

    /// Runs until `o7sd` says stop or closes the channel.
    pub fn run(&mut self) -> io::Result<()> {
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
            let spinning = self.now.duration_since(last_work) < spin;
            turn = turn.wrapping_add(1);
            // While spinning, the AF_XDP and flow rings are read directly; the system call
            // that looks at the control channel, the sockets and the kicks is made every
            // POLL_EVERY turns only.
            let mut work = 0;
            if !spinning || turn % POLL_EVERY == 0 {
                let ctl_ready = self.poll_once(&mut ids, spinning)?;
                if ctl_ready && !self.handle_ctl()? {
                    return Ok(());
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
            for &(id, udp) in &ids.flows {
                work += if udp {
                    self.tx_udp(id)
                } else {
                    self.tx_flow(id)
                };
            }
            self.kick_apps();
            if work > 0 {
                last_work = self.now;
            } else if spinning {
                std::thread::yield_now();
            }
            if self.now.duration_since(last_check) >= Duration::from_millis(100) {
                last_check = self.now;
                self.check_timeouts()?;
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
        self.worker = WorkerInfo {
            core: None,
            pin_error: None,
            busy_poll: busy,
            spin_us,
            yields_for_apps: 0,
        };
        if let Some(c) = self.core.clone().or_else(|| env("O7S_DP_CORE")) {
            match pin_to(&c) {
                Ok(core) => {
                    tracing::info!("worker pinned to CPU {core}");
                    self.worker.core = Some(core);
                }
                Err(e) => {
                    tracing::warn!("worker not pinned: {e}");
                    self.worker.pin_error = Some(e);
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
        ids.flows.clear();
        ids.flows.extend(
            self.flows
                .iter()
                .map(|(id, f)| (*id, self.uports.contains_key(&f.port))),
        );
    }

    /// One poll over the control channel, the AF_PACKET/UDP sockets and the flows' tx kicks
    /// (sleeping up to 100 ms unless `spinning` or an app's ring has SDUs). Sets
    /// `ids.ready` for the ports; returns whether the control channel is readable.
    fn poll_once(&mut self, ids: &mut Ids, spinning: bool) -> io::Result<bool> {
        let mut fds = Vec::with_capacity(1 + ids.ports.len() + ids.flows.len());
        fds.push(PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN));
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
        if !spinning {
            for id in &ids.xdp {
                if let Some(x) = self.ports.get(id).and_then(|p| p.xdp.as_ref()) {
                    fds.extend(x.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
                }
            }
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        for (id, _) in &ids.flows {
            if let Some(f) = self.flows.get(id) {
                pending_tx |= !f.mem.ring(Dir::Tx).is_empty();
            }
        }
        let timeout = if pending_tx || spinning {
            PollTimeout::ZERO
        } else {
            PollTimeout::from(100u16)
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
        let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
        let ctl_ready = fds.first().is_some_and(ready);
        ids.ready.clear();
        ids.ready
            .extend(fds.iter().skip(1).take(ids.ports.len()).map(ready));
        let kicked: Vec<bool> = fds
            .iter()
            .skip(1 + ids.ports.len())
            .take(ids.flows.len())
            .map(ready)
            .collect();
        drop(fds);
        for ((id, _), k) in ids.flows.iter().zip(kicked) {
            if k {
                if let Some(f) = self.flows.get(id) {
                    f.tx_kick.drain();
                }
            }
        }
        Ok(ctl_ready)
    }

    /// Handles one control message; `false` to stop.
    fn handle_ctl(&mut self) -> io::Result<bool> {
        let (msg, fds) = match self.ctl.recv::<ToDp>() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::info!("o7sd closed the control channel: exiting");
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!("ignoring a bad control message: {e}");
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        match msg {
            ToDp::AddPort { port, dev, kind } => {
                let reply = match self.add_port(port, &dev, kind) {
                    Ok((mac, mtu, io_path)) => FromDp::PortUp {
                        port,
                        mac,
                        mtu,
                        io_path,
                    },
                    Err(e) => FromDp::PortError {
                        port,
                        error: format!("{dev}: {e}"),
                    },
                };
                self.ctl.send(&reply, &[])?;
            }
            ToDp::DelPort { port } => {
                self.ports.remove(&port);
                self.uports.remove(&port);
                self.tables_changed = true;
            }
            ToDp::SendMgmt { port, dst, payload } => self.send_mgmt(port, dst, &payload),
            ToDp::SendUdp { port, dst, payload } => {
                if let Some(u) = self.uports.get_mut(&port) {
                    match u.sock.send_to(&payload, &dst) {
                        Ok(()) => u.stats.tx_frames += 1,
                        Err(e) => {
                            u.stats.tx_errors += 1;
                            tracing::warn!("port {port}: send to {dst}: {e}");
                        }
                    }
                }
            }
            ToDp::AddFlow {
                flow,
                port,
                local,
                remote,
                peer,
                timeout_ms,
                peer_addr,
                crypt,
            } => {
                let cipher_nid = crypt.as_ref().map(|c| c.cipher).unwrap_or(0);
                let crypt = match crypt {
                    None => None,
                    Some(c) => {
                        let mut key = [0u8; 32];
                        let made = (c.key.len() == 32)
                            .then(|| {
                                key.copy_from_slice(&c.key);
                                crate::crypt::Crypt::new(c.cipher, key, c.rotation_bits)
                            })
                            .flatten();
                        if made.is_none() {
                            tracing::warn!(
                                "flow {flow}: unusable cipher {} or key; flow refused",
                                c.cipher
                            );
                            return Ok(true);
                        }
                        made
                    }
                };
                let mut it = fds.into_iter();
                let (Some(mem), Some(tx), Some(rx)) = (it.next(), it.next(), it.next()) else {
                    tracing::warn!("flow {flow}: AddFlow without descriptors");
                    return Ok(true);
                };
                match FlowMem::open(&mem) {
                    Ok(mem) => {
                        self.by_local.insert((port, local), flow);
                        self.tables_changed = true;
                        self.flows.insert(
                            flow,
                            Flow {
                                crypt,
                                plain: Vec::with_capacity(65536),
                                peer_addr,
                                port,
                                local,
                                remote,
                                peer,
                                timeout: Duration::from_millis(timeout_ms.max(1)),
                                last_rx: Instant::now(),
                                mem,
                                tx_kick: Kick::from_fd(tx),
                                rx_kick: Kick::from_fd(rx),
                                kick_due: false,
                                stats: FlowStats {
                                    flow,
                                    port,
                                    local,
                                    remote,
                                    cipher: cipher_nid,
                                    ..FlowStats::default()
                                },
                            },
                        );
                        tracing::debug!("flow {flow}: port {port} local {local} remote {remote}");
                    }
                    Err(e) => tracing::warn!("flow {flow}: bad flow memory: {e}"),
                }
            }
            ToDp::DelFlow { flow } => {
                // Send what the app wrote before it let the flow go: no data is lost.
                for _ in 0..64 {
                    let udp = self
                        .flows
                        .get(&flow)
                        .is_some_and(|f| self.uports.contains_key(&f.port));
                    let n = if udp {
                        self.tx_udp(flow)
                    } else {
                        self.tx_flow(flow)
                    };
                    if n == 0 {
                        break;
                    }
                }
                self.tables_changed = true;
                if let Some(f) = self.flows.remove(&flow) {
                    self.by_local.remove(&(f.port, f.local));
                    f.mem.flags().fetch_or(flags::CLOSED, Ordering::SeqCst);
                    f.rx_kick.kick();
                }
            }
            ToDp::Stats => {
                for f in self.flows.values_mut() {
                    f.stats.key_rotations = f.crypt.as_ref().map(|c| c.rotations).unwrap_or(0);
                }
                for p in self.ports.values_mut() {
                    if let Some(x) = &mut p.xdp {
                        p.stats.rx_xdp = x.rx_frames;
                        p.stats.tx_xdp = x.tx_frames;
                        p.stats.tx_xdp_dropped = x.tx_dropped;
                        p.stats.xdp_redirected = x.counter(crate::xdp::counter::REDIRECT);
                        p.stats.xdp_mgmt_passed = x.counter(crate::xdp::counter::MGMT);
                        p.stats.umem_frames_accounted = x.accounted_frames();
                        p.stats.umem_frames = x.umem_frames();
                        p.stats.rx_xdp_per_queue = x.rx_per_queue();
                        p.stats.xdp_fill_wakeups = x.fill_wakeups();
                    }
                }
                let s = DpStats {
                    ports: self
                        .ports
                        .values()
                        .map(|p| p.stats.clone())
                        .chain(self.uports.values().map(|u| u.stats.clone()))
                        .collect(),
                    flows: self.flows.values().map(|f| f.stats.clone()).collect(),
                    worker: WorkerInfo {
                        yields_for_apps: self.yields_for_apps,
                        ..self.worker.clone()
                    },
                    workers: Vec::new(),
                };
                self.ctl.send(&FromDp::Stats(s), &[])?;
            }
            ToDp::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    fn add_udp(&mut self, id: u32, addr: SocketAddr) -> io::Result<([u8; 6], usize, String)> {
        let sock = UdpPort::bind(addr)?;
        let io_path = sock.describe();
        let mtu = o7s_wire::udp::MAX_PACKET - o7s_wire::udp::HEADER_LEN;
        tracing::info!("port {id}: udp {addr} mtu {mtu} via {io_path}");
        let stats = PortStats {
            port: id,
            dev: addr.to_string(),
            mac: "-".into(),
            mtu,
            io_path: io_path.clone(),
            ..PortStats::default()
        };
        self.uports.insert(id, UPort { sock, stats });
        self.tables_changed = true;
        Ok(([0; 6], mtu, io_path))
    }

    fn add_port(
        &mut self,
        id: u32,
        dev: &str,
        kind: PortKind,
    ) -> io::Result<([u8; 6], usize, String)> {
        let proto = match kind {
            PortKind::Dix { ethertype } => ethertype,
            PortKind::Llc => ETH_P_802_2,
            PortKind::Udp { addr } => return self.add_udp(id, addr),
        };
        let info = dev_info(dev)?;
        let sock = PacketSocket::open(info.ifindex, proto)?;
        let mtu = match kind {
            PortKind::Dix { .. } | PortKind::Udp { .. } => info.mtu.saturating_sub(dix::HEADER_LEN),
            PortKind::Llc => info
                .mtu
                .min(usize::from(llc::MAX_LENGTH))
                .saturating_sub(llc::HEADER_LEN),
        };
        // The I/O path: AF_XDP for data frames when it can be had (`O7S_DP_IO`: auto, af_xdp,
        // af_packet; `O7S_XDP_MODE`: skb (default; best on veth), driver or auto).
        let want = std::env::var("O7S_DP_IO").unwrap_or_else(|_| "auto".into());
        let mode_setting = std::env::var("O7S_XDP_MODE").unwrap_or_else(|_| "skb".into());
        let attach = crate::xdp::AttachMode::parse(&mode_setting).ok_or_else(|| {
            io::Error::other(format!(
                "O7S_XDP_MODE={mode_setting}: expected skb, driver or auto"
            ))
        })?;
        let (xdp, io_path) = if want == "af_packet" {
            (
                None,
                "af_packet (AF_XDP off by setting O7S_DP_IO=af_packet)".to_string(),
            )
        } else {
            let (et, llc) = match kind {
                PortKind::Dix { ethertype } => (Some(ethertype), false),
                _ => (None, true),
            };
            match crate::xdp::XdpPort::open(dev, et, llc, attach) {
                Ok(x) => {
                    let q = x.queues();
                    let stale = x
                        .stale_removed
                        .as_deref()
                        .map(|s| format!("; {s}"))
                        .unwrap_or_default();
                    let path = format!(
                        "af_xdp (XDP {}, {}, {q} RX queue{}, UMEM on {}{stale}) for data; af_packet for management",
                        x.attach_mode,
                        x.copy_mode,
                        if q == 1 { "" } else { "s" },
                        x.umem_pages
                    );
                    (Some(x), path)
                }
                Err(e) if want == "af_xdp" => {
                    return Err(io::Error::other(format!(
                        "AF_XDP required but unavailable: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(
                        "port {id}: {dev}: AF_XDP unavailable ({e}); falling back to AF_PACKET"
                    );
                    (
                        None,
                        format!("af_packet (fallback: AF_XDP unavailable: {e})"),
                    )
                }
            }
        };
        tracing::info!(
            "port {id}: {dev} mac {} mtu {mtu} via {io_path}",
            ethernet::mac_string(&info.mac)
        );
        let stats = PortStats {
            port: id,
            dev: dev.to_string(),
            mac: ethernet::mac_string(&info.mac),
            mtu,
            io_path: io_path.clone(),
            ..PortStats::default()
        };
        self.tables_changed = true;
        self.ports.insert(
            id,
            Port {
                dev: dev.to_string(),
                kind,
                mac: info.mac,
                sock,
                xdp,
                stats,
            },
        );
        Ok((info.mac, mtu, io_path))
    }

    fn send_mgmt(&mut self, port: u32, dst: [u8; 6], payload: &[u8]) {
        let Some(p) = self.ports.get_mut(&port) else {
            return;
        };
        let built = match p.kind {
            PortKind::Dix { ethertype } => {
                build_dix(&mut self.frame, dst, p.mac, ethertype, 0, payload)
            }
            PortKind::Llc => build_llc(
                &mut self.frame,
                dst,
                p.mac,
                llc::MGMT_SAP,
                llc::MGMT_SAP,
                payload,
            ),
            PortKind::Udp { .. } => Err(frames::SduTooLong(payload.len())),
        };
        if built.is_err() {
            p.stats.tx_errors += 1;
            return;
        }
        match p.sock.send(&self.frame) {
            Ok(()) => p.stats.tx_frames += 1,
            Err(e) => {
                p.stats.tx_errors += 1;
                tracing::warn!("port {}: send: {e}", p.dev);
            }
        }
    }

    fn rx_port(&mut self, id: u32) -> usize {
        let mut buf = std::mem::take(&mut self.buf);
        let mut done = 0;
        for _ in 0..256 {
            let Some(p) = self.ports.get_mut(&id) else {
                break;
            };
            let n = match p.sock.recv(&mut buf) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("port {}: recv: {e}", p.dev);
                    break;
                }
            };
            done += 1;
            if let Some(frame) = buf.get_mut(..n) {
                self.handle_frame(id, frame);
            }
            if done % 32 == 0 {
                self.kick_apps();
            }
        }
        self.kick_apps();
        self.buf = buf;
        done
    }

    /// Receives a batch of frames from a port's AF_XDP socket.
    fn rx_xdp(&mut self, id: u32) -> usize {
        let Some(mut x) = self.ports.get_mut(&id).and_then(|p| p.xdp.take()) else {
            return 0;
        };
        let mut done = 0;
        for _ in 0..16 {
            let n = x.recv(|frame| self.handle_frame(id, frame));
            self.kick_apps();
            done += n;
            if n == 0 {
                break;
            }
        }
        if let Some(p) = self.ports.get_mut(&id) {
            p.xdp = Some(x);
        }
        done
    }

    /// Parses one Ethernet frame of port `id` and hands it to o7sd (management) or to its
    /// flow (data).
    fn handle_frame(&mut self, id: u32, frame: &mut [u8]) {
        let Some(p) = self.ports.get_mut(&id) else {
            return;
        };
        let (eid, at, src, dst) = match frames::parse(p.kind, frame) {
            Parsed::NotOurs => return,
            Parsed::Malformed => {
                p.stats.drop_malformed += 1;
                return;
            }
            // Where the SDU lies in the frame, to hand it on mutably.
            Parsed::Sdu { eid, sdu, src, dst } => {
                let off = sdu.as_ptr() as usize - frame.as_ptr() as usize;
                (eid, off..off + sdu.len(), src, dst)
            }
        };
        let Some(sdu) = frame.get_mut(at) else {
            return;
        };
        p.stats.rx_frames += 1;
        if eid == 0 {
            p.stats.rx_mgmt += 1;
            let msg = FromDp::Mgmt {
                port: id,
                src,
                dst,
                payload: sdu.to_vec(),
            };
            if let Err(e) = self.ctl.send(&msg, &[]) {
                tracing::warn!("cannot pass a management frame to o7sd: {e}");
            }
            return;
        }
        let Some(f) = self
            .by_local
            .get(&(id, eid))
            .and_then(|fid| self.flows.get_mut(fid))
        else {
            p.stats.drop_unknown_eid += 1;
            return;
        };
        f.deliver_mut(sdu, self.now);
    }

    fn tx_flow(&mut self, id: u64) -> usize {
        let Some(f) = self.flows.get_mut(&id) else {
            return 0;
        };
        let Some(p) = self.ports.get_mut(&f.port) else {
            return 0;
        };
        let ring = f.mem.ring(Dir::Tx);
        let mut done = 0;
        for _ in 0..TX_BATCH {
            done += 1;
            let frame = &mut self.frame;
            let crypt = &mut f.crypt;
            let r = ring.pop_with(|plain| {
                // Sealed straight into the frame: IV | ciphertext | tag after the header.
                let len = match crypt {
                    Some(_) => plain.len() + crate::crypt::OVERHEAD,
                    None => plain.len(),
                };
                let write = |o: &mut Vec<u8>| match crypt {
                    Some(c) => c.seal(plain, o).is_ok(),
                    None => {
                        o.extend_from_slice(plain);
                        true
                    }
                };
                let built = match p.kind {
                    PortKind::Dix { ethertype } => {
                        build_dix_with(frame, f.peer, p.mac, ethertype, f.remote as u16, len, write)
                    }
                    PortKind::Llc => build_llc_with(
                        frame,
                        f.peer,
                        p.mac,
                        f.remote as u8,
                        f.local as u8,
                        len,
                        write,
                    ),
                    PortKind::Udp { .. } => Err(frames::SduTooLong(len)),
                };
                match built {
                    Ok(true) => Ok(len),
                    _ => Err(()),
                }
            });
            match r {
                Ok(None) => {
                    done -= 1;
                    break;
                }
                Ok(Some(Ok(len))) => {
                    let sent = match &mut p.xdp {
                        Some(x) => x.send(frame),
                        None => p.sock.send(frame).is_ok(),
                    };
                    if sent {
                        f.stats.tx_sdus += 1;
                        f.stats.tx_bytes += len as u64;
                        p.stats.tx_frames += 1;
                    } else {
                        p.stats.tx_errors += 1;
                    }
                }
                Ok(Some(Err(_))) => p.stats.tx_errors += 1,
                Err(_) => {
                    f.stats.drop_ring_corrupt += 1;
                    break;
                }
            }
        }
        if let Some(x) = &mut p.xdp {
            if done > 0 || x.tx_pending() {
                x.flush();
            }
        }
        done
    }

    /// Receives a batch of datagrams on a UDP port.
    fn rx_udp(&mut self, id: u32) -> usize {
        let mut done = 0;
        for _ in 0..8 {
            let Some(u) = self.uports.get_mut(&id) else {
                return done;
            };
            let n = match u.sock.recv_batch() {
                Ok(0) => return done,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("port {}: recv: {e}", u.stats.dev);
                    return done;
                }
            };
            done += n;
            for i in 0..n {
                let Some(u) = self.uports.get_mut(&id) else {
                    return done;
                };
                let Some((dg, src)) = u.sock.datagram(i) else {
                    u.stats.drop_truncated += 1;
                    continue;
                };
                let Ok(d) = o7s_wire::udp::Datagram::new_checked(dg) else {
                    u.stats.drop_truncated += 1;
                    continue;
                };
                u.stats.rx_frames += 1;
                let eid = d.eid();
                if eid == 0 {
                    u.stats.rx_mgmt += 1;
                    let msg = FromDp::UdpMgmt {
                        port: id,
                        src,
                        payload: dg.to_vec(),
                    };
                    if let Err(e) = self.ctl.send(&msg, &[]) {
                        tracing::warn!("cannot pass a management datagram to o7sd: {e}");
                    }
                    continue;
                }
                let Some(f) = self
                    .by_local
                    .get(&(id, eid))
                    .and_then(|fid| self.flows.get_mut(fid))
                else {
                    u.stats.drop_unknown_eid += 1;
                    continue;
                };
                if f.peer_addr != Some(src) {
                    u.stats.drop_wrong_peer += 1;
                    continue;
                }
                if let Some(dg) = u.sock.datagram_mut(i) {
                    f.deliver_mut(
                        dg.get_mut(o7s_wire::udp::HEADER_LEN..).unwrap_or(&mut []),
                        self.now,
                    );
                }
            }
            self.kick_apps();
            if n < crate::udp::BATCH {
                return done;
            }
        }
        done
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

    /// Sends a flow's waiting SDUs as one batch of datagrams.
    fn tx_udp(&mut self, id: u64) -> usize {
        let Some(f) = self.flows.get_mut(&id) else {
            return 0;
        };
        let Some(u) = self.uports.get_mut(&f.port) else {
            return 0;
        };
        let Some(dst) = f.peer_addr else {
            return 0;
        };
        let ring = f.mem.ring(Dir::Tx);
        // Datagrams back to back in one reused buffer, for one GSO send.
        let buf = &mut self.frame;
        buf.clear();
        let mut lens = [0usize; crate::udp::BATCH];
        let mut n = 0;
        while n < crate::udp::BATCH
            && buf.len() + 4 + crate::udp::MAX_DATAGRAM <= crate::udp::MAX_GSO_BYTES
        {
            let crypt = &mut f.crypt;
            match ring.pop_with(|sdu| {
                let start = buf.len();
                buf.extend_from_slice(&f.remote.to_be_bytes());
                match crypt {
                    Some(c) => {
                        if c.seal(sdu, buf).is_err() {
                            buf.truncate(start);
                            return 0;
                        }
                    }
                    None => buf.extend_from_slice(sdu),
                }
                buf.len() - start
            }) {
                Ok(Some(0)) => {}
                Ok(Some(l)) => {
                    if let Some(x) = lens.get_mut(n) {
                        *x = l;
                    }
                    n += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    f.stats.drop_ring_corrupt += 1;
                    break;
                }
            }
        }
        let lens = lens.get(..n).unwrap_or(&[]);
        if lens.is_empty() {
            return 0;
        }
        match u.sock.send_packed(&dst, buf, lens) {
            Ok(sent) => {
                u.stats.tx_frames += sent as u64;
                f.stats.tx_sdus += sent as u64;
                f.stats.tx_bytes += lens.iter().take(sent).map(|l| *l as u64 - 4).sum::<u64>();
                u.stats.tx_errors += (lens.len() - sent) as u64;
            }
            Err(e) => {
                u.stats.tx_errors += lens.len() as u64;
                tracing::debug!("udp send to {dst}: {e}");
            }
        }
        lens.len()
    }

    fn check_timeouts(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let mut down = Vec::new();
        for (id, f) in &mut self.flows {
            if !f.stats.down && now.duration_since(f.last_rx) > f.timeout {
                f.stats.down = true;
                f.mem.flags().fetch_or(flags::PEER_DOWN, Ordering::SeqCst);
                f.rx_kick.kick();
                down.push(*id);
            }
        }
        for flow in down {
            tracing::info!("flow {flow}: peer timed out");
            self.ctl.send(&FromDp::FlowDown { flow }, &[])?;
        }
        Ok(())
    }
}

/// Pins the calling thread to CPU `spec` (a number).
fn pin_to(spec: &str) -> Result<usize, String> {
    let want: usize = spec
        .parse()
        .map_err(|_| format!("CPU '{spec}' is not a number"))?;
    let ids = core_affinity::get_core_ids().ok_or("cannot list the CPUs this process may use")?;
    let id = ids
        .into_iter()
        .find(|c| c.id == want)
        .ok_or_else(|| format!("CPU {want} is not available to this process"))?;
    if core_affinity::set_for_current(id) {
        Ok(want)
    } else {
        Err(format!("sched_setaffinity to CPU {want} failed"))
    }
}
