//! Per-flow shared memory between an app and the data plane: two single-producer
//! single-consumer rings of fixed-size slots in one memfd, plus a [`Kick`] per direction.
//!
//! Layout (all offsets multiples of 64 bytes):
//! `header(128): magic, version, slots, slot size, flags, counter, the app's FRCP state (10
//! words), the app's CRC state (1 word), 15 words free | ring tx: indices(256) slots... | ring rx: indices(256) slots...`.
//! `tx` carries app → data plane, `rx` data plane → app. Each side treats the other's
//! indices and lengths as untrusted: a bad value is reported, never followed.

#![allow(unsafe_code)]

use memmap2::MmapMut;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};

const MAGIC: u32 = 0x6f37_7372; // "o7sr"
const HEADER: usize = 128;
const INDICES: usize = 256;
const SLOT_HDR: usize = 8;
/// Header words 6 to 15: the app library's FRCP state ([`FlowMem::publish_frcp`]).
const FRCP_WORDS: usize = 24;
/// Header word 16: the app library's CRC state ([`FlowMem::publish_crc`]).
const CRC_WORD: usize = 64;
/// In the CRC word: the flow carries the CRC32 trailer (the rest: SDUs that failed it).
const CRC_ON: u32 = 1 << 31;
/// In the first FRCP word: the flow runs FRCP.
const FRCP_ON: u32 = 1;
/// In the first FRCP word: with retransmission.
const FRCP_RTX: u32 = 2;
/// Seals every flow memory carries: its size is fixed for good.
const REQUIRED_SEALS: nix::fcntl::SealFlag = nix::fcntl::SealFlag::F_SEAL_SHRINK
    .union(nix::fcntl::SealFlag::F_SEAL_GROW)
    .union(nix::fcntl::SealFlag::F_SEAL_SEAL);
/// Default number of slots per direction.
pub const DEFAULT_SLOTS: u32 = 256;
/// Default slot size: room for a 9000-byte SDU (lo's MTU) and its length.
pub const DEFAULT_SLOT_SIZE: u32 = 9216;

/// Flags in the shared header.
pub mod flags {
    /// The peer has gone (time-out or deallocation): no more data will arrive.
    pub const PEER_DOWN: u32 = 1;
    /// The flow was deallocated by the daemon.
    pub const CLOSED: u32 = 2;
    /// The app let the flow go (set by the library when it drops the flow): the data plane
    /// removes it, also while no o7sd runs.
    pub const APP_CLOSED: u32 = 4;
}

/// Direction of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// App to data plane.
    Tx,
    /// Data plane to app.
    Rx,
}

/// Why a push or pop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// No free slot.
    #[error("ring full")]
    Full,
    /// The SDU does not fit a slot.
    #[error("SDU of {0} bytes does not fit a slot")]
    TooBig(usize),
    /// The other side wrote impossible indices or lengths.
    #[error("ring corrupted by the other side")]
    Corrupt,
}

/// The mapped shared memory of one flow.
#[derive(Debug)]
pub struct FlowMem {
    map: MmapMut,
    slots: u32,
    slot_size: u32,
}

// Safety: all access to the shared bytes goes through atomics or raw copies into slots that
// the SPSC protocol hands to exactly one side at a time; the map itself is never resized.
unsafe impl Send for FlowMem {}
// Safety: as above; `&FlowMem` only offers the ring protocol's operations.
unsafe impl Sync for FlowMem {}

fn ring_bytes(slots: u32, slot_size: u32) -> usize {
    INDICES + slots as usize * slot_size as usize
}

