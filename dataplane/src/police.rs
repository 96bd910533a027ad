//! Control-plane policing: management frames and datagrams are rate-limited per source
//! and per port before they cost anything (a copy, a message to `o7sd`, a thread there).
//!
//! Token buckets over a time passed in (no clock read here): a source (a MAC address on
//! Ethernet ports, an IP address on UDP ports) gets `source_rate` messages a second with a
//! burst of as many; the port as a whole `port_rate`. A flood from one source is cut at its
//! own bucket and leaves the port's tokens to the others. The table of sources is bounded
//! ([`MAX_SOURCES`]): when it is full, idle sources are forgotten, and new sources beyond it
//! share one bucket.

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
    sources: HashMap<Source, Bucket>,
    /// Shared by new sources while the table is full of active ones.
    overflow: Bucket,
    /// When the full table was last swept for quiet sources (a sweep is a pass over all
    /// of them: at most one per [`SWEEP_EVERY`], not one per new source of a flood).
    swept_at: Option<Instant>,
    /// Sweeps done.
    sweeps: u64,
}

/// Least time between two sweeps of a full source table.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Policer {
    /// A policer with `rates`, its buckets full at `now`.
    pub fn new(rates: Rates, now: Instant) -> Self {
        Self {
            rates,
            port: Bucket::full(rates.port, now),
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
                // Forget sources whose bucket has refilled: they have been quiet for a second.
                self.sources.retain(|_, b| !b.is_full(r.source, now));
                self.swept_at = Some(now);
                self.sweeps += 1;
            }
            let ok = if self.sources.len() < MAX_SOURCES || self.sources.contains_key(&src) {
                self.sources
                    .entry(src)
                    .or_insert_with(|| Bucket::full(r.source, now))
                    .take(r.source, now)
            } else {
                self.overflow.take(r.source, now)
            };
            if !ok {
                return Verdict::SourceLimit;
            }
        }
        if r.port > 0 && !self.port.take(r.port, now) {
            return Verdict::PortLimit;
        }
        Verdict::Pass
    }
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
                port: 150,
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
        assert_eq!(passed, 100);
        assert_eq!(port_limited, 400);
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

    #[test]
    fn zero_means_no_limit() {
        let t0 = Instant::now();
        let mut p = Policer::new(Rates { source: 0, port: 0 }, t0);
        assert_eq!(count(&mut p, A, 100_000, t0), [100_000, 0, 0]);
    }
}
