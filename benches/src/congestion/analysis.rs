//! One run's figures: flows mapped to the schedule, per-bin Jain, periods, convergence,
//! overall figures and the verdict against the targets.

use super::flows::{Capture, DataFlow};
use super::metrics::{self, TOLERANCE};
use super::schedule::{Schedule, EPS};
use serde::Serialize;
use std::collections::BTreeMap;

/// Target: mean Jain in each two-flow period.
pub const TARGET_JAIN: f64 = 0.98;
/// Target: convergence after each join (s, real time).
pub const TARGET_CONVERGENCE_S: f64 = 1.0;
/// Target: utilisation of the cap in congested periods.
pub const TARGET_UTILISATION: f64 = 0.90;
/// Target: SDU loss.
pub const TARGET_LOSS: f64 = 0.001;

/// The experiment's figures that every run shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The bottleneck (Mbit/s).
    pub cap_mbit: f64,
    /// Each flow's offered rate (Mbit/s).
    pub demand_mbit: f64,
}

/// What one run's analysis takes besides the schedule.
#[derive(Debug, Clone)]
pub struct RunInput<'a> {
    /// The CSV it came from (for the report).
    pub csv: String,
    /// The capture.
    pub capture: &'a Capture,
    /// The schedule's 0 in capture time; `None`: the first bin of flow 1 (the first data
    /// flow that is not noise).
    pub offset_s: Option<f64>,
    /// Extra counters (a JSON object), copied into the report.
    pub counters: Option<serde_json::Value>,
    /// What the throughput counts: `frames` (headers included, what the cap counts) or
    /// `dt_pdus`.
    pub throughput_of: &'static str,
}

/// A data flow mapped to a schedule entry.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    /// 1-based schedule entry.
    pub flow: usize,
    /// Destination address (`null` if no flow was seen for this entry).
    pub dst: Option<String>,
    /// Endpoint id.
    pub eid: Option<String>,
    /// Bins with a row.
    pub bins: usize,
    /// First bin's start, schedule time (s, scaled).
    pub first_seen_s: Option<f64>,
    /// Scheduled join (s, scaled).
    pub scheduled_start_s: f64,
    /// Scheduled leave (s, scaled).
    pub scheduled_end_s: f64,
    /// Mean over the bins that lie within its scheduled interval.
    pub mean_mbit_s_scheduled: Option<f64>,
}

/// A data flow left out.
#[derive(Debug, Clone, Serialize)]
pub struct OtherFlow {
    /// Destination address.
    pub dst: String,
    /// Endpoint id.
    pub eid: String,
    /// Bins with a row.
    pub bins: usize,
    /// First bin's start, schedule time (s, scaled).
    pub first_seen_s: f64,
    /// Why it is left out.
    pub reason: String,
}

/// One interval between consecutive events.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodReport {
    /// Opening event (s, scaled).
    pub start_s: f64,
    /// Next event or the end (s, scaled).
    pub end_s: f64,
    /// The same, unscaled.
    pub start_schedule_s: f64,
    /// The same, unscaled.
    pub end_schedule_s: f64,
    /// Flows (1-based) that join at the opening event.
    pub joined: Vec<usize>,
    /// Flows that leave at the opening event.
    pub left: Vec<usize>,
    /// Flows active throughout.
    pub active: Vec<usize>,
    /// Bins lying entirely within the period.
    pub bins: usize,
    /// n x demand > cap.
    pub congested: bool,
    /// min(demand, cap / n).
    pub fair_share_mbit_s: Option<f64>,
    /// Mean of the per-bin Jain index (periods with more than one flow).
    pub mean_jain: Option<f64>,
    /// Each active flow's mean.
    pub flow_mean_mbit_s: BTreeMap<usize, f64>,
    /// Mean of those means.
    pub mean_mbit_s_per_flow: Option<f64>,
    /// Mean of the per-bin total of all flows.
    pub mean_total_mbit_s: Option<f64>,
    /// mean_total / cap.
    pub utilisation: Option<f64>,
    /// From the event to the first bin after which every active flow stays within 10 % of
    /// the fair share to the period's end (s, real time); `null` if never.
    pub convergence_s: Option<f64>,
    /// The same divided by the time scale.
    pub convergence_unscaled_s: Option<f64>,
}

