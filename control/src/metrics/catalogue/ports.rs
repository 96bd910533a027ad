//! The metrics of `o7sctl port list`.

use super::super::Kind::{self, Counter as C, Gauge as G};

/// The metrics of `o7sctl port list (labels port, dev)`: name, kind, HELP.
pub(in crate::metrics) const PORTS: &[(&str, Kind, &str)] = &[
    (
        "o7s_port_mtu",
        G,
        "The MTU of the port's device, in bytes",
    ),
    (
        "o7s_port_rx_frames",
        C,
        "Frames or datagrams the port received for its layer",
    ),
    (
        "o7s_port_tx_frames",
        C,
        "Frames or datagrams the port sent",
    ),
    (
        "o7s_port_rx_mgmt",
        C,
        "Management frames the port passed to o7sd",
    ),
    (
        "o7s_port_drop_unknown_eid",
        C,
        "Frames the port dropped because their endpoint id is no flow",
    ),
    (
        "o7s_port_drop_malformed",
        C,
        "Frames the port dropped as malformed (bad length, truncated header)",
    ),
    (
        "o7s_port_tx_errors",
        C,
        "Frames or datagrams the port failed to send",
    ),
    (
        "o7s_port_drop_truncated",
        C,
        "Datagrams the port dropped because they were shorter than their header, or cut",
    ),
    (
        "o7s_port_drop_wrong_peer",
        C,
        "Data frames the port dropped because they came from an address (MAC, or IP and port) that is not their flow's peer",
    ),
    (
        "o7s_port_drop_mgmt_rate_source",
        C,
        "Management frames the port dropped because their source sent more than its rate allows",
    ),
    (
        "o7s_port_drop_mgmt_rate_port",
        C,
        "Management frames the port dropped because it received more than its rate allows",
    ),
    (
        "o7s_port_drop_mgmt_backlog",
        C,
        "Management frames the port dropped because o7sd was behind (its queue was full)",
    ),
    (
        "o7s_port_drop_mgmt_bad_source",
        C,
        "Management frames the port dropped because their source address was multicast or all zeros",
    ),
    (
        "o7s_port_drop_socket_buffer",
        C,
        "Frames or datagrams the kernel dropped before the data plane read them (the port's receive buffer was full)",
    ),
    (
        "o7s_port_rate_bps",
        G,
        "The egress cap on the port's N-1 flows, in bits per second (0: none)",
    ),
    (
        "o7s_port_queue_limit",
        G,
        "The most PDUs that may wait per N-1 flow under the port's cap",
    ),
    (
        "o7s_port_queued",
        G,
        "PDUs waiting under the port's cap now",
    ),
    (
        "o7s_port_impair_loss_ppm",
        G,
        "Share of the port's received data frames lost on purpose (o7sctl port set ... loss), per million",
    ),
    (
        "o7s_port_impair_dup_ppm",
        G,
        "Share of the port's received data frames delivered twice on purpose, per million",
    ),
    (
        "o7s_port_impair_reorder_ppm",
        G,
        "Share of the port's received data frames held back behind later ones on purpose, per million",
    ),
    (
        "o7s_port_impair_delay_us",
        G,
        "Delay added to every data frame the port receives, in microseconds",
    ),
    (
        "o7s_port_impair_lost",
        C,
        "Received data frames dropped by the port's loss impairment",
    ),
    (
        "o7s_port_impair_duplicated",
        C,
        "Received data frames delivered a second time by the port's dup impairment",
    ),
    (
        "o7s_port_impair_delayed",
        C,
        "Received data frames held for the port's delay",
    ),
    (
        "o7s_port_impair_reordered",
        C,
        "Received data frames held back behind later ones by the port's reorder impairment",
    ),
    (
        "o7s_port_impair_corrupt_ppm",
        G,
        "Share of the port's received data frames with one bit of their SDU flipped on purpose, per million",
    ),
    (
        "o7s_port_impair_corrupted",
        C,
        "Received data frames whose SDU had a bit flipped by the port's corrupt impairment",
    ),
    (
        "o7s_flow_crc_errors",
        C,
        "SDUs from the flow's peer that failed the CRC32 trailer and were dropped (flows whose QoS has ber 0)",
    ),
    (
        "o7s_port_impair_held_full",
        C,
        "Received data frames dropped because the port held 8192 for its impairments",
    ),
    (
        "o7s_port_queued_max",
        G,
        "The most PDUs that ever waited on one N-1 flow of the port (a high-water mark)",
    ),
    (
        "o7s_port_shaped",
        C,
        "PDUs sent through the port's queue (they waited for the cap)",
    ),
    (
        "o7s_port_drop_queue_full",
        C,
        "PDUs dropped because their N-1 flow's queue on the port was full",
    ),
    (
        "o7s_port_drop_flow_gone",
        C,
        "PDUs dropped from the port's queue because their N-1 flow went before they could leave",
    ),
    (
        "o7s_port_gso_refused",
        C,
        "Batches a UDP port's kernel refused to segment (GSO), sent one datagram at a time",
    ),
    (
        "o7s_port_ecn_marked",
        C,
        "PDUs whose ECN byte the port's queue raised (16 or more waiting)",
    ),
    (
        "o7s_port_rx_xdp",
        C,
        "Frames received through the port's AF_XDP socket",
    ),
    (
        "o7s_port_tx_xdp",
        C,
        "Frames sent through the port's AF_XDP socket",
    ),
    (
        "o7s_port_tx_xdp_dropped",
        C,
        "Frames the port's AF_XDP socket could not take (no free UMEM frame or ring slot)",
    ),
    (
        "o7s_port_xdp_redirected",
        C,
        "Data frames the port's XDP program redirected to its AF_XDP socket",
    ),
    (
        "o7s_port_xdp_mgmt_passed",
        C,
        "Management frames the port's XDP program passed to the kernel",
    ),
    (
        "o7s_port_umem_frames",
        G,
        "Frames in the port's UMEM, of 4 KiB each (0 without AF_XDP)",
    ),
    (
        "o7s_port_umem_frames_accounted",
        G,
        "UMEM frames of the port back in the data plane's or the kernel's receive pool now (all of them when none leaked; 0 without AF_XDP)",
    ),
    (
        "o7s_port_rx_xdp_per_queue",
        C,
        "Frames received through the AF_XDP socket of the port's RX queue `queue`",
    ),
    (
        "o7s_port_xdp_fill_wakeups",
        C,
        "Fill-ring wake-ups the kernel asked of the port (need_wakeup, zero-copy drivers)",
    ),
    (
        "o7s_port_xdp_tx_batches",
        C,
        "Writes of the port's AF_XDP tx ring, one per batch of frames sent",
    ),
    (
        "o7s_port_xdp_tx_wakeups",
        C,
        "Kernel wake-ups for sending on the port's AF_XDP socket (sendto)",
    ),
    (
        "o7s_port_xdp_rx_dropped",
        C,
        "Frames the kernel dropped on their way to the port's AF_XDP sockets: no buffer on the fill ring, or longer than a UMEM frame",
    ),
    (
        "o7s_port_xdp_rx_ring_full",
        C,
        "Frames the kernel dropped because an rx ring of the port's AF_XDP sockets was full (the worker fell behind)",
    ),
    (
        "o7s_port_xdp_fill_ring_empty",
        C,
        "Times the kernel found a fill ring of the port's AF_XDP sockets empty",
    ),
    (
        "o7s_port_queue_relayed",
        C,
        "Frames received on the port's RX queues that another worker binds (each handed to the port's worker, or dropped)",
    ),
    (
        "o7s_port_queue_relay_dropped",
        C,
        "Frames received on the port's RX queues that another worker binds, dropped because the port's worker's inbox was half full",
    ),
    (
        "o7s_port_xdp_invalid_descs",
        C,
        "Ring descriptors of the port's AF_XDP sockets the kernel refused (zero unless the data plane wrote a bad one)",
    ),
];
