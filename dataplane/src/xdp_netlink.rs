//! The XDP programs attached to a device, as rtnetlink reports them (RTM_GETLINK, IFLA_XDP),
//! and their removal (RTM_SETLINK with IFLA_XDP_FD = -1). The data plane uses it at start-up
//! to clear an o7s program that an earlier run left attached through netlink (a bpf link,
//! which o7s uses, goes with its process; a netlink attachment outlives it), and to say which
//! program holds a device it cannot attach to.
//!
//! Needs CAP_NET_ADMIN for the removal; reading works for anyone.

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::os::fd::{AsRawFd, OwnedFd};

const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// Where an XDP program runs on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Generic XDP, in the kernel's receive path (skb mode).
    Skb,
    /// Native XDP, in the driver.
    Driver,
    /// Offloaded to the NIC.
    Hardware,
}

impl Mode {
    fn flags(self) -> u32 {
        match self {
            Mode::Skb => XDP_FLAGS_SKB_MODE,
            Mode::Driver => XDP_FLAGS_DRV_MODE,
            Mode::Hardware => XDP_FLAGS_HW_MODE,
        }
    }

    /// "skb", "driver" or "hardware".
    pub fn name(self) -> &'static str {
        match self {
            Mode::Skb => "skb",
            Mode::Driver => "driver",
            Mode::Hardware => "hardware",
        }
    }
}

/// One program attached to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Its mode.
    pub mode: Mode,
    /// The kernel's program id.
    pub prog_id: u32,
}

/// Why a netlink exchange about a device's XDP programs failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// A socket call failed (which one, and the system's error).
    #[error("netlink {step}: {errno}")]
    Io {
        /// The call: "socket", "request", "reply".
        step: &'static str,
        /// The system's error.
        errno: nix::errno::Errno,
    },
    /// The kernel answered a request with an error.
    #[error("{what}: {errno}")]
    Refused {
        /// The request.
        what: String,
        /// The kernel's error.
        errno: nix::errno::Errno,
    },
    /// The kernel did not answer the request as it should.
    #[error("netlink {0}: no reply for the device")]
    NoReply(&'static str),
}

fn route_socket() -> Result<OwnedFd, NetlinkError> {
    socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|errno| NetlinkError::Io {
        step: "socket",
        errno,
    })
}

/// Sends one request to the kernel and returns its first reply datagram.
fn transact(req: &[u8]) -> Result<Vec<u8>, NetlinkError> {
    let fd = route_socket()?;
    sendto(
        fd.as_raw_fd(),
        req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|errno| NetlinkError::Io {
        step: "request",
        errno,
    })?;
    let mut buf = vec![0u8; 65536];
    let n =
        recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|errno| NetlinkError::Io {
            step: "reply",
            errno,
        })?;
    buf.truncate(n);
    Ok(buf)
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_ne_bytes());
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_ne_bytes());
}

/// A request: nlmsghdr + ifinfomsg for `ifindex` + `attrs` (already aligned).
fn request(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDR + IFINFOMSG + attrs.len();
    let mut b = Vec::with_capacity(len);
    put_u32(&mut b, len as u32);
    put_u16(&mut b, kind);
    put_u16(&mut b, flags);
    put_u32(&mut b, 1); // sequence number
    put_u32(&mut b, 0); // the kernel
    b.extend_from_slice(&[0, 0]); // AF_UNSPEC, padding
    put_u16(&mut b, 0); // device type
    put_u32(&mut b, ifindex);
    put_u32(&mut b, 0); // flags
    put_u32(&mut b, 0); // change mask
    b.extend_from_slice(attrs);
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes in `b`: (type without flags, payload). Stops at the first malformed one.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        let payload = b.get(4..len)?;
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// The netlink messages in one datagram: (type, body after the header).
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32_at(b, 0)? as usize;
        let kind = u16_at(b, 4)?;
        let body = b.get(NLMSG_HDR..len)?;
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, body))
    })
}

/// The programs of an IFLA_XDP attribute's payload.
fn parse_xdp(payload: &[u8]) -> Vec<Attached> {
    let mut out = Vec::new();
    let mut attached = 0u8;
    let mut prog_id = None;
    for (kind, v) in attributes(payload) {
        let id = || u32_at(v, 0).filter(|&i| i != 0);
        match kind {
            IFLA_XDP_ATTACHED => attached = v.first().copied().unwrap_or(0),
            IFLA_XDP_DRV_PROG_ID => out.extend(id().map(|prog_id| Attached {
                mode: Mode::Driver,
                prog_id,
            })),
            IFLA_XDP_SKB_PROG_ID => out.extend(id().map(|prog_id| Attached {
                mode: Mode::Skb,
                prog_id,
            })),
            IFLA_XDP_HW_PROG_ID => out.extend(id().map(|prog_id| Attached {
                mode: Mode::Hardware,
                prog_id,
            })),
            // IFLA_XDP_PROG_ID: the program of a single-mode attachment.
            4 => prog_id = id(),
            _ => {}
        }
    }
    // One mode: the kernel gives IFLA_XDP_ATTACHED and IFLA_XDP_PROG_ID only.
    if out.is_empty() {
        let mode = match attached {
            1 => Some(Mode::Driver),
            2 => Some(Mode::Skb),
            3 => Some(Mode::Hardware),
            _ => None,
        };
        if let (Some(mode), Some(prog_id)) = (mode, prog_id) {
            out.push(Attached { mode, prog_id });
        }
    }
    out
}

