//! A Prometheus endpoint (`o7sd --metrics ADDR:PORT`, off by default): every counter that
//! o7sctl shows, as OpenMetrics text at `/metrics`, made from the same views as o7sctl's
//! listings, so that nothing shown there is missing here.
//!
//! Names: `o7s_<listing>_<field>` with the listing's identifying columns as labels
//! (`o7s_port_rx_frames_total{port="1",dev="veth0"}`, `o7s_flow_rx_sdus_total{flow="3",
//! name="oping-server",side="accept",ipcp="wifi1"}`, `o7s_worker_sleeps_total{worker="0"}`,
//! `o7s_ipcp_up{...}`, and the daemon-wide counters of `o7sctl stats` as
//! `o7s_<counter>_total`). A row's nested object holds exact values that the listing shows
//! in another form (a flow's `ca`): its numbers become metrics of the listing
//! (`o7s_flow_rate_bps`), the columns that show them do not. The HTTP side
//! (src/metrics_http.rs) is one thread over non-blocking sockets: 2 s per connection in all,
//! 8 KiB per request, 64 connections at once (the oldest makes room).
//!
//! Types: [`METRICS`] says of every metric whether it is a counter (it only goes up; the
//! encoder adds `_total` to its samples) or a gauge (a level that also goes down: contacts,
//! neighbours, queued PDUs, a rate, a window; never `_total`), and what it measures in which
//! unit (its HELP).

use crate::daemon::Daemon;
use o7s::proto::{Ctl, Reply};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

type Labels = Vec<(String, String)>;

/// What a metric is to Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Only goes up (until o7sd or the data plane restarts): `_total`, for `rate()`.
    Counter,
    /// A level, now: may go down.
    Gauge,
}

use Kind::{Counter as C, Gauge as G};