/// Figures over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Overall {
    /// Mean of the periods' mean Jain over periods with more than one flow.
    pub mean_jain_multi_flow: Option<f64>,
    /// Largest convergence time; `null` if an event never converged (see
    /// `unconverged_events`) or there are none.
    pub worst_convergence_s: Option<f64>,
    /// The same, unscaled.
    pub worst_convergence_unscaled_s: Option<f64>,
    /// Events after which the flows never converged.
    pub unconverged_events: usize,
    /// Mean utilisation over periods where n x demand > cap.
    pub utilisation_congested: Option<f64>,
    /// Flow updates seen (sum of their `pdus`).
    pub flow_updates: u64,
    /// Flow updates per (dst, r_eid).
    pub flow_updates_by_key: Vec<KeyCount>,
    /// Largest ECE value in a flow update.
    pub max_ece: Option<u64>,
    /// Data PDUs with ECN marks.
    pub data_ecn_marked: u64,
    /// 1 - received_sdus / sent_sdus from the counters.
    pub loss: Option<f64>,
}

/// A count per key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCount {
    /// Destination address.
    pub dst: String,
    /// The r_eid.
    pub eid: String,
    /// Count.
    pub count: u64,
}

/// One target.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub target: String,
    /// The figure compared (the worst one where there are several).
    pub value: Option<f64>,
    /// Each figure, where there are several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Option<f64>>>,
    /// `null` when it cannot be told.
    pub pass: Option<bool>,
}

/// The targets.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Mean Jain in each two-flow period.
    pub jain_two_flow: Check,
    /// Convergence after each join.
    pub convergence_after_join: Check,
    /// Utilisation in congested periods.
    pub utilisation: Check,
    /// Loss.
    pub loss: Check,
    /// `false` if a check failed, `null` if none failed but one could not be told.
    pub all_pass: Option<bool>,
}

/// One bin.
#[derive(Debug, Clone, Serialize)]
pub struct BinReport {
    /// Bin start, schedule time (s, scaled).
    pub t_s: f64,
    /// Flows active over the whole bin by the schedule.
    pub active: Vec<usize>,
    /// Every mapped flow's Mbit/s (flow 1 first).
    pub mbit_s: Vec<f64>,
    /// Sum of those.
    pub total_mbit_s: f64,
    /// Jain over the active flows.
    pub jain: Option<f64>,
}

/// One run's report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Input CSV.
    pub csv: String,
    /// The schedule's 0 in capture time (s).
    pub offset_s: f64,
    /// `--offset-s` or `first bin of flow 1`.
    pub offset_from: &'static str,
    /// What the throughput counts: `frames` (the CSV's `frame_mbit_s`: headers included,
    /// what the cap counts) or `dt_pdus` (`mbit_s`).
    pub throughput_of: &'static str,
    /// Each flow's demand in that unit (Mbit/s): `--demand-mbit`, or with `--sdu-bytes` and
    /// frames, the demand's SDUs in the captured frames' mean size.
    pub demand_mbit: f64,
    /// Bins in the grid.
    pub bins: usize,
    /// Mapped flows, one per schedule entry.
    pub flows: Vec<FlowReport>,
    /// Data flows with fewer than 5 bins.
    pub ignored_flows: Vec<OtherFlow>,
    /// Data flows beyond the schedule's entries.
    pub unmapped_flows: Vec<OtherFlow>,
    /// Things to check by hand.
    pub warnings: Vec<String>,
    /// Between consecutive events.
    pub periods: Vec<PeriodReport>,
    /// Whole run.
    pub overall: Overall,
    /// The `--counters` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<serde_json::Value>,
    /// Against the targets.
    pub verdict: Verdict,
    /// Every bin.
    pub per_bin: Vec<BinReport>,
}

