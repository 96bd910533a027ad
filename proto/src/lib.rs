//! o7s protocol cores without I/O.
//!
//! Every machine here follows one shape (the quinn-proto model): inputs come in with the
//! current time (`handle(now, ..)`, `handle_timeout(now)`), outputs are polled
//! (`poll_transmit`, `poll_event`, `poll_timeout`). No machine reads a clock, opens a
//! socket, starts a thread or touches a file; randomness comes in as values. The same
//! machines run in `o7sd` (its driver feeds them frames, app requests and timer expiries)
//! and in [`sim`], a deterministic network on virtual time. The shape is a trait,
//! [`machine::Machine`], which the shim, the DHT, enrolment, the flow allocator, link state
//! and FRCP implement.
//!
//! - [`mgmt`]: the management message of the eth-dix, eth-llc and udp layers, one shape for
//!   all three, and the [`mgmt::Peer`] address type.
//! - [`shim`]: one eth/udp layer's control plane: name queries and the name cache, flow
//!   allocation as requester (FLOW_REQ, matching FLOW_REPLY, time-outs, optional
//!   retransmission) and as responder (incoming requests, duplicates, accept or refuse).
//! - [`accept`]: the responder's waiting room: requests wait in order for a process that
//!   accepts their name, an auto-started program, or their deadline.
//! - [`dht`]: a unicast layer's directory, the Kademlia DHT of 0.23 (wire-compatible),
//!   with lookups that recurse.
//! - [`enroll`]: a unicast IPCP's N-1 flows before they carry anything: connection
//!   establishment (CEP) and enrolment (OEP), both roles, every exchange with its deadline.
//! - [`frcp`]: FRCP (the reference's FRCT): in-order delivery, retransmission, flow control
//!   with rendez-vous, per flow end.
//! - [`fa`]: a unicast layer's flow allocator (FLOW_REQ/REPLY/UPDATE on DT eid 0, endpoint
//!   ids as the reference makes and checks them).
//! - [`linkstate`]: a unicast layer's link-state routing ("simple"): LSAs, LSDB, ageing,
//!   shortest paths (issue 15's first piece).
//! - [`mbecn`]: MB-ECN congestion avoidance: marking, the receiver's echo, the sender's window
//!   per time slot (run by the data-plane workers).
//! - [`oap`]: OAP requests and responses, negotiation and key derivation (signatures stay
//!   with the caller).
//! - [`refusal`]: why a responder refused a flow request, as the FLOW_REPLY's response
//!   carries it, and the requester's text for it.
//! - [`registry`]: names, bound programs and processes, processes waiting in accept, load
//!   balancing.
//! - [`sim`]: N nodes on a lossy, reordering, duplicating segment, on virtual time, seeded.

#![forbid(unsafe_code)]

pub mod accept;
pub mod budget;
pub mod dht;
pub mod enroll;
pub mod fa;
pub mod frcp;
pub mod ipcp;
pub mod linkstate;
pub mod machine;
pub mod mbecn;
pub mod mgmt;
pub mod oap;
pub mod refusal;
pub mod registry;
pub mod shim;
pub mod sim;
