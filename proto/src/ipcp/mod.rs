//! IPCPs as machines (issue 25): the parts of this crate (enrolment and connections, link
//! state, the directory, the flow allocator) combined into one machine per IPCP, in the
//! shape of the parts ([`crate::machine::Machine`]). The simulator's layer runs
//! (proto/tests/layer_sim.rs) drive [`unicast::UnicastIpcp`]; o7sd's unicast IPCP
//! (control/src/daemon/unicast/mod.rs and the `uni_*` files) still combines the parts itself
//! and is to drive this machine next (docs/STATUS.md).

pub mod departures;
pub mod dir_join;
pub mod unicast;
