//! The application API: allocate, accept, read, write, deallocate, wait on several flows.

use crate::ipc::{wait_readable, Channel};
use crate::proto::{self, ErrorCode, FlowInfo, Reply, Request};
use crate::reliable::{self, Reliable};
use crate::ring::{flags, Dir, FlowMem, Kick, Ring, RingError};
use o7s_wire::qos::QosSpec;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a flow operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon could not be reached.
    #[error("cannot reach o7sd at {path}: {source} (is o7sd running? set O7S_RUNDIR for another instance)")]
    NoDaemon {
        /// Socket path tried.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The daemon refused the request.
    #[error("{code}: {message}")]
    Daemon {
        /// Kind.
        code: ErrorCode,
        /// Reason.
        message: String,
    },
    /// Timed out.
    #[error("timed out")]
    Timeout,
    /// The peer is gone or the flow was deallocated.
    #[error("peer gone: the flow is down")]
    PeerGone,
    /// FRCP: the receiver's window stayed closed for a second and did not answer the
    /// rendez-vous (the reference's `-ECONNRESET`).
    #[error("connection reset: the peer's window stayed closed and it did not answer")]
    Reset,
    /// Non-blocking operation found nothing to do.
    #[error("would block")]
    WouldBlock,
    /// SDU larger than the flow's MTU.
    #[error("SDU of {0} bytes exceeds the flow's MTU of {1}")]
    TooBig(usize, usize),
    /// The daemon or data plane broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// I/O error talking to the daemon.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// Whether o7sd is not there (not running, or it went away while we waited): a server
    /// may wait for it to come back, as its flows go on without it.
    pub fn daemon_away(&self) -> bool {
        matches!(self, Self::NoDaemon { .. } | Self::Io(_))
    }

    /// The daemon's error code, if this is a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Daemon { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn connect() -> Result<Channel, Error> {
    connect_in(None)
}

fn connect_in(rundir: Option<&std::path::Path>) -> Result<Channel, Error> {
    let path = proto::socket_path(rundir);
    Channel::connect(&path).map_err(|e| Error::NoDaemon {
        path: path.display().to_string(),
        source: e,
    })
}

/// Sends a control command to the daemon and returns its reply.
pub fn control(cmd: proto::Ctl) -> Result<Reply, Error> {
    let ch = connect()?;
    // The daemon may refuse a long request at its first packet and close the connection
    // while the rest is being sent: then the send fails, or the first read returns the
    // reset the close left pending, and the reply queued before it comes next. The
    // reply says why, better than either error.
    let sent = ch.send(&Request::Ctl(cmd), &[]);
    let soon = Some(Duration::from_millis(500));
    let first = if sent.is_err() {
        ch.recv_timeout::<Reply>(soon)
    } else {
        ch.recv::<Reply>()
    };
    let reply = match first {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            ch.recv_timeout::<Reply>(soon).map_err(|_| e)
        }
        r => r,
    };
    match (reply, sent) {
        (Ok((r, _)), _) => Ok(r),
        (Err(_), Err(e)) => Err(e.into()),
        (Err(e), Ok(())) => Err(e.into()),
    }
}

/// An allocated flow. Dropping it deallocates it.
#[derive(Debug)]
pub struct Flow {
    chan: Channel,
    info: FlowInfo,
    mem: FlowMem,
    tx_kick: Kick,
    rx_kick: Kick,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    nonblocking: bool,
    /// How long a reader polls its ring before it sleeps.
    spin: Duration,
    /// o7sd went away (its connection closed without a word): the flow goes on in the
    /// data plane, and its end is learnt from the flow memory's flags alone.
    daemon_gone: std::sync::atomic::AtomicBool,
    /// FRCP, when the flow's QoS cube asks for in-order delivery (boxed: a flow without
    /// it stays small).
    rel: Option<Box<Mutex<Reliable>>>,
    /// The flow carries the CRC32 trailer ([`crate::crc`]; FRCP flows: in the machine's
    /// driver).
    crc: bool,
    /// SDUs of a raw flow that failed the CRC.
    crc_errors: std::sync::atomic::AtomicU32,
}

/// Default for [`Flow::set_spin`]; `O7S_FLOW_SPIN_US` overrides it.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

