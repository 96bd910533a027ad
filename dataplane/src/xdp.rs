//! AF_XDP ports: the XDP program of `bpf/` (loaded and attached with aya) steers an Ethernet
//! layer's data frames into an AF_XDP socket (xdpilone) whose UMEM the data plane reads and
//! writes; management frames and all other traffic go on to the kernel, where the port's
//! AF_PACKET socket still receives the management frames. One socket per RX queue of the
//! device, all sharing the port's UMEM (the XDP program redirects by queue index); frames
//! are sent through queue 0's socket. Zero-copy when XDP runs in the driver and the driver
//! offers it, copy mode otherwise (veth has no zero-copy); the attach mode is a setting.

#![allow(unsafe_code)]

use crate::queue_spread::QueueSet;
use crate::xdp_umem::{Frame, SharedUmem, FRAME_SIZE, SHARE_SLOTS};
use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use std::num::NonZeroU32;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, User};

/// The compiled XDP program (built by scripts/build-bpf.sh, checked in CI).
static PROGRAM: &[u8] = include_bytes!("../../bpf/xdp_o7s.o");

/// Frames given to the kernel for receiving, per RX queue: at 0.5 Mpps they cover a 16 ms
/// pause of the worker (a descheduled vCPU) without loss.
const RX_FRAMES: u32 = 8192;
/// Frames for sending (one port with one RX queue: 8192 + 4096 = 12288 frames, 24 MiB).
const TX_FRAMES: u32 = 4096;
/// Fill and rx rings hold every receive frame; completion and tx rings every send frame.
const RX_RING: u32 = RX_FRAMES;
const TX_RING: u32 = TX_FRAMES;
/// Most frames handled per call.
const BATCH: u32 = 64;
/// Most frames queued for the tx ring before they are written to it (one reservation and
/// one producer update per batch, not per frame).
const TX_STAGE: usize = 64;
/// Received frames are given back to the fill ring once this many have been read.
const REFILL_BATCH: usize = 64;

/// The XDP program's counters (same numbers as in bpf/xdp_o7s.c).
pub mod counter {
    /// Frames of an Ouroboros layer.
    pub const OURS: u32 = 0;
    /// Data frames sent to the AF_XDP socket.
    pub const REDIRECT: u32 = 1;
    /// Management frames passed to the kernel.
    pub const MGMT: u32 = 2;
    /// Data frames passed because no socket was bound.
    pub const NO_SOCKET: u32 = 3;
}

/// Most RX queues bound per port (the XDP program's socket map has 64 entries).
pub const MAX_QUEUES: u32 = 16;

/// The name of the program in bpf/xdp_o7s.c, as the kernel lists it.
const PROGRAM_NAME: &str = "o7s_xdp";

/// Where the XDP program is attached (`o7sd --xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Generic XDP in the kernel's receive path: works on every device (the default: on veth
    /// it is as fast as driver mode or faster).
    Skb,
    /// Native XDP in the driver: fails on devices without it.
    Driver,
    /// Driver mode where the driver has it, skb mode otherwise (the reason is kept).
    Auto,
}

impl AttachMode {
    /// From the setting's text: "skb", "driver" or "auto".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skb" => Some(Self::Skb),
            "driver" => Some(Self::Driver),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// One device RX queue's AF_XDP socket with its own fill/completion rings; all queues of a
/// port share the port's UMEM.
struct Queue {
    /// Device queue index (the key of the XDP program's socket map).
    id: u32,
    rx: RingRx,
    tx: RingTx,
    user: User,
    device: DeviceQueue,
    /// Received frames not yet back on the fill ring (it had no room when they were handed
    /// back: xdpilone may reserve fewer slots than asked when its view of the ring is stale).
    to_fill: Vec<Frame>,
    /// Frames on the fill ring or in the kernel's hands for receiving.
    kernel_rx: u32,
    /// Frames received on this queue.
    rx_frames: u64,
    /// Times the fill ring asked for a wake-up (need_wakeup) and got one.
    fill_wakeups: u64,
}

impl Queue {
    /// Gives the frames in `to_fill` back to the kernel's fill ring, as many as it takes.
    fn refill(&mut self) {
        // A reservation can come back short while xdpilone's cached view of the ring is
        // stale: ask again (the next call reloads the kernel's index).
        if self.to_fill.is_empty() {
            return;
        }
        for _ in 0..4 {
            if self.to_fill.is_empty() {
                break;
            }
            let want = u32::try_from(self.to_fill.len()).unwrap_or(u32::MAX);
            let mut w = self.device.fill(want);
            let n = w.insert(self.to_fill.iter().rev().map(Frame::addr));
            w.commit();
            // The frames the ring took are the kernel's now.
            self.to_fill.truncate(self.to_fill.len() - n as usize);
            self.kernel_rx += n;
            if n == 0 {
                break;
            }
        }
        // With need_wakeup the kernel flags the fill ring when it stopped for lack of
        // buffers and must be poked (a poll) to take the new ones.
        if self.device.needs_wakeup() {
            self.fill_wakeups += 1;
            self.device.wake();
        }
    }
}

/// The kernel's counters of a port's AF_XDP sockets (`XDP_STATISTICS`, summed over its RX
/// queues): frames lost between the XDP program's redirect and the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDrops {
    /// Frames dropped for want of a buffer (the fill ring was empty) or for being longer
    /// than a UMEM frame (`rx_dropped`).
    pub rx_dropped: u64,
    /// Frames dropped because the socket's rx ring was full: the worker fell behind
    /// (`rx_ring_full`).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (`rx_fill_ring_empty_descs`).
    pub fill_ring_empty: u64,
    /// Descriptors refused on the rings: by the kernel on the rx and tx rings
    /// (`rx_invalid_descs`, `tx_invalid_descs`: never more than zero unless the data plane
    /// wrote a bad one), and by the worker from the kernel's rx and completion rings
    /// ([`XdpPort::bad_descs`]).
    pub invalid_descs: u64,
}