impl FlowMem {
    /// Creates the memory of a new flow in a memfd.
    pub fn create(slots: u32, slot_size: u32) -> io::Result<(Self, OwnedFd)> {
        if slots == 0 || !slots.is_power_of_two() || slot_size < 64 || slot_size % 64 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad ring geometry",
            ));
        }
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(
            c"o7s-flow",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        let len = HEADER + 2 * ring_bytes(slots, slot_size);
        let file = std::fs::File::from(fd.try_clone()?);
        file.set_len(len as u64)?;
        // Nobody who is handed the memory can change its size under the other side's
        // mapping (a shrink would kill the data plane with SIGBUS), nor lift the seals.
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_ADD_SEALS(REQUIRED_SEALS))
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        // Safety: the memfd is ours and sized above; other mappings of it only touch it
        // through this module's protocol.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        let header = [MAGIC, 2, slots, slot_size].map(u32::to_ne_bytes).concat();
        if let Some(h) = map.get_mut(..header.len()) {
            h.copy_from_slice(&header);
        }
        Ok((
            Self {
                map,
                slots,
                slot_size,
            },
            fd,
        ))
    }

    /// Maps the memory of a flow created elsewhere, checking that it is sealed against
    /// shrinking and growing (see [`FlowMem::create`]), then its header and size. The data
    /// plane maps only through this.
    pub fn open_sealed(fd: &OwnedFd) -> io::Result<Self> {
        let seals = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GET_SEALS).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("flow memory is not a sealable memfd: {e}"),
            )
        })?;
        let seals = nix::fcntl::SealFlag::from_bits_truncate(seals);
        if !seals.contains(REQUIRED_SEALS) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "flow memory is not sealed against shrinking and growing",
            ));
        }
        Self::open(fd)
    }

    /// Maps the memory of a flow created elsewhere, checking its header and size.
    pub fn open(fd: &OwnedFd) -> io::Result<Self> {
        let file = std::fs::File::from(fd.try_clone()?);
        let len = file.metadata()?.len() as usize;
        if len < HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "flow memory too small",
            ));
        }
        // Safety: as in `create`; the size was read from the file and is re-checked below.
        let map = unsafe { MmapMut::map_mut(&file)? };
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(map.get(i * 4..i * 4 + 4).unwrap_or(&[0; 4]));
            u32::from_ne_bytes(b)
        };
        let (magic, slots, slot_size) = (word(0), word(2), word(3));
        let ok = magic == MAGIC
            && slots.is_power_of_two()
            && slot_size >= 64
            && slot_size % 64 == 0
            && slots <= 1 << 16
            && slot_size <= 1 << 20
            && HEADER + 2 * ring_bytes(slots, slot_size) <= len;
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad flow memory header",
            ));
        }
        Ok(Self {
            map,
            slots,
            slot_size,
        })
    }

    /// Slots per direction.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Largest SDU a slot holds.
    pub fn max_sdu(&self) -> usize {
        self.slot_size as usize - SLOT_HDR
    }

    fn base(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
    }

    fn atomic(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= self.map.len());
        // Safety: `off` is 4-aligned inside the map (a page-aligned mapping), the map lives as
        // long as `self`, and u32 cells of the header and indices are only accessed atomically.
        unsafe { &*(self.base().add(off) as *const AtomicU32) }
    }

    /// Shared flags word.
    pub fn flags(&self) -> &AtomicU32 {
        self.atomic(16)
    }

    /// A counter of the producer's (a capture ring: frames dropped because it was full).
    pub fn counter(&self) -> &AtomicU32 {
        self.atomic(20)
    }

    /// Publishes the app's FRCP state in the header (words 6 to 15, written by the app
    /// library only) for the data plane's statistics.
    pub fn publish_frcp(&self, s: &crate::msg::FrcpStats) {
        let words = [
            FRCP_ON | if s.rtx { FRCP_RTX } else { 0 },
            s.rto_us,
            s.srtt_us,
            s.in_flight,
            s.window,
            s.sent,
            s.retransmits,
            s.delivered,
            s.duplicates,
            s.bad,
        ];
        for (i, w) in words.into_iter().enumerate() {
            self.atomic(FRCP_WORDS + 4 * i).store(w, Ordering::Relaxed);
        }
    }

    /// Publishes that the flow carries the CRC32 trailer (its cube's `ber` is 0) and how
    /// many SDUs from the peer failed it (written by the app library only).
    pub fn publish_crc(&self, errors: u32) {
        self.atomic(CRC_WORD)
            .store(CRC_ON | errors.min(CRC_ON - 1), Ordering::Relaxed);
    }

    /// The app's CRC state: the SDUs that failed the CRC, if its flow carries one.
    pub fn crc(&self) -> Option<u32> {
        let w = self.atomic(CRC_WORD).load(Ordering::Relaxed);
        (w & CRC_ON != 0).then_some(w & !CRC_ON)
    }

    /// The FRCP state the app published, if its flow runs FRCP. Whatever the app wrote is
    /// shown as it is: the words are the app's to write.
    pub fn frcp(&self) -> Option<crate::msg::FrcpStats> {
        let w = |i: usize| self.atomic(FRCP_WORDS + 4 * i).load(Ordering::Relaxed);
        (w(0) & FRCP_ON != 0).then(|| crate::msg::FrcpStats {
            rtx: w(0) & FRCP_RTX != 0,
            rto_us: w(1),
            srtt_us: w(2),
            in_flight: w(3),
            window: w(4),
            sent: w(5),
            retransmits: w(6),
            delivered: w(7),
            duplicates: w(8),
            bad: w(9),
        })
    }

    /// The ring of direction `d`.
    pub fn ring(&self, d: Dir) -> Ring<'_> {
        let base = HEADER
            + if d == Dir::Tx {
                0
            } else {
                ring_bytes(self.slots, self.slot_size)
            };
        Ring { mem: self, base }
    }
}

