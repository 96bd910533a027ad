//! `o7s-bench`: benchmark drivers that print JSON.
//!
//! - `o7s-bench alloc-server`: accepts flows and drops them at once (bind its program to a
//!   name first).
//! - `o7s-bench alloc-client -n NAME -c 1000`: allocates and deallocates flows one after the
//!   other and reports the allocation latency (p50, p99, mean, min, max in ms).

use clap::{Parser, Subcommand};
use o7s::{Flow, QosSpec};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Benchmark drivers with JSON output.
#[derive(Debug, Parser)]
#[command(name = "o7s-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Accept flows and drop them.
    AllocServer,
    /// Allocate COUNT flows to NAME one after the other; print latency statistics as JSON.
    AllocClient {
        /// Destination name.
        #[arg(short = 'n', long)]
        name: String,
        /// Number of allocations.
        #[arg(short = 'c', long, default_value_t = 1000)]
        count: u32,
        /// Allocation time-out in ms.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::AllocServer => loop {
            match Flow::accept(None) {
                Ok(f) => drop(f),
                Err(e) => {
                    eprintln!("o7s-bench: accept: {e}");
                    return ExitCode::FAILURE;
                }
            }
        },
        Cmd::AllocClient {
            name,
            count,
            timeout_ms,
        } => {
            let Ok(mut h) = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            else {
                return ExitCode::FAILURE;
            };
            let mut failures = 0u32;
            let mut first_error = None;
            let start = Instant::now();
            for _ in 0..count {
                let t = Instant::now();
                match Flow::alloc(&name, QosSpec::RAW, Duration::from_millis(timeout_ms)) {
                    Ok(f) => {
                        let ns = t.elapsed().as_nanos() as u64;
                        let _ = h.record(ns.max(1));
                        drop(f);
                    }
                    Err(e) => {
                        failures += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            let ms = |ns: u64| ns as f64 / 1e6;
            let j = serde_json::json!({
                "allocations": h.len(), "failures": failures, "first_error": first_error,
                "total_s": start.elapsed().as_secs_f64(),
                "latency_ms": {"p50": ms(h.value_at_quantile(0.5)), "p99": ms(h.value_at_quantile(0.99)),
                               "mean": h.mean() / 1e6, "min": ms(h.min()), "max": ms(h.max())}
            });
            println!("{j}");
            if failures > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
