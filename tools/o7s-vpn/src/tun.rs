//! A TUN device (IFF_TUN | IFF_NO_PI: one IP packet per read and write, no header) or a TAP
//! device (IFF_TAP | IFF_NO_PI: one Ethernet frame), and its IPv4 address, mask, MTU and up
//! state, set with the kernel's ioctls (no `ip` command). Needs CAP_NET_ADMIN.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An open TUN device; closing it removes the device.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
}

fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    // Safety: ifreq is plain data (a name and a union of integers and sockaddrs); all zeroes
    // is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "device name '{name}': 1 to {} bytes, no NUL",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn sockaddr_in(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // Safety: sockaddr_in and sockaddr are both 16 bytes (the kernel's ABI), and every bit
    // pattern is a valid sockaddr.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// One ioctl on `fd` with `req`; the error says which.
fn ioctl(fd: BorrowedFd<'_>, op: libc::Ioctl, req: &mut libc::ifreq, what: &str) -> io::Result<()> {
    // Safety: every request used here reads or writes one `struct ifreq`, which `req` is,
    // valid and exclusively borrowed for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), op, std::ptr::from_mut(req)) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

impl Tun {
    /// Creates TUN device `name` (TAP with `tap`; a `%d` in it is a number the kernel
    /// picks).
    pub fn create(name: &str, tap: bool) -> io::Result<Self> {
        // Safety: a C string literal and flags; the result is checked before use.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            // A node only root may open (some containers; udev makes it 0666): say so, or
            // the user looks for a capability they already have.
            let mode = std::fs::metadata("/dev/net/tun")
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
                .ok();
            let why = match mode {
                Some(m) if e.kind() == io::ErrorKind::PermissionDenied && m & 0o006 != 0o006 => {
                    format!(
                        "the device node is mode {m:04o} (root only; most systems make it 0666: `chmod 0666 /dev/net/tun`, or scripts/setup.sh); creating a device needs CAP_NET_ADMIN as well"
                    )
                }
                _ => "needs CAP_NET_ADMIN and the tun module".to_string(),
            };
            return Err(io::Error::new(
                e.kind(),
                format!("/dev/net/tun: {e} ({why})"),
            ));
        }
        // Safety: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq_named(name)?;
        let kind = if tap { libc::IFF_TAP } else { libc::IFF_TUN };
        req.ifr_ifru.ifru_flags = (kind | libc::IFF_NO_PI) as libc::c_short;
        ioctl(fd.as_fd(), libc::TUNSETIFF, &mut req, "TUNSETIFF").map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                io::Error::new(
                    e.kind(),
                    format!("{e} (creating a TUN/TAP device needs CAP_NET_ADMIN: run as root or grant it, e.g. setcap cap_net_admin+ep o7s-vpn)"),
                )
            } else {
                e
            }
        })?;
        // Safety: the kernel wrote the device's name, NUL-terminated within IFNAMSIZ.
        let given = unsafe { CStr::from_ptr(req.ifr_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(Self { fd, name: given })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the IPv4 address and mask and the MTU, and brings the device up.
    pub fn configure(&self, ip: Ipv4Addr, mask: Ipv4Addr, mtu: u32) -> io::Result<()> {
        // Safety: plain socket(2); the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // Safety: `raw` is a descriptor we just opened and own alone.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = sock.as_fd();
        let mut req = ifreq_named(&self.name)?;
        req.ifr_ifru.ifru_addr = sockaddr_in(ip);
        ioctl(s, libc::SIOCSIFADDR, &mut req, "setting the address")?;
        let mut req = ifreq_named(&self.name)?;
        req.ifr_ifru.ifru_netmask = sockaddr_in(mask);
        ioctl(s, libc::SIOCSIFNETMASK, &mut req, "setting the mask")?;
        let mut req = ifreq_named(&self.name)?;
        req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).unwrap_or(libc::c_int::MAX);
        ioctl(s, libc::SIOCSIFMTU, &mut req, "setting the MTU")?;
        let mut req = ifreq_named(&self.name)?;
        ioctl(s, libc::SIOCGIFFLAGS, &mut req, "reading the flags")?;
        // Safety: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        ioctl(s, libc::SIOCSIFFLAGS, &mut req, "bringing it up")
    }

    /// Waits until a packet can be read or `t` passes; whether one can.
    pub fn readable(&self, t: Duration) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX);
        // Safety: one valid pollfd, exclusively borrowed for the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        match r {
            r if r > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Reads one packet (non-blocking: `WouldBlock` when there is none).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // Safety: `buf` is valid for writes of its length for the call.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes one packet.
    pub fn write(&self, p: &[u8]) -> io::Result<usize> {
        // Safety: `p` is valid for reads of its length for the call.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), p.as_ptr().cast(), p.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}