/// A port's sockets, and whether the first is the UMEM's own.
type Sockets = (Vec<Queue>, bool);

/// The tx descriptor of `len` bytes at the start of `f`: the frame goes to the ring with it.
fn desc(f: Frame, len: u32) -> XdpDesc {
    XdpDesc {
        addr: f.addr(),
        len,
        options: 0,
    }
}

/// The tx descriptor of `len` bytes at `data`, an address inside `f` (a received packet
/// starts after the kernel's headroom): the frame goes to the ring with it.
fn desc_at(f: Frame, data: u64, len: u32) -> XdpDesc {
    debug_assert_eq!(Frame::from_ring(data), f, "the data lies in its frame");
    XdpDesc {
        addr: data,
        len,
        options: 0,
    }
}

/// The frame of the packet [`XdpPort::recv`] hands to its callback. It holds exactly one
/// frame, which goes back to the fill ring when the callback returns; sending the packet on
/// a port of the same UMEM ([`XdpPort::send_in_place`]) puts the packet's frame on that
/// port's tx ring and one of that port's free frames here in its place. No other way in or
/// out: the packet's frame cannot also go back to the fill ring, or be sent twice.
#[derive(Debug)]
pub struct RxSlot {
    frame: Frame,
    /// Where the packet starts (inside `frame`, after the kernel's headroom).
    data: u64,
    /// The UMEM it belongs to ([`XdpPort::umem_id`]).
    umem: usize,
}

impl RxSlot {
    /// The UMEM of its frame.
    pub fn umem(&self) -> usize {
        self.umem
    }
}

/// An AF_XDP port: one socket per RX queue of the device (up to [`MAX_QUEUES`]), all on one
/// UMEM (shared with another port of the worker where it fits: [`crate::xdp_umem`]);
/// frames are sent through queue 0's socket.
pub struct XdpPort {
    // Dropped in this order: the program, the sockets, then the UMEM (if no other port
    // holds it).
    /// The program (None on the sockets a worker binds for another worker's port:
    /// [`XdpPort::open_relay`]).
    ebpf: Option<Ebpf>,
    queues: Vec<Queue>,
    umem: Rc<SharedUmem>,
    /// Its queue 0's socket is the UMEM's own.
    owner: bool,
    /// Where the UMEM lives.
    pub umem_pages: crate::xdp_status::UmemPages,
    /// Whether the UMEM is shared with another port (frames forwarded in place).
    pub umem_shared: bool,
    /// The frames it holds (its share of the UMEM).
    frames: u32,
    /// Zero-copy, or copy and why.
    pub copy_mode: crate::xdp_status::CopyMode,
    /// Skb or driver mode, and for `auto` why.
    pub attach_mode: crate::xdp_status::Attached,
    /// The stale o7s programs removed from the device before attaching, if any.
    pub stale_removed: Option<String>,
    /// Frames free for sending.
    free_tx: Vec<Frame>,
    /// Frames queued for sending, in order, not yet on the tx ring: they go on it with one
    /// reservation when [`TX_STAGE`] wait or at [`XdpPort::flush`] (the frame, the
    /// packet's address in it, its length).
    tx_staged: Vec<(Frame, u64, u32)>,
    /// Frames on the tx ring not yet completed.
    tx_in_flight: u32,
    /// Writes of the tx ring (each one reservation and one producer update for a batch).
    pub tx_batches: u64,
    /// Wake-ups of the kernel for sending (sendto(2) on the socket: one per batch and per
    /// 32 descriptors in copy mode, none while the kernel does not ask).
    pub tx_wakeups: u64,
    /// Frames received through the sockets.
    pub rx_frames: u64,
    /// Frames sent through the socket.
    pub tx_frames: u64,
    /// Frames that could not be sent (no free UMEM frame, ring full).
    pub tx_dropped: u64,
    /// Descriptors the worker refused from the kernel's rx and completion rings: an
    /// address outside the UMEM (not given back: it is no frame of ours), a length past its
    /// frame, a completion beyond the frames in flight. Never more than zero with a kernel
    /// that keeps AF_XDP's rules; reported with the kernel's (`invalid_descs`).
    pub bad_descs: u64,
}

