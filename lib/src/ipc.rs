//! Message channels between apps, `o7sd` and the data plane: Unix `SOCK_SEQPACKET` sockets
//! carrying one JSON message per packet, with file descriptors (memfd, kicks) passed as
//! `SCM_RIGHTS`.

use nix::sys::socket::{
    accept, bind, connect, getsockopt, listen, recvmsg, sendmsg, socket, socketpair, sockopt,
    AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// Largest message (its JSON), in all its packets.
pub const MAX_MSG: usize = 16 * 1024 * 1024;
/// Largest packet: longer messages are sent as fragments of this size (see [`encode`]).
pub const MAX_FRAGMENT: usize = 64 * 1024;
/// First byte of a fragment that more fragments follow.
const MORE: u8 = 1;
/// First byte of the last fragment of a message.
const LAST: u8 = 2;
/// Most descriptors one message carries.
pub const MAX_FDS: usize = 8;
/// Most packets of one message: as many as [`encode`] makes of the longest one.
pub const MAX_FRAGMENTS: usize = MAX_MSG / (MAX_FRAGMENT - 1) + 1;
/// How long the packets of one message may take to arrive, from the first: a peer that
/// sends a fragment now and then must not hold the reader for longer.
pub const MESSAGE_TIME: Duration = Duration::from_secs(10);

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Who is at the other end of a channel (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// One end of a message channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Connects to a listening socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(nix_io)?;
        let addr = UnixAddr::new(path).map_err(nix_io)?;
        connect(fd.as_raw_fd(), &addr).map_err(nix_io)?;
        Ok(Self { fd })
    }

    /// A connected pair (for a parent and the child it spawns).
    pub fn pair() -> io::Result<(Self, Self)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(nix_io)?;
        Ok((Self { fd: a }, Self { fd: b }))
    }

    /// Wraps an inherited descriptor.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// The descriptor (to poll on).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Gives the descriptor up.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The peer's pid, from `SO_PEERCRED`.
    pub fn peer_pid(&self) -> io::Result<i32> {
        let c = getsockopt(&self.fd, sockopt::PeerCredentials).map_err(nix_io)?;
        Ok(c.pid())
    }

    /// The peer's credentials (pid, uid, gid), from `SO_PEERCRED`: what the kernel recorded
    /// when the peer connected, not what it claims.
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        let c = getsockopt(&self.fd, sockopt::PeerCredentials).map_err(nix_io)?;
        Ok(PeerCred {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        })
    }

    /// Sends `msg` with `fds`, blocking while the peer's receive queue is full. A message
    /// longer than [`MAX_FRAGMENT`] goes as several packets (see [`encode`]).
    pub fn send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        for (i, p) in encode(msg)?.iter().enumerate() {
            let f = if i == 0 { fds } else { &[] };
            self.send_packet(p, f, MsgFlags::MSG_NOSIGNAL)?;
        }
        Ok(())
    }

    /// Sends `msg` with `fds` without blocking: `WouldBlock` when the peer's receive queue
    /// is full (the caller keeps or drops the message). Only for messages of one packet
    /// (`InvalidInput` otherwise): longer ones are sent packet by packet with
    /// [`encode`] and [`Channel::try_send_packet`], keeping the rest for later.
    pub fn try_send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let packets = encode(msg)?;
        match packets.as_slice() {
            [one] => self.try_send_packet(one, fds),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message of several packets",
            )),
        }
    }

    /// Sends one packet made by [`encode`] without blocking (`WouldBlock` when there is no
    /// room).
    pub fn try_send_packet(&self, packet: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        self.send_packet(packet, fds, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT)
    }

    fn send_packet(&self, body: &[u8], fds: &[BorrowedFd<'_>], flags: MsgFlags) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let iov = [IoSlice::new(body)];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, flags, None) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(nix_io(e)),
            }
        }
    }

    /// Whether the next packet waiting begins a message of several packets (`Ok(Some(false))`
    /// also when the peer closed): an event loop reads one-packet messages
    /// itself, as they never block once the socket is readable, and leaves longer ones
    /// to a thread that may wait for their rest.
    ///
    /// `Ok(None)` when no packet is there yet: a caller that must not block waits for the
    /// channel to be readable again rather than calling [`Channel::recv`].
    pub fn next_is_long(&self) -> io::Result<Option<bool>> {
        let mut b = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut b)];
        match recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            None,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => Ok(Some(m.bytes > 0 && b[0] == MORE)),
            Err(nix::Error::EAGAIN) => Ok(None),
            Err(e) => Err(nix_io(e)),
        }
    }

    /// Makes blocking sends and receives on this channel fail (`WouldBlock`) after
    /// `timeout`: for a thread that must not wait on one peer for ever.
    pub fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        let tv = nix::sys::time::TimeVal::new(
            i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            i64::from(timeout.subsec_micros()),
        );
        nix::sys::socket::setsockopt(&self.fd, sockopt::SendTimeout, &tv).map_err(nix_io)?;
        nix::sys::socket::setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv).map_err(nix_io)
    }

    /// Receives a message and its descriptors; `UnexpectedEof` when the peer closed.
    pub fn recv<T: DeserializeOwned>(&self) -> io::Result<(T, Vec<OwnedFd>)> {
        let (bytes, fds) = self.recv_message()?;
        let msg = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad message: {e}")))?;
        Ok((msg, fds))
    }

    /// As [`Channel::recv`], failing with `TimedOut` after `timeout`.
    pub fn recv_timeout<T: DeserializeOwned>(
        &self,
        timeout: Option<Duration>,
    ) -> io::Result<(T, Vec<OwnedFd>)> {
        if let Some(t) = timeout {
            if !wait_readable(self.fd.as_fd(), Some(t))? {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
        }
        self.recv()
    }

    /// One whole message: a single packet, or the packets of a long one put together (at
    /// most [`MAX_MSG`] bytes, in at most [`MAX_FRAGMENTS`] packets that all arrive within
    /// [`MESSAGE_TIME`] of the first; a message that breaks a bound is refused at once).
    /// Descriptors come with the first packet: any on later ones are closed, and a message
    /// keeps at most [`MAX_FDS`] (a peer must not fill our descriptor table).
    fn recv_message(&self) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
        let (first, mut fds) = self.recv_raw()?;
        fds.truncate(MAX_FDS);
        if first.first() != Some(&MORE) {
            return Ok((first, fds));
        }
        let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidData, what));
        let until = std::time::Instant::now() + MESSAGE_TIME;
        let mut body = first.get(1..).unwrap_or(&[]).to_vec();
        for _ in 1..MAX_FRAGMENTS {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !wait_readable(self.fd.as_fd(), Some(left))? {
                return bad(format!(
                    "a message's packets took more than {} s",
                    MESSAGE_TIME.as_secs()
                ));
            }
            // Descriptors on a later packet are no part of the message: closed here.
            let (p, _) = self.recv_raw()?;
            let (Some(&mark), Some(part)) = (p.first(), p.get(1..)) else {
                return bad("empty fragment".into());
            };
            if mark != MORE && mark != LAST {
                return bad("a message began inside another".into());
            }
            if body.len() + part.len() > MAX_MSG {
                return bad(format!("message longer than {MAX_MSG} bytes"));
            }
            body.extend_from_slice(part);
            if mark == LAST {
                return Ok((body, fds));
            }
        }
        bad(format!("a message of more than {MAX_FRAGMENTS} packets"))
    }

    fn recv_raw(&self) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; MAX_FRAGMENT + 1];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let r = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            match r {
                Ok(m) => {
                    let mut fds = Vec::new();
                    if let Ok(cms) = m.cmsgs() {
                        for c in cms {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                for fd in v {
                                    // Safety: SCM_RIGHTS gave this process a new descriptor
                                    // that nothing else owns.
                                    #[allow(unsafe_code)]
                                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                                }
                            }
                        }
                    }
                    let truncated = m.flags.contains(MsgFlags::MSG_TRUNC);
                    let n = m.bytes;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
                    }
                    if truncated {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a packet longer than a fragment",
                        ));
                    }
                    buf.truncate(n);
                    return Ok((buf, fds));
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(nix_io(e)),
            }
        }
    }
}

