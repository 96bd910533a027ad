//! The o7s data plane: a process of its own, started and driven by `o7sd` over a channel.
//! It owns the ports (UDP sockets for udp layers, AF_PACKET for eth layers for now; AF_XDP comes with its own issue) and moves SDUs
//! between ports and the apps' shared-memory rings.

pub mod afpacket;
pub mod crypt;
pub mod msg;
pub mod udp;
pub mod worker;
pub mod xdp;