/// Rounds a time to a microsecond (keeps 0.30000000000000004 out of the JSON).
pub fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn max_opt(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    xs.into_iter()
        .fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
}

fn min_opt(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    xs.into_iter()
        .fold(None, |m, x| Some(m.map_or(x, |m: f64| m.min(x))))
}

/// The series of the mapped flows and their bin times.
struct Grid<'a> {
    t: Vec<f64>,
    bin_s: f64,
    flows: &'a [DataFlow],
}

impl Grid<'_> {
    fn value(&self, flow: usize, bin: usize) -> f64 {
        self.flows
            .get(flow)
            .and_then(|f| f.mbit_s.get(bin))
            .copied()
            .unwrap_or(0.0)
    }

    fn values(&self, flows: &[usize], bin: usize) -> Vec<f64> {
        flows.iter().map(|&f| self.value(f, bin)).collect()
    }

    fn total(&self, bin: usize) -> f64 {
        (0..self.flows.len()).map(|f| self.value(f, bin)).sum()
    }

    /// Bins lying entirely within `[from, to]`.
    fn bins_within(&self, from: f64, to: f64) -> Vec<usize> {
        (0..self.t.len())
            .filter(|&i| {
                self.t
                    .get(i)
                    .is_some_and(|&t| t >= from - EPS && t + self.bin_s <= to + EPS)
            })
            .collect()
    }
}

fn one_based(v: &[usize]) -> Vec<usize> {
    v.iter().map(|i| i + 1).collect()
}

fn period_report(
    p: &super::schedule::Period,
    grid: &Grid<'_>,
    schedule: &Schedule,
    params: Params,
) -> PeriodReport {
    let bins = grid.bins_within(p.start_s, p.end_s);
    let n = p.active.len();
    let share = metrics::fair_share(params.cap_mbit, params.demand_mbit, n);
    let mean_jain = if n > 1 {
        metrics::mean(
            bins.iter()
                .filter_map(|&b| metrics::jain(&grid.values(&p.active, b))),
        )
    } else {
        None
    };
    let flow_mean_mbit_s: BTreeMap<usize, f64> = p
        .active
        .iter()
        .filter_map(|&f| metrics::mean(bins.iter().map(|&b| grid.value(f, b))).map(|m| (f + 1, m)))
        .collect();
    let mean_total = metrics::mean(bins.iter().map(|&b| grid.total(b)));
    let convergence_s = share.and_then(|share| {
        let starts: Vec<f64> = bins
            .iter()
            .filter_map(|&b| grid.t.get(b).copied())
            .collect();
        let values: Vec<Vec<f64>> = bins.iter().map(|&b| grid.values(&p.active, b)).collect();
        metrics::convergence_s(&starts, &values, share, p.start_s).map(r6)
    });
    PeriodReport {
        start_s: r6(p.start_s),
        end_s: r6(p.end_s),
        start_schedule_s: r6(p.start_s / schedule.scale),
        end_schedule_s: r6(p.end_s / schedule.scale),
        joined: one_based(&p.joined),
        left: one_based(&p.left),
        active: one_based(&p.active),
        bins: bins.len(),
        congested: n as f64 * params.demand_mbit > params.cap_mbit,
        fair_share_mbit_s: share,
        mean_jain,
        mean_mbit_s_per_flow: metrics::mean(flow_mean_mbit_s.values().copied()),
        flow_mean_mbit_s,
        mean_total_mbit_s: mean_total,
        utilisation: mean_total.map(|m| m / params.cap_mbit),
        convergence_s,
        convergence_unscaled_s: convergence_s.map(|c| r6(c / schedule.scale)),
    }
}

fn loss_of(counters: Option<&serde_json::Value>) -> Option<f64> {
    let c = counters?;
    let sent = c.get("sent_sdus")?.as_f64()?;
    let received = c.get("received_sdus")?.as_f64()?;
    (sent > 0.0).then(|| 1.0 - received / sent)
}

