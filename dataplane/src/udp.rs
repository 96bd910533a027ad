//! UDP ports of the udp4/udp6 layers: one socket bound to the layer's address and port,
//! datagrams received and sent in batches (`recvmmsg`/`sendmmsg`).

#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Datagrams (or GRO bundles) per system call.
pub const BATCH: usize = 32;
/// Largest datagram (the reference's limit is 8980 bytes).
pub const MAX_DATAGRAM: usize = 9000;
/// Receive buffer per slot: room for a GRO bundle.
const RX_BUF: usize = 65536;
/// Most bytes handed to the kernel in one GSO send.
pub const MAX_GSO_BYTES: usize = 60_000;
/// Most segments in one GSO send.
const MAX_GSO_SEGMENTS: usize = 64;
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// A non-blocking UDP socket with batch buffers, using UDP GSO (send) and GRO (receive)
/// when the kernel offers them.
#[derive(Debug)]
pub struct UdpPort {
    sock: UdpSocket,
    bufs: Vec<Vec<u8>>,
    /// Per received slot: (length, GRO segment size or 0, source).
    meta: Vec<(usize, usize, Option<SocketAddr>)>,
    /// Datagrams of the last batch: (slot, offset, length).
    dgrams: Vec<(usize, usize, usize)>,
    gso: bool,
    gro: bool,
    /// GSO was turned off since [`UdpPort::take_gso_change`] last looked.
    gso_changed: bool,
    /// Batches the kernel refused to segment, sent one by one instead.
    pub gso_refused: u64,
}

/// A segment this long (and a UDP/IPv6 header) fits any IPv6 path (1280 bytes): the kernel
/// refusing it says GSO does not work here, not that the segment was too long.
const GSO_SAFE_SEGMENT: usize = 1200;

/// What a refused GSO send says about the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GsoRefusal {
    /// This batch only (a segment longer than the path's MTU: an app can push such SDUs,
    /// and must not turn GSO off for every flow of the port): sent one by one.
    ThisBatch,
    /// GSO does not work on this socket: off for good.
    ForGood,
    /// Not a refusal of GSO: the error is the send's.
    NotGso,
}

/// Classifies the error `errno` of a GSO send of `seg`-byte segments.
fn gso_refusal(errno: Option<i32>, seg: usize) -> GsoRefusal {
    match errno {
        Some(libc::EOPNOTSUPP | libc::EIO) => GsoRefusal::ForGood,
        Some(libc::EINVAL) if seg <= GSO_SAFE_SEGMENT => GsoRefusal::ForGood,
        Some(libc::EINVAL) => GsoRefusal::ThisBatch,
        _ => GsoRefusal::NotGso,
    }
}

