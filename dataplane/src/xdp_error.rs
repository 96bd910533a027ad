//! Why an XDP port could not be set up (issue 25 item 4: typed errors in the data plane).
//! The worker reports it to o7sd in words (`FromDp::PortError`) and falls back to
//! AF_PACKET; the variants say which kind of failure it was.

use crate::xdp_netlink::NetlinkError;

/// Why an AF_XDP port (its program, UMEM or sockets) could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpError {
    /// A step of loading, attaching, mapping or binding failed: the step, and the words of
    /// the system or of the library that made the call.
    #[error("{step}: {why}")]
    Step {
        /// The step ("verifier", "xsks map", "AF_XDP socket", "umem", ...).
        step: String,
        /// What failed.
        why: String,
    },
    /// A netlink exchange about the device's programs failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The device or its state does not allow it (another tool's program is attached, the
    /// device is unknown, ...).
    #[error("{0}")]
    Device(String),
}

impl From<String> for XdpError {
    fn from(s: String) -> Self {
        Self::Device(s)
    }
}

impl From<&str> for XdpError {
    fn from(s: &str) -> Self {
        Self::Device(s.to_string())
    }
}

/// Step `what` failed with `e`.
pub(crate) fn step(what: &str, e: impl std::fmt::Debug) -> XdpError {
    XdpError::Step {
        step: what.to_string(),
        why: format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_says_what_failed() {
        assert_eq!(step("verifier", "EPERM").to_string(), "verifier: \"EPERM\"");
        assert_eq!(
            XdpError::from("eth0: no such device").to_string(),
            "eth0: no such device"
        );
        let n = XdpError::from(NetlinkError::NoReply("RTM_GETLINK"));
        assert_eq!(
            n.to_string(),
            "netlink RTM_GETLINK: no reply for the device"
        );
        assert!(matches!(n, XdpError::Netlink(_)));
    }
}