/// One direction's ring.
#[derive(Debug, Clone, Copy)]
pub struct Ring<'a> {
    mem: &'a FlowMem,
    base: usize,
}

impl Ring<'_> {
    fn head(&self) -> &AtomicU32 {
        self.mem.atomic(self.base)
    }
    fn tail(&self) -> &AtomicU32 {
        self.mem.atomic(self.base + 64)
    }
    /// The consumer sets this before sleeping on its [`Kick`]; the producer then kicks it.
    pub fn waiting(&self) -> &AtomicU32 {
        self.mem.atomic(self.base + 128)
    }
    fn slot(&self, idx: u32) -> usize {
        self.base + INDICES + (idx & (self.mem.slots - 1)) as usize * self.mem.slot_size as usize
    }

    /// Entries waiting to be consumed (`Corrupt` if the indices are impossible).
    pub fn len(&self) -> Result<u32, RingError> {
        let n = self
            .head()
            .load(Ordering::Acquire)
            .wrapping_sub(self.tail().load(Ordering::Acquire));
        if n > self.mem.slots {
            Err(RingError::Corrupt)
        } else {
            Ok(n)
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        matches!(self.len(), Ok(0))
    }

    /// Producer: appends an SDU. Returns whether the consumer asked to be woken.
    pub fn push(&self, sdu: &[u8]) -> Result<bool, RingError> {
        self.push_parts(&[sdu])
    }

    /// Producer: appends one SDU made of `parts` one after the other (a header and a body
    /// without copying them together first).
    pub fn push_parts(&self, parts: &[&[u8]]) -> Result<bool, RingError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.mem.max_sdu() {
            return Err(RingError::TooBig(total));
        }
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        let used = head.wrapping_sub(tail);
        if used > self.mem.slots {
            return Err(RingError::Corrupt);
        }
        if used == self.mem.slots {
            return Err(RingError::Full);
        }
        let off = self.slot(head);
        // Safety: slot `head` lies inside the map (index masked by a power-of-two count) and
        // belongs to the producer until `head` is published below.
        unsafe {
            let p = self.mem.base().add(off);
            std::ptr::copy_nonoverlapping((total as u32).to_ne_bytes().as_ptr(), p, 4);
            let mut at = SLOT_HDR;
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), p.add(at), part.len());
                at += part.len();
            }
        }
        self.head().store(head.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        Ok(self.waiting().swap(0, Ordering::SeqCst) != 0)
    }

    /// Consumer: takes the oldest SDU into `out` (its length is returned; an SDU longer than
    /// `out` is cut). `Ok(None)` when empty.
    pub fn pop(&self, out: &mut [u8]) -> Result<Option<usize>, RingError> {
        self.pop_with(|sdu| {
            sdu.copy_to(out);
            sdu.len()
        })
    }

    /// Consumer: hands the oldest SDU to `f` as a [`SharedSdu`] (valid only during the call),
    /// which copies it out: the other process can write the slot at any time, so no Rust
    /// reference into shared memory is ever made.
    pub fn pop_with<R>(&self, f: impl FnOnce(SharedSdu<'_>) -> R) -> Result<Option<R>, RingError> {
        let tail = self.tail().load(Ordering::Relaxed);
        let head = self.head().load(Ordering::Acquire);
        let avail = head.wrapping_sub(tail);
        if avail == 0 {
            return Ok(None);
        }
        if avail > self.mem.slots {
            return Err(RingError::Corrupt);
        }
        let off = self.slot(tail);
        let max = self.mem.max_sdu();
        // Safety: slot `tail` lies inside the map and was published by the producer's
        // release store of `head`; it stays ours until `tail` moves past it.
        let r = unsafe {
            let p = self.mem.base().add(off);
            let mut lb = [0u8; 4];
            std::ptr::copy_nonoverlapping(p, lb.as_mut_ptr(), 4);
            let len = u32::from_ne_bytes(lb) as usize;
            if len > max {
                self.tail().store(tail.wrapping_add(1), Ordering::Release);
                return Err(RingError::Corrupt);
            }
            f(SharedSdu {
                ptr: p.add(SLOT_HDR),
                len,
                _mem: std::marker::PhantomData,
            })
        };
        self.tail().store(tail.wrapping_add(1), Ordering::Release);
        Ok(Some(r))
    }
}

