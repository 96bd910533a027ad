//! AF_PACKET ports: raw sockets bound to one device and protocol. The I/O path used until
//! the AF_XDP path exists, and its fallback afterwards.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `ETH_P_802_2`: 802.3 frames with an LLC header.
pub const ETH_P_802_2: u16 = 0x0004;
/// The reference caps `lo`'s MTU at this.
pub const LO_MTU_CAP: usize = 9000;

/// An AF_PACKET socket on one device.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// Device facts read from sysfs.
#[derive(Debug, Clone)]
pub struct DevInfo {
    /// Interface index.
    pub ifindex: i32,
    /// MAC address.
    pub mac: [u8; 6],
    /// Layer MTU.
    pub mtu: usize,
}

/// Reads `dev`'s index, MAC and MTU (`lo` capped at 9000).
pub fn dev_info(dev: &str) -> io::Result<DevInfo> {
    let base = std::path::Path::new("/sys/class/net").join(dev);
    if !base.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no device named {dev}"),
        ));
    }
    let ifindex: i32 = std::fs::read_to_string(base.join("ifindex"))?
        .trim()
        .parse()
        .map_err(|_| io::Error::other("bad ifindex"))?;
    let mac_s = std::fs::read_to_string(base.join("address"))?;
    let mut mac = [0u8; 6];
    for (i, p) in mac_s.trim().split(':').take(6).enumerate() {
        if let Some(m) = mac.get_mut(i) {
            *m = u8::from_str_radix(p, 16).unwrap_or(0);
        }
    }
    let mut mtu: usize = std::fs::read_to_string(base.join("mtu"))?
        .trim()
        .parse()
        .map_err(|_| io::Error::other("bad mtu"))?;
    if dev == "lo" {
        mtu = mtu.min(LO_MTU_CAP);
    }
    Ok(DevInfo {
        ifindex,
        mac,
        mtu: mtu.min(65535),
    })
}

impl PacketSocket {
    /// Opens a non-blocking raw socket on `ifindex` receiving `proto` frames.
    pub fn open(ifindex: i32, proto: u16) -> io::Result<Self> {
        // Safety: plain socket(2) call; the result is checked and owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(proto.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Safety: `fd` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Safety: sockaddr_ll is plain old data; all-zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = ifindex;
        // Safety: `sll` is a valid sockaddr_ll and its size is passed with it.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let big: libc::c_int = 4 << 20;
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            // Safety: setsockopt with a c_int option value of the right size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &big as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                );
            }
        }
        Ok(Self { fd, ifindex })
    }

    /// Receives one frame; `Ok(None)` when nothing is waiting. Frames this host sent
    /// (`PACKET_OUTGOING`, seen on `lo`) are skipped.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // Safety: sockaddr_ll is plain old data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // Safety: `buf` and `sll` are valid for the lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_TRUNC,
                    &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some((n as usize).min(buf.len())));
        }
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // Safety: `frame` is valid for its length.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    frame.as_ptr() as *const libc::c_void,
                    frame.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(());
        }
    }

    /// Interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
