//! Control-plane policing: management frames and datagrams are rate-limited per source
//! and per port before they cost anything (a copy, a message to `o7sd`, a thread there).
//!
//! Token buckets over a time passed in (no clock read here): a source (a MAC address on
//! Ethernet ports, an IP address on UDP ports) gets `source_rate` messages a second with a
//! burst of as many; the port as a whole `port_rate`. A flood from one source is cut at its
//! own bucket and leaves the port's tokens to the others. The table of sources is bounded
//! ([`MAX_SOURCES`]): when it is full, idle sources are forgotten, and new sources beyond it
//! share one bucket.
//!
//! A source is settled once it sends again [`SETTLED_AFTER`] or more after it was first
//! seen (a neighbour does; a spoofed address used once does not). Sources not settled (and
//! those beyond the table) share a bucket of half the port's rate: a flood from spoofed
//! source addresses, each new, takes at most half of the port's messages, and the settled
//! sources (the port's neighbours) keep the other half. A sweep of the full table forgets
//! quiet unsettled sources first, settled ones only when that leaves it three-quarters full.

use std::collections::HashMap;
use std::time::Instant;

/// Most sources tracked per port.
pub const MAX_SOURCES: usize = 4096;
/// Default messages per second from one source.
pub const DEFAULT_SOURCE_RATE: u32 = 2000;
/// Default messages per second on one port.
pub const DEFAULT_PORT_RATE: u32 = 10000;

/// A source of management messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An Ethernet source address.
    Mac([u8; 6]),
    /// An IP address (the port number is the sender's choice: not part of the key).
    Ip(std::net::IpAddr),
}

/// Rates of a policer (messages per second; the burst is one second's worth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Per source.
    pub source: u32,
    /// Per port.
    pub port: u32,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            source: DEFAULT_SOURCE_RATE,
            port: DEFAULT_PORT_RATE,
        }
    }
}

impl Rates {
    /// The rates in `O7S_DP_MGMT_RATE_SOURCE` and `O7S_DP_MGMT_RATE_PORT` (set by o7sd from
    /// its flags), else the defaults; 0 means no limit.
    pub fn from_env() -> Self {
        let get = |k: &str, d: u32| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Self {
            source: get("O7S_DP_MGMT_RATE_SOURCE", DEFAULT_SOURCE_RATE),
            port: get("O7S_DP_MGMT_RATE_PORT", DEFAULT_PORT_RATE),
        }
    }
}

use o7s_proto::budget::Bucket;

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// Its source sent too many.
    SourceLimit,
    /// The port received too many.
    PortLimit,
}

/// The policer of one port.
#[derive(Debug)]
pub struct Policer {
    rates: Rates,
    port: Bucket,
    /// Shared by sources not settled yet ([`SETTLED_AFTER`]), at half the port's rate, on
    /// top of the port's bucket.
    newcomers: Bucket,
    /// Each source's bucket, and when it was first seen (`None` once it is settled).
    sources: HashMap<Source, (Bucket, Option<Instant>)>,
    /// Shared by new sources while the table is full of active ones.
    overflow: Bucket,
    /// When the full table was last swept for quiet sources (a sweep is a pass over all
    /// of them: at most one per [`SWEEP_EVERY`], not one per new source of a flood).
    swept_at: Option<Instant>,
    /// Sweeps done.
    sweeps: u64,
}

