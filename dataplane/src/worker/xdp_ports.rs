//! AF_XDP ports of a worker: what `o7sctl port list` says of one.

use crate::xdp::XdpPort;

/// The io_path of a port with AF_XDP sockets `x`, and other workers' on its other RX
/// queues (`spread`).
pub(super) fn io_path(x: &XdpPort, spread: Option<&crate::queue_spread::Shared>) -> String {
    let q = x.queues();
    let others = spread
        .map(|s| {
            // The queues asked of other workers (not those whose request failed already).
            let asked: Vec<_> = s
                .view(|_| 0)
                .into_iter()
                .filter(|q| {
                    matches!(
                        q.state,
                        o7s_abi::msg::RxQueueState::Starting | o7s_abi::msg::RxQueueState::Relayed
                    )
                })
                .collect();
            let mut workers: Vec<u32> = asked.iter().map(|q| q.worker).collect();
            workers.sort_unstable();
            workers.dedup();
            format!(
                " here and {} on {} other worker{} (rx_queues)",
                asked.len(),
                workers.len(),
                if workers.len() == 1 { "" } else { "s" }
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