/// Every metric of the listings: its name (a counter's without the `_total` that the
/// encoder adds), its kind, and its HELP: what it measures and in which unit (one
/// sentence; the encoder ends it with a full stop). Counts of PDUs, frames, SDUs, messages
/// or times are plain numbers.
const METRICS: &[(&str, Kind, &str)] = &[
    // o7sctl ipcp list (labels name, type, layer, dev).
    (
        "o7s_ipcp_up",
        G,
        "1 while the IPCP is up (a shim IPCP whose device is up, a unicast IPCP bootstrapped or enrolled), 0 otherwise (created, enrolling, enrolment failed, device down)",
    ),
    (
        "o7s_ipcp_mtu",
        G,
        "The MTU of the IPCP's device, in bytes (0: a unicast IPCP, or one not bootstrapped)",
    ),
    (
        "o7s_ipcp_dt_neighbours",
        G,
        "Members of the layer the unicast IPCP has a DT N-1 flow to now",
    ),
    (
        "o7s_ipcp_dht_contacts",
        G,
        "Contacts (other members) in the unicast IPCP's DHT routing table now",
    ),
    (
        "o7s_ipcp_dt_dropped_in_o7sd",
        C,
        "DT PDUs of the unicast IPCP that reached o7sd and were dropped there (malformed, no route or no next hop, TTL out, or no component)",
    ),
    (
        "o7s_ipcp_dt_forwarded_in_o7sd",
        C,
        "DT PDUs o7sd forwarded for the unicast IPCP itself (before the data plane had its table)",
    ),
    (
        "o7s_ipcp_dt_forwarded",
        C,
        "DT PDUs the data plane forwarded to the next hop for the IPCP (TTL decremented)",
    ),
    (
        "o7s_ipcp_dt_delivered",
        C,
        "DT PDUs the data plane delivered to an N+1 flow of the IPCP",
    ),
    (
        "o7s_ipcp_dt_to_o7sd",
        C,
        "DT PDUs for the IPCP's components (flow allocator, directory) the data plane handed to o7sd",
    ),
    (
        "o7s_ipcp_dt_sent",
        C,
        "SDUs of the IPCP's N+1 flows the data plane sent in DT PDUs",
    ),
    (
        "o7s_ipcp_dt_drop_short",
        C,
        "DT PDUs the data plane dropped because they were shorter than a PCI",
    ),
    (
        "o7s_ipcp_dt_drop_ttl",
        C,
        "DT PDUs the data plane dropped because their TTL ran out at this IPCP",
    ),
    (
        "o7s_ipcp_dt_drop_loop",
        C,
        "DT PDUs the data plane dropped because their next hop was the neighbour they came from (a routing loop)",
    ),
    (
        "o7s_ipcp_dt_drop_no_route",
        C,
        "DT PDUs the data plane dropped because the IPCP has no route to their destination",
    ),
    (
        "o7s_ipcp_dt_drop_unknown_eid",
        C,
        "DT PDUs for the IPCP dropped because their endpoint id is no flow",
    ),
    (
        "o7s_ipcp_dt_drop_reserved_eid",
        C,
        "DT PDUs for the IPCP dropped because their endpoint id is below 64 and no component has it",
    ),
    (
        "o7s_ipcp_dt_drop_n1",
        C,
        "DT PDUs dropped because the next hop's N-1 flow or the N+1 flow was gone or on another worker, or the port did not take the frame",
    ),
    (
        "o7s_ipcp_dt_via_o7sd",
        C,
        "DT PDUs to forward that the data plane handed to o7sd (the next hop's N-1 flow is on another worker)",
    ),
    (
        "o7s_ipcp_dt_handed_off",
        C,
        "DT PDUs a data-plane worker handed to another worker (which has the next hop's N-1 flow or the N+1 flow)",
    ),
    (
        "o7s_ipcp_dt_handed_in",
        C,
        "DT PDUs a data-plane worker took from another worker and sent or delivered",
    ),
    (
        "o7s_ipcp_dt_drop_handoff",
        C,
        "DT PDUs dropped because the other worker's inbox was full",
    ),
    (
        "o7s_ipcp_dt_forwarded_in_place",
        C,
        "DT PDUs forwarded without a copy between AF_XDP ports sharing a UMEM (counted in o7s_ipcp_dt_forwarded too)",
    ),
    (
        "o7s_ipcp_ca_updates_in",
        C,
        "MB-ECN FLOW_UPDATEs the data plane took for the IPCP's flows",
    ),
    (
        "o7s_ipcp_ca_updates_out",
        C,
        "MB-ECN FLOW_UPDATEs the data plane sent for the IPCP's flows",
    ),
    (
        "o7s_ipcp_ca_updates_unknown",
        C,
        "FLOW_UPDATEs dropped because their endpoint id is no flow of the IPCP",
    ),
    (
        "o7s_ipcp_ca_updates_ignored",
        C,
        "FLOW_UPDATEs dropped because their flow runs no congestion avoidance",
    ),
    (
        "o7s_ipcp_dht_dropped",
        C,
        "DHT messages the IPCP dropped: malformed, or responses to no request of its own",
    ),
    (
        "o7s_ipcp_lsa_dropped",
        C,
        "Link-state advertisements the IPCP dropped: malformed, naming its own address (a collision), or the LSDB full",
    ),
    (
        "o7s_ipcp_lsa_withdrawn",
        C,
        "Link withdrawals (an o7s extension of 0.23 link state) that deleted a record of a link that went down elsewhere",
    ),
    (
        "o7s_ipcp_address_collisions",
        C,
        "LSAs from another IPCP of the layer with this IPCP's address",
    ),
    (
        "o7s_ipcp_dht_forgotten",
        C,
        "Directory values dropped because the address they name left the layer (no route for 1 s)",
    ),
    (
        "o7s_ipcp_dht_rejoined",
        C,
        "Times the directory rejoined through a member it had dropped, back in the forwarding table (a healed layer)",
    ),
    (
        "o7s_ipcp_readdressed",
        C,
        "Times the IPCP moved to a new address because another member had its own",
    ),
    (
        "o7s_ipcp_neighbours_moved",
        C,
        "Times a neighbour of the IPCP moved to a new address",
    ),
    (
        "o7s_ipcp_fa_dropped",
        C,
        "Flow-allocator messages the IPCP dropped: malformed, or for an endpoint that is no flow of it",
    ),
    // o7sctl port list (labels port, dev).
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
    // o7sctl flow list (labels flow, name, side, ipcp).
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
    // o7sctl worker list (labels worker, core).
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
        "o7s_worker_sleeps",
        C,
        "Times the worker went to sleep in poll(2) (adaptive polling, idle)",
    ),
    (
        "o7s_worker_yields_for_apps",
        C,
        "Times the worker gave up the CPU because an application's receive ring was more than half full",
    ),
    // o7sctl stats (no labels).
    (
        "o7s_flows_allocated",
        C,
        "Flows allocated, both sides, since o7sd started",
    ),
    (
        "o7s_mgmt_malformed",
        C,
        "Management messages that did not parse",
    ),
    (
        "o7s_flow_reply_unknown_eid",
        C,
        "FLOW_REPLYs for no pending allocation, or with an impossible endpoint id",
    ),
    (
        "o7s_flow_req_bad_eid",
        C,
        "FLOW_REQs with an impossible endpoint id",
    ),
    (
        "o7s_flow_req_unknown_name",
        C,
        "FLOW_REQs for names not registered here",
    ),
    (
        "o7s_mgmt_not_for_us",
        C,
        "Management frames addressed to another host",
    ),
    (
        "o7s_flow_req_refused",
        C,
        "Flow requests answered with a refusal",
    ),
    (
        "o7s_flow_req_busy",
        C,
        "FLOW_REQs dropped because too many were being served already",
    ),
    (
        "o7s_flow_req_duplicate",
        C,
        "FLOW_REQs repeated by their sender (no second flow: ignored, or answered again)",
    ),
    (
        "o7s_flow_replies_not_remembered",
        C,
        "FLOW_REPLYs not kept to answer a repeated FLOW_REQ: the layer's memory of replies was full",
    ),
    (
        "o7s_flow_limit",
        C,
        "Flows refused because of o7sd's or a peer's flow limit",
    ),
    (
        "o7s_flows_superseded",
        C,
        "Flows ended because their peer gave a new flow the endpoint id they named (the peer restarted or ended them without a message)",
    ),
    (
        "o7s_name_reply_unsolicited",
        C,
        "NAME_QUERY_REPLYs for names this host did not ask for (or asked too long ago)",
    ),
    (
        "o7s_name_cache_full",
        C,
        "NAME_QUERY_REPLYs not cached because the name cache was full",
    ),
    (
        "o7s_name_query_limit",
        C,
        "Allocations refused because too many name queries were in flight",
    ),
    (
        "o7s_requests_denied",
        C,
        "o7sctl requests refused because the caller may not make them",
    ),
    (
        "o7s_metrics_timed_out",
        C,
        "Metrics connections closed at their 2 s deadline (request and response not done)",
    ),
    (
        "o7s_metrics_evicted",
        C,
        "Metrics connections closed to make room: 64 were open",
    ),
    (
        "o7s_metrics_bad_request",
        C,
        "Metrics requests over 8 KiB or closed before their end",
    ),
    (
        "o7s_autostart_limit",
        C,
        "Flow requests refused because the name's auto-started program already ran its most instances",
    ),
    (
        "o7s_ctl_busy",
        C,
        "o7sctl requests refused because the admin thread's queue was full",
    ),
    (
        "o7s_request_slow",
        C,
        "o7sctl connections closed because no request came within 5 seconds",
    ),
    (
        "o7s_dp_queue_full",
        C,
        "Messages to the data plane refused because o7sd's queue to it was full",
    ),
    (
        "o7s_log_lines_suppressed",
        C,
        "Log lines about wire events suppressed by the rate limit",
    ),
    (
        "o7s_dp_drop_unknown_eid",
        C,
        "Frames the data plane dropped because their endpoint id is no flow, summed over the ports",
    ),
    (
        "o7s_dp_drop_malformed",
        C,
        "Malformed frames the data plane dropped, summed over the ports",
    ),
    (
        "o7s_dp_rx_mgmt",
        C,
        "Management frames the data plane passed to o7sd, summed over the ports",
    ),
    (
        "o7s_dp_drop_mgmt_rate_source",
        C,
        "Management frames dropped because their source sent more than its rate allows, summed over the ports",
    ),
    (
        "o7s_dp_drop_mgmt_rate_port",
        C,
        "Management frames dropped because their port received more than its rate allows, summed over the ports",
    ),
    (
        "o7s_dp_drop_mgmt_backlog",
        C,
        "Management frames dropped because o7sd was behind, summed over the ports",
    ),
    (
        "o7s_dp_drop_mgmt_bad_source",
        C,
        "Management frames dropped for a multicast or all-zero source address, summed over the ports",
    ),
    (
        "o7s_dp_drop_wrong_peer",
        C,
        "Data frames dropped because they came from an address that is not their flow's peer, summed over the ports",
    ),
    (
        "o7s_dp_drop_socket_buffer",
        C,
        "Frames or datagrams the kernel dropped because a port's receive buffer was full, summed over the ports",
    ),
    (
        "o7s_dp_workers",
        G,
        "Worker threads of the data plane",
    ),
    (
        "o7s_dp_yields_for_apps",
        C,
        "Times a data-plane worker gave up the CPU for an application's full receive ring, summed over the workers",
    ),
];