fn spin_from_env() -> Duration {
    std::env::var("O7S_FLOW_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_micros)
        .unwrap_or(DEFAULT_SPIN)
}

impl Flow {
    fn from_reply(chan: Channel, reply: Reply, fds: Vec<OwnedFd>) -> Result<Self, Error> {
        match reply {
            Reply::Flow(mut info) => {
                let crc = crate::crc::on(&info.qos);
                let rel = o7s_proto::frcp::FrcpConfig::for_qos(&info.qos)
                    .map(|c| Box::new(Mutex::new(Reliable::new(c, crc))));
                if rel.is_some() {
                    // The app's SDUs leave room for the FRCT header.
                    info.mtu = info.mtu.saturating_sub(reliable::HEADER_LEN);
                }
                if crc {
                    info.mtu = info.mtu.saturating_sub(crate::crc::LEN);
                }
                let mut it = fds.into_iter();
                let (Some(mem), Some(tx), Some(rx)) = (it.next(), it.next(), it.next()) else {
                    return Err(Error::Protocol("flow reply without its descriptors".into()));
                };
                let mem = FlowMem::open(&mem)?;
                if crc && !info.swapped {
                    mem.publish_crc(0);
                }
                if let Some(r) = &rel {
                    if let Ok(r) = r.lock() {
                        if !info.swapped {
                            mem.publish_frcp(&r.stats());
                        }
                    }
                }
                Ok(Self {
                    chan,
                    info,
                    mem,
                    tx_kick: Kick::from_fd(tx)?,
                    rx_kick: Kick::from_fd(rx)?,
                    read_timeout: None,
                    write_timeout: None,
                    nonblocking: false,
                    spin: spin_from_env(),
                    daemon_gone: std::sync::atomic::AtomicBool::new(false),
                    rel,
                    crc,
                    crc_errors: std::sync::atomic::AtomicU32::new(0),
                })
            }
            Reply::Error {
                code: ErrorCode::Timeout,
                ..
            } => Err(Error::Timeout),
            Reply::Error { code, message } => Err(Error::Daemon { code, message }),
            other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Allocates a flow to `name` with `qos`, waiting at most `timeout`.
    pub fn alloc(name: &str, qos: QosSpec, timeout: Duration) -> Result<Self, Error> {
        Self::alloc_in(None, name, qos, timeout)
    }

    /// [`Flow::alloc`] through the daemon of runtime directory `rundir` (`None`:
    /// `$O7S_RUNDIR` or the default), whatever the environment says.
    pub fn alloc_in(
        rundir: Option<&std::path::Path>,
        name: &str,
        qos: QosSpec,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let ch = connect_in(rundir)?;
        let req = Request::Alloc {
            name: name.to_string(),
            qos: crate::crc::requested(qos, crate::crc::wanted()),
            timeout_ms: timeout.as_millis() as u64,
        };
        ch.send(&req, &[])?;
        // The daemon answers within the time-out; allow it a little slack.
        let (r, fds) = ch
            .recv_timeout::<Reply>(Some(timeout + Duration::from_secs(2)))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut {
                    Error::Timeout
                } else {
                    e.into()
                }
            })?;
        Self::from_reply(ch, r, fds)
    }

    /// Joins broadcast layer `layer` (the reference's `flow_join`): what this flow writes
    /// goes to every other process joined to the layer, on this host and on the others,
    /// and it reads what they write (not its own). SDUs up to 1400 bytes.
    pub fn join(layer: &str) -> Result<Self, Error> {
        let ch = connect()?;
        ch.send(
            &Request::Join {
                layer: layer.to_string(),
            },
            &[],
        )?;
        let (r, fds) = ch.recv_timeout::<Reply>(Some(Duration::from_secs(5)))?;
        Self::from_reply(ch, r, fds)
    }

    /// Accepts the next flow for a name this process (or its program) is bound to.
    pub fn accept(timeout: Option<Duration>) -> Result<Self, Error> {
        let ch = connect()?;
        ch.send(
            &Request::Accept {
                timeout_ms: timeout.map(|t| t.as_millis() as u64),
            },
            &[],
        )?;
        let (r, fds) = ch
            .recv_timeout::<Reply>(timeout.map(|t| t + Duration::from_secs(2)))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut {
                    Error::Timeout
                } else {
                    e.into()
                }
            })?;
        Self::from_reply(ch, r, fds)
    }

    /// What the daemon said about the flow.
    pub fn info(&self) -> &FlowInfo {
        &self.info
    }

    /// Blocking reads give up after `t` (`None`: never).
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
    }

    /// Blocking writes give up after `t` when the ring stays full.
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_timeout = t;
    }

    /// Non-blocking reads and writes return [`Error::WouldBlock`].
    pub fn set_nonblocking(&mut self, nb: bool) {
        self.nonblocking = nb;
    }

    /// How long a blocking read polls the ring (yielding the CPU) before it sleeps on the
    /// data plane's wake-up; zero sleeps at once. Default [`DEFAULT_SPIN`] or
    /// `O7S_FLOW_SPIN_US`.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// The ring of direction `d` as this end sees it (the accepting end of a local flow
    /// sees the memory's rings the other way round).
    fn ring(&self, d: Dir) -> Ring<'_> {
        match (self.info.swapped, d) {
            (false, d) => self.mem.ring(d),
            (true, Dir::Tx) => self.mem.ring(Dir::Rx),
            (true, Dir::Rx) => self.mem.ring(Dir::Tx),
        }
    }

    fn down(&self) -> bool {
        // On a local flow the other end's drop (APP_CLOSED in the memory both share) ends
        // it too.
        let ends = if self.info.local {
            flags::PEER_DOWN | flags::CLOSED | flags::APP_CLOSED
        } else {
            flags::PEER_DOWN | flags::CLOSED
        };
        self.mem.flags().load(Ordering::Acquire) & ends != 0
    }

    /// The connection to o7sd is readable: whether that ends the flow. o7sd says a word
    /// before it closes the connection of a flow it ended; a connection closed without one
    /// means o7sd went away (a crash), and the flow goes on in the data plane, which
    /// marks its memory when it ends.
    fn chan_ended(&self) -> bool {
        if self.daemon_gone.load(Ordering::Relaxed) {
            return self.down();
        }
        match self.chan.recv::<Reply>() {
            Ok(_) => true,
            Err(_) => {
                self.daemon_gone.store(true, Ordering::Relaxed);
                self.down()
            }
        }
    }

    /// The connection to o7sd, while it is worth watching.
    fn watched_chan(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        (!self.daemon_gone.load(Ordering::Relaxed)).then(|| self.chan.as_fd())
    }

    /// Writes one SDU. An empty one sends nothing and returns 0: on the wire an empty SDU is
    /// a keepalive, which the data planes send by themselves when a flow is quiet.
    pub fn write(&self, sdu: &[u8]) -> Result<usize, Error> {
        let max = self.max_sdu();
        if sdu.len() > max {
            return Err(Error::TooBig(sdu.len(), max));
        }
        if sdu.is_empty() {
            return if self.down() {
                Err(Error::PeerGone)
            } else {
                Ok(0)
            };
        }
        if self.rel.is_some() {
            return self.write_reliable(sdu);
        }
        let start = Instant::now();
        let ring = self.ring(Dir::Tx);
        let mut spins = 0u32;
        let sealed;
        let pdu = if self.crc {
            let mut v = Vec::with_capacity(sdu.len() + crate::crc::LEN);
            crate::crc::seal_into(sdu, &mut v);
            sealed = v;
            &sealed[..]
        } else {
            sdu
        };
        loop {
            if self.down() {
                return Err(Error::PeerGone);
            }
            match ring.push(pdu) {
                Ok(wake) => {
                    if wake {
                        self.tx_kick.kick();
                    }
                    return Ok(sdu.len());
                }
                Err(RingError::Full) => {
                    // The data plane never sleeps on a non-empty ring, but kick it once
                    // in case it missed the earlier wake-up (not on every retry: a system
                    // call each time would steal the CPU it needs to drain the ring).
                    if spins == 0 {
                        self.tx_kick.kick();
                    }
                    if self.nonblocking {
                        return Err(Error::WouldBlock);
                    }
                    if self.write_timeout.is_some_and(|t| start.elapsed() >= t) {
                        return Err(Error::Timeout);
                    }
                    spins += 1;
                    if spins < 16 {
                        // Give the CPU to the data plane (it may share ours).
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                Err(e) => return Err(Error::Protocol(e.to_string())),
            }
        }
    }

    /// The largest SDU the app may write.
    fn max_sdu(&self) -> usize {
        let mut ring = self.mem.max_sdu();
        if self.rel.is_some() {
            ring = ring.saturating_sub(reliable::HEADER_LEN);
        }
        if self.crc {
            ring = ring.saturating_sub(crate::crc::LEN);
        }
        self.info.mtu.min(ring)
    }

    /// Pops the next SDU of a flow without FRCP into `buf`: with the CRC trailer, the next
    /// whose trailer matches (the others dropped and counted).
    fn pop_raw(&self, ring: Ring<'_>, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        if !self.crc {
            return ring.pop(buf).map_err(|e| Error::Protocol(e.to_string()));
        }
        let mut pdu = Vec::new();
        // At most a ring's worth of bad SDUs per call: the caller's time-out is looked at
        // between calls.
        for _ in 0..self.mem.slots().max(1) {
            let got = ring
                .pop_with(|s| {
                    pdu.clear();
                    s.append_to(&mut pdu);
                })
                .map_err(|e| Error::Protocol(e.to_string()))?;
            if got.is_none() {
                return Ok(None);
            }
            match crate::crc::open(&pdu) {
                Some(body) => {
                    let n = body.len().min(buf.len());
                    buf.get_mut(..n)
                        .unwrap_or_default()
                        .copy_from_slice(body.get(..n).unwrap_or_default());
                    return Ok(Some(n));
                }
                None => {
                    let e = self
                        .crc_errors
                        .fetch_add(1, Ordering::Relaxed)
                        .saturating_add(1);
                    if !self.info.swapped {
                        self.mem.publish_crc(e);
                    }
                }
            }
        }
        // (The ring may hold more: the caller's wait returns at once while it does.)
        Ok(None)
    }

    /// The flow's FRCP, locked (a poisoned lock is taken as it is: the machine's state is
    /// consistent between its calls).
    fn rel(&self) -> Option<MutexGuard<'_, Reliable>> {
        self.rel
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Ends a section of work on the FRCP machine: pushes what it transmits, publishes its
    /// state, and wakes a reader sleeping on the rx ring when SDUs wait in the machine
    /// for it or its timers may have moved (another thread of ours did the work).
    fn rel_done(&self, r: &mut Reliable) -> Result<(), Error> {
        r.flush(self.ring(Dir::Tx), &self.tx_kick);
        // (Both ends of a local flow share the header: the allocating end's is shown.)
        if !self.info.swapped {
            self.mem.publish_frcp(&r.stats());
            if r.crc {
                self.mem.publish_crc(r.crc_errors);
            }
        }
        if self.ring(Dir::Rx).waiting().load(Ordering::SeqCst) != 0 {
            self.rx_kick.kick();
        }
        if r.corrupt {
            return Err(Error::Protocol("the flow's ring was corrupted".into()));
        }
        Ok(())
    }

    /// [`Flow::write`] through FRCP: waits (pumping acknowledgements and running the
    /// timers) while the peer's window is closed.
    fn write_reliable(&self, sdu: &[u8]) -> Result<usize, Error> {
        let start = Instant::now();
        loop {
            if self.down() {
                return Err(Error::PeerGone);
            }
            let now = Instant::now();
            let next = {
                let Some(mut r) = self.rel() else {
                    return Err(Error::Protocol("no FRCP on this flow".into()));
                };
                r.pump(now, self.ring(Dir::Rx), self.mem.slots());
                let sent = r.m.send(now, sdu);
                self.rel_done(&mut r)?;
                match sent {
                    Ok(()) => return Ok(sdu.len()),
                    Err(o7s_proto::frcp::SendError::Reset) => {
                        r.linger_over = true;
                        return Err(Error::Reset);
                    }
                    Err(o7s_proto::frcp::SendError::WouldBlock) => r.m.poll_timeout(),
                }
            };
            if self.nonblocking {
                return Err(Error::WouldBlock);
            }
            let mut wait = next.map(|t| t.saturating_duration_since(Instant::now()));
            if let Some(t) = self.write_timeout {
                let Some(left) = t.checked_sub(start.elapsed()) else {
                    return Err(Error::Timeout);
                };
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            // The window opens by an FC the rx ring brings (or the rendez-vous timer).
            self.wait_rx(wait)?;
        }
    }

    /// [`Flow::read`] through FRCP: the next SDU in order.
    fn read_reliable(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        loop {
            let now = Instant::now();
            let next = {
                let Some(mut r) = self.rel() else {
                    return Err(Error::Protocol("no FRCP on this flow".into()));
                };
                r.pump(now, self.ring(Dir::Rx), self.mem.slots());
                let sdu = r.m.poll_deliver();
                self.rel_done(&mut r)?;
                if let Some(sdu) = sdu {
                    let n = sdu.len().min(buf.len());
                    buf.get_mut(..n)
                        .unwrap_or_default()
                        .copy_from_slice(sdu.get(..n).unwrap_or_default());
                    return Ok(n);
                }
                r.m.poll_timeout()
            };
            if self.down() {
                return Err(Error::PeerGone);
            }
            if self.nonblocking {
                return Err(Error::WouldBlock);
            }
            let mut wait = next.map(|t| t.saturating_duration_since(Instant::now()));
            if let Some(d) = deadline {
                let Some(left) = d.checked_duration_since(Instant::now()) else {
                    return Err(Error::Timeout);
                };
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            self.wait_rx(wait)?;
        }
    }

    /// Reads one SDU into `buf` (cut to its size); returns the SDU's length.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.rel.is_some() {
            return self.read_reliable(buf);
        }
        let ring = self.ring(Dir::Rx);
        // The clock is read only when the ring is empty: a stream of SDUs costs no
        // clock_gettime per read.
        if let Some(n) = self.pop_raw(ring, buf)? {
            return Ok(n);
        }
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(n) = self.pop_raw(ring, buf)? {
                return Ok(n);
            }
            if self.down() {
                return Err(Error::PeerGone);
            }
            if self.nonblocking {
                return Err(Error::WouldBlock);
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) => Some(l),
                    None => return Err(Error::Timeout),
                },
                None => None,
            };
            self.wait_rx(left)?;
        }
    }

    /// Sleeps until the rx ring may have data, the flow goes down, or `t` passes. While
    /// SDUs keep coming it first polls the ring for a short while (yielding the CPU), which
    /// spares the data plane a wake-up system call and both of us a context switch per SDU.
    fn wait_rx(&self, t: Option<Duration>) -> Result<(), Error> {
        let ring = self.ring(Dir::Rx);
        if !self.spin.is_zero() {
            let until = Instant::now() + self.spin.min(t.unwrap_or(self.spin));
            loop {
                for _ in 0..8 {
                    if !ring.is_empty() {
                        return Ok(());
                    }
                    std::thread::yield_now();
                }
                if self.down() || Instant::now() >= until {
                    break;
                }
            }
        }
        ring.waiting().store(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !ring.is_empty() || self.down() {
            ring.waiting().store(0, Ordering::SeqCst);
            return Ok(());
        }
        let mut fds = vec![self.rx_kick.fd().as_fd()];
        fds.extend(self.watched_chan());
        let woke = wait_any_fd(&fds, t)?;
        ring.waiting().store(0, Ordering::SeqCst);
        self.rx_kick.drain();
        if woke.contains(&1) && ring.is_empty() && self.chan_ended() {
            // o7sd ended the flow.
            return Err(Error::PeerGone);
        }
        Ok(())
    }

    /// Whether an SDU is waiting.
    pub fn readable(&self) -> bool {
        match self.rel() {
            Some(mut r) => {
                r.pump(Instant::now(), self.ring(Dir::Rx), self.mem.slots());
                let ready = r.m.deliverable() > 0;
                // A reader asleep on this flow is woken by rel_done; an error shows at the
                // next read.
                let _ = self.rel_done(&mut r);
                ready
            }
            None => !self.ring(Dir::Rx).is_empty(),
        }
    }

    /// When this flow's FRCP next needs the CPU (a delayed ACK, a retransmission, a
    /// rendez-vous), if it runs FRCP and has a timer set.
    fn next_timer(&self) -> Option<Instant> {
        self.rel().and_then(|r| r.m.poll_timeout())
    }

    /// FRCP's state, if the flow runs it (what `o7sctl flow list` shows).
    pub fn frcp_stats(&self) -> Option<o7s_abi::msg::FrcpStats> {
        self.rel().map(|r| r.stats())
    }

    /// Deallocates the flow (the same as dropping it).
    pub fn dealloc(self) {}

    /// Whether o7sd went away while the flow lives on (see [`Flow::read`]).
    pub fn daemon_gone(&self) -> bool {
        self.daemon_gone.load(Ordering::Relaxed)
    }
}