/// An SDU in a slot of shared memory, read only by copying it out (the process on the
/// other side may change the bytes meanwhile: the copy may then hold garbage, which an
/// SDU may anyway, but nothing in this process can go wrong).
#[derive(Debug)]
pub struct SharedSdu<'a> {
    ptr: *const u8,
    len: usize,
    _mem: std::marker::PhantomData<&'a FlowMem>,
}

impl SharedSdu<'_> {
    /// Its length (checked against the slot size when it was popped).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies its first `out.len()` bytes (at most its length) into `out`; how many.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let n = self.len.min(out.len());
        // Safety: `ptr..ptr+len` lies inside the mapped slot (length checked against the
        // slot size in `pop_with`) and the map outlives `'a`; `out` is ours and cannot
        // overlap the shared mapping; a raw copy makes no reference to the shared bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, out.as_mut_ptr(), n) };
        n
    }

    /// Appends it to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        let start = out.len();
        // Safety: `reserve` made room for `len` more bytes after `start`; the source lies
        // inside the mapped slot (see `copy_to`) and cannot overlap `out`'s allocation; the
        // length is set only after the bytes are written.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr, out.as_mut_ptr().add(start), self.len);
            out.set_len(start + self.len);
        }
    }

    /// Copies it into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        self.append_to(&mut v);
        v
    }
}

/// Wakes the consumer of a ring: a pipe that every process of the flow (o7sd, the data
/// plane, the app) holds open for reading and writing. A kick is one byte written; the
/// consumer polls the pipe and drains it.
///
/// Each process holds a description of the pipe of its own (O_RDWR | O_NONBLOCK): made by
/// [`Kick::new`], opened again by [`Kick::from_fd`] for what it receives, and by
/// [`Kick::share`] for what it sends. Whether a read or write blocks is a flag of the open
/// file description, which its holders share: with the eventfds kicks were before, an app
/// could clear O_NONBLOCK on the description the data plane also held, fill the counter,
/// and the worker's next kick blocked, and every flow of the worker with it. No holder can
/// change another's description, and as every holder also reads, a write never meets a
/// pipe without readers (no SIGPIPE), nor a read a pipe without writers (no end of file).
#[derive(Debug)]
pub struct Kick {
    fd: OwnedFd,
}