/// The HELP of a metric that [`METRICS`] does not know (a column added to a listing since):
/// it is still exported, as a counter; the tests fail on it.
const UNDESCRIBED: &str = "not described yet";

/// The kind and the HELP text of metric `name`.
fn spec(name: &str) -> (Kind, String) {
    METRICS.iter().find(|(n, ..)| *n == name).map_or_else(
        || (Kind::Counter, format!("{name}: {UNDESCRIBED}")),
        |(_, k, h)| (*k, (*h).to_string()),
    )
}

/// Whether a listing's `state` says up: a shim IPCP's "up" (its device up), a unicast
/// IPCP's "bootstrapped" or "enrolled", a flow's "up". Every other state is not: "down",
/// "down: <why>" (the device), "created", "created (not bootstrapped)", "enrolling through
/// <dst>", "enrolment failed: <why>", a flow's "peer timed out".
fn state_is_up(state: &str) -> bool {
    matches!(state, "up" | "bootstrapped" | "enrolled")
}

/// How a listing becomes metrics: its prefix, its identifying columns (labels), the
/// numeric columns that are not metrics, and those that show a nested object's values for
/// reading (the metrics take the nested ones).
struct Listing {
    ctl: Ctl,
    prefix: &'static str,
    labels: &'static [&'static str],
    skip: &'static [&'static str],
    shown: &'static [&'static [&'static str]],
}