impl Drop for XdpPort {
    fn drop(&mut self) {
        self.umem.ports.set(self.umem.ports.get().saturating_sub(1));
        // The UMEM's own socket goes with its port (its queue sockets close after this),
        // so that the device's queue is free again; ports sharing the UMEM keep it.
        if self.owner {
            self.umem.close_owner();
        }
    }
}

impl std::fmt::Debug for XdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpPort")
            .field("queues", &self.queues.len())
            .field("rx_frames", &self.rx_frames)
            .field("tx_frames", &self.tx_frames)
            .finish()
    }
}

/// An error and its sources: "a: b: c".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn errno(what: &str, e: impl std::fmt::Debug) -> crate::xdp_error::XdpError {
    crate::xdp_error::step(what, e)
}

/// The name of the loaded program `id` (None when it is gone or cannot be read).
fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
}

/// Removes the o7s programs that an earlier run left attached to `dev` through netlink (a
/// bpf link, which o7s uses, is released with its process; a netlink attachment, made by
/// older kernels' fallback or by hand, outlives it). Says what it removed. Fails, naming the
/// program, when another tool's program is attached or a live data plane holds the device.
pub fn clear_stale(dev: &str) -> Result<Option<String>, crate::xdp_error::XdpError> {
    let ifindex = nix::net::if_::if_nametoindex(dev).map_err(|e| format!("{dev}: {e}"))?;
    let mut removed = Vec::new();
    for p in crate::xdp_netlink::attached(ifindex)? {
        let name = program_name(p.prog_id);
        let what = format!(
            "XDP program {} (id {}, {} mode)",
            name.as_deref().unwrap_or("?"),
            p.prog_id,
            p.mode.name()
        );
        if name.as_deref() != Some(PROGRAM_NAME) {
            return Err(format!(
                "{dev} already has {what} attached by another tool; o7s does not replace it"
            )
            .into());
        }
        crate::xdp_netlink::detach(ifindex, p.mode).map_err(|e| {
            format!("{dev}: {what} is held by a live process (another o7s data plane?): {e}")
        })?;
        tracing::warn!("{dev}: removed the stale {what} left attached by an earlier run");
        removed.push(format!("stale {what} removed"));
    }
    Ok((!removed.is_empty()).then(|| removed.join(", ")))
}

/// RX queues of `dev` as the kernel lists them in sysfs (1 when it cannot tell).
pub fn rx_queues(dev: &str) -> u32 {
    let dir = std::path::Path::new("/sys/class/net")
        .join(dev)
        .join("queues");
    let n = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    u32::try_from(n).unwrap_or(1).clamp(1, MAX_QUEUES)
}

impl XdpPort {
    /// Attaches the program to `dev` in `mode`, configured for `ethertype` (eth-dix) or LLC
    /// and the port's MAC `mac` (data frames to other stations stay the kernel's), and binds an AF_XDP socket on each of its RX queues: in zero-copy mode when XDP runs in
    /// the driver and the driver offers it, in copy mode otherwise ([`XdpPort::copy_mode`]
    /// says which and why). An o7s program that an earlier run left attached through netlink
    /// is removed first ([`XdpPort::stale_removed`]); another tool's program is not touched:
    /// the error names it.
    ///
    /// `pool` is the worker's UMEM with room for another port: the port joins it when it
    /// can (and leaves `pool` as it is), else it makes its own, with room for another
    /// port, and puts it in `pool`.
    pub fn open(
        dev: &str,
        ethertype: Option<u16>,
        llc: bool,
        mac: [u8; 6],
        mode: AttachMode,
        pool: &mut Option<Rc<SharedUmem>>,
        set: QueueSet,
    ) -> Result<Self, crate::xdp_error::XdpError> {
        let stale = clear_stale(dev)?;
        let mut p = match mode {
            AttachMode::Skb => Self::open_skb(dev, ethertype, llc, mac, pool, set)?,
            AttachMode::Driver => Self::open_driver(dev, ethertype, llc, mac, pool, set)?,
            AttachMode::Auto => match Self::open_driver(dev, ethertype, llc, mac, pool, set) {
                Ok(mut p) => {
                    p.attach_mode = crate::xdp_status::Attached::AutoDriver;
                    p
                }
                Err(e) => {
                    let mut p = Self::open_skb(dev, ethertype, llc, mac, pool, set)?;
                    p.attach_mode = crate::xdp_status::Attached::AutoSkb {
                        driver_refused: e.to_string(),
                    };
                    p
                }
            },
        };
        p.stale_removed = stale;
        Ok(p)
    }

