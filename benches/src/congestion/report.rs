//! The whole report: read each run's CSV (and counters), analyse, write `summary.json`,
//! then draw `congestion.png` and `congestion.svg`.

use super::analysis::{self, r6, Params, RunInput, RunReport};
use super::flows::{self, NOISE_MIN_BINS};
use super::input;
use super::plot::{self, Figure, Panel};
use super::schedule::{self, Schedule};
use anyhow::{bail, Context, Result};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// File names in the output directory.
pub const SUMMARY: &str = "summary.json";
/// The PNG.
pub const PNG: &str = "congestion.png";
/// The SVG.
pub const SVG: &str = "congestion.svg";

/// Everything the command line gives.
#[derive(Debug, Clone)]
pub struct Config {
    /// (name, CSV), plotted top to bottom in this order.
    pub runs: Vec<(String, PathBuf)>,
    /// Bottleneck (Mbit/s).
    pub cap_mbit: f64,
    /// Each flow's rate (Mbit/s).
    pub demand_mbit: f64,
    /// The flows' SDU size: with a CSV that counts frames, the demand (SDU bits, as ocbr's
    /// `-r`) is taken in frames of the captured mean size per SDU.
    pub sdu_bytes: Option<u32>,
    /// `"0-70,14-24,44-58,63-80"`.
    pub schedule: String,
    /// Bin width of the CSVs (ms).
    pub bin_ms: u32,
    /// Multiplies every schedule time.
    pub time_scale: f64,
    /// (name, the schedule's 0 in capture time).
    pub offsets: Vec<(String, f64)>,
    /// (name, counters JSON file).
    pub counters: Vec<(String, PathBuf)>,
    /// TTF for the plots' text.
    pub font: PathBuf,
    /// Output directory.
    pub out: PathBuf,
}

/// Splits `NAME=VALUE`.
pub fn split_named(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if !n.trim().is_empty() && !v.trim().is_empty() => {
            Ok((n.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

#[derive(Debug, Serialize)]
struct EntryJson {
    flow: usize,
    start_s: f64,
    end_s: f64,
    start_schedule_s: f64,
    end_schedule_s: f64,
}

#[derive(Debug, Serialize)]
struct Parameters<'a> {
    cap_mbit: f64,
    demand_mbit: f64,
    sdu_bytes: Option<u32>,
    schedule: &'a str,
    schedule_entries: Vec<EntryJson>,
    time_scale: f64,
    bin_ms: u32,
    convergence_tolerance: f64,
    noise_min_bins: usize,
    run_order: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
struct Plots {
    png: &'static str,
    svg: &'static str,
}

/// Runs in the command line's order (serde_json writes a map's keys as they come).
#[derive(Debug)]
struct Runs<'a>(&'a [(String, RunReport)]);

impl Serialize for Runs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, r) in self.0 {
            m.serialize_entry(name, r)?;
        }
        m.end()
    }
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    tool: &'static str,
    parameters: Parameters<'a>,
    runs: Runs<'a>,
    /// `null` when the plots could not be drawn (no font).
    plots: Option<Plots>,
}

fn read_counters(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading counters {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("counters {}: not JSON", path.display()))?;
    if !v.is_object() {
        bail!("counters {}: not a JSON object", path.display());
    }
    Ok(v)
}

fn check_names(cfg: &Config) -> Result<()> {
    if cfg.runs.is_empty() {
        bail!("no --run NAME=CSV given");
    }
    for (i, (name, _)) in cfg.runs.iter().enumerate() {
        if cfg.runs.iter().skip(i + 1).any(|(n, _)| n == name) {
            bail!("run `{name}` given twice");
        }
    }
    let known = |n: &str| cfg.runs.iter().any(|(r, _)| r == n);
    for n in cfg
        .offsets
        .iter()
        .map(|(n, _)| n)
        .chain(cfg.counters.iter().map(|(n, _)| n))
    {
        if !known(n) {
            bail!("`{n}` in --offset-s or --counters is not a --run name");
        }
    }
    if !(cfg.cap_mbit > 0.0 && cfg.demand_mbit > 0.0) {
        bail!("--cap-mbit and --demand-mbit must be positive");
    }
    if cfg.sdu_bytes == Some(0) {
        bail!("--sdu-bytes must be positive");
    }
    if cfg.bin_ms == 0 {
        bail!("--bin-ms must be positive");
    }
    Ok(())
}