/// Bytes one read of [`Kick::drain`] takes: a kick is one byte, so one read empties a pipe
/// of honest kicks.
const KICK_READ: usize = 4096;
/// Reads one [`Kick::drain`] makes at most: 1 MiB, the largest pipe an unprivileged holder
/// can ask for (`/proc/sys/fs/pipe-max-size`), so that a holder writing as fast as we read
/// cannot keep the consumer in one drain.
const KICK_READS_MAX: usize = 256;

/// A description of its own of the pipe behind `fd` (readable and writable, non-blocking);
/// refused when `fd` is no pipe.
fn reopen_pipe(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    let err = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
    let st = fstat(fd).map_err(err)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a kick that is no pipe",
        ));
    }
    open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)
}

impl Kick {
    /// A new kick.
    pub fn new() -> io::Result<Self> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::{fchmod, Mode};
        let err = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(err)?;
        let fd = reopen_pipe(r.as_fd())?;
        // Processes of other users that receive it open it again ([`Kick::from_fd`]), which
        // the pipe's mode must allow. Nobody else can: only through a descriptor it holds
        // (`/proc/self/fd`), or one of a process it could trace.
        fchmod(&fd, Mode::from_bits_truncate(0o666)).map_err(err)?;
        Ok(Self { fd })
    }
    /// A received kick, opened again as a description of our own (whose O_NONBLOCK no
    /// other holder can clear); the received descriptor is closed. Refused when it is no
    /// pipe.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Ok(Self {
            fd: reopen_pipe(fd.as_fd())?,
        })
    }
    /// A descriptor of the same pipe to hand to another process, on a description of its
    /// own (a dup would share ours with it).
    pub fn share(&self) -> io::Result<OwnedFd> {
        reopen_pipe(self.fd.as_fd())
    }
    /// Wakes the waiter. Never blocks; a kick that finds the pipe full is not needed (the
    /// waiter has some to read already).
    pub fn kick(&self) {
        let _ = nix::unistd::write(&self.fd, &[1]);
    }
    /// Clears pending kicks: empties the pipe (one read when it holds less than 4 KiB, as
    /// honest kicks do); how many bytes it read. Never blocks. Emptied whole, not a part
    /// per wake-up: a holder that filled a large pipe (F_SETPIPE_SZ) with one write must
    /// not buy a wake-up of the consumer per part.
    pub fn drain(&self) -> usize {
        let mut b = [0u8; KICK_READ];
        let mut n = 0;
        for _ in 0..KICK_READS_MAX {
            match nix::unistd::read(&self.fd, &mut b) {
                Ok(got) => {
                    n += got;
                    if got < KICK_READ {
                        break;
                    }
                }
                Err(nix::Error::EINTR) => {}
                Err(_) => break,
            }
        }
        n
    }
    /// The descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
    /// Its descriptor, given up (to hand it to another process, which opens it again).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Kick {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn readable(k: &Kick) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut p = [PollFd::new(k.as_fd(), PollFlags::POLLIN)];
        poll(&mut p, PollTimeout::ZERO).unwrap() > 0
    }

    #[test]
    fn a_kick_wakes_and_a_drain_clears_it() {
        let k = Kick::new().unwrap();
        assert!(!readable(&k));
        k.kick();
        k.kick();
        assert!(readable(&k));
        assert_eq!(k.drain(), 2);
        assert!(!readable(&k));
        assert_eq!(k.drain(), 0);
        // The same pipe as another process gets it: handed on, opened again.
        let other = Kick::from_fd(k.share().unwrap()).unwrap();
        other.kick();
        assert!(readable(&k));
        assert_eq!(k.drain(), 1);
        k.kick();
        assert_eq!(other.drain(), 1);
    }

    /// The eventfd kicks were blocked their writer once a holder cleared O_NONBLOCK on the
    /// shared description and filled the counter: each holder's description is its own.
    #[test]
    fn kicks_never_block_even_when_a_holder_clears_nonblock_and_fills_it() {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let k = Kick::new().unwrap();
        // What a hostile holder received, made blocking.
        let theirs = k.share().unwrap();
        for _ in 0..100_000 {
            if nix::unistd::write(&theirs, &[1; 512]).is_err() {
                break;
            }
        }
        fcntl(&theirs, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
        // A received copy of theirs (as o7sd hands the same descriptor on) is ours again.
        let ours = Kick::from_fd(theirs.try_clone().unwrap()).unwrap();
        for _ in 0..10_000 {
            k.kick();
            ours.kick();
        }
        assert!(readable(&k));
        // One drain empties it, however full (a hostile holder buys no wake-up per part).
        assert!(k.drain() >= 64 * 1024);
        assert!(!readable(&k));
        // Empty it through the blocking description; ours still returns at once when empty.
        fcntl(&theirs, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let mut b = [0u8; 4096];
        while nix::unistd::read(&theirs, &mut b).is_ok_and(|n| n > 0) {}
        fcntl(&theirs, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
        assert_eq!(k.drain(), 0);
        assert_eq!(ours.drain(), 0);
    }

    #[test]
    fn only_pipes_are_taken_as_kicks() {
        let (m, fd) = FlowMem::create(4, 128).unwrap();
        drop(m);
        assert_eq!(
            Kick::from_fd(fd).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn push_pop_wrap_and_full() {
        let (m, fd) = FlowMem::create(4, 128).unwrap();
        let other = FlowMem::open(&fd).unwrap();
        let tx = m.ring(Dir::Tx);
        let rx_side = other.ring(Dir::Tx);
        let mut buf = [0u8; 256];
        for round in 0..10u8 {
            for i in 0..4u8 {
                tx.push(&[round, i, 7]).unwrap();
            }
            assert_eq!(tx.push(&[1]), Err(RingError::Full));
            for i in 0..4u8 {
                assert_eq!(rx_side.pop(&mut buf).unwrap(), Some(3));
                assert_eq!(&buf[..3], &[round, i, 7]);
            }
            assert_eq!(rx_side.pop(&mut buf).unwrap(), None);
        }
        assert_eq!(tx.push(&[0; 121]), Err(RingError::TooBig(121)));
        assert!(other.ring(Dir::Rx).is_empty());
    }

    #[test]
    fn frcp_state_published_by_the_app_is_read_by_the_other_side() {
        let (app, fd) = FlowMem::create(4, 128).unwrap();
        let dp = FlowMem::open(&fd).unwrap();
        assert_eq!(dp.frcp(), None, "a flow without FRCP shows none");
        let s = crate::msg::FrcpStats {
            rtx: true,
            rto_us: 2,
            srtt_us: 3,
            in_flight: 4,
            window: 5,
            sent: 6,
            retransmits: 7,
            delivered: 8,
            duplicates: 9,
            bad: 10,
        };
        app.publish_frcp(&s);
        assert_eq!(dp.frcp(), Some(s));
        app.publish_frcp(&crate::msg::FrcpStats { rtx: false, ..s });
        assert_eq!(dp.frcp().map(|x| x.rtx), Some(false));
        // The ring geometry and the flags are untouched.
        assert_eq!(dp.slots(), 4);
        assert_eq!(dp.flags().load(Ordering::SeqCst), 0);
        assert!(dp.ring(Dir::Tx).is_empty());
    }

    #[test]
    fn crc_state_published_by_the_app_is_read_by_the_other_side_and_touches_nothing_else() {
        let (app, fd) = FlowMem::create(4, 128).unwrap();
        let dp = FlowMem::open(&fd).unwrap();
        assert_eq!(dp.crc(), None, "a flow without the CRC shows none");
        app.publish_crc(0);
        assert_eq!(dp.crc(), Some(0));
        app.publish_crc(7);
        assert_eq!(dp.crc(), Some(7));
        // A count past 31 bits saturates; it never reads as "no CRC".
        app.publish_crc(u32::MAX);
        assert_eq!(dp.crc(), Some(CRC_ON - 1));
        assert_eq!(dp.frcp(), None);
        // The rings start after the header: an SDU pushed is read back whole.
        let ring = app.ring(Dir::Tx);
        ring.push(b"abc").unwrap();
        let mut b = [0u8; 8];
        assert_eq!(dp.ring(Dir::Tx).pop(&mut b).unwrap(), Some(3));
        assert_eq!(&b[..3], b"abc");
        assert_eq!(dp.crc(), Some(CRC_ON - 1));
    }

    #[test]
    fn corrupt_indices_and_lengths_are_reported() {
        let (m, fd) = FlowMem::create(4, 128).unwrap();
        let r = m.ring(Dir::Rx);
        r.head().store(100, Ordering::SeqCst);
        assert_eq!(r.len(), Err(RingError::Corrupt));
        let mut b = [0u8; 8];
        assert_eq!(r.pop(&mut b), Err(RingError::Corrupt));
        r.head().store(1, Ordering::SeqCst);
        r.tail().store(0, Ordering::SeqCst);
        // Length field beyond the slot.
        let off = r.slot(0);
        let p = FlowMem::open(&fd).unwrap();
        // Safety: test-only write of the slot's length field inside the map.
        unsafe { std::ptr::write_unaligned(p.base().add(off) as *mut u32, 100_000) };
        assert_eq!(r.pop(&mut b), Err(RingError::Corrupt));
        assert!(FlowMem::open(&Kick::new().unwrap().fd.try_clone().unwrap()).is_err());
    }

    #[test]
    fn flow_memory_cannot_change_size_and_unsealed_memory_is_refused() {
        let (_m, fd) = FlowMem::create(4, 128).unwrap();
        let f = std::fs::File::from(fd.try_clone().unwrap());
        let len = f.metadata().unwrap().len();
        // What a hostile app would do to kill the data plane with SIGBUS.
        assert!(f.set_len(64).is_err(), "shrinking must be refused");
        assert!(f.set_len(len * 2).is_err(), "growing must be refused");
        assert_eq!(f.metadata().unwrap().len(), len);
        assert!(FlowMem::open_sealed(&fd).is_ok());
        // An unsealed memfd with a valid header is refused by the data plane's open.
        let plain =
            nix::sys::memfd::memfd_create(c"x", nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING)
                .unwrap();
        let pf = std::fs::File::from(plain.try_clone().unwrap());
        pf.set_len(len).unwrap();
        let mut bytes = vec![0u8; len as usize];
        let mut src = std::fs::File::from(fd.try_clone().unwrap());
        std::io::Read::read_exact(&mut src, &mut bytes).unwrap();
        std::io::Write::write_all(&mut &pf, &bytes).unwrap();
        assert!(FlowMem::open(&plain).is_ok());
        let e = FlowMem::open_sealed(&plain).unwrap_err();
        assert!(e.to_string().contains("not sealed"), "{e}");
    }

    #[test]
    fn threads_exchange_in_order() {
        let (m, _fd) = FlowMem::create(64, 128).unwrap();
        let m = std::sync::Arc::new(m);
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            let r = m2.ring(Dir::Tx);
            for i in 0u32..100_000 {
                while r.push(&i.to_ne_bytes()) == Err(RingError::Full) {
                    std::hint::spin_loop();
                }
            }
        });
        let r = m.ring(Dir::Tx);
        let mut next = 0u32;
        let mut b = [0u8; 4];
        while next < 100_000 {
            if let Some(4) = r.pop(&mut b).unwrap() {
                assert_eq!(u32::from_ne_bytes(b), next);
                next += 1;
            }
        }
        t.join().unwrap();
    }
}
