//! The UMEM that the AF_XDP ports of one worker share (issue 15 item 4: no copy where both
//! N-1 flows are AF_XDP ports of one worker). A frame received on one port can then be
//! sent on the other as it lies: the forwarding worker rewrites its Ethernet header in
//! place and puts its descriptor on the other port's tx ring, and gives the receiving port
//! one of the sending port's free frames for its fill ring in exchange, so that each port
//! keeps the number of frames it started with ([`crate::xdp::XdpPort::send_shared`]).
//!
//! A UMEM is made with room for [`SHARE_SLOTS`] ports of the first one's size (the memory
//! is pinned at registration: 24 MiB a slot for one RX queue; where that much cannot be
//! registered, room for one); a port that does not fit, or whose mode (zero-copy or copy)
//! differs, or that the kernel refuses to bind to it, gets a UMEM of its own, and
//! forwarding to it copies. The first socket bound is the UMEM's own; the others share it
//! (bound with no flags: the kernel gives them its mode and need_wakeup). When the port of
//! that socket goes, the socket goes with it (it would keep its device's queue taken):
//! the ports still on the UMEM keep it (the kernel counts them), no new port joins it. The
//! memory lives as long as any port holds the UMEM.

#![allow(unsafe_code)]

use memmap2::{MmapMut, MmapOptions};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use xdpilone::{Umem, UmemConfig};

/// Bytes of a frame.
pub const FRAME_SIZE: u32 = 2048;

/// Ports a UMEM has room for.
pub const SHARE_SLOTS: u32 = 2;

/// Bytes of a huge page.
const HUGE_PAGE: usize = 2 << 20;

/// The system's huge page counts, from /proc/meminfo (empty when unreadable).
fn meminfo() -> String {
    std::fs::read_to_string("/proc/meminfo").unwrap_or_default()
}

/// Why a UMEM of `len` bytes is on 4 KiB pages: the mapping's error `e`, and how many huge
/// pages it needed against how many `meminfo` says are free (`o7sctl port list` shows it).
fn hugepages_refused(len: usize, e: &std::io::Error, meminfo: &str) -> String {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let need = len.div_ceil(HUGE_PAGE);
    match (field("HugePages_Free:"), field("HugePages_Total:")) {
        (Some(free), Some(total)) => format!(
            "2 MiB hugepages: {e}: it needs {need}, {free} of {total} are free; \
             raise vm.nr_hugepages"
        ),
        _ => format!("2 MiB hugepages: {e}: it needs {need}; see vm.nr_hugepages"),
    }
}

/// One frame of a UMEM, held by whoever has this value (issue 23 item 2): a port's free
/// list, a queue's list of frames for the fill ring, or the packet being handled
/// ([`crate::xdp::RxSlot`]). Not `Copy`, not `Clone`, and made only where a frame comes out
/// of the UMEM's unused frames ([`SharedUmem::frame`]) or out of a kernel ring (rx,
/// completion); putting it on a ring (fill, tx) consumes it. So one frame cannot be on two
/// rings, or on a ring and a free list, at once: the compiler refuses the second use.
#[must_use = "a frame dropped is a frame lost to the port"]
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its start in the UMEM.
    addr: u64,
}

impl Frame {
    /// The frame a kernel ring named by `addr` (any address inside it).
    pub(crate) fn from_ring(addr: u64) -> Self {
        Self {
            addr: addr - addr % u64::from(FRAME_SIZE),
        }
    }

    /// Its start in the UMEM, for a ring descriptor.
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

/// A UMEM and its memory, shared by ports of one worker.
pub struct SharedUmem {
    // Dropped in this order: the UMEM's own socket (if its port is still there), then the
    // memory.
    /// The registration (its own socket), until its port goes.
    umem: RefCell<Option<Umem>>,
    /// The first byte of the memory.
    base: NonNull<u8>,
    _area: MmapMut,
    /// Where it lives: on hugepages, or on normal pages and why.
    pub pages: crate::xdp_status::UmemPages,
    /// Whether its sockets are bound in zero-copy mode.
    pub zero_copy: bool,
    /// Its frames.
    frames: u32,
    /// The first frame not given to a port yet.
    next: Cell<u32>,
    /// The UMEM's own socket is bound (the next socket shares it).
    owned: Cell<bool>,
    /// Ports that use it.
    pub(crate) ports: Cell<u32>,
}

impl std::fmt::Debug for SharedUmem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedUmem")
            .field("frames", &self.frames)
            .field("given", &self.next.get())
            .field("ports", &self.ports.get())
            .finish()
    }
}