fn listings() -> Vec<Listing> {
    vec![
        Listing {
            ctl: Ctl::IpcpList,
            prefix: "ipcp",
            labels: &["name", "type", "layer", "dev"],
            skip: &[],
            shown: &[],
        },
        Listing {
            ctl: Ctl::PortList,
            prefix: "port",
            labels: &["port", "dev"],
            skip: &["worker"],
            shown: &[],
        },
        Listing {
            ctl: Ctl::FlowList,
            prefix: "flow",
            labels: &["flow", "name", "side", "ipcp"],
            skip: &["pid"],
            shown: &[
                crate::daemon::ca_views::CA_SHOWN,
                crate::daemon::ca_views::FRCP_SHOWN,
                crate::daemon::ca_views::CRC_SHOWN,
            ],
        },
        Listing {
            ctl: Ctl::WorkerList,
            prefix: "worker",
            labels: &["worker", "core"],
            skip: &[],
            shown: &[],
        },
        Listing {
            ctl: Ctl::Stats,
            prefix: "",
            labels: &[],
            skip: &[],
            shown: &[],
        },
    ]
}

fn label_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Samples by metric name: [(labels, value)].
type Samples = BTreeMap<String, Vec<(Labels, u64)>>;

fn add(samples: &mut Samples, name: String, labels: Labels, v: u64) {
    samples.entry(name).or_default().push((labels, v));
}

/// The rows of one listing as samples.
fn collect(l: &Listing, rows: &[serde_json::Map<String, Value>], samples: &mut Samples) {
    let name = |field: &str| {
        if l.prefix.is_empty() {
            format!("o7s_{field}")
        } else {
            format!("o7s_{}_{field}", l.prefix)
        }
    };
    for row in rows {
        let labels: Labels = l
            .labels
            .iter()
            .filter_map(|k| row.get(*k).map(|v| (k.to_string(), label_value(v))))
            .collect();
        for (field, v) in row {
            let f = field.as_str();
            if !(l.labels.contains(&f)
                || l.skip.contains(&f)
                || l.shown.iter().any(|c| c.contains(&f)))
            {
                column(samples, &name, &labels, f, v);
            }
        }
    }
}