fn analyse_run(
    cfg: &Config,
    name: &str,
    csv: &Path,
    schedule: &Schedule,
    params: Params,
) -> Result<RunReport> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let rows = input::parse_csv(&text).with_context(|| format!("{}", csv.display()))?;
    let capture = flows::build(&rows, f64::from(cfg.bin_ms) / 1000.0)
        .with_context(|| format!("{}", csv.display()))?;
    let counters = cfg
        .counters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| read_counters(p))
        .transpose()?;
    let offset_s = cfg.offsets.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
    let frames = input::counts_frames(&text);
    let mut params = params;
    if let (true, Some(sdu)) = (frames, cfg.sdu_bytes) {
        // 80 Mbit/s of 1000-byte SDUs over eth-dix is 82.6 Mbit/s of 1033-byte frames: the
        // fair share of a lone flow in the unit the throughput is measured in.
        if let Some(per_pdu) = input::mean_bytes_per_pdu(&rows, f64::from(cfg.bin_ms) / 1000.0) {
            params.demand_mbit *= per_pdu / f64::from(sdu);
        }
    }
    Ok(analysis::analyse(
        RunInput {
            csv: csv.display().to_string(),
            capture: &capture,
            offset_s,
            counters,
            throughput_of: if frames { "frames" } else { "dt_pdus" },
        },
        schedule,
        params,
    ))
}

/// What [`run`] wrote.
#[derive(Debug)]
pub struct Outcome {
    /// `summary.json`.
    pub summary: PathBuf,
    /// The PNG and SVG.
    pub plots: [PathBuf; 2],
    /// Per run: its warnings.
    pub warnings: Vec<(String, Vec<String>)>,
}

/// Reads, analyses, writes. The JSON is written before the plots, so that it is there
/// even when the font is missing (which is then the error).
pub fn run(cfg: &Config) -> Result<Outcome> {
    check_names(cfg)?;
    let entries = schedule::parse(&cfg.schedule).context("--schedule")?;
    let schedule = Schedule::new(entries, cfg.time_scale)?;
    let params = Params {
        cap_mbit: cfg.cap_mbit,
        demand_mbit: cfg.demand_mbit,
    };
    let mut reports = Vec::new();
    for (name, csv) in &cfg.runs {
        let r = analyse_run(cfg, name, csv, &schedule, params)
            .with_context(|| format!("run `{name}`"))?;
        reports.push((name.clone(), r));
    }

    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let font = plot::register_font(&cfg.font);
    let summary = Summary {
        tool: "o7s-congestion-report",
        parameters: Parameters {
            cap_mbit: cfg.cap_mbit,
            demand_mbit: cfg.demand_mbit,
            sdu_bytes: cfg.sdu_bytes,
            schedule: &cfg.schedule,
            schedule_entries: schedule
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| EntryJson {
                    flow: i + 1,
                    start_s: r6(e.start_s * schedule.scale),
                    end_s: r6(e.end_s * schedule.scale),
                    start_schedule_s: e.start_s,
                    end_schedule_s: e.end_s,
                })
                .collect(),
            time_scale: cfg.time_scale,
            bin_ms: cfg.bin_ms,
            convergence_tolerance: analysis::CONVERGENCE_TOLERANCE,
            noise_min_bins: NOISE_MIN_BINS,
            run_order: cfg.runs.iter().map(|(n, _)| n.as_str()).collect(),
        },
        runs: Runs(&reports),
        plots: font.is_ok().then_some(Plots { png: PNG, svg: SVG }),
    };
    let summary_path = cfg.out.join(SUMMARY);
    let mut json = serde_json::to_string_pretty(&summary)?;
    json.push('\n');
    std::fs::write(&summary_path, json)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    font.with_context(|| format!("{} written, but no plots", summary_path.display()))?;

    let figure = Figure {
        panels: reports
            .iter()
            .map(|(name, report)| Panel { name, report })
            .collect(),
        cap_mbit: cfg.cap_mbit,
        events_s: schedule.periods().iter().map(|p| p.start_s).collect(),
        end_s: schedule.end_s(),
        flow_labels: (0..schedule.entries.len())
            .filter_map(|i| schedule.scaled(i))
            .enumerate()
            .map(|(i, (s, e))| format!("flow {} ({}-{} s)", i + 1, r6(s), r6(e)))
            .collect(),
    };
    let png = cfg.out.join(PNG);
    let svg = cfg.out.join(SVG);
    plot::png(&png, &figure)?;
    plot::svg(&svg, &figure)?;
    Ok(Outcome {
        summary: summary_path,
        plots: [png, svg],
        warnings: reports
            .iter()
            .map(|(n, r)| (n.clone(), r.warnings.clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_values() {
        assert_eq!(
            split_named("mb-ecn=a=b.csv"),
            Ok(("mb-ecn".to_string(), "a=b.csv".to_string()))
        );
        assert!(split_named("none").is_err());
        assert!(split_named("=x").is_err());
    }
}
