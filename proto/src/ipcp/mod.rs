//! IPCPs as machines (issue 25), in the shape of the parts ([`crate::machine::Machine`]):
//!
//! - The unicast IPCP, [`unicast::UnicastIpcp`]: the parts of this crate (enrolment and
//!   connections, link state, the directory, the flow allocator, address collisions)
//!   combined into one machine. The simulator's layer runs (proto/tests/layer_sim.rs) and
//!   o7sd (control/src/daemon/unicast/pump.rs) drive the same machine.
//! - The shim IPCP (eth-dix, eth-llc, udp4, udp6), [`ShimIpcp`]: name queries, the name
//!   cache, flow allocation as requester and responder ([`crate::shim`]), the requests it
//!   holds until the host answers them (bounded, a repeated FLOW_REQ answered once). o7sd drives one
//!   per eth/udp IPCP (control/src/daemon/shim_driver.rs) and proto/tests/sim.rs runs 50
//!   of them on a lossy segment.
//!
//! The waiting room for flow requests ([`crate::accept::AcceptQueue`]) is not inside the
//! shim IPCP: it is the host's, one for every layer, as the reference's IRMd holds a flow
//! request until a process accepts it (an IPCP hands it over with `IPCP_FLOW_REQ_ARR`:
//! o7s-0.23-facts.md section 1.9, step 4). Requests
//! for one name that came through different IPCPs are then served in the order they
//! arrived; a waiting room per IPCP could not keep that order without a host-wide one
//! above it.

pub mod departures;
pub mod dir_join;
pub mod unicast;

/// The shim IPCP machine (eth-dix, eth-llc, udp4, udp6): [`crate::shim::Shim`].
pub use crate::shim::Shim as ShimIpcp;
