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
    pub(crate) fn new(cfg: FrcpConfig) -> Self {
        Self {
            m: Frcp::new(cfg, seed()),
            scratch: Vec::new(),
            corrupt: false,
            linger_over: false,
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
                self.m.handle_pdu(now, &self.scratch)
            });
            match popped {
                Ok(Some(Ok(()))) => {}
                // Counted by the machine (`bad` in the stats).
                Ok(Some(Err(_))) => {}
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
        self.m.transmit_with(|p| match ring.push(p) {
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