/// The samples of one column of a row.
fn column(
    samples: &mut Samples,
    name: &dyn Fn(&str) -> String,
    labels: &Labels,
    field: &str,
    v: &Value,
) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_u64() {
                add(samples, name(field), labels.clone(), x);
            }
        }
        // Per-queue counters.
        Value::Array(a) if a.iter().all(Value::is_u64) && !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                let mut q = labels.clone();
                q.push(("queue".into(), i.to_string()));
                add(samples, name(field), q, x.as_u64().unwrap_or(0));
            }
        }
        // State columns: 1 when up.
        Value::String(s) if field == "state" => {
            add(
                samples,
                name("up"),
                labels.clone(),
                u64::from(state_is_up(s)),
            );
        }
        // Exact values of a group (a flow's `ca`): metrics of the listing itself.
        Value::Object(m) => {
            for (k, x) in m {
                column(samples, name, labels, k, x);
            }
        }
        _ => {}
    }
}

/// The OpenMetrics text of every listing `view` gives.
pub fn render(view: &dyn Fn(Ctl) -> Reply) -> String {
    let mut samples = Samples::new();
    for l in listings() {
        if let Reply::Table { rows } = view(l.ctl.clone()) {
            collect(&l, &rows, &mut samples);
        }
    }
    let mut registry = Registry::default();
    for (name, values) in samples {
        let (kind, help) = spec(&name);
        let gauge = kind == Kind::Gauge;
        // The daemon-wide counters have no labels: plain metrics, not families.
        if let [(labels, v)] = values.as_slice() {
            if labels.is_empty() {
                if gauge {
                    let g = Gauge::<i64>::default();
                    g.set(i64::try_from(*v).unwrap_or(i64::MAX));
                    registry.register(name, help, g);
                } else {
                    let c = Counter::<u64>::default();
                    c.inc_by(*v);
                    registry.register(name, help, c);
                }
                continue;
            }
        }
        if gauge {
            let f = Family::<Labels, Gauge>::default();
            for (labels, v) in values {
                f.get_or_create(&labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
            registry.register(name, help, f);
        } else {
            let f = Family::<Labels, Counter>::default();
            for (labels, v) in values {
                f.get_or_create(&labels).inc_by(v);
            }
            // The registry appends `_total` to counters.
            registry.register(name, help, f);
        }
    }
    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// A `--metrics` value that is no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is neither ADDR:PORT (127.0.0.1:9100, [::1]:9100) nor a port (9100)")]
pub struct BadAddr(pub String);

/// `--metrics`: ADDR:PORT, or a PORT alone on the loopback address.
pub fn parse_addr(s: &str) -> Result<SocketAddr, BadAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| BadAddr(s.to_string()))
}

/// Starts the endpoint on `addr` (its HTTP side: src/metrics_http.rs).
pub fn serve(d: Arc<Daemon>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("o7sd-metrics".into())
        .spawn(move || {
            if let Err(e) = crate::metrics_http::run(&listener, &|| render(&|c| d.view(c))) {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        })?;
    tracing::info!("Prometheus metrics on http://{bound}/metrics.");
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "The metrics on {bound} are readable by anyone who reaches that address: the names, flows, ports and layers of this host."
        );
    }
    Ok(bound)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: Value) -> Reply {
        Reply::Table {
            rows: v
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_object().unwrap().clone())
                .collect(),
        }
    }

    #[test]
    fn a_port_alone_listens_on_loopback_only() {
        assert_eq!(parse_addr("9100").unwrap().to_string(), "127.0.0.1:9100");
        assert_eq!(
            parse_addr("0.0.0.0:9100").unwrap().to_string(),
            "0.0.0.0:9100"
        );
        assert_eq!(parse_addr("[::1]:9100").unwrap().to_string(), "[::1]:9100");
        let e = parse_addr("localhost").unwrap_err().to_string();
        assert!(e.contains("ADDR:PORT"), "{e}");
        assert!(parse_addr("70000").is_err());
    }

    #[test]
    fn listings_become_labelled_counters_and_gauges() {
        let view = |c: Ctl| match c {
            Ctl::PortList => table(
                json!([{"port": 1, "dev": "v0", "rx_frames": 10, "mtu": 1500,
                "io_path": "af_xdp", "rx_xdp_per_queue": [4, 6], "worker": 0}]),
            ),
            Ctl::FlowList => table(
                json!([{"flow": 3, "name": "n", "side": "accept", "ipcp": "e",
                "rx_sdus": 7, "pid": 99, "state": "up", "cipher": "-"}]),
            ),
            Ctl::Stats => table(json!([{"flows_allocated": 2, "dp_polling": "adaptive"}])),
            _ => Reply::Ok,
        };
        let text = render(&view);
        for want in [
            "# TYPE o7s_port_rx_frames counter",
            "o7s_port_rx_frames_total{port=\"1\",dev=\"v0\"} 10",
            "o7s_port_mtu{port=\"1\",dev=\"v0\"} 1500",
            "o7s_port_rx_xdp_per_queue_total{port=\"1\",dev=\"v0\",queue=\"1\"} 6",
            "o7s_flow_rx_sdus_total{flow=\"3\",name=\"n\",side=\"accept\",ipcp=\"e\"} 7",
            "o7s_flow_up{flow=\"3\",name=\"n\",side=\"accept\",ipcp=\"e\"} 1",
            "o7s_flows_allocated_total 2",
            "# EOF",
        ] {
            assert!(text.contains(want), "no {want} in\n{text}");
        }
        assert!(!text.contains("pid"), "{text}");
        assert!(!text.contains("dp_polling"), "{text}");
    }

    /// The views as o7sd makes them: a flow with MB-ECN (its `ca` nested) and one without, a
    /// capped port, a unicast IPCP.
    fn mb_ecn_view(c: Ctl) -> Reply {
        match c {
            Ctl::FlowList => table(json!([
                {"flow": 3, "name": "n", "side": "accept", "ipcp": "u", "pid": 9, "state": "up",
                 "congestion": "mb-ecn", "rate": "81.3M", "window": 170_500, "slot_us": 16_777,
                 "tx_ece": 2, "rx_ece": 1, "updates_in": 40, "updates_out": 41, "waits": 3,
                 "ca": {"rate_bps": 81_312_345, "window_bytes": 170_500, "slot_ns": 16_777_216,
                        "cav": true, "tx_ece": 2, "rx_ece": 1, "updates_in": 40,
                        "updates_out": 41, "rx_marked": 7, "waits": 3}},
                {"flow": 4, "name": "m", "side": "alloc", "ipcp": "e", "pid": 9, "state": "up",
                 "congestion": "-", "rate": null, "window": null, "slot_us": null,
                 "tx_ece": null, "rx_ece": null, "updates_in": null, "updates_out": null,
                 "waits": null}
            ])),
            Ctl::PortList => table(json!([
                {"port": 1, "dev": "v0", "worker": 0, "rate": "100M", "rate_bps": 100_000_000,
                 "queue_limit": 512, "queued": 4, "queued_max": 64, "shaped": 900,
                 "drop_queue_full": 5, "ecn_marked": 80}
            ])),
            Ctl::IpcpList => table(json!([
                {"name": "u", "type": "unicast", "layer": "l", "dev": "-", "state": "up",
                 "ca_updates_in": 10, "ca_updates_out": 11, "ca_updates_unknown": 1,
                 "ca_updates_ignored": 2}
            ])),
            _ => Reply::Ok,
        }
    }

    /// The `# TYPE` of every metric in `text`.
    fn types(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn mb_ecn_and_cap_metrics_are_typed_and_explained() {
        let text = render(&mb_ecn_view);
        let types = types(&text);
        let f = "{flow=\"3\",name=\"n\",side=\"accept\",ipcp=\"u\"}";
        let p = "{port=\"1\",dev=\"v0\"}";
        let gauges = [
            ("o7s_flow_rate_bps", format!("{f} 81312345")),
            ("o7s_flow_window_bytes", format!("{f} 170500")),
            ("o7s_flow_slot_ns", format!("{f} 16777216")),
            ("o7s_flow_tx_ece", format!("{f} 2")),
            ("o7s_flow_rx_ece", format!("{f} 1")),
            ("o7s_port_rate_bps", format!("{p} 100000000")),
            ("o7s_port_queue_limit", format!("{p} 512")),
            ("o7s_port_queued", format!("{p} 4")),
            ("o7s_port_queued_max", format!("{p} 64")),
        ];
        let counters = [
            ("o7s_flow_updates_in", format!("{f} 40")),
            ("o7s_flow_updates_out", format!("{f} 41")),
            ("o7s_flow_rx_marked", format!("{f} 7")),
            ("o7s_flow_waits", format!("{f} 3")),
            ("o7s_port_shaped", format!("{p} 900")),
            ("o7s_port_drop_queue_full", format!("{p} 5")),
            ("o7s_port_ecn_marked", format!("{p} 80")),
            ("o7s_ipcp_ca_updates_in", "{".to_string()),
            ("o7s_ipcp_ca_updates_out", "{".to_string()),
            ("o7s_ipcp_ca_updates_unknown", "{".to_string()),
            ("o7s_ipcp_ca_updates_ignored", "{".to_string()),
        ];
        for (name, sample) in &gauges {
            assert_eq!(
                types.get(*name).map(String::as_str),
                Some("gauge"),
                "{name}"
            );
            assert!(
                text.contains(&format!("\n{name}{sample}\n")),
                "{name} in\n{text}"
            );
        }
        for (name, sample) in &counters {
            assert_eq!(
                types.get(*name).map(String::as_str),
                Some("counter"),
                "{name}"
            );
            assert!(
                text.contains(&format!("\n{name}_total{sample}")),
                "{name} in\n{text}"
            );
        }
        for (name, _) in gauges.iter().chain(&counters) {
            let help = spec(name).1;
            let line = format!("# HELP {name} {help}.\n");
            assert!(text.contains(&line), "{line} in\n{text}");
            assert!(!help.contains("as o7sctl shows it"), "{name}");
            assert!(!help.contains(UNDESCRIBED), "{name}");
            assert!(
                !help.ends_with('.'),
                "{name}: the encoder adds the full stop"
            );
        }
        // The columns that show `ca` for reading are no metrics of their own, and a flow
        // without MB-ECN has none of its metrics.
        for shown in [
            "o7s_flow_window ",
            "o7s_flow_window{",
            "slot_us",
            "o7s_flow_rate{",
        ] {
            assert!(!text.contains(shown), "{shown} in\n{text}");
        }
        assert!(
            !text.contains("_bps_total") && !text.contains("_ece_total"),
            "{text}"
        );
        assert!(!text.contains("o7s_flow_rate_bps{flow=\"4\""), "{text}");
        assert!(!text.contains("o7s_flow_cav"), "{text}");
    }

    #[test]
    fn every_state_an_ipcp_or_a_flow_shows_is_up_or_not() {
        // The states of `o7sctl ipcp list` (shim IPCPs: views.rs; unicast IPCPs:
        // unicast.rs, uni_views.rs) and of `o7sctl flow list`.
        for (state, up) in [
            ("up", true),
            ("bootstrapped", true),
            ("enrolled", true),
            ("down", false),
            ("down: device veth0 is gone", false),
            ("created", false),
            ("created (not bootstrapped)", false),
            ("enrolling through l", false),
            ("enrolment failed: no N-1 flow to l", false),
            ("peer timed out", false),
            ("", false),
        ] {
            assert_eq!(state_is_up(state), up, "{state:?}");
        }
    }

    /// Metrics that go down (issue 24): gauges, never counters, never `_total`.
    const LEVELS: &[&str] = &[
        "o7s_ipcp_up",
        "o7s_ipcp_mtu",
        "o7s_ipcp_dt_neighbours",
        "o7s_ipcp_dht_contacts",
        "o7s_port_mtu",
        "o7s_port_rate_bps",
        "o7s_port_queue_limit",
        "o7s_port_queued",
        "o7s_port_queued_max",
        "o7s_port_umem_frames",
        "o7s_port_umem_frames_accounted",
        "o7s_flow_up",
        "o7s_flow_rate_bps",
        "o7s_flow_window_bytes",
        "o7s_flow_slot_ns",
        "o7s_flow_tx_ece",
        "o7s_flow_rx_ece",
        "o7s_worker_ports",
        "o7s_worker_flows",
        "o7s_dp_workers",
    ];

    #[test]
    fn levels_are_gauges_not_counters() {
        let view = |c: Ctl| match c {
            Ctl::IpcpList => table(json!([
                {"name": "e", "type": "eth-dix", "layer": "l", "dev": "v0", "mtu": 1500,
                 "state": "up"},
                {"name": "u", "type": "unicast", "layer": "l", "dev": "-", "mtu": 0,
                 "state": "enrolled", "dt_neighbours": 2, "dht_contacts": 3}
            ])),
            Ctl::PortList => table(json!([
                {"port": 1, "dev": "v0", "mtu": 1500, "umem_frames": 12_288,
                 "umem_frames_accounted": 12_288, "rate_bps": 1, "queue_limit": 2,
                 "queued": 3, "queued_max": 4}
            ])),
            Ctl::WorkerList => table(json!([{"worker": 0, "core": "1", "ports": 1, "flows": 2}])),
            Ctl::Stats => table(json!([{"dp_workers": 1}])),
            other => mb_ecn_view(other),
        };
        let text = render(&view);
        let types = types(&text);
        for name in LEVELS {
            assert_eq!(spec(name).0, Kind::Gauge, "{name}");
            assert!(!name.ends_with("_total"), "{name}");
            assert_eq!(
                types.get(*name).map(String::as_str),
                Some("gauge"),
                "{name} in\n{text}"
            );
            assert!(
                !text.contains(&format!("{name}_total")),
                "{name} in\n{text}"
            );
        }
        assert!(
            text.contains(
                "\no7s_ipcp_dt_neighbours{name=\"u\",type=\"unicast\",layer=\"l\",dev=\"-\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\no7s_ipcp_up{name=\"u\",type=\"unicast\",layer=\"l\",dev=\"-\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn every_metric_is_described_once_and_typed() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, kind, help) in METRICS {
            assert!(seen.insert(*name), "{name} twice");
            assert!(name.starts_with("o7s_"), "{name}");
            // The encoder adds `_total` to a counter's samples; a gauge has none.
            assert!(!name.ends_with("_total"), "{name} ({kind:?})");
            assert!(help.len() > 20, "{name}: {help}");
            assert!(
                !help.ends_with('.'),
                "{name}: the encoder adds the full stop"
            );
            assert!(!help.contains("as o7sctl shows it"), "{name}");
        }
        assert_eq!(spec("o7s_port_new_column").0, Kind::Counter);
        assert!(spec("o7s_port_new_column").1.contains(UNDESCRIBED));
    }

    /// Every field of the data plane's port and MB-ECN counters (o7s-abi) is described:
    /// a field added there fails here until [`METRICS`] has it.
    #[test]
    fn every_port_and_ca_field_is_described() {
        let port = serde_json::to_value(o7s_abi::msg::PortStats {
            rx_xdp_per_queue: vec![1, 2],
            ..Default::default()
        })
        .unwrap();
        let ca = serde_json::to_value(o7s_abi::msg::CaStats::default()).unwrap();
        let view = |c: Ctl| match c {
            Ctl::PortList => table(json!([port])),
            Ctl::FlowList => table(json!([{"flow": 1, "name": "n", "side": "alloc",
                                           "ipcp": "u", "state": "up", "ca": ca}])),
            _ => Reply::Ok,
        };
        let text = render(&view);
        assert!(!text.contains(UNDESCRIBED), "{text}");
        assert!(text.contains("o7s_port_xdp_fill_wakeups_total{"), "{text}");
        assert!(text.contains("o7s_port_xdp_tx_batches_total{"), "{text}");
        assert!(text.contains("o7s_flow_rx_marked_total{"), "{text}");
    }
}
