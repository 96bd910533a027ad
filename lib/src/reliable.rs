//! FRCP in the app library: the flows whose QoS cube asks for in-order delivery
//! (`in_order != 0`: best, video, voice, data) run [`o7s_proto::frcp::Frcp`] here, as the
//! reference's library does (facts §1.8.8: "prepended by the library"). The machine is
//! sans-IO; this is its driver over the flow's shared-memory rings:
//! - a write hands the SDU to the machine and pushes what it transmits (the SDU behind its
//!   12-byte FRCT header) into the tx ring; the data plane encrypts the whole SDU as it
//!   does any other, so the order on the wire is the reference's (FRCT PCI, then
//!   encryption);
//! - a read, or a write that waits for the window, pops the rx ring into the machine
//!   (ACKs, window updates, data) and takes the next SDU it delivers in order;
//! - the machine's timers (delayed ACKs, retransmission, rendez-vous) run whenever the app
//!   is in a read or a write, and a read or write that sleeps wakes in time for the next
//!   one; a flow with data unacknowledged lingers on drop until the peer has it all.
//!
//! Copies per SDU: the machine keeps a copy of what it sent until acknowledged (with
//! retransmission) and one of what it received until the app takes it; see
//! docs/ARCHITECTURE.md "FRCP: in the library".

use o7s_abi::msg::FrcpStats;
use o7s_abi::ring::{Kick, Ring, RingError};
use o7s_proto::frcp::{Frcp, FrcpConfig};
use std::time::{Duration, Instant};

/// The FRCT header's length.
pub const HEADER_LEN: usize = o7s_wire::frct::HEADER_LEN;

/// How long a dropped flow with unacknowledged data keeps retransmitting for it
/// (`FRCTFLINGER`; the facts give no figure).
pub const LINGER: Duration = Duration::from_secs(5);

/// One flow end's FRCP (what waits for room in the tx ring waits in the machine,
/// bounded and counted there).
#[derive(Debug)]
pub(crate) struct Reliable {
    pub(crate) m: Frcp,
    /// A PDU copied out of the rx ring (the machine copies what it keeps of it).
    scratch: Vec<u8>,
    /// The rx ring held impossible indices (the data plane broke the protocol).
    pub(crate) corrupt: bool,
    /// Lingering would wait in vain: a write failed with a reset (the peer does not
    /// answer), or a wait for acknowledgements ran its full time already.
    pub(crate) linger_over: bool,
    /// The flow carries the CRC32 trailer ([`crate::crc`]).
    pub(crate) crc: bool,
    /// PDUs from the peer that failed the CRC (dropped before the machine saw them).
    pub(crate) crc_errors: u32,
    /// A PDU and its trailer, on the way to the tx ring.
    sealed: Vec<u8>,
}

/// A seed for the runs' first sequence numbers: std's per-process random keys, mixed
/// with the time (no dependency for 64 random bits).
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

impl Reliable {
    /// The FRCP end a flow of `cfg` runs.
    pub(crate) fn new(cfg: FrcpConfig, crc: bool) -> Self {
        Self {
            m: Frcp::new(cfg, seed()),
            scratch: Vec::new(),
            corrupt: false,
            linger_over: false,
            crc,
            crc_errors: 0,
            sealed: Vec::new(),
        }
    }

    /// Takes every PDU waiting in the rx ring into the machine and runs its due timers.
    pub(crate) fn pump(&mut self, now: Instant, ring: Ring<'_>, slots: u32) {
        // At most a ring's worth: a peer that keeps sending cannot keep us here.
        for _ in 0..slots {
            // The shared slot is copied out before it is parsed (the data plane could change
            // it under us), into a buffer used again for every PDU.
            let popped = ring.pop_with(|s| {
                self.scratch.clear();
                s.append_to(&mut self.scratch);
                let pdu = if self.crc {
                    crate::crc::open(&self.scratch)
                } else {
                    Some(&self.scratch[..])
                };
                pdu.map(|p| self.m.handle_pdu(now, p))
            });
            match popped {
                Ok(Some(Some(Ok(())))) => {}
                // Counted by the machine (`bad` in the stats).
                Ok(Some(Some(Err(_)))) => {}
                Ok(Some(None)) => self.crc_errors = self.crc_errors.saturating_add(1),
                Ok(None) => break,
                Err(_) => {
                    self.corrupt = true;
                    break;
                }
            }
        }
        self.m.handle_timeout(now);
    }