    fn open_skb(
        dev: &str,
        ethertype: Option<u16>,
        llc: bool,
        mac: [u8; 6],
        pool: &mut Option<Rc<SharedUmem>>,
        set: QueueSet,
    ) -> Result<Self, crate::xdp_error::XdpError> {
        let mut p = Self::open_mode(dev, ethertype, llc, mac, (false, false), pool, set)?;
        p.copy_mode = crate::xdp_status::CopyMode::CopySkb;
        p.attach_mode = crate::xdp_status::Attached::Skb;
        Ok(p)
    }

    fn open_driver(
        dev: &str,
        ethertype: Option<u16>,
        llc: bool,
        mac: [u8; 6],
        pool: &mut Option<Rc<SharedUmem>>,
        set: QueueSet,
    ) -> Result<Self, crate::xdp_error::XdpError> {
        let mut p = match Self::open_mode(dev, ethertype, llc, mac, (true, true), pool, set) {
            Ok(mut p) => {
                p.copy_mode = crate::xdp_status::CopyMode::ZeroCopy;
                p
            }
            Err(e) => {
                // The first attempt's program and sockets are gone (dropped with it).
                let mut p = Self::open_mode(dev, ethertype, llc, mac, (true, false), pool, set)?;
                p.copy_mode = crate::xdp_status::CopyMode::CopyRefused { why: e.to_string() };
                p
            }
        };
        p.attach_mode = crate::xdp_status::Attached::Driver;
        Ok(p)
    }