impl Flow {
    /// On a flow with retransmission (FRCP, `loss` 0): waits until the peer has
    /// acknowledged every SDU written, retransmitting what it lacks, for at most
    /// [`reliable::LINGER`] (5 s) or until the flow goes down. Dropping the flow does the
    /// same (the reference's `FRCTFLINGER`). Returns at once on other flows, after a write
    /// failed with [`Error::Reset`], and once a wait ran its full time.
    pub fn wait_acked(&self) {
        let until = Instant::now() + reliable::LINGER;
        loop {
            if self.down() {
                return;
            }
            let now = Instant::now();
            let next = {
                let Some(mut r) = self.rel() else { return };
                if !r.m.config().rtx || r.linger_over || (r.m.in_flight() == 0 && !r.backlogged()) {
                    return;
                }
                r.pump(now, self.ring(Dir::Rx), self.mem.slots());
                if self.rel_done(&mut r).is_err() {
                    return;
                }
                r.m.poll_timeout()
            };
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                // Not again (on drop): the peer did not acknowledge in all that time.
                if let Some(mut r) = self.rel() {
                    r.linger_over = true;
                }
                return;
            };
            let wait = next.map_or(left, |t| {
                t.saturating_duration_since(Instant::now()).min(left)
            });
            if self.wait_rx(Some(wait)).is_err() {
                return;
            }
        }
    }
}

