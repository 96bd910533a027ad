//! The o7s data plane: a process of its own, started and driven by `o7sd` over a channel.
//! It owns the ports (UDP sockets for udp layers; for eth layers an AF_XDP socket fed by the
//! XDP program of `bpf/`, with AF_PACKET for management and as the fallback) and moves SDUs
//! between ports and the apps' shared-memory rings.

pub mod afpacket;
pub mod crypt;
pub mod ctl_out;
pub mod dt;
pub mod frames;
pub mod handoff;
pub mod impair;
pub mod local_flows;
pub mod packet_path;
pub use o7s_abi::msg;
pub mod police;
pub mod queue_spread;
pub mod route_map;
pub mod router;
pub mod shaper;
pub mod sockstat;
pub mod udp;
pub mod upstream;
pub mod worker;
pub mod xdp;
pub mod xdp_error;
pub mod xdp_netlink;
pub mod xdp_status;
pub mod xdp_umem;
