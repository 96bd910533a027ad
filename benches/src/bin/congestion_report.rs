//! `o7s-congestion-report`: per-flow throughput CSVs of the congestion experiment (one per
//! congestion-control setting, e.g. `mb-ecn` and `none`) to `summary.json`,
//! `congestion.png` and `congestion.svg` in `--out`.
//!
//! ```text
//! o7s-congestion-report --run mb-ecn=mb-ecn.csv --run none=none.csv \
//!     --cap-mbit 100 --demand-mbit 80 --schedule 0-70,14-24,44-58,63-80 \
//!     [--bin-ms 100] [--time-scale 1.0] [--offset-s mb-ecn=0.35] \
//!     [--counters mb-ecn=mb-ecn.json] --out DIR
//! ```

use clap::Parser;
use o7s_bench::congestion::plot::DEFAULT_FONT;
use o7s_bench::congestion::report::{self, split_named, Config};
use std::path::PathBuf;
use std::process::ExitCode;

fn named_path(s: &str) -> Result<(String, PathBuf), String> {
    split_named(s).map(|(n, v)| (n, PathBuf::from(v)))
}

fn named_seconds(s: &str) -> Result<(String, f64), String> {
    let (n, v) = split_named(s)?;
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok((n, x)),
        _ => Err(format!("`{v}` is not a number of seconds")),
    }
}

/// Per-flow throughput CSVs of a congestion experiment to a JSON summary (Jain's fairness
/// per bin and period, convergence after each join and leave, utilisation, loss, verdict)
/// and a plot (PNG and SVG).
#[derive(Debug, Parser)]
#[command(name = "o7s-congestion-report", version)]
struct Cli {
    /// A run: NAME=CSV (columns bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max);
    /// repeat for each run, plotted top to bottom in this order.
    #[arg(long = "run", value_name = "NAME=CSV", required = true, value_parser = named_path)]
    runs: Vec<(String, PathBuf)>,
    /// Capacity of the bottleneck link (Mbit/s).
    #[arg(long, default_value_t = 100.0)]
    cap_mbit: f64,
    /// Rate each flow offers (Mbit/s).
    #[arg(long, default_value_t = 80.0)]
    demand_mbit: f64,
    /// The flows' SDU size (bytes): with a CSV that counts whole frames (`frame_mbit_s`),
    /// the demand is converted to frames of the captured mean size per SDU, so that a lone
    /// flow's fair share is its demand in the unit its throughput is measured in.
    #[arg(long, value_name = "BYTES")]
    sdu_bytes: Option<u32>,
    /// START-END of each flow (s), comma-separated; flows are matched to entries by order
    /// of first appearance in the capture.
    #[arg(long, default_value = "0-70,14-24,44-58,63-80")]
    schedule: String,
    /// Bin width of the CSVs (ms).
    #[arg(long, default_value_t = 100)]
    bin_ms: u32,
    /// Multiplies every schedule time (a shortened run).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// NAME=SECONDS: the schedule's 0 in that run's capture time (default: the first bin
    /// of flow 1, the first data flow that is not noise).
    #[arg(long = "offset-s", value_name = "NAME=SECONDS", value_parser = named_seconds)]
    offsets: Vec<(String, f64)>,
    /// NAME=JSON: a JSON object of extra counters for that run (sent_sdus and
    /// received_sdus give the loss).
    #[arg(long = "counters", value_name = "NAME=JSON", value_parser = named_path)]
    counters: Vec<(String, PathBuf)>,
    /// TrueType font for the plots' text (Debian: fonts-dejavu-core).
    #[arg(long, default_value = DEFAULT_FONT)]
    font: PathBuf,
    /// Output directory (summary.json, congestion.png, congestion.svg).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = Config {
        runs: cli.runs,
        cap_mbit: cli.cap_mbit,
        demand_mbit: cli.demand_mbit,
        sdu_bytes: cli.sdu_bytes,
        schedule: cli.schedule,
        bin_ms: cli.bin_ms,
        time_scale: cli.time_scale,
        offsets: cli.offsets,
        counters: cli.counters,
        font: cli.font,
        out: cli.out,
    };
    match report::run(&cfg) {
        Ok(out) => {
            for (run, warnings) in &out.warnings {
                for w in warnings {
                    eprintln!("warning: {run}: {w}");
                }
            }
            println!("{}", out.summary.display());
            for p in &out.plots {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("o7s-congestion-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}