/// A source that sends again this long (or longer) after it was first seen is settled: it
/// no longer shares the newcomers' half of the port's rate.
pub const SETTLED_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Least time between two sweeps of a full source table.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Policer {
    /// A policer with `rates`, its buckets full at `now`.
    pub fn new(rates: Rates, now: Instant) -> Self {
        Self {
            rates,
            port: Bucket::full(rates.port, now),
            newcomers: Bucket::full(newcomers_rate(rates.port), now),
            sources: HashMap::new(),
            overflow: Bucket::full(rates.source, now),
            swept_at: None,
            sweeps: 0,
        }
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Decides on one message from `src` at `now`.
    pub fn check(&mut self, src: Source, now: Instant) -> Verdict {
        let r = self.rates;
        if r.source > 0 {
            let due = self
                .swept_at
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due && !self.sources.contains_key(&src) && self.sources.len() >= MAX_SOURCES {
                // Forget sources whose bucket has refilled (quiet for a while): unsettled
                // ones first, settled ones too when that leaves the table crowded.
                self.sources
                    .retain(|_, (b, first)| first.is_none() || !b.is_full(r.source, now));
                if self.sources.len() > MAX_SOURCES / 4 * 3 {
                    self.sources.retain(|_, (b, _)| !b.is_full(r.source, now));
                }
                self.swept_at = Some(now);
                self.sweeps += 1;
            }
            let (ok, settled) =
                if self.sources.len() < MAX_SOURCES || self.sources.contains_key(&src) {
                    let (b, first) = self
                        .sources
                        .entry(src)
                        .or_insert_with(|| (Bucket::full(r.source, now), Some(now)));
                    if first.is_some_and(|t| now.saturating_duration_since(t) >= SETTLED_AFTER) {
                        *first = None;
                    }
                    (b.take(r.source, now), first.is_none())
                } else {
                    (self.overflow.take(r.source, now), false)
                };
            if !ok {
                return Verdict::SourceLimit;
            }
            if r.port > 0 && !settled && !self.newcomers.take(newcomers_rate(r.port), now) {
                return Verdict::PortLimit;
            }
        }
        if r.port > 0 && !self.port.take(r.port, now) {
            return Verdict::PortLimit;
        }
        Verdict::Pass
    }
}

/// The newcomers' share of a port's rate: half.
fn newcomers_rate(port: u32) -> u32 {
    (port / 2).max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: Source = Source::Mac([2, 0, 0, 0, 0, 0xa]);
    const B: Source = Source::Mac([2, 0, 0, 0, 0, 0xb]);

    fn count(p: &mut Policer, src: Source, n: u32, now: Instant) -> [u32; 3] {
        let mut c = [0; 3];
        for _ in 0..n {
            match p.check(src, now) {
                Verdict::Pass => c[0] += 1,
                Verdict::SourceLimit => c[1] += 1,
                Verdict::PortLimit => c[2] += 1,
            }
        }
        c
    }

    #[test]
    fn one_flooding_source_does_not_starve_another() {
        let t0 = Instant::now();
        let mut p = Policer::new(
            Rates {
                source: 100,
                port: 300,
            },
            t0,
        );
        assert_eq!(count(&mut p, A, 1000, t0), [100, 900, 0]);
        // B still gets through: A's excess never took the port's tokens.
        assert_eq!(count(&mut p, B, 10, t0), [10, 0, 0]);
        // Half a second later A has 50 tokens again, not more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(count(&mut p, A, 100, t1), [50, 50, 0]);
    }

    #[test]
    fn many_sources_hit_the_port_limit() {
        let t0 = Instant::now();
        let mut p = Policer::new(
            Rates {
                source: 10,
                port: 100,
            },
            t0,
        );
        let mut passed = 0;
        let mut port_limited = 0;
        for i in 0..50u8 {
            let c = count(&mut p, Source::Mac([2, 0, 0, 0, 1, i]), 10, t0);
            passed += c[0];
            port_limited += c[2];
        }
        // New sources all: they share half the port's rate.
        assert_eq!(passed, 50);
        assert_eq!(port_limited, 450);
    }

    #[test]
    fn the_source_table_is_bounded_and_forgets_quiet_sources() {
        let t0 = Instant::now();
        let mut p = Policer::new(Rates { source: 5, port: 0 }, t0);
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            p.check(Source::Ip(ip.into()), t0);
        }
        assert_eq!(p.sources(), MAX_SOURCES);
        // A full table of active sources is swept once, not once per new source.
        assert_eq!(p.sweeps, 1);
        // Sources beyond the table share one bucket of 5.
        let extra = Source::Ip(std::net::Ipv4Addr::new(11, 0, 0, 1).into());
        let c = count(&mut p, extra, 10, t0);
        assert_eq!(
            c[0], 0,
            "the overflow bucket was spent by the 100 extra sources"
        );
        // A second later every source is quiet and full again: the table is renewed.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(count(&mut p, extra, 10, t1), [5, 5, 0]);
        assert!(p.sources() < 10);
        assert_eq!(p.sweeps, 2);
    }

    /// A flood from 20,000 spoofed source addresses, each new, takes at most half of the
    /// port's messages: a neighbour that was there before it still gets through.
    #[test]
    fn a_flood_of_new_sources_leaves_half_the_port_to_settled_ones() {
        let t0 = Instant::now();
        let mut p = Policer::new(Rates::default(), t0);
        // A neighbour: it sends now and then.
        assert_eq!(p.check(A, t0), Verdict::Pass);
        let t1 = t0 + SETTLED_AFTER;
        assert_eq!(p.check(A, t1), Verdict::Pass);
        let mut passed = 0;
        for i in 0..20_000u32 {
            let [_, _, c, d] = i.to_be_bytes();
            let spoofed = Source::Mac([2, 0xee, 0, 0, c, d]);
            if p.check(spoofed, t1) == Verdict::Pass {
                passed += 1;
            }
        }
        assert!(
            passed <= DEFAULT_PORT_RATE / 2,
            "{passed} of the flood passed"
        );
        assert_eq!(count(&mut p, A, 100, t1), [100, 0, 0]);
    }

    /// A sweep of the full table forgets quiet unsettled sources and keeps the settled
    /// ones, unless they alone crowd it (more than three-quarters): then they go too.
    #[test]
    fn a_sweep_keeps_settled_sources_unless_they_crowd_the_table() {
        let ip = |i: u32| Source::Ip(std::net::Ipv4Addr::from(0x0a00_0000 + i).into());
        for (settled, want) in [(3072u32, 3073usize), (3073, 1)] {
            let t0 = Instant::now();
            let mut p = Policer::new(Rates { source: 5, port: 0 }, t0);
            let t1 = t0 + SETTLED_AFTER;
            for i in 0..MAX_SOURCES as u32 {
                p.check(ip(i), t0);
                if i < settled {
                    p.check(ip(i), t1);
                }
            }
            assert_eq!(p.sources(), MAX_SOURCES);
            // All quiet a while later; a new source makes the full table be swept.
            let t2 = t1 + Duration::from_secs(5);
            p.check(ip(0xffff), t2);
            assert_eq!(p.sources(), want, "{settled} settled");
        }
    }

    #[test]
    fn zero_means_no_limit() {
        let t0 = Instant::now();
        let mut p = Policer::new(Rates { source: 0, port: 0 }, t0);
        assert_eq!(count(&mut p, A, 100_000, t0), [100_000, 0, 0]);
    }
}
