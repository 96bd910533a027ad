//! What the kernel dropped before the data plane could read it: a socket's `sk_drops`
//! (receive buffer full, or filtered), read with `SO_MEMINFO`'s drop counter. Works for
//! the AF_PACKET management socket and the udp ports alike; cumulative, never reset.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// Index of the drop counter in `SO_MEMINFO`'s array (`SK_MEMINFO_DROPS`, linux/sock_diag.h).
const SK_MEMINFO_DROPS: usize = 8;
/// Entries of that array (`SK_MEMINFO_VARS`).
const SK_MEMINFO_VARS: usize = 9;

/// Packets the kernel dropped on `fd`'s socket so far; `None` where `SO_MEMINFO` is missing.
pub fn socket_drops(fd: BorrowedFd<'_>) -> Option<u64> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // Safety: getsockopt writes at most `len` bytes into `info`, which is that large, and
    // sets `len` to what it wrote; `fd` is a socket this process owns for the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 || (len as usize) < (SK_MEMINFO_DROPS + 1) * 4 {
        return None;
    }
    info.get(SK_MEMINFO_DROPS).map(|&d| u64::from(d))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_full_receive_buffer_counts_drops() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(socket_drops(rx.as_fd()), Some(0));
        // Nobody reads: the receive buffer fills and the rest is dropped.
        for _ in 0..5000 {
            let _ = tx.send_to(&[0u8; 1000], rx.local_addr().unwrap());
        }
        let drops = socket_drops(rx.as_fd()).unwrap();
        assert!(drops > 1000, "{drops}");
    }
}
