//! Log lines caused by frames from the wire, and those caused by local clients' requests,
//! are rate-limited, each on a budget of its own: a peer or a local user can make us log,
//! but not fill the disk. At most [`PER_SECOND`] such lines a second are written; the rest
//! are counted, and the count is logged once the next line gets through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines about wire events (or local clients' requests) written per second at most.
pub const PER_SECOND: u64 = 50;

/// One budget of log lines a second: lines past it are counted, not written, and the
/// count is logged once the next line gets through.
#[derive(Debug)]
pub struct RateLog {
    window: AtomicU64,
    in_window: AtomicU64,
    suppressed: AtomicU64,
    /// Lines suppressed since the start (shown by `o7sctl stats`).
    pub total: AtomicU64,
}

impl RateLog {
    const fn new() -> Self {
        Self {
            window: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now; when lines were held back before it, how many
    /// (to say so).
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.window.swap(now, Ordering::Relaxed) != now {
            self.in_window.store(0, Ordering::Relaxed);
        }
        if self.in_window.fetch_add(1, Ordering::Relaxed) < PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            self.total.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Lines caused by frames from the wire.
pub static WIRE: RateLog = RateLog::new();
/// Lines caused by local clients' requests (refused, malformed, slow): a local user gets a
/// budget apart from the wire's, so it cannot hide what peers do, nor they what it does.
pub static LOCAL: RateLog = RateLog::new();

/// Whether a line about a wire event may be written now ([`RateLog::allow`] of [`WIRE`]).
pub fn allow() -> Option<u64> {
    WIRE.allow()
}

/// `tracing` at `$level`, rate-limited as a wire event.
#[macro_export]
macro_rules! wire_log {
    ($level:ident, $($arg:tt)+) => {
        if let Some(held) = $crate::wirelog::allow() {
            if held > 0 {
                tracing::warn!("{held} log lines about frames from the wire were not written (more than {} a second)", $crate::wirelog::PER_SECOND);
            }
            tracing::$level!($($arg)+);
        }
    };
}

/// `tracing` at `$level`, rate-limited as a line a local client's request caused.
#[macro_export]
macro_rules! local_log {
    ($level:ident, $($arg:tt)+) => {
        if let Some(held) = $crate::wirelog::LOCAL.allow() {
            if held > 0 {
                tracing::warn!("{held} log lines about local clients' requests were not written (more than {} a second)", $crate::wirelog::PER_SECOND);
            }
            tracing::$level!($($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_and_counted() {
        let before = WIRE.total.load(Ordering::Relaxed);
        let local_before = LOCAL.total.load(Ordering::Relaxed);
        let passed = (0..1000).filter(|_| allow().is_some()).count() as u64;
        // The burst may straddle a second boundary: at most two windows' worth pass.
        assert!(passed <= 2 * PER_SECOND, "{passed}");
        assert!(WIRE.total.load(Ordering::Relaxed) - before >= 1000 - 2 * PER_SECOND);
        // The local clients' budget is apart: untouched by the wire's burst.
        assert_eq!(LOCAL.total.load(Ordering::Relaxed), local_before);
        assert!(LOCAL.allow().is_some());
    }
}
