//! Library part of `o7s-bench`: the modules of `o7s-congestion-report`.

pub mod congestion;
