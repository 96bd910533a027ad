//! The metrics of `o7sctl ipcp list`.

use super::super::Kind::{self, Counter as C, Gauge as G};

/// The metrics of `o7sctl ipcp list (labels name, type, layer, dev)`: name, kind, HELP.
pub(in crate::metrics) const IPCPS: &[(&str, Kind, &str)] = &[
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
        "o7s_ipcp_dt_forwarded_one_pass",
        C,
        "DT PDUs forwarded in place that the packet path decided in one pass (counted in o7s_ipcp_dt_forwarded_in_place too)",
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
        "o7s_ipcp_n1_tx_dropped",
        C,
        "Messages of the IPCP's own (link state, directory, flow allocator, enrolment) dropped because an N-1 flow's ring to the data plane was full",
    ),
    (
        "o7s_ipcp_lsa_reasserted",
        C,
        "The IPCP's own live links announced again, a second later, because a withdrawal of one came round (a forgery, or its own after the link came back)",
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
        "o7s_ipcp_neighbour_moves_held",
        C,
        "Moves of a neighbour the IPCP ignored: the same link's neighbour had moved within the hold (60 s)",
    ),
    (
        "o7s_ipcp_address_claims_refused",
        C,
        "DT connections and neighbour moves the IPCP refused for the address they named: 0, its own, or a DT neighbour's on another link",
    ),
    (
        "o7s_ipcp_fa_dropped",
        C,
        "Flow-allocator messages the IPCP dropped: malformed, or for an endpoint that is no flow of it",
    ),
    (
        "o7s_ipcp_lsa_stale",
        C,
        "LSAs a unicast IPCP ignored: it knew the link with a seqno as high or higher",
    ),
    (
        "o7s_ipcp_lsa_malformed",
        C,
        "SDUs on a Management flow that were not 24-byte LSAs, or LSAs naming address 0 or a link to itself",
    ),
    (
        "o7s_ipcp_lsa_rate_dropped",
        C,
        "LSAs dropped because their Management neighbour sent more than its budget (2,000 a second)",
    ),
    (
        "o7s_ipcp_dt_rate_dropped",
        C,
        "DT PDUs for o7sd (directory, flow allocator) dropped because their neighbour sent more than its budget (2,000 a second)",
    ),
    (
        "o7s_ipcp_conn_failed",
        C,
        "Connections or enrolments of the IPCP that failed",
    ),
    (
        "o7s_ipcp_conn_unexpected",
        C,
        "SDUs on an N-1 flow the connection machine does not know, or after its exchange ended",
    ),
    (
        "o7s_ipcp_readdress_held",
        C,
        "Address collisions that would have moved the IPCP again within 60 s of its last move: ignored",
    ),
    (
        "o7s_ipcp_dt_held_for_route",
        C,
        "Messages of the IPCP's components that had to wait for a route to their destination",
    ),
    (
        "o7s_ipcp_dht_sent",
        C,
        "Directory messages the IPCP sent",
    ),
    (
        "o7s_ipcp_dht_received",
        C,
        "Directory messages the IPCP received and accepted",
    ),
    (
        "o7s_ipcp_dht_bad",
        C,
        "Directory messages dropped: malformed, out of bounds, a wrong id length, address 0 or wider than 32 bits",
    ),
    (
        "o7s_ipcp_dht_proofs_refused",
        C,
        "Directory values without a valid proof in a layer whose entries are signed (refused in stores, ignored in answers), or with one in an open layer",
    ),
    (
        "o7s_ipcp_dht_superseded",
        C,
        "Directory entries superseded by a newer one of the same publisher, or refused as older, or values that made room at a full key for one that expires later",
    ),
    (
        "o7s_ipcp_dht_store_refused",
        C,
        "Directory STOREs refused: expired, the value table full, or a full key whose values all expire later",
    ),
    (
        "o7s_ipcp_dht_contacts_dropped",
        C,
        "Directory contacts that left the buckets after three requests in a row went unanswered",
    ),
    (
        "o7s_ipcp_dht_lookups_refused",
        C,
        "Directory lookups refused because as many were in flight as one may",
    ),
    (
        "o7s_ipcp_dht_lookups_cut",
        C,
        "Directory lookups ended because they had asked as many members as one may",
    ),
    (
        "o7s_ipcp_neighbours",
        G,
        "DT neighbours of a broadcast IPCP (N-1 flows it floods to)",
    ),
    (
        "o7s_ipcp_joined",
        G,
        "Processes joined to a broadcast IPCP",
    ),
    (
        "o7s_ipcp_bc_from_neighbours",
        C,
        "SDUs a broadcast IPCP received from its neighbours",
    ),
    (
        "o7s_ipcp_bc_from_joined",
        C,
        "SDUs a broadcast IPCP received from its joined processes",
    ),
    (
        "o7s_ipcp_bc_to_neighbours",
        C,
        "Copies a broadcast IPCP wrote to its neighbours",
    ),
    (
        "o7s_ipcp_bc_to_joined",
        C,
        "Copies a broadcast IPCP wrote to its joined processes",
    ),
    (
        "o7s_ipcp_bc_drop_ring_full",
        C,
        "Copies a broadcast IPCP dropped because a joined process's receive ring was full",
    ),
    (
        "o7s_ipcp_bc_drop_backlog",
        C,
        "Copies for neighbours a broadcast IPCP dropped because 4,096 already waited to be written",
    ),
    (
        "o7s_ipcp_bc_drop_too_big",
        C,
        "SDUs a broadcast IPCP dropped because they were larger than its MTU (1400 bytes)",
    ),
    (
        "o7s_ipcp_admitted",
        C,
        "Peers admitted on the N-1 flows of an IPCP whose layer admits members only (their certificates checked)",
    ),
    (
        "o7s_ipcp_refused",
        C,
        "Peers refused on the N-1 flows of an IPCP whose layer admits members only: no certificate, another CA's, expired, a bad signature",
    ),
    (
        "o7s_ipcp_dt_ttl_dropped_in_o7sd",
        C,
        "DT PDUs for another IPCP that reached o7sd with their TTL run out: dropped",
    ),
    (
        "o7s_ipcp_dt_no_route_in_o7sd",
        C,
        "DT PDUs for another IPCP that reached o7sd without a route to their destination: dropped",
    ),
    (
        "o7s_ipcp_dt_held_dropped",
        C,
        "Messages of the IPCP's components dropped: no route to their destination within 3 s, or the queue of those waiting full",
    ),
    (
        "o7s_ipcp_collisions_kept",
        C,
        "Address collisions in which the IPCP kept its address (the other IPCP was younger)",
    ),
    (
        "o7s_ipcp_dht_sign_failed",
        C,
        "Directory entries of the IPCP that could not be signed in a layer that signs them: not published",
    ),
];