fn check(
    target: String,
    value: Option<f64>,
    values: Option<Vec<Option<f64>>>,
    pass: Option<bool>,
) -> Check {
    Check {
        target,
        value,
        values,
        pass,
    }
}

fn verdict(periods: &[PeriodReport], overall: &Overall) -> Verdict {
    let two: Vec<Option<f64>> = periods
        .iter()
        .filter(|p| p.active.len() == 2)
        .map(|p| p.mean_jain)
        .collect();
    let two_min = min_opt(two.iter().flatten().copied());
    let two_pass = if two.is_empty() {
        None
    } else {
        Some(two.iter().all(|j| j.is_some_and(|j| j >= TARGET_JAIN)))
    };
    let joins: Vec<Option<f64>> = periods
        .iter()
        .filter(|p| !p.joined.is_empty() && !p.active.is_empty())
        .map(|p| p.convergence_s)
        .collect();
    let join_worst = if joins.iter().all(Option::is_some) {
        max_opt(joins.iter().flatten().copied())
    } else {
        None
    };
    let join_pass = if joins.is_empty() {
        None
    } else {
        Some(
            joins
                .iter()
                .all(|c| c.is_some_and(|c| c <= TARGET_CONVERGENCE_S)),
        )
    };
    let util = overall.utilisation_congested;
    let checks = [
        check(
            format!(">= {TARGET_JAIN} mean Jain in each two-flow period"),
            two_min,
            Some(two),
            two_pass,
        ),
        check(
            format!("<= {TARGET_CONVERGENCE_S} s convergence after each join"),
            join_worst,
            Some(joins),
            join_pass,
        ),
        check(
            format!(">= {TARGET_UTILISATION} of the cap in congested periods"),
            util,
            None,
            util.map(|u| u >= TARGET_UTILISATION),
        ),
        check(
            format!("<= {TARGET_LOSS} SDU loss"),
            overall.loss,
            None,
            overall.loss.map(|l| l <= TARGET_LOSS),
        ),
    ];
    let all_pass = if checks.iter().any(|c| c.pass == Some(false)) {
        Some(false)
    } else if checks.iter().all(|c| c.pass == Some(true)) {
        Some(true)
    } else {
        None
    };
    let [jain_two_flow, convergence_after_join, utilisation, loss] = checks;
    Verdict {
        jain_two_flow,
        convergence_after_join,
        utilisation,
        loss,
        all_pass,
    }
}

