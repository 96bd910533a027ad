//! What every metric is (its kind and HELP), listing by listing.

mod flows;
mod ipcps;
mod ports;
mod stats;
mod workers;

pub(super) use flows::FLOWS;
pub(super) use ipcps::IPCPS;
pub(super) use ports::PORTS;
pub(super) use stats::STATS;
pub(super) use workers::WORKERS;