fn sockaddr_to_std(sa: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(sa.ss_family) {
        libc::AF_INET => {
            // Safety: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(sa as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // Safety: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(sa as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

fn std_to_sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // Safety: sockaddr_storage is plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // Safety: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let s =
                unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // Safety: sockaddr_storage is large and aligned enough for a sockaddr_in6.
            let s = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6)
            };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr.s6_addr = v6.ip().octets();
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

impl UdpPort {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let sock = UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        let big: libc::c_int = 4 << 20;
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            // Safety: setsockopt with a c_int option value of the right size.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &big as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                );
            }
        }
        let one: libc::c_int = 1;
        // Safety: setsockopt with a c_int option value of the right size.
        let gro = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                SOL_UDP,
                UDP_GRO,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        } == 0;
        Ok(Self {
            sock,
            bufs: vec![vec![0u8; RX_BUF]; BATCH],
            meta: vec![(0, 0, None); BATCH],
            dgrams: Vec::with_capacity(BATCH * MAX_GSO_SEGMENTS),
            gso: true,
            gro,
            gso_changed: false,
            gso_refused: 0,
        })
    }

    /// How this port sends and receives (for o7sctl).
    pub fn describe(&self) -> String {
        format!(
            "udp socket, recvmmsg/sendmmsg batches, GSO {}, GRO {}",
            if self.gso { "on" } else { "off" },
            if self.gro { "on" } else { "off" }
        )
    }

    /// Whether GSO was turned off since the last call (the port's `io_path` is then stale).
    pub fn take_gso_change(&mut self) -> bool {
        std::mem::take(&mut self.gso_changed)
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Receives up to [`BATCH`] system-call slots of datagrams (GRO bundles are split);
    /// returns how many datagrams (0 when none waits). Read them with [`UdpPort::datagram`].
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        const CMSG_SPACE: usize = 64;
        // Safety: plain old data, zeroed.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        // Safety: plain old data, zeroed.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // Safety: plain old data, zeroed.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut ctrl = [[0u64; CMSG_SPACE / 8]; BATCH];
        for (i, (((iov, hdr), addr), c)) in iovs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(addrs.iter_mut())
            .zip(ctrl.iter_mut())
            .enumerate()
        {
            let Some(buf) = self.bufs.get_mut(i) else {
                break;
            };
            iov.iov_base = buf.as_mut_ptr() as *mut libc::c_void;
            iov.iov_len = buf.len();
            hdr.msg_hdr.msg_name = addr as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            hdr.msg_hdr.msg_iov = iov as *mut libc::iovec;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = c.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_hdr.msg_controllen = CMSG_SPACE;
        }
        // Safety: every header points at a live buffer, address and control area of the
        // sizes given.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.dgrams.clear();
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        for i in 0..(n as usize).min(BATCH) {
            let (Some(h), Some(a), Some(m)) = (hdrs.get(i), addrs.get(i), self.meta.get_mut(i))
            else {
                continue;
            };
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let len = if truncated {
                0
            } else {
                (h.msg_len as usize).min(RX_BUF)
            };
            let mut seg = 0usize;
            // Safety: the kernel filled msg_control/msg_controllen of this header; the CMSG
            // macros walk only inside it.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        seg = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const u16) as usize;
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
            *m = (len, seg, sockaddr_to_std(a));
            if truncated {
                // Shown as one empty (dropped and counted) datagram.
                self.dgrams.push((i, 0, 0));
                continue;
            }
            let step = if seg == 0 { len.max(1) } else { seg };
            let mut off = 0;
            while off < len {
                self.dgrams.push((i, off, step.min(len - off)));
                off += step;
            }
            if len == 0 {
                self.dgrams.push((i, 0, 0));
            }
        }
        Ok(self.dgrams.len())
    }

    /// Datagram `i` of the last batch and its source.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (slot, off, len) = *self.dgrams.get(i)?;
        let src = self.meta.get(slot)?.2?;
        Some((self.bufs.get(slot)?.get(off..off + len)?, src))
    }

    /// Datagram `i` of the last batch, writable (to decrypt it in place).
    pub fn datagram_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let (slot, off, len) = *self.dgrams.get(i)?;
        self.bufs.get_mut(slot)?.get_mut(off..off + len)
    }

    /// Sends the datagrams laid out back to back in `buf` with lengths `lens`: one GSO send
    /// when they share a size (the last may be shorter), `sendmmsg` otherwise. Returns how
    /// many went out.
    pub fn send_packed(
        &mut self,
        dst: &SocketAddr,
        buf: &[u8],
        lens: &[usize],
    ) -> io::Result<usize> {
        let same = lens.split_last().is_some_and(|(last, rest)| {
            let s = rest.first().copied().unwrap_or(*last);
            rest.iter().all(|l| *l == s) && *last <= s && s > 0
        });
        if self.gso && same && lens.len() > 1 && lens.len() <= MAX_GSO_SEGMENTS {
            let seg = lens.first().copied().unwrap_or(0);
            let e = match self.send_gso(dst, buf, u16::try_from(seg).unwrap_or(u16::MAX)) {
                Ok(()) => return Ok(lens.len()),
                Err(e) => e,
            };
            match gso_refusal(e.raw_os_error(), seg) {
                GsoRefusal::NotGso => return Err(e),
                GsoRefusal::ThisBatch => {
                    self.gso_refused += 1;
                    tracing::debug!("UDP GSO refused {seg}-byte segments ({e}): sent one by one");
                }
                GsoRefusal::ForGood => {
                    self.gso_refused += 1;
                    tracing::warn!("UDP GSO refused ({e}) for {seg}-byte segments: using sendmmsg");
                    self.gso = false;
                    self.gso_changed = true;
                }
            }
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(lens.len());
        let mut off = 0;
        for l in lens {
            parts.push(buf.get(off..off + l).unwrap_or(&[]));
            off += l;
        }
        self.send_batch(dst, &parts)
    }

    fn send_gso(&self, dst: &SocketAddr, buf: &[u8], seg: u16) -> io::Result<()> {
        let (mut ss, len) = std_to_sockaddr(dst);
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut ctrl = [0u64; 4];
        // Safety: plain old data, zeroed.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut ss as *mut libc::sockaddr_storage as *mut libc::c_void;
        msg.msg_namelen = len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
        // Safety: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
        // Safety: the control area is 32 bytes, enough for one cmsg with 2 bytes of data;
        // CMSG_FIRSTHDR points into it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() {
                return Err(io::Error::other("no room for the GSO control message"));
            }
            (*c).cmsg_level = SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
        }
        loop {
            // Safety: `msg` points at live buffers for the duration of the call.
            let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends `dgrams` to `dst` in as few calls as possible; returns how many went out.
    pub fn send_batch(&self, dst: &SocketAddr, dgrams: &[&[u8]]) -> io::Result<usize> {
        let (mut ss, len) = std_to_sockaddr(dst);
        let mut sent = 0;
        while sent < dgrams.len() {
            let chunk = dgrams.get(sent..).unwrap_or(&[]);
            let chunk = chunk.get(..chunk.len().min(BATCH)).unwrap_or(&[]);
            // Safety: plain old data, zeroed.
            let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // Safety: plain old data, zeroed.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for ((iov, hdr), d) in iovs.iter_mut().zip(hdrs.iter_mut()).zip(chunk) {
                iov.iov_base = d.as_ptr() as *mut libc::c_void;
                iov.iov_len = d.len();
                hdr.msg_hdr.msg_name = &mut ss as *mut libc::sockaddr_storage as *mut libc::c_void;
                hdr.msg_hdr.msg_namelen = len;
                hdr.msg_hdr.msg_iov = iov as *mut libc::iovec;
                hdr.msg_hdr.msg_iovlen = 1;
            }
            // Safety: each header points at a datagram that outlives the call, and at `ss`.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    chunk.len() as u32,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if sent > 0 && e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(sent);
                }
                return Err(e);
            }
            if n == 0 {
                break;
            }
            sent += n as usize;
        }
        Ok(sent)
    }

    /// Sends one datagram.
    pub fn send_to(&self, d: &[u8], dst: &SocketAddr) -> io::Result<()> {
        self.sock.send_to(d, dst).map(|_| ())
    }
}