fn errno(what: &str, e: impl std::fmt::Debug) -> crate::xdp_error::XdpError {
    crate::xdp_error::step(what, e)
}

impl SharedUmem {
    /// Whether `addr` (from a kernel ring) lies inside one of its frames: a descriptor that
    /// does not is no frame of ours to give back.
    pub fn holds(&self, addr: u64) -> bool {
        addr / u64::from(FRAME_SIZE) < u64::from(self.frames)
    }

    /// A UMEM of `frames` frames with rings of `fill` and `complete` entries per socket;
    /// anonymous memory on 2 MiB hugepages when the machine has free ones (fewer TLB
    /// misses), normal pages otherwise; faulted in now, not on the data path.
    pub fn new(
        frames: u32,
        fill: u32,
        complete: u32,
        zero_copy: bool,
    ) -> Result<Self, crate::xdp_error::XdpError> {
        let len = (FRAME_SIZE * frames) as usize;
        let (mut area, pages) = match MmapOptions::new()
            .len(len)
            .huge(Some(21))
            .populate()
            .map_anon()
        {
            Ok(a) => (
                a,
                crate::xdp_status::UmemPages::Huge {
                    pages: len.div_ceil(HUGE_PAGE),
                },
            ),
            Err(e) => {
                let area = MmapOptions::new()
                    .len(len)
                    .populate()
                    .map_anon()
                    .map_err(|e| errno("umem", e))?;
                let why = crate::xdp_status::UmemPages::Normal {
                    why: hugepages_refused(len, &e, &meminfo()),
                };
                tracing::info!("UMEM of {} MiB on {why}", len >> 20);
                (area, why)
            }
        };
        let base = NonNull::new(area.as_mut_ptr()).ok_or("umem mapping is null")?;
        let ptr = NonNull::slice_from_raw_parts(base, len);
        let config = UmemConfig {
            fill_size: fill,
            complete_size: complete,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // Safety: `area` is a page-aligned private mapping of `len` bytes that lives as long
        // as the Umem (stored next to it and dropped after it).
        let umem = unsafe { Umem::new(config, ptr) }.map_err(|e| errno("umem registration", e))?;
        Ok(Self {
            umem: RefCell::new(Some(umem)),
            base,
            _area: area,
            pages,
            zero_copy,
            frames,
            next: Cell::new(0),
            owned: Cell::new(false),
            ports: Cell::new(0),
        })
    }

    /// Frames not given to a port yet (none once its own socket is gone).
    pub fn room(&self) -> u32 {
        if self.umem.borrow().is_none() {
            return 0;
        }
        self.frames - self.next.get()
    }

    /// The registration, for binding a socket to it: `None` once its own socket is gone.
    pub fn umem(&self) -> std::cell::Ref<'_, Option<Umem>> {
        self.umem.borrow()
    }

    /// The port of the UMEM's own socket goes: the socket goes with it (ports sharing the
    /// UMEM keep it; no new port can join).
    pub fn close_owner(&self) {
        self.umem.borrow_mut().take();
    }

    /// Gives back the `n` frames from `first` that [`SharedUmem::take`] gave, when they
    /// were the last given (a port that could not bind).
    pub fn untake(&self, first: u32, n: u32) {
        if self.next.get() == first + n {
            self.next.set(first);
        }
    }

    /// Gives `n` frames to a port: the index of the first.
    pub fn take(&self, n: u32) -> Option<u32> {
        let first = self.next.get();
        (self.room() >= n).then(|| {
            self.next.set(first + n);
            first
        })
    }

    /// Whether the next socket is the UMEM's own (then marks it taken).
    pub fn take_owner(&self) -> bool {
        !self.owned.replace(true)
    }

    /// Frame `i`, for the port [`SharedUmem::take`] gave it to (each index once).
    pub fn frame(&self, i: u32) -> Option<Frame> {
        (i < self.frames).then(|| Frame {
            addr: u64::from(i) * u64::from(FRAME_SIZE),
        })
    }

