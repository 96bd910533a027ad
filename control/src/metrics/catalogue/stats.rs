//! The metrics of `o7sctl stats`.

use super::super::Kind::{self, Counter as C, Gauge as G};

/// The metrics of `o7sctl stats (no labels)`: name, kind, HELP.
pub(in crate::metrics) const STATS: &[(&str, Kind, &str)] = &[
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
        "o7s_mgmt_queue_full",
        C,
        "Management frames dropped because the event loop's queue from the data plane was full",
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
        "o7s_oap_replay_unchecked",
        C,
        "Unsigned OAP requests passed without a replay check: the replay window's share for them (or their source's) was full",
    ),
    (
        "o7s_flows_superseded",
        C,
        "Flows ended because their peer gave a new flow the endpoint id they named (the peer restarted or ended them without a message)",
    ),
    (
        "o7s_flow_install_failed",
        C,
        "Flows the data plane did not install (it refused, restarted, or did not answer within 2 s): their allocation or acceptance failed",
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
        "o7s_loop_inbox_full",
        C,
        "Requests refused because the event loop's inbox (o7sctl, metrics, start-up) was full",
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