    /// `(driver, zero_copy)`: where the program runs, and whether the sockets ask for
    /// zero-copy.
    fn open_mode(
        dev: &str,
        ethertype: Option<u16>,
        llc: bool,
        mac: [u8; 6],
        (driver, zero_copy): (bool, bool),
        pool: &mut Option<Rc<SharedUmem>>,
        set: QueueSet,
    ) -> Result<Self, crate::xdp_error::XdpError> {
        let mut ebpf = Ebpf::load(PROGRAM).map_err(|e| errno("loading bpf/xdp_o7s.o", e))?;
        {
            let prog: &mut Xdp = ebpf
                .program_mut("o7s_xdp")
                .ok_or("no o7s_xdp program in the object")?
                .try_into()
                .map_err(|e| errno("program type", e))?;
            prog.load().map_err(|e| errno("verifier", e))?;
            let mode = if driver {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            prog.attach(dev, mode)
                .map_err(|e| format!("attach: {}", error_chain(&e)))?;
        }
        {
            // bpf/xdp_o7s.c's `struct port_cfg`: the Ethertype (host order), llc, a pad
            // byte, the port's MAC, two pad bytes.
            let mut cfg: Array<&mut MapData, [u8; 12]> =
                Array::try_from(ebpf.map_mut("cfg").ok_or("no cfg map")?)
                    .map_err(|e| errno("cfg map", e))?;
            let [e0, e1] = ethertype.unwrap_or(0).to_ne_bytes();
            let [m0, m1, m2, m3, m4, m5] = mac;
            let v = [e0, e1, u8::from(llc), 0, m0, m1, m2, m3, m4, m5, 0, 0];
            cfg.set(0, v, 0).map_err(|e| errno("cfg map", e))?;
        }
        let ids = set.of(rx_queues(dev));
        Self::bind(dev, &ids, zero_copy, Some(pool), Some(ebpf), None)
    }

    /// Binds AF_XDP sockets on queues `queues` of `dev`, whose XDP program another
    /// worker's port attached, on a UMEM of their own (RX_FRAMES a queue, no frames for
    /// sending: it sends nothing; the worker's ports keep theirs), and puts them in that
    /// program's socket map `xsks`: the frames of those queues then come here
    /// ([`crate::queue_spread`]). Copy mode.
    pub fn open_relay(
        dev: &str,
        queues: &[u32],
        xsks: std::os::fd::OwnedFd,
    ) -> Result<Self, crate::xdp_error::XdpError> {
        let mut p = Self::bind(dev, queues, false, None, None, Some(xsks))?;
        p.copy_mode = crate::xdp_status::CopyMode::CopySkb;
        Ok(p)
    }

    /// A descriptor of the program's socket map, for the workers that bind the port's
    /// other queues ([`XdpPort::open_relay`]).
    pub fn xsks_fd(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        match self.ebpf.as_ref()?.map("xsks")? {
            aya::maps::Map::XskMap(m) => m.fd().as_fd().try_clone_to_owned().ok(),
            _ => None,
        }
    }

    /// The sockets of a port on queues `ids` of `dev` (with `ebpf`, its program, or for
    /// the program behind the socket map `xsks`), in the worker's UMEM `pool` (a port), or
    /// without one in a UMEM of their own with no frames for sending (a relay).
    fn bind(
        dev: &str,
        ids: &[u32],
        zero_copy: bool,
        pool: Option<&mut Option<Rc<SharedUmem>>>,
        ebpf: Option<Ebpf>,
        xsks: Option<std::os::fd::OwnedFd>,
    ) -> Result<Self, crate::xdp_error::XdpError> {
        if ids.is_empty() {
            return Err(format!("{dev}: no RX queue to bind").into());
        }
        let nq = u32::try_from(ids.len()).map_err(|_| "too many RX queues")?;
        let sends = pool.is_some();
        let frames = RX_FRAMES * nq + if sends { TX_FRAMES } else { 0 };
        // The worker's UMEM when this port fits in it (same mode); if the kernel will not
        // bind this device to it, a UMEM of its own.
        let joined = pool
            .as_deref()
            .and_then(Option::as_ref)
            .filter(|u| u.zero_copy == zero_copy && u.room() >= frames)
            .cloned();
        let mut fresh = false;
        let (umem, base, (queues, owner)) = match joined.map(|u| {
            let base = u.take(frames);
            (u, base)
        }) {
            Some((u, Some(base))) => match Self::sockets(dev, &u, base, ids, zero_copy) {
                Ok(q) => (u, base, q),
                Err(e) => {
                    u.untake(base, frames);
                    tracing::info!("{dev}: not sharing the worker's UMEM ({e}): one of its own");
                    fresh = true;
                    Self::own_umem(dev, frames, ids, zero_copy, sends)?
                }
            },
            _ => {
                fresh = true;
                Self::own_umem(dev, frames, ids, zero_copy, sends)?
            }
        };
        // From here a failure drops the port, which gives its share back (Drop).
        umem.ports.set(umem.ports.get() + 1);
        let free_tx = (base + RX_FRAMES * nq..base + frames)
            .filter_map(|i| umem.frame(i))
            .collect();
        let umem_pages = umem.pages.clone();
        let umem_shared = umem.ports.get() > 1;
        let mut port = Self {
            ebpf,
            queues,
            umem,
            owner,
            umem_pages,
            umem_shared,
            frames,
            copy_mode: crate::xdp_status::CopyMode::CopySkb,
            attach_mode: crate::xdp_status::Attached::Skb,
            stale_removed: None,
            free_tx,
            tx_staged: Vec::with_capacity(TX_STAGE),
            tx_in_flight: 0,
            tx_batches: 0,
            tx_wakeups: 0,
            rx_frames: 0,
            tx_frames: 0,
            tx_dropped: 0,
            bad_descs: 0,
        };
        match (port.ebpf.as_mut(), xsks) {
            (Some(ebpf), _) => {
                let mut map: XskMap<&mut MapData> =
                    XskMap::try_from(ebpf.map_mut("xsks").ok_or("no xsks map")?)
                        .map_err(|e| errno("xsks map", e))?;
                for q in &port.queues {
                    map.set(q.id, q.user.as_raw_fd(), 0)
                        .map_err(|e| errno("xsks map", e))?;
                }
            }
            (None, Some(fd)) => {
                let data = MapData::from_fd(fd).map_err(|e| errno("xsks map", e))?;
                let mut map: XskMap<MapData> = XskMap::try_from(aya::maps::Map::XskMap(data))
                    .map_err(|e| errno("xsks map", e))?;
                for q in &port.queues {
                    map.set(q.id, q.user.as_raw_fd(), 0)
                        .map_err(|e| errno("xsks map", e))?;
                }
            }
            (None, None) => return Err("no XDP program and no socket map".into()),
        }
        for q in &mut port.queues {
            q.refill();
            if q.kernel_rx != RX_FRAMES {
                return Err(format!(
                    "queue {}: fill ring took {} of {RX_FRAMES} frames",
                    q.id, q.kernel_rx
                )
                .into());
            }
        }
        // A new UMEM with room for another port is the one the worker's next port joins.
        if let Some(pool) = pool.filter(|_| fresh && port.umem.room() > 0) {
            *pool = Some(port.umem.clone());
        }
        Ok(port)
    }

    /// A UMEM of its own for a port of `frames` frames (with room for another port where
    /// `share` and that much memory can be registered), and the port's sockets on it (and
    /// whether the first is the UMEM's own: it is).
    fn own_umem(
        dev: &str,
        frames: u32,
        ids: &[u32],
        zero_copy: bool,
        share: bool,
    ) -> Result<(Rc<SharedUmem>, u32, Sockets), crate::xdp_error::XdpError> {
        let made = if share {
            SharedUmem::new(frames * SHARE_SLOTS, RX_RING, TX_RING, zero_copy).or_else(|e| {
                tracing::info!("{dev}: no UMEM for two ports ({e}): one for this port alone");
                SharedUmem::new(frames, RX_RING, TX_RING, zero_copy)
            })?
        } else {
            SharedUmem::new(frames, RX_RING, TX_RING, zero_copy)?
        };
        let u = Rc::new(made);
        let base = u.take(frames).ok_or("UMEM smaller than one port")?;
        let queues = Self::sockets(dev, &u, base, ids, zero_copy)?;
        Ok((u, base, queues))
    }

    /// Binds an AF_XDP socket on each of the RX queues `ids` of `dev` to `umem`, with the
    /// port's frames from `base` on (RX_FRAMES per queue, then its send frames). The
    /// UMEM's first socket is its own, bound with the mode and need_wakeup; the others
    /// share it and may name no flags (the kernel refuses them on a socket sharing the
    /// UMEM, EINVAL, net/xdp/xsk.c, and gives it the owner's mode and need_wakeup).
    fn sockets(
        dev: &str,
        umem: &SharedUmem,
        base: u32,
        ids: &[u32],
        zero_copy: bool,
    ) -> Result<Sockets, crate::xdp_error::XdpError> {
        let reg = umem.umem();
        let Some(reg) = reg.as_ref() else {
            return Err("the UMEM's own socket is gone".into());
        };
        let mut owner = false;
        let mode_flag = if zero_copy {
            SocketConfig::XDP_BIND_ZEROCOPY
        } else {
            SocketConfig::XDP_BIND_COPY
        };
        let cname = std::ffi::CString::new(dev).map_err(|_| "device name with a NUL")?;
        let mut queues = Vec::new();
        for (at, &q) in (0u32..).zip(ids) {
            let mut info = IfInfo::invalid();
            info.from_name(&cname).map_err(|e| errno("interface", e))?;
            info.set_queue(q);
            let own = at == 0 && umem.take_owner();
            owner |= own;
            let sock = if own {
                Socket::with_shared(&info, reg)
            } else {
                Socket::new(&info)
            }
            .map_err(|e| errno("AF_XDP socket", e))?;
            let device = reg
                .fq_cq(&sock)
                .map_err(|e| errno("fill/completion rings", e))?;
            let user = reg
                .rx_tx(
                    &sock,
                    &SocketConfig {
                        rx_size: NonZeroU32::new(RX_RING),
                        tx_size: NonZeroU32::new(TX_RING),
                        // The kernel says when it needs a system call to go on (zero-copy
                        // drivers); copy mode keeps asking for one on transmit.
                        bind_flags: if own {
                            SocketConfig::XDP_BIND_NEED_WAKEUP | mode_flag
                        } else {
                            0
                        },
                    },
                )
                .map_err(|e| errno("rx/tx rings", e))?;
            let rx = user.map_rx().map_err(|e| errno("rx ring", e))?;
            let tx = user.map_tx().map_err(|e| errno("tx ring", e))?;
            reg.bind(&user).map_err(|e| {
                let m = if zero_copy { "zero-copy" } else { "copy" };
                errno(&format!("bind queue {q} ({m} mode)"), e)
            })?;
            // The kernel's receive frames for this queue (given to its fill ring later).
            let first = base + at * RX_FRAMES;
            let to_fill: Vec<Frame> = (first..first + RX_FRAMES)
                .filter_map(|i| umem.frame(i))
                .collect();
            queues.push(Queue {
                id: q,
                rx,
                tx,
                user,
                device,
                to_fill,
                kernel_rx: 0,
                rx_frames: 0,
                fill_wakeups: 0,
            });
        }
        Ok((queues, owner))
    }

    /// Which UMEM the port's frames are in (ports with the same one can pass frames).
    pub fn umem_id(&self) -> usize {
        Rc::as_ptr(&self.umem) as usize
    }

    /// RX queues bound.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// The device's RX queues it has a socket on, in the order of [`XdpPort::rx_per_queue`].
    pub fn queue_ids(&self) -> Vec<u32> {
        self.queues.iter().map(|q| q.id).collect()
    }

    /// Frames received per RX queue it has a socket on.
    pub fn rx_per_queue(&self) -> Vec<u64> {
        self.queues.iter().map(|q| q.rx_frames).collect()
    }

    /// What the kernel counted on the port's sockets (`XDP_STATISTICS`), summed over its
    /// queues: the frames it dropped before the worker could read them. A socket whose
    /// statistics cannot be read (the call failed) adds nothing.
    pub fn kernel_drops(&self) -> KernelDrops {
        let mut k = KernelDrops::default();
        for q in &self.queues {
            if let Ok(s) = q.user.statistics_v2() {
                k.rx_dropped += s.rx_dropped;
                k.rx_ring_full += s.rx_ring_full;
                k.fill_ring_empty += s.rx_fill_ring_empty_descs;
                k.invalid_descs += s.rx_invalid_descs + s.tx_invalid_descs;
            }
        }
        k.invalid_descs += self.bad_descs;
        k
    }

    /// Fill-ring wake-ups the kernel asked for (need_wakeup), over all queues.
    pub fn fill_wakeups(&self) -> u64 {
        self.queues.iter().map(|q| q.fill_wakeups).sum()
    }

    /// Frames in the UMEM (all of them are accounted when nothing leaked).
    pub fn umem_frames(&self) -> u32 {
        self.frames
    }

    /// The sockets' descriptors (readable when frames arrived).
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.queues.iter().map(|q| {
            // Safety: the descriptor belongs to `q.user` and lives as long as `self`.
            unsafe { BorrowedFd::borrow_raw(q.user.as_raw_fd()) }
        })
    }

