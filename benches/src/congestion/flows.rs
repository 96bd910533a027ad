//! From rows to dense per-flow series: flows ordered by first appearance, noise set aside,
//! flow updates counted.

use super::input::{FlowKey, Kind, Row};
use std::collections::HashMap;

/// A data flow with fewer bins than this is noise (ignored, reported).
pub const NOISE_MIN_BINS: usize = 5;

/// A data flow kept for the analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFlow {
    /// (dst, eid).
    pub key: FlowKey,
    /// Bins with a row.
    pub bins: usize,
    /// Index (in the dense grid) of its first bin.
    pub first_index: usize,
    /// Mbit/s per bin of the grid; 0 where the flow has no row.
    pub mbit_s: Vec<f64>,
}

/// A data flow set aside as noise.
#[derive(Debug, Clone, PartialEq)]
pub struct IgnoredFlow {
    /// (dst, eid).
    pub key: FlowKey,
    /// Bins with a row.
    pub bins: usize,
    /// Capture time of its first bin (s).
    pub first_t_s: f64,
}

/// Flow-update totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Updates {
    /// Sum of `pdus` over flow-update rows.
    pub count: u64,
    /// Largest ECE value, if any flow update was seen.
    pub max_ece: Option<u64>,
    /// Count per key (dst, r_eid), in order of first appearance.
    pub by_key: Vec<(FlowKey, u64)>,
}

/// A capture on a dense grid of bins, from its first data bin to its last.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// Bin width (s).
    pub bin_s: f64,
    /// Capture time of the grid's first bin (s).
    pub t0_s: f64,
    /// Bins in the grid.
    pub n_bins: usize,
    /// Data flows with at least [`NOISE_MIN_BINS`] bins, by first appearance.
    pub flows: Vec<DataFlow>,
    /// Data flows with fewer bins.
    pub ignored: Vec<IgnoredFlow>,
    /// Flow updates.
    pub updates: Updates,
    /// Sum of `ecn_marked` over data rows.
    pub data_ecn_marked: u64,
}

impl Capture {
    /// Capture time of the start of grid bin `i` (s).
    pub fn t_s(&self, i: usize) -> f64 {
        self.t0_s + i as f64 * self.bin_s
    }
}

/// Rows that do not make one capture.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CaptureError {
    /// No data row at all.
    #[error("no `data` rows")]
    NoData,
    /// `t_s` does not follow `bin` x bin width.
    #[error(
        "line {line}: t_s {t_s} does not fit bin {bin} with {bin_ms} ms bins (expected {expected:.6}); \
         is --bin-ms right?"
    )]
    Time {
        /// 1-based line.
        line: usize,
        /// The row's t_s.
        t_s: f64,
        /// The row's bin.
        bin: i64,
        /// Bin width (ms).
        bin_ms: f64,
        /// The t_s that the first row implies.
        expected: f64,
    },
    /// Two rows for the same bin, kind and key.
    #[error(
        "line {line}: a second `{kind}` row for bin {bin} and {key} (the first is on line {first})"
    )]
    Duplicate {
        /// 1-based line.
        line: usize,
        /// The line of the first such row.
        first: usize,
        /// `data` or `flow_update`.
        kind: &'static str,
        /// The bin.
        bin: i64,
        /// The key.
        key: FlowKey,
    },
}

/// A key's data rows, in file order.
struct Acc<'a> {
    key: &'a FlowKey,
    first_bin: i64,
    first_order: usize,
    rows: Vec<&'a Row>,
}

