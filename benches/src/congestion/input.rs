//! The per-flow throughput CSV of a capture: one row per bin and flow.
//!
//! Header (columns in any order, extra columns ignored):
//! `bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max`. `kind` is `data` (the key is
//! the N+1 flow's (dst, eid)) or `flow_update` (congestion feedback; the key's eid is the
//! r_eid, `pdus` the count and `ecn_max` the largest ECE value). Empty lines are skipped;
//! empty `ecn_marked` / `ecn_max` fields read as 0. An optional `frame_mbit_s` column (what
//! `o7s-dissect --flows-csv` writes: the whole frames' rate, headers included) is the
//! throughput when present: it is what a link's cap counts and what the blog's graph shows;
//! `mbit_s` (the DT PDUs' rate) otherwise.

use std::fmt;

/// The columns the header must name.
pub const COLUMNS: [&str; 10] = [
    "bin",
    "t_s",
    "kind",
    "dst",
    "eid",
    "pdus",
    "bytes",
    "mbit_s",
    "ecn_marked",
    "ecn_max",
];

/// The optional column of the frames' throughput.
pub const FRAME_MBIT_S: &str = "frame_mbit_s";

/// Whether a CSV's header has [`FRAME_MBIT_S`] (its throughput counts whole frames).
pub fn counts_frames(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|h| h.split(',').any(|n| n.trim() == FRAME_MBIT_S))
}

/// What a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The N+1 flow's data PDUs.
    Data,
    /// Congestion feedback (flow update) messages.
    FlowUpdate,
}

/// A flow's key in the capture: destination address and endpoint id, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Destination address.
    pub dst: String,
    /// Endpoint id (the r_eid for flow updates).
    pub eid: String,
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(dst {}, eid {})", self.dst, self.eid)
    }
}

/// One parsed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line number in the file (the header is line 1).
    pub line: usize,
    /// Bin index (negative for records before the capture's first one).
    pub bin: i64,
    /// Start of the bin in capture time (s).
    pub t_s: f64,
    /// Data or flow update.
    pub kind: Kind,
    /// (dst, eid).
    pub key: FlowKey,
    /// PDUs in the bin.
    pub pdus: u64,
    /// Bytes in the bin.
    pub bytes: u64,
    /// Throughput in the bin (Mbit/s): the frames' (`frame_mbit_s`) when the CSV has them,
    /// the DT PDUs' (`mbit_s`) otherwise.
    pub mbit_s: f64,
    /// PDUs with the ECN field set.
    pub ecn_marked: u64,
    /// Largest ECN / ECE value seen.
    pub ecn_max: u64,
}

/// The captured bytes per PDU of the data rows, on average: `mbit_s` over the bins (frames
/// when the CSV counts frames) over their PDUs; `None` without data.
pub fn mean_bytes_per_pdu(rows: &[Row], bin_s: f64) -> Option<f64> {
    let (bytes, pdus) = rows
        .iter()
        .filter(|r| r.kind == Kind::Data)
        .fold((0.0, 0u64), |(b, p), r| {
            (b + r.mbit_s * 1e6 * bin_s / 8.0, p + r.pdus)
        });
    (pdus > 0).then(|| bytes / pdus as f64)
}

/// A CSV that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CsvError {
    /// No header line.
    #[error("empty file: no header line (expected {})", COLUMNS.join(","))]
    Empty,
    /// The header lacks a column.
    #[error("line 1: header has no column `{0}` (expected {cols})", cols = COLUMNS.join(","))]
    MissingColumn(&'static str),
    /// A bad row.
    #[error("line {line}: {msg}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

fn bad(line: usize, msg: impl Into<String>) -> CsvError {
    CsvError::Line {
        line,
        msg: msg.into(),
    }
}

/// Column positions found in the header.
struct Layout {
    idx: [usize; 10],
    /// The optional `frame_mbit_s` column.
    frame_mbit_s: Option<usize>,
    width: usize,
}

impl Layout {
    fn from_header(header: &str) -> Result<Self, CsvError> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let mut idx = [0usize; 10];
        for (slot, col) in idx.iter_mut().zip(COLUMNS) {
            *slot = names
                .iter()
                .position(|n| *n == col)
                .ok_or(CsvError::MissingColumn(col))?;
        }
        Ok(Self {
            idx,
            frame_mbit_s: names.iter().position(|n| *n == FRAME_MBIT_S),
            width: names.len(),
        })
    }
}

fn field<'a>(fields: &[&'a str], layout: &Layout, col: usize) -> &'a str {
    layout
        .idx
        .get(col)
        .and_then(|&i| fields.get(i))
        .copied()
        .unwrap_or("")
}

fn int(line: usize, name: &str, s: &str, empty_is_zero: bool) -> Result<u64, CsvError> {
    if s.is_empty() && empty_is_zero {
        return Ok(0);
    }
    s.parse()
        .map_err(|_| bad(line, format!("{name} `{s}` is not a non-negative integer")))
}

fn real(line: usize, name: &str, s: &str) -> Result<f64, CsvError> {
    let v: f64 = s
        .parse()
        .map_err(|_| bad(line, format!("{name} `{s}` is not a number")))?;
    if !v.is_finite() {
        return Err(bad(line, format!("{name} `{s}` is not finite")));
    }
    Ok(v)
}