    /// Pushes what the machine transmits into the tx ring, straight from its buffers
    /// (what does not fit waits in the machine, in order); kicks the data plane once if
    /// it asked or the ring is full.
    pub(crate) fn flush(&mut self, ring: Ring<'_>, kick: &Kick) {
        let (mut wake, mut corrupt) = (false, false);
        let (crc, sealed) = (self.crc, &mut self.sealed);
        self.m.transmit_with(|p| {
            match ring.push(if crc {
                crate::crc::seal_into(p, sealed);
                sealed
            } else {
                p
            }) {
                Ok(w) => {
                    wake |= w;
                    true
                }
                Err(RingError::Full) => {
                    wake = true;
                    false
                }
                Err(_) => {
                    // Larger than a slot cannot happen (the MTU is checked); a corrupt ring
                    // is the data plane's fault: nothing more goes.
                    corrupt = true;
                    false
                }
            }
        });
        self.corrupt |= corrupt;
        if wake {
            kick.kick();
        }
    }

    /// PDUs waiting for room in the tx ring.
    pub(crate) fn backlogged(&self) -> bool {
        self.m.pending_transmits() > 0
    }

    /// The state `o7sctl flow list` shows, as published in the flow memory.
    pub(crate) fn stats(&self) -> FrcpStats {
        let c = self.m.counters();
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let low = |x: u64| (x & u64::from(u32::MAX)) as u32;
        FrcpStats {
            rtx: self.m.config().rtx,
            rto_us: us(self.m.rto()),
            srtt_us: self.m.srtt().map_or(0, us),
            in_flight: u32::try_from(self.m.in_flight()).unwrap_or(u32::MAX),
            window: self.m.send_window(),
            sent: low(c.sent),
            retransmits: low(c.retransmits),
            delivered: low(c.delivered),
            duplicates: low(c.duplicates),
            bad: low(c.malformed + c.bad_acks + c.bad_windows),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::ring::{Dir, FlowMem, Kick};

    /// Two FRCP ends with the CRC trailer over one flow memory: `a` sends on the tx ring,
    /// `b` reads the same ring as its rx (the data plane's hop left out).
    #[test]
    fn a_pdu_that_fails_the_crc_never_reaches_the_machine_and_is_counted() {
        let (mem, _fd) = FlowMem::create(16, 2048).unwrap();
        let kick = Kick::new().unwrap();
        let cfg = FrcpConfig::default();
        let mut a = Reliable::new(cfg, true);
        let mut b = Reliable::new(cfg, true);
        let now = Instant::now();
        a.m.send(now, b"first").unwrap();
        a.flush(mem.ring(Dir::Tx), &kick);
        // On the ring: FRCT header, the SDU, then the big-endian CRC32 of both.
        let mut raw = [0u8; 64];
        let n = mem.ring(Dir::Tx).pop(&mut raw).unwrap().unwrap();
        assert_eq!(n, HEADER_LEN + 5 + crate::crc::LEN);
        let crc = crc32fast::hash(&raw[..n - 4]).to_be_bytes();
        assert_eq!(raw[n - 4..n], crc);
        assert_eq!(&raw[HEADER_LEN..HEADER_LEN + 5], b"first");
        // A flipped bit: dropped before the machine, counted as a CRC error only.
        let mut bad = raw[..n].to_vec();
        bad[HEADER_LEN + 1] ^= 0x04;
        mem.ring(Dir::Tx).push(&bad).unwrap();
        b.pump(now, mem.ring(Dir::Tx), 16);
        assert_eq!(b.crc_errors, 1);
        assert_eq!(b.m.poll_deliver(), None);
        assert_eq!((b.stats().bad, b.stats().delivered), (0, 0));
        // The good copy is delivered.
        mem.ring(Dir::Tx).push(&raw[..n]).unwrap();
        b.pump(now, mem.ring(Dir::Tx), 16);
        assert_eq!(b.m.poll_deliver().as_deref(), Some(&b"first"[..]));
        assert_eq!(b.crc_errors, 1);
        // Without the trailer a flow's PDUs carry none, and a short one is the machine's
        // to refuse (counted as bad, not as a CRC error).
        let mut c = Reliable::new(cfg, false);
        c.m.send(now, b"x").unwrap();
        c.flush(mem.ring(Dir::Tx), &kick);
        let n = mem.ring(Dir::Tx).pop(&mut raw).unwrap().unwrap();
        assert_eq!(n, HEADER_LEN + 1);
        mem.ring(Dir::Tx).push(&[1, 2]).unwrap();
        c.pump(now, mem.ring(Dir::Tx), 16);
        assert_eq!((c.crc_errors, c.stats().bad), (0, 1));
    }
}