    /// Hands up to a batch of received frames per queue to `f`, each with its slot
    /// (mutable: an encrypted SDU is decrypted where it lies), then gives the slots' frames
    /// back to the kernel: the received frame, or the one [`XdpPort::send_in_place`] left
    /// in its place. Returns how many.
    pub fn recv(&mut self, mut f: impl FnMut(&mut [u8], &mut RxSlot)) -> usize {
        let (mut total, mut bad) = (0, 0);
        let umem_id = self.umem_id();
        for q in &mut self.queues {
            let mut n = 0;
            {
                let umem = &self.umem;
                let mut r = q.rx.receive(BATCH);
                while let Some(d) = r.read() {
                    if !umem.holds(d.addr) {
                        // No frame of ours: counted, not handed to a ring.
                        bad += 1;
                        continue;
                    }
                    let mut slot = RxSlot {
                        frame: Frame::from_ring(d.addr),
                        data: d.addr,
                        umem: umem_id,
                    };
                    // Safety: the kernel handed this frame to us through the rx ring; it is
                    // in no ring until its slot gives it back below, and no other slice of
                    // it exists.
                    match unsafe { umem.bytes(d.addr, d.len) } {
                        Some(b) => f(b, &mut slot),
                        // Longer than its frame: not read; the frame goes back.
                        None => bad += 1,
                    }
                    q.to_fill.push(slot.frame);
                    n += 1;
                }
                r.release();
            }
            if n == 0 {
                continue;
            }
            q.rx_frames += n as u64;
            q.kernel_rx = q.kernel_rx.saturating_sub(n as u32);
            // Frames go back to the kernel in batches: its side re-reads the fill ring's
            // producer index (a cache line this CPU writes) only when it has used up what
            // it saw, so one frame at a time would move that line between CPUs per packet.
            // The kernel still holds at least RX_FRAMES - REFILL_BATCH frames.
            if q.to_fill.len() >= REFILL_BATCH {
                q.refill();
            }
            total += n;
        }
        self.rx_frames += total as u64;
        self.bad_descs += bad;
        total
    }

