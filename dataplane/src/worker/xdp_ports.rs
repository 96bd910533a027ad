//! AF_XDP ports of a worker: what `o7sctl port list` says of one.

use crate::xdp::XdpPort;

/// The io_path of a port with AF_XDP sockets `x`, and other workers' on its other RX
/// queues (`spread`).
pub(super) fn io_path(x: &XdpPort, spread: Option<&crate::queue_spread::Shared>) -> String {
    let q = x.queues();
    let others = spread
        .map(|s| {
            let w = s.others();
            let n: usize = w.iter().map(|(_, qs)| qs.len()).sum();
            format!(
                " here and {n} on {} other worker{} (rx_queues)",
                w.len(),
                if w.len() == 1 { "" } else { "s" }
            )
        })
        .unwrap_or_default();
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
        "af_xdp (XDP {}, {}, {q} RX queue{}{others}, UMEM on {}{shared}{stale}) for data; af_packet for management",
        x.attach_mode,
        x.copy_mode,
        if q == 1 { "" } else { "s" },
        x.umem_pages
    )
}