    /// The bytes `addr..addr + len` of a frame: `None` when they leave the frame.
    ///
    /// # Safety
    /// The caller holds the frame (the kernel handed it over through an rx ring, or it is
    /// on a port's free list: in no ring) and makes no other slice of it while this one
    /// lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes(&self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let start = addr - addr % u64::from(FRAME_SIZE);
        let idx = u32::try_from(start / u64::from(FRAME_SIZE)).ok()?;
        if idx >= self.frames {
            return None;
        }
        let off = usize::try_from(addr - start).ok()?;
        let end = off.checked_add(len as usize)?;
        if end > FRAME_SIZE as usize {
            return None;
        }
        let start = usize::try_from(start).ok()?;
        // Safety: the chunk lies inside the UMEM mapping. The caller holds this frame: the
        // kernel handed it over through an rx ring (or it is on a free list) and does not
        // touch it until it is given back through a fill or tx ring; every port of the
        // UMEM runs in one worker thread, and a frame is held by one of them at a time, so
        // there is no other slice of it while this one lives.
        // The frame starts `start` bytes into the mapping (idx < frames: inside it).
        let s = unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), FRAME_SIZE as usize)
        };
        s.get_mut(off..end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_reason_for_normal_pages_names_what_was_needed_and_what_was_free() {
        let e = std::io::Error::from_raw_os_error(12);
        let info = "MemTotal: 1 kB\nHugePages_Total:      26\nHugePages_Free:       3\n";
        let why = super::hugepages_refused(48 << 20, &e, info);
        assert!(why.starts_with("2 MiB hugepages: Cannot allocate"), "{why}");
        assert!(why.contains("it needs 24, 3 of 26 are free"), "{why}");
        // One byte over 48 MiB takes another page; no meminfo: no counts.
        let why = super::hugepages_refused((48 << 20) + 1, &e, "");
        assert!(why.contains("it needs 25; see vm.nr_hugepages"), "{why}");
        assert!(why.contains("Cannot allocate memory"), "{why}");
    }

    #[test]
    fn a_frame_is_named_by_its_start_whatever_address_a_ring_gave() {
        let f = u64::from(FRAME_SIZE);
        assert_eq!(Frame::from_ring(f + 100).addr(), f);
        assert_eq!(Frame::from_ring(2 * f - 1).addr(), f);
        assert_eq!(Frame::from_ring(2 * f).addr(), 2 * f);
        assert_eq!(Frame::from_ring(0).addr(), 0);
    }

    #[test]
    fn frames_are_handed_out_once_and_bytes_stay_in_their_frame() {
        let u = match SharedUmem::new(8, 4, 4, false) {
            Ok(u) => u,
            // Registration needs CAP_IPC_LOCK or room under RLIMIT_MEMLOCK.
            Err(e) if std::env::var_os("O7S_REQUIRE_ROOT").is_none() => {
                eprintln!("SKIP: no UMEM registration here: {e}");
                return;
            }
            Err(e) => panic!("O7S_REQUIRE_ROOT is set and UMEM registration failed: {e}"),
        };
        assert_eq!(u.take(5), Some(0));
        assert_eq!(u.take(4), None, "only 3 left");
        assert_eq!(u.take(3), Some(5));
        assert_eq!(u.room(), 0);
        u.untake(0, 5);
        assert_eq!(u.room(), 0, "not the last given: kept");
        u.untake(5, 3);
        assert_eq!((u.room(), u.take(3)), (3, Some(5)));
        assert!(u.take_owner());
        assert!(!u.take_owner(), "one owner socket");
        let f1 = u.frame(1).unwrap().addr();
        assert_eq!(f1, u64::from(FRAME_SIZE));
        // A ring's address is one of its frames only below its 8 frames' end.
        let end = 8 * u64::from(FRAME_SIZE);
        assert!(u.holds(0) && u.holds(f1 + 100) && u.holds(end - 1));
        assert!(!u.holds(end) && !u.holds(u64::MAX));
        u.close_owner();
        assert!(u.umem().is_none());
        assert_eq!(u.room(), 0, "no port joins once its own socket is gone");
        // Safety: no ring holds any frame of this UMEM (no socket is bound).
        unsafe {
            assert_eq!(u.bytes(f1 + 100, 1948).map(|b| b.len()), Some(1948));
            assert!(u.bytes(f1 + 100, 1949).is_none(), "past the frame");
            u.bytes(f1, 4).unwrap().copy_from_slice(b"o7s!");
            assert_eq!(u.bytes(f1, 4).unwrap(), b"o7s!");
        }
    }
}