/// The XDP programs attached to device `ifindex` (empty when none).
pub fn attached(ifindex: u32) -> Result<Vec<Attached>, NetlinkError> {
    let reply = transact(&request(RTM_GETLINK, NLM_F_REQUEST, ifindex, &[]))?;
    for (kind, body) in messages(&reply) {
        match kind {
            RTM_NEWLINK => {
                let attrs = body.get(IFINFOMSG..).unwrap_or(&[]);
                return Ok(attributes(attrs)
                    .find(|&(k, _)| k == IFLA_XDP)
                    .map(|(_, v)| parse_xdp(v))
                    .unwrap_or_default());
            }
            NLMSG_ERROR => {
                let err = u32_at(body, 0).map_or(0, |e| e as i32);
                return Err(NetlinkError::Refused {
                    what: "netlink RTM_GETLINK".into(),
                    errno: nix::errno::Errno::from_raw(-err),
                });
            }
            NLMSG_DONE => break,
            _ => {}
        }
    }
    Err(NetlinkError::NoReply("RTM_GETLINK"))
}

/// Removes the program attached through netlink in `mode` from device `ifindex`. The kernel
/// refuses (EBUSY) when the program is held by a bpf link, i.e. by a live process.
pub fn detach(ifindex: u32, mode: Mode) -> Result<(), NetlinkError> {
    let mut xdp = Vec::new();
    put_u16(&mut xdp, 8);
    put_u16(&mut xdp, IFLA_XDP_FD);
    put_u32(&mut xdp, u32::MAX); // fd -1: no program
    put_u16(&mut xdp, 8);
    put_u16(&mut xdp, IFLA_XDP_FLAGS);
    put_u32(&mut xdp, mode.flags());
    let mut attrs = Vec::new();
    put_u16(&mut attrs, 4 + xdp.len() as u16);
    put_u16(&mut attrs, IFLA_XDP | NLA_F_NESTED);
    attrs.extend_from_slice(&xdp);
    let req = request(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, ifindex, &attrs);
    for (kind, body) in messages(&transact(&req)?) {
        if kind == NLMSG_ERROR {
            let err = u32_at(body, 0).map_or(0, |e| e as i32);
            return if err == 0 {
                Ok(())
            } else {
                Err(NetlinkError::Refused {
                    what: format!("removing the {} program", mode.name()),
                    errno: nix::errno::Errno::from_raw(-err),
                })
            };
        }
    }
    Err(NetlinkError::NoReply("RTM_SETLINK"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, v: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        put_u16(&mut b, 4 + v.len() as u16);
        put_u16(&mut b, kind);
        b.extend_from_slice(v);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    #[test]
    fn single_mode_attachment_is_read_from_attached_and_prog_id() {
        let mut p = attr(IFLA_XDP_ATTACHED, &[2]);
        p.extend(attr(4, &77u32.to_ne_bytes()));
        assert_eq!(
            parse_xdp(&p),
            vec![Attached {
                mode: Mode::Skb,
                prog_id: 77
            }]
        );
    }

    #[test]
    fn multi_mode_attachment_lists_each_mode() {
        let mut p = attr(IFLA_XDP_ATTACHED, &[4]);
        p.extend(attr(IFLA_XDP_SKB_PROG_ID, &5u32.to_ne_bytes()));
        p.extend(attr(IFLA_XDP_DRV_PROG_ID, &9u32.to_ne_bytes()));
        let got = parse_xdp(&p);
        assert_eq!(got.len(), 2);
        assert!(got.contains(&Attached {
            mode: Mode::Driver,
            prog_id: 9
        }));
    }

    #[test]
    fn nothing_attached_and_malformed_attributes_give_nothing() {
        assert!(parse_xdp(&attr(IFLA_XDP_ATTACHED, &[0])).is_empty());
        // A length past the end, a length below the header: no panic, nothing.
        assert!(parse_xdp(&[200, 0, 2, 0, 1]).is_empty());
        assert!(parse_xdp(&[2, 0, 2, 0]).is_empty());
        assert_eq!(messages(&[255, 0, 0, 0, 16, 0]).count(), 0);
    }

    proptest::proptest! {
        /// Whatever the kernel (or a corrupted buffer) sends, parsing ends without a panic
        /// and every program it reports has a non-zero id.
        #[test]
        fn arbitrary_replies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            for (_, body) in messages(&bytes) {
                let _ = attributes(body).count();
            }
            proptest::prop_assert!(parse_xdp(&bytes).iter().all(|p| p.prog_id != 0));
        }
    }

    #[test]
    fn loopback_has_no_xdp_program_by_default() {
        // Reading needs no privilege; lo (index 1) exists in every namespace.
        match attached(1) {
            Ok(progs) => assert!(progs.iter().all(|p| p.prog_id != 0)),
            Err(e) => panic!("RTM_GETLINK on lo failed: {e}"),
        }
    }
}
