//! UDP ports of the udp4/udp6 layers: one socket bound to the layer's address and port,
//! datagrams received and sent in batches (`recvmmsg`/`sendmmsg`).

#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram (the reference's limit is 8980 bytes).
pub const MAX_DATAGRAM: usize = 9000;

/// A non-blocking UDP socket with batch buffers.
#[derive(Debug)]
pub struct UdpPort {
    sock: UdpSocket,
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
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
        Ok(Self {
            sock,
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            lens: [0; BATCH],
            srcs: [None; BATCH],
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Receives up to [`BATCH`] datagrams; returns how many (0 when none waits).
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        // Safety: plain old data, zeroed.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        // Safety: plain old data, zeroed.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // Safety: plain old data, zeroed.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, ((iov, hdr), addr)) in iovs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(addrs.iter_mut())
            .enumerate()
        {
            let Some(buf) = self.bufs.get_mut(i) else {
                break;
            };
            iov.iov_base = buf.as_mut_ptr() as *mut libc::c_void;
            iov.iov_len = MAX_DATAGRAM;
            hdr.msg_hdr.msg_name = addr as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            hdr.msg_hdr.msg_iov = iov as *mut libc::iovec;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // Safety: every header points at a live buffer and address of the sizes given.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n.min(BATCH) {
            if let (Some(h), Some(a), Some(l), Some(s)) = (
                hdrs.get(i),
                addrs.get(i),
                self.lens.get_mut(i),
                self.srcs.get_mut(i),
            ) {
                let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                *l = if truncated {
                    0
                } else {
                    (h.msg_len as usize).min(MAX_DATAGRAM)
                };
                *s = sockaddr_to_std(a);
            }
        }
        Ok(n)
    }

    /// Datagram `i` of the last batch and its source.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let len = *self.lens.get(i)?;
        let src = (*self.srcs.get(i)?)?;
        Some((self.bufs.get(i)?.get(..len)?, src))
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