impl Drop for Flow {
    /// Tells the data plane the flow is let go (it removes it, also when no o7sd runs);
    /// closing the connection tells o7sd. A reliable flow first lingers (see
    /// [`Flow::wait_acked`]).
    fn drop(&mut self) {
        self.wait_acked();
        // The ACK still owed goes now: the peer hears what we got before we go.
        if let Some(mut r) = self.rel() {
            r.m.ack_now();
            r.flush(self.ring(Dir::Tx), &self.tx_kick);
        }
        self.mem
            .flags()
            .fetch_or(flags::APP_CLOSED, Ordering::SeqCst);
        self.tx_kick.kick();
    }
}

fn wait_any_fd(fds: &[std::os::fd::BorrowedFd<'_>], t: Option<Duration>) -> io::Result<Vec<usize>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = match t {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    let mut p: Vec<PollFd<'_>> = fds
        .iter()
        .map(|f| PollFd::new(*f, PollFlags::POLLIN))
        .collect();
    loop {
        match poll(&mut p, ms) {
            Ok(_) => break,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
    }
    Ok(p.iter()
        .enumerate()
        .filter(|(_, x)| x.revents().is_some_and(|r| !r.is_empty()))
        .map(|(i, _)| i)
        .collect())
}

/// Waits until one of `flows` is readable or down; returns the indices of those that are.
pub fn wait_any(flows: &[&Flow], timeout: Option<Duration>) -> Result<Vec<usize>, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ready: Vec<usize> = flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.readable() || f.down())
            .map(|(i, _)| i)
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        for f in flows {
            f.ring(Dir::Rx).waiting().store(1, Ordering::SeqCst);
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if flows.iter().any(|f| f.readable() || f.down()) {
            continue;
        }
        let mut left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) => Some(l),
                None => return Ok(vec![]),
            },
            None => None,
        };
        // FRCP's timers run while we sleep: wake for the first one.
        if let Some(t) = flows.iter().filter_map(|f| f.next_timer()).min() {
            let w = t.saturating_duration_since(Instant::now());
            left = Some(left.map_or(w, |l| l.min(w)));
        }
        let mut fds = Vec::new();
        for f in flows {
            fds.push(f.rx_kick.fd().as_fd());
            fds.extend(f.watched_chan());
        }
        let _ = wait_readable_any(&fds, left)?;
        for f in flows {
            f.rx_kick.drain();
        }
        let closed: Vec<usize> = flows
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.watched_chan()
                    .is_some_and(|c| wait_readable(c, Some(Duration::ZERO)).unwrap_or(false))
                    && f.chan_ended()
            })
            .map(|(i, _)| i)
            .collect();
        if !closed.is_empty() {
            return Ok(closed);
        }
    }
}

fn wait_readable_any(
    fds: &[std::os::fd::BorrowedFd<'_>],
    t: Option<Duration>,
) -> io::Result<Vec<usize>> {
    wait_any_fd(fds, t)
}