    /// Whether a frame of `len` bytes could ever be sent here (it fits a UMEM frame and the
    /// port has a tx queue): one that cannot is refused for good, not for now.
    pub fn can_ever_send(&self, len: usize) -> bool {
        u32::try_from(len).is_ok_and(|l| l <= FRAME_SIZE) && !self.queues.is_empty()
    }

    /// Queues one frame for sending (on queue 0): it goes on the tx ring with the frames
    /// queued with it, at the latest at [`XdpPort::flush`]. `false` if no UMEM frame is free,
    /// the frame is too long, or the queue is full and the ring takes none of it.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        if self.free_tx.is_empty() {
            self.reclaim();
        }
        let Ok(len) = u32::try_from(frame.len()) else {
            self.tx_dropped += 1;
            return false;
        };
        if len > FRAME_SIZE || self.queues.is_empty() || !self.stage_room() {
            self.tx_dropped += 1;
            return false;
        }
        let Some(f) = self.free_tx.pop() else {
            self.tx_dropped += 1;
            return false;
        };
        // Safety: this frame is ours (taken from the free list, not in any ring).
        let Some(b) = (unsafe { self.umem.bytes(f.addr(), len) }) else {
            self.free_tx.push(f);
            self.tx_dropped += 1;
            return false;
        };
        b.copy_from_slice(frame);
        let addr = f.addr();
        self.tx_staged.push((f, addr, len));
        true
    }

    /// Whether a frame can be queued for sending: room in the queue, after writing it to the
    /// tx ring when full.
    fn stage_room(&mut self) -> bool {
        if self.tx_staged.len() >= TX_STAGE {
            self.commit_staged();
        }
        self.tx_staged.len() < TX_STAGE
    }

    /// Writes the queued frames to the tx ring, in order, with one reservation (a few when
    /// xdpilone's view of the ring is stale); what the ring does not take stays queued.
    fn commit_staged(&mut self) {
        let Some(q) = self.queues.first_mut() else {
            return;
        };
        for _ in 0..4 {
            if self.tx_staged.is_empty() {
                break;
            }
            let want = u32::try_from(self.tx_staged.len()).unwrap_or(u32::MAX);
            let mut w = q.tx.transmit(want);
            let room = (w.capacity() as usize).min(self.tx_staged.len());
            // The ring takes exactly `room` descriptors (its first `capacity` inserts
            // succeed), so the drain hands over every frame it removes.
            let n = w.insert(
                self.tx_staged
                    .drain(..room)
                    .map(|(f, at, len)| desc_at(f, at, len)),
            );
            w.commit();
            if n == 0 {
                break;
            }
            self.tx_batches += 1;
            self.tx_in_flight += n;
            self.tx_frames += u64::from(n);
        }
    }

    /// Queues `n` copies of `frame` for sending (on queue 0) with one reservation of the tx
    /// ring, as a traffic source does (`o7s-bench xdp-gen`); how many were queued (fewer
    /// when frames or ring slots ran out).
    pub fn send_copies(&mut self, frame: &[u8], n: u32) -> u32 {
        // What was queued goes first.
        self.commit_staged();
        if (self.free_tx.len() as u32) < n {
            self.reclaim();
        }
        let Ok(len) = u32::try_from(frame.len()) else {
            return 0;
        };
        let (Some(q), true) = (self.queues.first_mut(), len <= FRAME_SIZE) else {
            return 0;
        };
        let mut w = q.tx.transmit(n.min(self.free_tx.len() as u32));
        let mut queued = 0;
        while queued < n {
            let Some(f) = self.free_tx.pop() else {
                break;
            };
            // Safety: this frame is ours (taken from the free list, not in any ring).
            let Some(b) = (unsafe { self.umem.bytes(f.addr(), len) }) else {
                self.free_tx.push(f);
                break;
            };
            b.copy_from_slice(frame);
            let addr = f.addr();
            if !w.insert_once(desc(f, len)) {
                self.free_tx.push(Frame::from_ring(addr));
                break;
            }
            queued += 1;
        }
        w.commit();
        self.tx_batches += u64::from(queued > 0);
        self.tx_in_flight += queued;
        self.tx_frames += u64::from(queued);
        queued
    }

    /// Sends the packet of `slot` (`len` bytes: received on another port of the same UMEM,
    /// and rewritten) without copying it: its frame goes on this port's tx ring, and one of
    /// this port's free frames takes its place in the slot (for the receiving port's fill
    /// ring), so each port keeps its number of frames. It is queued with the frames sent
    /// before it and goes on the ring with them ([`XdpPort::flush`] at the latest). `false`
    /// (the slot as it was) when the UMEM differs, no frame is free or the queue is full and
    /// the ring takes none of it. The packet's bytes must not be written after it went.
    pub fn send_in_place(&mut self, slot: &mut RxSlot, len: u32) -> bool {
        if slot.umem != self.umem_id() || self.queues.is_empty() {
            return false;
        }
        if self.free_tx.is_empty() {
            self.reclaim();
        }
        if !self.stage_room() {
            return false;
        }
        let Some(spare) = self.free_tx.pop() else {
            return false;
        };
        let sent = std::mem::replace(&mut slot.frame, spare);
        self.tx_staged.push((sent, slot.data, len));
        slot.data = slot.frame.addr();
        true
    }

    /// Whether frames wait in the tx queue for room on the ring (it was full when they
    /// were flushed).
    pub fn has_staged(&self) -> bool {
        !self.tx_staged.is_empty()
    }

    /// Whether frames wait on the tx ring or for their completion.
    pub fn tx_pending(&self) -> bool {
        self.tx_in_flight > 0 || !self.tx_staged.is_empty()
    }

    /// Kicks the kernel to send what was queued (copy mode sends on sendto).
    pub fn flush(&mut self) {
        self.commit_staged();
        if let Some(q) = self.queues.first_mut() {
            // In copy mode each wake-up (sendto) sends at most 32 descriptors: repeat while
            // the kernel makes progress.
            let mut last = u32::MAX;
            for _ in 0..64 {
                let pending = q.tx.pending();
                if pending == 0 || pending == last || !q.tx.needs_wakeup() {
                    break;
                }
                last = pending;
                q.tx.wake();
                self.tx_wakeups += 1;
            }
        }
        self.reclaim();
    }

    fn reclaim(&mut self) {
        let Some(q) = self.queues.first_mut() else {
            return;
        };
        let mut c = q.device.complete(BATCH * 4);
        while let Some(a) = c.read() {
            // A frame the kernel sent is ours again, if it is one and one was in flight.
            if !self.umem.holds(a) || self.tx_in_flight == 0 {
                self.bad_descs += 1;
                continue;
            }
            self.free_tx.push(Frame::from_ring(a));
            self.tx_in_flight -= 1;
        }
        c.release();
    }

    /// Frames of the UMEM whose whereabouts are known once sending is done: free for sending,
    /// waiting to go back to a fill ring, or given to the kernel for receiving (counted as
    /// they enter and leave the fill/rx rings). Equals [`XdpPort::umem_frames`] when nothing
    /// leaked.
    pub fn accounted_frames(&mut self) -> u32 {
        self.reclaim();
        let mut n = (self.free_tx.len() + self.tx_staged.len()) as u32;
        for q in &mut self.queues {
            q.refill();
            n += q.to_fill.len() as u32 + q.kernel_rx;
        }
        n
    }

    /// A counter of the XDP program, summed over CPUs.
    pub fn counter(&self, idx: u32) -> u64 {
        let Some(m) = self.ebpf.as_ref().and_then(|e| e.map("counters")) else {
            return 0;
        };
        let Ok(a) = PerCpuArray::<&MapData, u64>::try_from(m) else {
            return 0;
        };
        a.get(&idx, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}
