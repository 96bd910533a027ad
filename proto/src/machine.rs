//! The one shape every protocol machine here has (the quinn-proto model), as a trait the
//! compiler checks: inputs come with the time (`handle_*(now, ..)`, [`Machine::handle_timeout`]),
//! outputs are polled ([`Machine::poll_transmit`], [`Machine::poll_event`],
//! [`Machine::poll_timeout`]). A driver (o7sd, the data plane, the simulator) feeds a
//! machine what arrived and the expiries of its timer, then drains it:
//!
//! ```text
//! loop {
//!     m.handle_*(now, input)            // a frame, a request, ...
//!     if m.poll_timeout() <= now { m.handle_timeout(now) }
//!     while let Some(t) = m.poll_transmit() { send t }
//!     while let Some(e) = m.poll_event() { act on e }
//!     sleep until the next input or m.poll_timeout()
//! }
//! ```
//!
//! Time comes in as `now` (monotonic, [`Instant`]); wall-clock time, where a protocol needs
//! it (signed directory entries, enrolment's timestamp), comes in as a value beside it; so
//! does randomness (a seed at construction). No machine reads a clock.

use std::time::Instant;

/// A protocol machine without I/O.
pub trait Machine {
    /// What it sends (a message and where to).
    type Transmit;
    /// What it tells its driver.
    type Event;
    /// Its timers due at `now` fire.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`Machine::handle_timeout`] is next due (`None`: no timer runs).
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next message to send.
    fn poll_transmit(&mut self) -> Option<Self::Transmit>;
    /// The next event for the driver.
    fn poll_event(&mut self) -> Option<Self::Event>;
}

/// Implements [`Machine`] for a type whose inherent methods have the shape.
macro_rules! machine {
    ($t:ty, $transmit:ty, $event:ty) => {
        impl $crate::machine::Machine for $t {
            type Transmit = $transmit;
            type Event = $event;
            fn handle_timeout(&mut self, now: std::time::Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_timeout(&self) -> Option<std::time::Instant> {
                <$t>::poll_timeout(self)
            }
            fn poll_transmit(&mut self) -> Option<$transmit> {
                <$t>::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<$event> {
                <$t>::poll_event(self)
            }
        }
    };
}
pub(crate) use machine;

/// Drains what `m` has to send and to say, in order: (transmits, events).
pub fn drain<M: Machine>(m: &mut M) -> (Vec<M::Transmit>, Vec<M::Event>) {
    let t = std::iter::from_fn(|| m.poll_transmit()).collect();
    let e = std::iter::from_fn(|| m.poll_event()).collect();
    (t, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_machine<M: Machine>() {}

    /// Every protocol machine has the one shape (this fails to compile otherwise).
    #[test]
    fn every_machine_has_the_shape() {
        is_machine::<crate::shim::Shim>();
        is_machine::<crate::dht::Dht>();
        is_machine::<crate::enroll::Connections>();
        is_machine::<crate::fa::Fa>();
        is_machine::<crate::linkstate::LinkState<u64>>();
        is_machine::<crate::frcp::Frcp>();
    }

    #[test]
    fn drain_gives_transmits_then_events_in_order() {
        let t0 = Instant::now();
        let mut fa = crate::fa::Fa::new(crate::fa::FaConfig::default(), 7, 1);
        let hash = [0u8; 32];
        for _ in 0..2 {
            let r = fa.alloc(
                t0,
                9,
                &hash,
                o7s_wire::qos::QosSpec::RAW,
                &[],
                std::time::Duration::from_secs(1),
            );
            assert!(r.is_ok());
        }
        let (sent, events) = drain(&mut fa);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|t| t.dst == 9));
        assert!(events.is_empty());
        fa.handle_timeout(t0 + std::time::Duration::from_secs(1));
        let (sent, events) = drain(&mut fa);
        assert!(sent.is_empty());
        assert_eq!(events.len(), 2, "both allocations time out");
        assert_eq!(drain(&mut fa), (vec![], vec![]));
    }
}
