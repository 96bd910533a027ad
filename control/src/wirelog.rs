//! Log lines caused by frames from the wire are rate-limited: a peer can make us log, but
//! not fill the disk. At most [`PER_SECOND`] such lines a second are written; the rest are
//! counted, and the count is logged once the next line gets through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines about wire events written per second at most.
pub const PER_SECOND: u64 = 50;

static WINDOW: AtomicU64 = AtomicU64::new(0);
static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
/// Lines suppressed since the start (shown by `o7sctl stats`).
pub static SUPPRESSED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Whether a line about a wire event may be written now; when lines were held back
/// before it, how many (to say so).
pub fn allow() -> Option<u64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if WINDOW.swap(now, Ordering::Relaxed) != now {
        IN_WINDOW.store(0, Ordering::Relaxed);
    }
    if IN_WINDOW.fetch_add(1, Ordering::Relaxed) < PER_SECOND {
        Some(SUPPRESSED.swap(0, Ordering::Relaxed))
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        SUPPRESSED_TOTAL.fetch_add(1, Ordering::Relaxed);
        None
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_and_counted() {
        let before = SUPPRESSED_TOTAL.load(Ordering::Relaxed);
        let passed = (0..1000).filter(|_| allow().is_some()).count() as u64;
        // The burst may straddle a second boundary: at most two windows' worth pass.
        assert!(passed <= 2 * PER_SECOND, "{passed}");
        assert!(SUPPRESSED_TOTAL.load(Ordering::Relaxed) - before >= 1000 - 2 * PER_SECOND);
    }
}