/// The packets of `msg` (JSON): one when it fits [`MAX_FRAGMENT`], else fragments marked
/// `MORE` (0x01) and, for the last one, `LAST` (0x02): bytes no JSON text starts with, so
/// a one-packet message is plain JSON. Listings of any length cross a channel this way
/// (a SEQPACKET socket refuses a packet larger than its send buffer).
pub fn encode<T: Serialize>(msg: &T) -> io::Result<Vec<Vec<u8>>> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {} bytes, longer than {MAX_MSG}", body.len()),
        ));
    }
    if body.len() <= MAX_FRAGMENT {
        return Ok(vec![body]);
    }
    let n = body.len().div_ceil(MAX_FRAGMENT - 1);
    Ok(body
        .chunks(MAX_FRAGMENT - 1)
        .enumerate()
        .map(|(i, c)| {
            let mut p = Vec::with_capacity(c.len() + 1);
            p.push(if i + 1 == n { LAST } else { MORE });
            p.extend_from_slice(c);
            p
        })
        .collect())
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until `fd` is readable (or hung up); `false` on time-out.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    loop {
        let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut p, ms) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(nix_io(e)),
        }
    }
}

/// Whether a [`Listener`]'s connections take descriptors their peers pass.
#[derive(Debug)]
pub enum PassRights {
    /// They do ([`Listener::bind`]).
    Taken,
    /// A peer's send with descriptors fails ([`Listener::bind_refusing_descriptors`]).
    Refused,
    /// Asked to refuse them, the kernel could not (`SO_PASSRIGHTS` is Linux 6.16): why.
    Unsupported(io::Error),
}