fn parse_row(line: usize, text: &str, layout: &Layout) -> Result<Row, CsvError> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    if fields.len() != layout.width {
        return Err(bad(
            line,
            format!("{} fields, the header has {}", fields.len(), layout.width),
        ));
    }
    let f = |col| field(&fields, layout, col);
    let kind = match f(2) {
        "data" => Kind::Data,
        "flow_update" => Kind::FlowUpdate,
        other => {
            return Err(bad(
                line,
                format!("kind `{other}` is neither `data` nor `flow_update`"),
            ))
        }
    };
    let (dst, eid) = (f(3), f(4));
    if dst.is_empty() || eid.is_empty() {
        return Err(bad(line, "empty dst or eid"));
    }
    let mbit_s = match layout.frame_mbit_s.and_then(|i| fields.get(i)) {
        Some(v) => real(line, FRAME_MBIT_S, v)?,
        None => real(line, "mbit_s", f(7))?,
    };
    if mbit_s < 0.0 {
        return Err(bad(line, format!("mbit_s {mbit_s} is negative")));
    }
    Ok(Row {
        line,
        bin: f(0)
            .parse()
            .map_err(|_| bad(line, format!("bin `{}` is not an integer", f(0))))?,
        t_s: real(line, "t_s", f(1))?,
        kind,
        key: FlowKey {
            dst: dst.to_string(),
            eid: eid.to_string(),
        },
        pdus: int(line, "pdus", f(5), false)?,
        bytes: int(line, "bytes", f(6), false)?,
        mbit_s,
        ecn_marked: int(line, "ecn_marked", f(8), true)?,
        ecn_max: int(line, "ecn_max", f(9), true)?,
    })
}

/// Parses the whole file.
pub fn parse_csv(text: &str) -> Result<Vec<Row>, CsvError> {
    let mut lines = text.lines().enumerate();
    let layout = loop {
        match lines.next() {
            None => return Err(CsvError::Empty),
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break Layout::from_header(l)?,
        }
    };
    let mut rows = Vec::new();
    for (i, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        rows.push(parse_row(i + 1, l, &layout)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max";

    #[test]
    fn the_mean_bytes_per_pdu_are_those_of_the_data_rows() {
        // 100 ms bins: 1000 frames of 1033 bytes are 82.64 Mbit/s; the flow update's bin
        // (small frames) does not count.
        let text = format!(
            "{HEADER},frame_bytes,frame_mbit_s\n\
             0,0.0,data,7,64,1000,1015000,81.2,0,0,1033000,82.64\n\
             1,0.1,data,7,64,500,507500,40.6,0,0,516500,41.32\n\
             1,0.1,flow_update,9,64,10,610,0.05,0,0,780,0.0624\n"
        );
        let rows = parse_csv(&text).unwrap();
        let m = mean_bytes_per_pdu(&rows, 0.1).unwrap();
        assert!((m - 1033.0).abs() < 1e-6, "{m}");
        assert_eq!(mean_bytes_per_pdu(&rows[2..], 0.1), None);
    }

    #[test]
    fn the_frames_rate_is_the_throughput_when_the_csv_has_it() {
        let text = format!("{HEADER},frame_bytes,frame_mbit_s\n0,0.0,data,7,12,714,1000000,80.0,3,1,1018000,81.44\n");
        assert!(counts_frames(&text));
        assert!(!counts_frames(&format!("\n{HEADER}\n")));
        let rows = parse_csv(&text).unwrap();
        assert_eq!(rows[0].mbit_s, 81.44);
        let bad = format!("{HEADER},frame_mbit_s\n0,0.0,data,7,12,714,1000000,80.0,3,1,-\n");
        assert_eq!(
            parse_csv(&bad).unwrap_err().to_string(),
            "line 2: frame_mbit_s `-` is not a number"
        );
    }

    #[test]
    fn parses_rows_of_both_kinds() {
        let text = format!(
            "{HEADER}\n0,0.0,data,7,12,714,1000000,80.0,3,1\n\n1,0.1,flow_update,3,40,2,0,0,,2\n"
        );
        let rows = parse_csv(&text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kind, Kind::Data);
        assert_eq!(rows[0].key.dst, "7");
        assert_eq!(rows[0].key.eid, "12");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].mbit_s, 80.0);
        assert_eq!(rows[1].kind, Kind::FlowUpdate);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].ecn_marked, 0);
        assert_eq!(rows[1].ecn_max, 2);
    }

    #[test]
    fn columns_in_another_order() {
        let text = "kind,bin,t_s,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max,extra\n\
                    data,-3,-0.300,0x0000000a,0x0000000000000041,1,2,3.5,0,0,x\n";
        let rows = parse_csv(text).unwrap();
        assert_eq!(rows[0].bin, -3);
        assert_eq!(rows[0].key.dst, "0x0000000a");
        assert_eq!(rows[0].mbit_s, 3.5);
    }

    #[test]
    fn errors_name_the_line() {
        let text = format!("{HEADER}\n0,0.0,data,7,12,1,1,1.0,0,0\n1,0.1,data,7,12,1,1,fast,0,0\n");
        let err = parse_csv(&text).unwrap_err();
        assert_eq!(err.to_string(), "line 3: mbit_s `fast` is not a number");
        let text = format!("{HEADER}\n0,0.0,ack,7,12,1,1,1.0,0,0\n");
        assert!(parse_csv(&text)
            .unwrap_err()
            .to_string()
            .starts_with("line 2: kind `ack`"));
        let text = format!("{HEADER}\n0,0.0,data,7\n");
        assert_eq!(
            parse_csv(&text).unwrap_err().to_string(),
            "line 2: 4 fields, the header has 10"
        );
        assert_eq!(
            parse_csv("bin,t_s\n").unwrap_err(),
            CsvError::MissingColumn("kind")
        );
        assert_eq!(parse_csv("").unwrap_err(), CsvError::Empty);
    }
}
