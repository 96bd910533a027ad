//! The metrics of `o7sctl flow list`.

use super::super::Kind::{self, Counter as C, Gauge as G};

/// The metrics of `o7sctl flow list (labels flow, name, side, ipcp)`: name, kind, HELP.
pub(in crate::metrics) const FLOWS: &[(&str, Kind, &str)] = &[
    (
        "o7s_flow_up",
        G,
        "1 while the flow is up, 0 once its peer timed out",
    ),
    (
        "o7s_flow_rx_sdus",
        C,
        "SDUs of the flow delivered to its application",
    ),
    (
        "o7s_flow_rx_bytes",
        C,
        "Bytes of the flow delivered to its application, in bytes",
    ),
    (
        "o7s_flow_tx_sdus",
        C,
        "SDUs the flow's application sent",
    ),
    (
        "o7s_flow_tx_bytes",
        C,
        "Bytes the flow's application sent, in bytes",
    ),
    (
        "o7s_flow_drop_ring_full",
        C,
        "SDUs of the flow dropped because its application's receive ring was full",
    ),
    (
        "o7s_flow_drop_decrypt",
        C,
        "PDUs of the flow dropped because they did not decrypt (corrupted or forged)",
    ),
    (
        "o7s_flow_key_rotations",
        C,
        "Key rotations done by the flow's sending side",
    ),
    (
        "o7s_flow_tx_keepalives",
        C,
        "Keepalives (empty SDUs) sent on the flow while its application sent nothing",
    ),
    (
        "o7s_flow_rx_keepalives",
        C,
        "Keepalives (empty SDUs) received on the flow",
    ),
    (
        "o7s_flow_rate_bps",
        G,
        "The flow's MB-ECN window as a rate (bytes per slot), in bits per second",
    ),
    (
        "o7s_flow_window_bytes",
        G,
        "The flow's MB-ECN window: the bytes it may send per slot",
    ),
    (
        "o7s_flow_slot_ns",
        G,
        "The length of the flow's MB-ECN slot, in nanoseconds",
    ),
    (
        "o7s_flow_tx_ece",
        G,
        "The congestion level the flow's peer last echoed (0: none)",
    ),
    (
        "o7s_flow_rx_ece",
        G,
        "The congestion level this end echoes to the flow's peer for what it receives",
    ),
    (
        "o7s_flow_updates_in",
        C,
        "MB-ECN FLOW_UPDATEs taken from the flow's peer",
    ),
    (
        "o7s_flow_updates_refused",
        C,
        "MB-ECN FLOW_UPDATEs from the flow's peer ignored: more than the PDUs sent to it (forged)",
    ),
    (
        "o7s_flow_updates_out",
        C,
        "MB-ECN FLOW_UPDATEs sent to the flow's peer",
    ),
    (
        "o7s_flow_rx_marked",
        C,
        "PDUs of the flow received with a non-zero ECN byte (congestion on their path)",
    ),
    (
        "o7s_flow_waits",
        C,
        "Times the flow's writer was held until the next MB-ECN slot",
    ),
    (
        "o7s_flow_frcp_rto_us",
        G,
        "The retransmission timeout of the flow's FRCP (run by its application), in microseconds",
    ),
    (
        "o7s_flow_frcp_srtt_us",
        G,
        "The smoothed round-trip time the flow's FRCP measured, in microseconds (0: none yet)",
    ),
    (
        "o7s_flow_frcp_in_flight",
        G,
        "Packets the flow's FRCP sent and the peer has not yet acknowledged",
    ),
    (
        "o7s_flow_frcp_window",
        G,
        "Packets the peer's FRCP window lets the flow send now",
    ),
    (
        "o7s_flow_frcp_sent",
        C,
        "Data packets the flow's FRCP sent the first time (low 32 bits)",
    ),
    (
        "o7s_flow_frcp_retransmits",
        C,
        "Data packets the flow's FRCP sent again (low 32 bits)",
    ),
    (
        "o7s_flow_frcp_delivered",
        C,
        "SDUs the flow's FRCP handed to its application in order (low 32 bits)",
    ),
    (
        "o7s_flow_frcp_duplicates",
        C,
        "Data packets the flow's FRCP received again and dropped (low 32 bits)",
    ),
    (
        "o7s_flow_frcp_bad",
        C,
        "PDUs the flow's FRCP refused or ignored: too short, acknowledging what was never sent, a window edge far off (low 32 bits)",
    ),
];