/// Analyses one run.
pub fn analyse(input: RunInput<'_>, schedule: &Schedule, params: Params) -> RunReport {
    let cap = input.capture;
    // Default: flow 1's first bin (a stray PDU of a noise flow before it does not count).
    let offset_s = input.offset_s.unwrap_or_else(|| {
        cap.flows
            .first()
            .map_or(cap.t0_s, |f| cap.t_s(f.first_index))
    });
    let n_entries = schedule.entries.len();
    let mapped = cap.flows.get(..n_entries).unwrap_or(&cap.flows);
    let extra = cap.flows.get(n_entries..).unwrap_or(&[]);
    let grid = Grid {
        t: (0..cap.n_bins).map(|i| cap.t_s(i) - offset_s).collect(),
        bin_s: cap.bin_s,
        flows: mapped,
    };
    let rel = |t_capture: f64| r6(t_capture - offset_s);

    let mut warnings = Vec::new();
    let mut flows = Vec::new();
    for i in 0..n_entries {
        let (start, end) = schedule.scaled(i).unwrap_or((0.0, 0.0));
        let f = mapped.get(i);
        let first_seen_s = f.map(|f| rel(cap.t_s(f.first_index)));
        match (f, first_seen_s) {
            (Some(f), Some(seen)) if (seen - start).abs() > 1.0 => warnings.push(format!(
                "flow {} {} first seen at {seen} s, scheduled to join at {} s: check the \
                 mapping or --offset-s",
                i + 1,
                f.key,
                r6(start)
            )),
            (None, _) => warnings.push(format!(
                "schedule entry {} has no data flow in the capture (its throughput counts as 0)",
                i + 1
            )),
            _ => {}
        }
        let own = grid.bins_within(start, end);
        flows.push(FlowReport {
            flow: i + 1,
            dst: f.map(|f| f.key.dst.clone()),
            eid: f.map(|f| f.key.eid.clone()),
            bins: f.map_or(0, |f| f.bins),
            first_seen_s,
            scheduled_start_s: r6(start),
            scheduled_end_s: r6(end),
            mean_mbit_s_scheduled: metrics::mean(own.iter().map(|&b| grid.value(i, b))),
        });
    }
    let unmapped_flows: Vec<OtherFlow> = extra
        .iter()
        .map(|f| OtherFlow {
            dst: f.key.dst.clone(),
            eid: f.key.eid.clone(),
            bins: f.bins,
            first_seen_s: rel(cap.t_s(f.first_index)),
            reason: format!("more data flows than the schedule's {n_entries} entries"),
        })
        .collect();
    if !unmapped_flows.is_empty() {
        warnings.push(format!(
            "{} data flow(s) beyond the schedule's entries left out (see unmapped_flows)",
            unmapped_flows.len()
        ));
    }
    let ignored_flows = cap
        .ignored
        .iter()
        .map(|f| OtherFlow {
            dst: f.key.dst.clone(),
            eid: f.key.eid.clone(),
            bins: f.bins,
            first_seen_s: rel(f.first_t_s),
            reason: format!("fewer than {} bins: noise", super::flows::NOISE_MIN_BINS),
        })
        .collect();

    let per_bin: Vec<BinReport> = grid
        .t
        .iter()
        .enumerate()
        .map(|(b, &t)| {
            let active = schedule.active_during(t, t + cap.bin_s);
            BinReport {
                t_s: r6(t),
                jain: metrics::jain(&grid.values(&active, b)),
                active: one_based(&active),
                mbit_s: (0..n_entries).map(|f| grid.value(f, b)).collect(),
                total_mbit_s: grid.total(b),
            }
        })
        .collect();

    let periods: Vec<PeriodReport> = schedule
        .periods()
        .iter()
        .map(|p| period_report(p, &grid, schedule, params))
        .collect();

    let events: Vec<&PeriodReport> = periods.iter().filter(|p| !p.active.is_empty()).collect();
    let unconverged_events = events.iter().filter(|p| p.convergence_s.is_none()).count();
    let worst = if unconverged_events == 0 {
        max_opt(events.iter().filter_map(|p| p.convergence_s))
    } else {
        None
    };
    let loss = loss_of(input.counters.as_ref());
    let overall = Overall {
        mean_jain_multi_flow: metrics::mean(
            periods
                .iter()
                .filter(|p| p.active.len() > 1)
                .filter_map(|p| p.mean_jain),
        ),
        worst_convergence_s: worst,
        worst_convergence_unscaled_s: worst.map(|w| r6(w / schedule.scale)),
        unconverged_events,
        utilisation_congested: metrics::mean(
            periods
                .iter()
                .filter(|p| p.congested)
                .filter_map(|p| p.utilisation),
        ),
        flow_updates: cap.updates.count,
        flow_updates_by_key: cap
            .updates
            .by_key
            .iter()
            .map(|(k, n)| KeyCount {
                dst: k.dst.clone(),
                eid: k.eid.clone(),
                count: *n,
            })
            .collect(),
        max_ece: cap.updates.max_ece,
        data_ecn_marked: cap.data_ecn_marked,
        loss,
    };
    let verdict = verdict(&periods, &overall);
    RunReport {
        csv: input.csv,
        offset_s,
        offset_from: if input.offset_s.is_some() {
            "--offset-s"
        } else {
            "first bin of flow 1"
        },
        throughput_of: input.throughput_of,
        demand_mbit: r6(params.demand_mbit),
        bins: cap.n_bins,
        flows,
        ignored_flows,
        unmapped_flows,
        warnings,
        periods,
        overall,
        counters: input.counters,
        verdict,
        per_bin,
    }
}

