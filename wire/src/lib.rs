//! # o7s-wire
//!
//! Byte-exact, zero-copy where it matters, panic-free codecs for the wire formats of
//! Ouroboros 0.23 (and, decode-mostly, the older formats the tutorials show).
//!
//! Style (after smoltcp): per-packet headers have checked views (`new_checked`, after which no
//! accessor can panic, and the accessors are total anyway) and owned reprs with
//! `parse`/`write`; field offsets are named constants; unknown codes round-trip as
//! `Unknown(u8)`. No I/O, no allocation on the view paths.
//!
//! | module | format |
//! |---|---|
//! | [`ethernet`] | Ethernet II / 802.3 header |
//! | [`dix`] | eth-dix `eid | length`, 39-byte management message, 0.21's 38-byte one |
//! | [`llc`] | eth-llc LLC header (bit-reversed SAPs), 37-byte management message |
//! | [`udp`] | udp4/udp6 `eid(4)`, 47-byte management message |
//! | [`unicast`] | DT PCI (little-endian address/eid), flow allocator (61 B), LSA (24 B) |
//! | [`frct`] | FRCT header (12 B) |
//! | [`oap`] | OAP header 0.23 (and 0.22) |
//! | [`app`] | oping and ocbr messages |
//! | [`qos`], [`hash`], [`nid`] | QoS specs and cubes, name hashing, OpenSSL NIDs |
//! | [`frame`] | whole frames as layered reprs (decode / encode round trip) |

pub mod app;
pub mod capfile;
pub mod code;
pub mod dix;
mod error;
pub mod ethernet;
pub mod field;
pub mod frame;
pub mod frct;
pub mod hash;
pub mod ip;
pub mod llc;
pub mod nid;
pub mod oap;
pub mod qos;
pub mod udp;
pub mod unicast;

pub use error::{Error, Result};
