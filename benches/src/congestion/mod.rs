//! `o7s-congestion-report`: per-flow throughput CSVs of a congestion experiment (flows
//! joining and leaving a capped link on a schedule) to a JSON summary and a plot.
//!
//! - [`input`]: the CSV rows (errors name the line);
//! - [`flows`]: rows to dense per-flow series, flows in order of first appearance, noise
//!   (fewer than 5 bins) set aside;
//! - [`schedule`]: the schedule, its time scale and the periods between events;
//! - [`metrics`]: Jain's index, max-min fair share, the convergence rule;
//! - [`analysis`]: one run's figures and verdict;
//! - [`plot`]: the PNG/SVG figure;
//! - [`report`]: the whole command.

pub mod analysis;
pub mod flows;
pub mod input;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod schedule;
