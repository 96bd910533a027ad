//! The metrics of `o7sctl worker list`.

use super::super::Kind::{self, Counter as C, Gauge as G};

/// The metrics of `o7sctl worker list (labels worker, core)`: name, kind, HELP.
pub(in crate::metrics) const WORKERS: &[(&str, Kind, &str)] = &[
    (
        "o7s_worker_ports",
        G,
        "Ports the data-plane worker owns now",
    ),
    (
        "o7s_worker_flows",
        G,
        "Flows the data-plane worker owns now",
    ),
    (
        "o7s_worker_rx_frames",
        C,
        "Frames and datagrams the worker's ports received (management included)",
    ),
    (
        "o7s_worker_tx_frames",
        C,
        "Frames and datagrams the worker's ports sent",
    ),
    (
        "o7s_worker_queues_for_others",
        G,
        "RX queues of other workers' ports the worker binds now",
    ),
    (
        "o7s_worker_relayed_frames",
        C,
        "Frames the worker received on RX queues of other workers' ports and handed to them",
    ),
    (
        "o7s_worker_sleeps",
        C,
        "Times the worker went to sleep in poll(2) (adaptive polling, idle)",
    ),
    (
        "o7s_worker_yields_for_apps",
        C,
        "Times the worker gave up the CPU because an application's receive ring was more than half full",
    ),
];