/// Tolerance used by the convergence rule (for the report's parameters).
pub const CONVERGENCE_TOLERANCE: f64 = TOLERANCE;

#[cfg(test)]
mod tests {
    use super::super::flows::build;
    use super::super::input::parse_csv;
    use super::super::schedule::{parse, Schedule};
    use super::*;

    const HEADER: &str = "bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max";

    /// Two flows over a cap of 100 with demand 80: flow 1 over 0-4 s, flow 2 over 1-3 s,
    /// 100 ms bins, capture time = schedule time + 5 s. Flow 2 takes 80 at first, both
    /// reach 50/50 from 1.3 s.
    fn capture_text() -> String {
        let mut s = format!("{HEADER}\n");
        for b in 50..90u32 {
            let k = b - 50;
            let (f1, f2) = if !(10..30).contains(&k) {
                (80.0, None)
            } else if k < 13 {
                (20.0, Some(80.0))
            } else {
                (50.0, Some(50.0))
            };
            s += &format!("{b},{:.1},data,10,1,1,1,{f1},0,0\n", f64::from(b) / 10.0);
            if let Some(f2) = f2 {
                s += &format!("{b},{:.1},data,11,2,1,1,{f2},0,0\n", f64::from(b) / 10.0);
            }
        }
        s += "60,6.0,flow_update,10,9,4,0,0,0,3\n";
        s
    }

    #[test]
    fn a_two_flow_run() {
        let rows = parse_csv(&capture_text()).unwrap();
        let cap = build(&rows, 0.1).unwrap();
        let schedule = Schedule::new(parse("0-4,1-3").unwrap(), 1.0).unwrap();
        let counters = serde_json::json!({"sent_sdus": 1000, "received_sdus": 999});
        let r = analyse(
            RunInput {
                csv: "x.csv".into(),
                capture: &cap,
                offset_s: None,
                counters: Some(counters),
                throughput_of: "dt_pdus",
            },
            &schedule,
            Params {
                cap_mbit: 100.0,
                demand_mbit: 80.0,
            },
        );
        assert_eq!(r.offset_s, 5.0);
        assert_eq!(r.periods.len(), 3);
        let p = &r.periods[1];
        assert_eq!(p.active, vec![1, 2]);
        assert_eq!(p.bins, 20);
        assert_eq!(p.fair_share_mbit_s, Some(50.0));
        assert_eq!(p.convergence_s, Some(0.3));
        assert!(p.congested);
        // 3 bins of 80/20 (J = 10000/13600), 17 of 50/50.
        let j = (3.0 * (10000.0 / 13600.0) + 17.0) / 20.0;
        assert!((p.mean_jain.unwrap() - j).abs() < 1e-12);
        assert_eq!(p.utilisation, Some(1.0));
        assert_eq!(r.periods[0].convergence_s, Some(0.0));
        assert_eq!(r.periods[0].mean_jain, None);
        assert_eq!(r.periods[2].left, vec![2]);
        assert_eq!(r.overall.worst_convergence_s, Some(0.3));
        assert_eq!(r.overall.flow_updates, 4);
        assert_eq!(r.overall.max_ece, Some(3));
        assert!((r.overall.loss.unwrap() - 0.001).abs() < 1e-12);
        assert_eq!(r.verdict.jain_two_flow.pass, Some(false));
        assert_eq!(r.verdict.convergence_after_join.pass, Some(true));
        assert_eq!(r.verdict.utilisation.pass, Some(true));
        assert_eq!(r.verdict.all_pass, Some(false));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.per_bin.len(), 40);
        assert_eq!(r.per_bin[10].active, vec![1, 2]);
        assert_eq!(r.per_bin[10].mbit_s, vec![20.0, 80.0]);
    }
}