impl AsFd for UdpPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_of_short_segments_turns_gso_off_for_good() {
        // An app's SDUs longer than the path's MTU: that batch goes one by one.
        assert_eq!(gso_refusal(Some(libc::EINVAL), 1201), GsoRefusal::ThisBatch);
        assert_eq!(gso_refusal(Some(libc::EINVAL), 9000), GsoRefusal::ThisBatch);
        // Segments that fit any path: the kernel cannot segment here.
        assert_eq!(gso_refusal(Some(libc::EINVAL), 1200), GsoRefusal::ForGood);
        assert_eq!(gso_refusal(Some(libc::EINVAL), 64), GsoRefusal::ForGood);
        assert_eq!(
            gso_refusal(Some(libc::EOPNOTSUPP), 9000),
            GsoRefusal::ForGood
        );
        assert_eq!(gso_refusal(Some(libc::EIO), 9000), GsoRefusal::ForGood);
        // The send's own errors are not GSO's.
        assert_eq!(gso_refusal(Some(libc::EAGAIN), 64), GsoRefusal::NotGso);
        assert_eq!(gso_refusal(Some(libc::EMSGSIZE), 9000), GsoRefusal::NotGso);
        assert_eq!(gso_refusal(None, 64), GsoRefusal::NotGso);
    }

    #[test]
    fn a_gso_batch_on_loopback_arrives_as_its_datagrams() {
        let mut tx = UdpPort::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let dst = rx.local_addr().expect("addr");
        let buf: Vec<u8> = (0..250u8).collect();
        let sent = tx.send_packed(&dst, &buf, &[100, 100, 50]).expect("send");
        assert_eq!(sent, 3);
        assert_eq!((tx.gso_refused, tx.take_gso_change()), (0, false));
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut b = [0u8; 2048];
        for _ in 0..3 {
            let n = rx.recv(&mut b).expect("recv");
            got.push(b[..n].to_vec());
        }
        assert_eq!(
            got,
            vec![
                buf[..100].to_vec(),
                buf[100..200].to_vec(),
                buf[200..].to_vec()
            ]
        );
    }
}