/// `SO_PASSRIGHTS` (include/uapi/asm-generic/socket.h, Linux 6.16): 0 refuses
/// `SCM_RIGHTS` sent to this socket, and the connections a listening one accepts inherit
/// it. Not in the libc crate yet.
const SO_PASSRIGHTS: libc::c_int = 83;

/// Sets `SO_PASSRIGHTS` to 0 on `fd`.
fn refuse_rights(fd: &OwnedFd) -> io::Result<()> {
    let off: libc::c_int = 0;
    // Safety: a valid socket descriptor, and a pointer to a c_int that outlives the call
    // with its size.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PASSRIGHTS,
            std::ptr::from_ref(&off).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A listening socket.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Listens at `path` (replacing a stale socket file), mode 0666 so any user's apps can
    /// connect.
    pub fn bind(path: &Path) -> io::Result<Self> {
        Self::bind_inner(path, false).map(|(l, _)| l)
    }

    /// As [`Listener::bind`], for a listener that takes no descriptors from its peers
    /// (o7sd from apps): a peer that passes one has its send refused (`EPERM`), so the
    /// listener's process never holds, and never closes, a descriptor of a peer's. A
    /// socket a peer passed could make that close wait (a TCP socket with a long
    /// `SO_LINGER` and unsent data blocks `close(2)` until its data is acknowledged), and
    /// with it every request of every other peer. `SO_PASSRIGHTS` (Linux 6.16) is set
    /// before `listen(2)`, so every connection has it from the start; an older kernel
    /// cannot refuse descriptors, which the second value says.
    pub fn bind_refusing_descriptors(path: &Path) -> io::Result<(Self, PassRights)> {
        Self::bind_inner(path, true)
    }

    fn bind_inner(path: &Path, refuse: bool) -> io::Result<(Self, PassRights)> {
        let _ = std::fs::remove_file(path);
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(nix_io)?;
        let rights = if refuse {
            match refuse_rights(&fd) {
                Ok(()) => PassRights::Refused,
                Err(e) => PassRights::Unsupported(e),
            }
        } else {
            PassRights::Taken
        };
        let addr = UnixAddr::new(path).map_err(nix_io)?;
        bind(fd.as_raw_fd(), &addr).map_err(nix_io)?;
        listen(&fd, Backlog::new(128).map_err(nix_io)?).map_err(nix_io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok((Self { fd }, rights))
    }

    /// Makes [`Listener::accept`] return `WouldBlock` instead of waiting for a client.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = fcntl(&self.fd, FcntlArg::F_GETFL).map_err(nix_io)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&self.fd, FcntlArg::F_SETFL(flags)).map_err(nix_io)?;
        Ok(())
    }

    /// Accepts a connection.
    pub fn accept(&self) -> io::Result<Channel> {
        loop {
            match accept(self.fd.as_raw_fd()) {
                Ok(fd) => {
                    // Safety: accept returned a new descriptor that nothing else owns.
                    #[allow(unsafe_code)]
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    nix::fcntl::fcntl(
                        &fd,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                    )
                    .map_err(nix_io)?;
                    return Ok(Channel { fd });
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(nix_io(e)),
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_refusing_descriptors_refuses_them_from_the_first_packet() {
        let dir = std::env::temp_dir().join(format!("o7s-rights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.sock");
        let (l, rights) = Listener::bind_refusing_descriptors(&path).unwrap();
        if let PassRights::Unsupported(e) = &rights {
            // Linux before 6.16: nothing to check but that it says so.
            assert_eq!(e.raw_os_error(), Some(libc::ENOPROTOOPT), "{e}");
            eprintln!("SKIPPED: this kernel has no SO_PASSRIGHTS ({e})");
            return;
        }
        assert!(matches!(rights, PassRights::Refused), "{rights:?}");
        let c = Channel::connect(&path).unwrap();
        // Sent before the listener accepted: refused all the same (inherited from it).
        let (r, _w) = nix::unistd::pipe().unwrap();
        let e = c.send(&"with a descriptor", &[r.as_fd()]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        c.send(&"plain", &[]).unwrap();
        let s = l.accept().unwrap();
        let (m, fds): (String, _) = s.recv().unwrap();
        assert_eq!((m.as_str(), fds.len()), ("plain", 0));
        // A listener that takes them (o7sd's channel to the data plane) still does.
        let path2 = dir.join("t.sock");
        let l2 = Listener::bind(&path2).unwrap();
        let c2 = Channel::connect(&path2).unwrap();
        c2.send(&"with a descriptor", &[r.as_fd()]).unwrap();
        let (_, fds): (String, _) = l2.accept().unwrap().recv().unwrap();
        assert_eq!(fds.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_long_message_crosses_in_fragments_with_its_descriptors() {
        let (a, b) = Channel::pair().unwrap();
        // 3 MB of rows: more than a socket buffer, more than a fragment.
        let rows: Vec<String> = (0..30_000).map(|i| format!("{i:0>100}")).collect();
        let sent = rows.clone();
        let memfd =
            nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MFdFlags::empty()).unwrap();
        let t = std::thread::spawn(move || {
            a.send(&sent, &[memfd.as_fd()]).unwrap();
            a.send(&"after", &[]).unwrap();
        });
        let (got, fds) = b.recv::<Vec<String>>().unwrap();
        assert_eq!(got, rows);
        assert_eq!(fds.len(), 1);
        assert_eq!(b.recv::<String>().unwrap().0, "after");
        t.join().unwrap();
        assert!(encode(&rows).unwrap().len() > 40);
        assert_eq!(encode(&"short").unwrap().len(), 1);
    }

    /// Descriptors ride on a message's first packet only, at most [`MAX_FDS`]: those sent
    /// on later packets are closed, not handed on (a peer sending a few with every
    /// fragment filled o7sd's descriptor table).
    #[test]
    fn descriptors_on_later_fragments_are_not_kept() {
        let (a, b) = Channel::pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let some: Vec<BorrowedFd<'_>> = (0..MAX_FDS).map(|_| r.as_fd()).collect();
        a.send_packet(&[MORE, b'['], &some[..2], MsgFlags::MSG_NOSIGNAL)
            .unwrap();
        for _ in 0..3 {
            a.send_packet(&[MORE, b' '], &some, MsgFlags::MSG_NOSIGNAL)
                .unwrap();
        }
        a.send_packet(&[LAST, b']'], &some, MsgFlags::MSG_NOSIGNAL)
            .unwrap();
        let (got, fds) = b.recv::<Vec<u32>>().unwrap();
        assert!(got.is_empty());
        assert_eq!(fds.len(), 2, "the first packet's descriptors only");
    }

    /// A message of more packets than the longest one takes is refused as soon as it has
    /// that many, not read on for as long as the peer sends.
    #[test]
    fn a_message_of_too_many_packets_is_refused() {
        let (a, b) = Channel::pair().unwrap();
        let t = std::thread::spawn(move || {
            a.send_packet(&[MORE, b'['], &[], MsgFlags::MSG_NOSIGNAL)
                .unwrap();
            let mut sent = 1;
            // Until the reader gives up and closes its end.
            while a
                .send_packet(&[MORE, b' '], &[], MsgFlags::MSG_NOSIGNAL)
                .is_ok()
            {
                sent += 1;
                if sent > 4 * MAX_FRAGMENTS {
                    break;
                }
            }
            sent
        });
        let e = b.recv::<Vec<u32>>().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("packets"), "{e}");
        drop(b);
        let sent = t.join().unwrap();
        assert!(sent <= 4 * MAX_FRAGMENTS, "the reader read on: {sent}");
    }

    #[test]
    fn too_long_and_broken_sequences_are_refused() {
        let huge = vec![0u8; MAX_MSG];
        assert_eq!(
            encode(&huge).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let (a, b) = Channel::pair().unwrap();
        // A fragment, then a new message instead of the rest.
        a.send_packet(&[MORE, b'['], &[], MsgFlags::MSG_NOSIGNAL)
            .unwrap();
        a.send_packet(b"1", &[], MsgFlags::MSG_NOSIGNAL).unwrap();
        assert_eq!(
            b.recv::<u32>().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // A packet longer than a fragment.
        a.send_packet(&vec![b' '; MAX_FRAGMENT + 100], &[], MsgFlags::MSG_NOSIGNAL)
            .unwrap();
        assert_eq!(
            b.recv::<u32>().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // try_send takes one-packet messages only.
        let long: Vec<u8> = vec![7; MAX_FRAGMENT];
        assert_eq!(
            a.try_send(&long, &[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        a.try_send(&5u32, &[]).unwrap();
        assert_eq!(b.recv::<u32>().unwrap().0, 5);
    }
}
