//! The two directions between a TUN device and flows, shared by the one-flow mode
//! (src/main.rs) and the several-peer mode (src/peers.rs). Reads from the device are
//! batched: one poll, then up to `BATCH` packets read without waiting (the device is
//! non-blocking); SDUs from a flow come off its shared-memory ring with no system call
//! while there are any.

use crate::tun::Tun;
use crate::{ip, Stats, TICK};
use o7s::flow::{Error, Flow};
use std::io;
use std::sync::atomic::Ordering;

/// Largest IP packet.
pub const MAX_PACKET: usize = 65_535;
/// Most packets read from the device per poll.
pub const BATCH: usize = 64;

/// Where a packet read from the device went.
pub enum Sent {
    /// Written to a flow.
    Ok,
    /// Bigger than the flow's largest SDU (counted).
    TooBig,
    /// Dropped and counted by the router (no route, peer down).
    Dropped,
}

/// Reads IP packets from `tun` and hands each to `send` until `done()` or a device
/// error; `send` returning Err ends it with that reason. Returns why it ended.
pub fn from_tun(
    tun: &Tun,
    stats: &Stats,
    done: &dyn Fn() -> bool,
    send: &mut dyn FnMut(&[u8]) -> Result<Sent, String>,
) -> String {
    let mut buf = vec![0u8; MAX_PACKET];
    while !done() {
        match tun.readable(TICK) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return format!("reading {}: {e}", tun.name()),
        }
        stats.tun_polls.fetch_add(1, Ordering::Relaxed);
        for _ in 0..BATCH {
            let n = match tun.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => return format!("reading {}: {e}", tun.name()),
            };
            let Some(p) = buf.get(..n) else { continue };
            if ip::check(p).is_err() {
                stats.tx_not_ip.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let sent = match send(p) {
                Ok(s) => s,
                Err(why) => return why,
            };
            match sent {
                Sent::Ok => {
                    stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                    stats.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Sent::TooBig => {
                    stats.tx_too_big.fetch_add(1, Ordering::Relaxed);
                }
                Sent::Dropped => {}
            }
        }
    }
    "stopped".into()
}

/// Writes `p` to `flow`: what became of it, or Err when the flow is no more.
pub fn to_flow(flow: &Flow, p: &[u8]) -> Result<Sent, Error> {
    match flow.write(p) {
        Ok(_) => Ok(Sent::Ok),
        Err(Error::TooBig(..)) => Ok(Sent::TooBig),
        Err(e) => Err(e),
    }
}

/// Reads SDUs from `flow` and writes each IP packet to `tun` until `done()` or the flow
/// ends; says why it ended.
pub fn from_flow(tun: &Tun, flow: &Flow, stats: &Stats, done: &dyn Fn() -> bool) -> String {
    let mut buf = vec![0u8; MAX_PACKET];
    while !done() {
        let n = match flow.read(&mut buf) {
            Ok(n) => n,
            Err(Error::Timeout) => continue,
            Err(e) => return format!("reading the flow: {e}"),
        };
        let Some(p) = buf.get(..n) else { continue };
        if ip::check(p).is_err() {
            stats.rx_not_ip.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match tun.write(p) {
            Ok(_) => {
                stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                stats.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                stats.rx_tun_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    "stopped".into()
}
