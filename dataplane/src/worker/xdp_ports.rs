//! AF_XDP ports of a worker: what `o7sctl port list` says of one.

use crate::xdp::XdpPort;

/// The io_path of a port with AF_XDP sockets `x`.
pub(super) fn io_path(x: &XdpPort) -> String {
    let q = x.queues();
    let stale = x
        .stale_removed
        .as_deref()
        .map(|s| format!("; {s}"))
        .unwrap_or_default();
    let shared = if x.umem_shared {
        ", shared with another port"
    } else {
        ""
    };
    format!(
        "af_xdp (XDP {}, {}, {q} RX queue{}, UMEM on {}{shared}{stale}) for data; af_packet for management",
        x.attach_mode,
        x.copy_mode,
        if q == 1 { "" } else { "s" },
        x.umem_pages
    )
}
