//! The o7s data plane: a process of its own, started and driven by `o7sd` over a channel.
//! It owns the ports (AF_PACKET for now; AF_XDP comes with its own issue) and moves SDUs
//! between ports and the apps' shared-memory rings.

pub mod afpacket;
pub mod msg;
pub mod worker;