/// Builds the capture. `bin_s` is the bin width; every row's `t_s` must be `bin * bin_s`
/// plus one constant (that of the first row).
pub fn build(rows: &[Row], bin_s: f64) -> Result<Capture, CaptureError> {
    let first = rows
        .iter()
        .find(|r| r.kind == Kind::Data)
        .ok_or(CaptureError::NoData)?;
    let shift = first.t_s - first.bin as f64 * bin_s;
    let tol = bin_s * 0.01 + 1e-9;
    let mut seen: HashMap<(i64, bool, &FlowKey), usize> = HashMap::new();
    for r in rows {
        let expected = shift + r.bin as f64 * bin_s;
        if (r.t_s - expected).abs() > tol {
            return Err(CaptureError::Time {
                line: r.line,
                t_s: r.t_s,
                bin: r.bin,
                bin_ms: bin_s * 1000.0,
                expected,
            });
        }
        let is_data = r.kind == Kind::Data;
        if let Some(&first) = seen.get(&(r.bin, is_data, &r.key)) {
            return Err(CaptureError::Duplicate {
                line: r.line,
                first,
                kind: if is_data { "data" } else { "flow_update" },
                bin: r.bin,
                key: r.key.clone(),
            });
        }
        seen.insert((r.bin, is_data, &r.key), r.line);
    }

    let data = || rows.iter().filter(|r| r.kind == Kind::Data);
    let min_bin = data().map(|r| r.bin).min().unwrap_or(0);
    let max_bin = data().map(|r| r.bin).max().unwrap_or(0);
    let n_bins = usize::try_from(max_bin - min_bin + 1).unwrap_or(usize::MAX);

    // Group data rows by key; order keys by their first bin, then by file order.
    let mut accs: Vec<Acc<'_>> = Vec::new();
    let mut index: HashMap<&FlowKey, usize> = HashMap::new();
    for (order, r) in data().enumerate() {
        let slot = *index.entry(&r.key).or_insert_with(|| {
            accs.push(Acc {
                key: &r.key,
                first_bin: r.bin,
                first_order: order,
                rows: Vec::new(),
            });
            accs.len() - 1
        });
        if let Some(acc) = accs.get_mut(slot) {
            acc.first_bin = acc.first_bin.min(r.bin);
            acc.rows.push(r);
        }
    }
    accs.sort_by_key(|a| (a.first_bin, a.first_order));

    let mut flows = Vec::new();
    let mut ignored = Vec::new();
    for acc in accs {
        let first_index = usize::try_from(acc.first_bin - min_bin).unwrap_or(usize::MAX);
        if acc.rows.len() < NOISE_MIN_BINS {
            ignored.push(IgnoredFlow {
                key: acc.key.clone(),
                bins: acc.rows.len(),
                first_t_s: shift + acc.first_bin as f64 * bin_s,
            });
            continue;
        }
        let mut mbit_s = vec![0.0; n_bins];
        for r in &acc.rows {
            let i = usize::try_from(r.bin - min_bin).unwrap_or(usize::MAX);
            if let Some(v) = mbit_s.get_mut(i) {
                *v = r.mbit_s;
            }
        }
        flows.push(DataFlow {
            key: acc.key.clone(),
            bins: acc.rows.len(),
            first_index,
            mbit_s,
        });
    }

    let mut updates = Updates::default();
    for r in rows.iter().filter(|r| r.kind == Kind::FlowUpdate) {
        updates.count += r.pdus;
        updates.max_ece = Some(updates.max_ece.map_or(r.ecn_max, |m| m.max(r.ecn_max)));
        match updates.by_key.iter_mut().find(|(k, _)| *k == r.key) {
            Some((_, n)) => *n += r.pdus,
            None => updates.by_key.push((r.key.clone(), r.pdus)),
        }
    }

    Ok(Capture {
        bin_s,
        t0_s: shift + min_bin as f64 * bin_s,
        n_bins,
        flows,
        ignored,
        updates,
        data_ecn_marked: data().map(|r| r.ecn_marked).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::input::parse_csv;
    use super::*;

    const HEADER: &str = "bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max";

    fn csv(rows: &[String]) -> Vec<Row> {
        parse_csv(&format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap()
    }

    fn data(bin: i64, dst: &str, eid: &str, mbit: f64) -> String {
        format!(
            "{bin},{:.1},data,{dst},{eid},10,1000,{mbit},0,0",
            bin as f64 * 0.1
        )
    }

    #[test]
    fn flows_are_mapped_by_first_appearance() {
        // Flow A (dst 9, eid 3) appears at bin 2, flow B (dst 4, eid 7) at bin 0: B is
        // entry 1 although A comes first in the file; a third key with 2 bins is noise.
        let mut rows = Vec::new();
        for b in 2..10 {
            rows.push(data(b, "9", "3", 40.0));
        }
        for b in 0..10 {
            rows.push(data(b, "4", "7", 60.0));
        }
        rows.push(data(5, "1", "1", 0.1));
        rows.push(data(6, "1", "1", 0.1));
        rows.push("3,0.3,flow_update,4,70,2,0,0,0,1".to_string());
        rows.push("4,0.4,flow_update,4,70,3,0,0,0,2".to_string());
        let cap = build(&csv(&rows), 0.1).unwrap();
        assert_eq!(cap.n_bins, 10);
        assert_eq!(cap.flows.len(), 2);
        assert_eq!(cap.flows[0].key.dst, "4");
        assert_eq!(cap.flows[0].key.eid, "7");
        assert_eq!(cap.flows[1].key.dst, "9");
        assert_eq!(cap.flows[1].key.eid, "3");
        assert_eq!(cap.flows[1].first_index, 2);
        assert_eq!(cap.flows[1].mbit_s[0], 0.0);
        assert_eq!(cap.flows[1].mbit_s[2], 40.0);
        assert_eq!(cap.ignored.len(), 1);
        assert_eq!(cap.ignored[0].bins, 2);
        assert_eq!(cap.updates.count, 5);
        assert_eq!(cap.updates.max_ece, Some(2));
    }

    #[test]
    fn same_first_bin_keeps_file_order() {
        let mut rows = Vec::new();
        for b in 0..6 {
            rows.push(data(b, "2", "5", 1.0));
            rows.push(data(b, "3", "6", 1.0));
        }
        let cap = build(&csv(&rows), 0.1).unwrap();
        assert_eq!(cap.flows[0].key.dst, "2");
        assert_eq!(cap.flows[1].key.dst, "3");
    }

    #[test]
    fn wrong_bin_width_and_duplicates_are_errors() {
        let rows = csv(&[data(0, "1", "1", 1.0), data(1, "1", "1", 1.0)]);
        let err = build(&rows, 0.05).unwrap_err();
        assert!(matches!(err, CaptureError::Time { line: 3, .. }), "{err}");
        let rows = csv(&[data(0, "1", "1", 1.0), data(0, "1", "1", 2.0)]);
        let err = build(&rows, 0.1).unwrap_err();
        assert!(
            err.to_string().starts_with("line 3: a second `data` row"),
            "{err}"
        );
        assert_eq!(build(&[], 0.1).unwrap_err(), CaptureError::NoData);
    }
}
