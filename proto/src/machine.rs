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
//! it (signed directory entries and expiries in the DHT, enrolment's timestamp), comes in
//! beside it as one type, [`UnixTime`]; randomness comes in as a seed at construction. No
//! machine reads a clock.

use std::time::{Duration, Instant, SystemTime};

/// The wall clock: the time since the UNIX epoch, as the driver read it. The one type in
/// which every machine here takes it (the DHT's signed entries and expiries, enrolment's
/// timestamp); the driver reads the clock once per turn ([`UnixTime::from_system`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(Duration);

impl UnixTime {
    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// `d` after the epoch.
    pub const fn from_duration(d: Duration) -> Self {
        Self(d)
    }

    /// A clock reading (`SystemTime::now()` in a driver); a time before the epoch (a
    /// clock set wrong) is the epoch.
    pub fn from_system(t: SystemTime) -> Self {
        Self(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The nanoseconds past [`UnixTime::as_secs`].
    pub const fn subsec_nanos(self) -> u32 {
        self.0.subsec_nanos()
    }

    /// The time since the epoch.
    pub const fn as_duration(self) -> Duration {
        self.0
    }
}

impl std::ops::Add<Duration> for UnixTime {
    type Output = Self;
    /// Later by `d` (saturating: a wall clock does not wrap).
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }
}

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

    #[test]
    fn the_wall_clock_converts_and_adds_without_wrapping() {
        let t = UnixTime::from_duration(Duration::new(1_796_083_200, 5));
        assert_eq!((t.as_secs(), t.subsec_nanos()), (1_796_083_200, 5));
        assert_eq!(t.as_duration(), Duration::new(1_796_083_200, 5));
        assert_eq!(UnixTime::from_secs(7).as_duration(), Duration::from_secs(7));
        assert_eq!((t + Duration::from_secs(3)).as_secs(), 1_796_083_203);
        assert_eq!(
            UnixTime::from_duration(Duration::MAX) + Duration::from_secs(1),
            UnixTime::from_duration(Duration::MAX)
        );
        let sys = SystemTime::UNIX_EPOCH + Duration::new(42, 9);
        assert_eq!(
            UnixTime::from_system(sys),
            UnixTime::from_duration(Duration::new(42, 9))
        );
        let early = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(UnixTime::from_system(early), UnixTime::default());
        assert!(UnixTime::from_secs(1) < UnixTime::from_secs(2));
    }

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
