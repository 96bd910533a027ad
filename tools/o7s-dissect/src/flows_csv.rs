//! `--flows-csv`: per-flow throughput of a unicast layer, binned in time, as CSV.
//!
//! The DT PDUs are found exactly as [`crate::dissect_file`] finds them (the same lower-layer
//! decoders, `--layer` knowledge, guesses and flows learnt from their CEP); each one then
//! adds to a row keyed by (time bin, kind, destination address, endpoint id):
//!
//! - `data`: a PDU to an N+1 flow (DT eid >= 64), keyed by its PCI's `dst_addr` and `eid`;
//!   `bytes` counts the whole DT PDU (PCI included) as it was on the wire, also when the
//!   capture holds only part of it (snaplen); `ecn_marked` counts PDUs with a non-zero ECN
//!   byte, `ecn_max` is the largest one.
//! - `flow_update`: a flow allocator FLOW_UPDATE (DT eid 0, code 2), keyed by the PCI's
//!   `dst_addr` and the message's `r_eid`; `ecn_max` is the largest ECE, `ecn_marked` is 0.
//!
//! `frame_bytes` counts the whole frames the PDUs came in (the lower-layer headers too, as
//! the capture's original lengths say), `frame_mbit_s` their rate: what a link's cap counts,
//! and what the blog's graph shows (1033 bytes on the wire for a 1000-byte SDU over
//! eth-dix: 18 of Ethernet and eth-dix headers, 15 of DT PCI).
//!
//! Bins are numbered from the first record read (bin 0 starts at its timestamp); a record
//! earlier than that one falls in a negative bin. `mbit_s` divides by the whole bin length,
//! also for a last bin the capture ends in.

use crate::{lower_sdu, sdu_kind, walk, Options, SduKind};
use o7s_wire::code::FaCode;
use o7s_wire::unicast::dt::{PciRepr, FA_EID, MIN_FLOW_EID};
use o7s_wire::unicast::fa::FaMsg;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The CSV header line (without the newline).
pub const HEADER: &str =
    "bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max,frame_bytes,frame_mbit_s";

/// Default bin length in milliseconds (`--bin-ms`).
pub const DEFAULT_BIN_MS: u64 = 100;

/// What a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// DT PDUs of an N+1 flow.
    Data,
    /// Flow allocator FLOW_UPDATEs (ECN congestion feedback).
    FlowUpdate,
}

impl Kind {
    /// The name in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::FlowUpdate => "flow_update",
        }
    }
}

/// The key of a row; rows are ordered by it (bin, kind, dst, eid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    /// Bin index from the first record.
    pub bin: i64,
    /// What is counted.
    pub kind: Kind,
    /// DT destination address.
    pub dst: u64,
    /// DT eid (`data`) or the FLOW_UPDATE's `r_eid` (`flow_update`).
    pub eid: u64,
}

/// What a row holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// PDUs (or FLOW_UPDATEs).
    pub pdus: u64,
    /// Their lengths on the wire (whole DT PDUs), summed.
    pub bytes: u64,
    /// PDUs with a non-zero ECN byte (`data`; 0 for `flow_update`).
    pub ecn_marked: u64,
    /// The largest ECN byte (`data`) or ECE (`flow_update`).
    pub ecn_max: u16,
    /// The lengths of the frames they came in, summed.
    pub frame_bytes: u64,
}

/// Totals over everything read, for the one-line summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowsSummary {
    /// Records read.
    pub frames: usize,
    /// DT PDUs to N+1 flows (eid >= 64).
    pub data_pdus: u64,
    /// FLOW_UPDATEs.
    pub flow_updates: u64,
    /// Other DT PDUs (other flow allocator messages, DHT and other components).
    pub other_dt: u64,
    /// PDUs of data-transfer flows whose PCI (or flow allocator message) is not all there:
    /// malformed, or cut by the capture's snaplen.
    pub undecodable: u64,
    /// Distinct (dst, eid) of `data` rows.
    pub data_flows: usize,
    /// Distinct (dst, r_eid) of `flow_update` rows.
    pub update_flows: usize,
}

impl fmt::Display for FlowsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames read; {} DT data PDUs, {} flow updates, {} other DT PDUs, {} undecodable; {} data flows seen, {} flows with updates",
            self.frames,
            self.data_pdus,
            self.flow_updates,
            self.other_dt,
            self.undecodable,
            self.data_flows,
            self.update_flows
        )
    }
}

/// Per-flow counts of one or more capture files, binned in time.
#[derive(Debug, Clone)]
pub struct FlowStats {
    bin_ms: u64,
    /// Timestamp of the first record read (ns).
    t0: Option<i128>,
    rows: BTreeMap<RowKey, Counts>,
    sum: FlowsSummary,
}

impl FlowStats {
    /// Counts in bins of `bin_ms` milliseconds (at least 1).
    pub fn new(bin_ms: u64) -> Result<Self, String> {
        if bin_ms == 0 {
            return Err("the bin length must be at least 1 ms".into());
        }
        Ok(Self {
            bin_ms,
            t0: None,
            rows: BTreeMap::new(),
            sum: FlowsSummary::default(),
        })
    }

    /// Adds the records of a capture file (files are read in order; bin 0 starts at the
    /// first record of the first one).
    pub fn add_file(&mut self, file: &[u8], opts: &Options) -> Result<(), String> {
        let bin_ns = i128::from(self.bin_ms) * 1_000_000;
        walk(file, opts, |r, dopts, roles| {
            let ts = i128::from(r.ts_sec) * 1_000_000_000 + i128::from(r.ts_nsec);
            let t0 = *self.t0.get_or_insert(ts);
            self.sum.frames += 1;
            let Some(s) = lower_sdu(r, opts, dopts) else {
                return;
            };
            // Keepalives (empty on the wire) are no PDUs and are left out.
            let SduKind::Dt(cfg) = sdu_kind(&s.bytes, s.wire_len, &s.key, opts, roles).0 else {
                return;
            };
            let Ok((pci, rest)) = PciRepr::parse(&s.bytes, cfg) else {
                self.sum.undecodable += 1;
                return;
            };
            let bin = i64::try_from((ts - t0).div_euclid(bin_ns)).unwrap_or(i64::MAX);
            let wire_len = u64::try_from(s.wire_len).unwrap_or(u64::MAX);
            let frame_len = u64::try_from(r.orig_len).unwrap_or(u64::MAX);
            if pci.eid >= MIN_FLOW_EID {
                self.sum.data_pdus += 1;
                let c = self
                    .rows
                    .entry(RowKey {
                        bin,
                        kind: Kind::Data,
                        dst: pci.dst_addr,
                        eid: pci.eid,
                    })
                    .or_default();
                c.pdus += 1;
                c.bytes = c.bytes.saturating_add(wire_len);
                c.frame_bytes = c.frame_bytes.saturating_add(frame_len);
                c.ecn_marked += u64::from(pci.ecn > 0);
                c.ecn_max = c.ecn_max.max(u16::from(pci.ecn));
            } else if pci.eid == FA_EID {
                match FaMsg::parse(rest) {
                    Ok((m, _)) if m.code == FaCode::FlowUpdate => {
                        self.sum.flow_updates += 1;
                        let c = self
                            .rows
                            .entry(RowKey {
                                bin,
                                kind: Kind::FlowUpdate,
                                dst: pci.dst_addr,
                                eid: m.r_eid,
                            })
                            .or_default();
                        c.pdus += 1;
                        c.bytes = c.bytes.saturating_add(wire_len);
                        c.frame_bytes = c.frame_bytes.saturating_add(frame_len);
                        c.ecn_max = c.ecn_max.max(m.ece);
                    }
                    Ok(_) => self.sum.other_dt += 1,
                    Err(_) => self.sum.undecodable += 1,
                }
            } else {
                self.sum.other_dt += 1;
            }
        })
    }

    /// The rows, in CSV order.
    pub fn rows(&self) -> impl Iterator<Item = (&RowKey, &Counts)> {
        self.rows.iter()
    }

    /// The CSV: the header line, then one line per row.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(HEADER);
        s.push('\n');
        let bin_us = self.bin_ms as f64 * 1000.0;
        for (k, c) in &self.rows {
            let t_ms = i128::from(k.bin) * i128::from(self.bin_ms);
            let sign = if t_ms < 0 { "-" } else { "" };
            let t_ms = t_ms.unsigned_abs();
            // bytes * 8 / (bin_ms / 1000) / 1e6 = bits per microsecond of the bin.
            let mbit_s = c.bytes as f64 * 8.0 / bin_us;
            let frame_mbit_s = c.frame_bytes as f64 * 8.0 / bin_us;
            s.push_str(&format!(
                "{},{sign}{}.{:03},{},0x{:08x},0x{:016x},{},{},{mbit_s:.6},{},{},{},{frame_mbit_s:.6}\n",
                k.bin,
                t_ms / 1000,
                t_ms % 1000,
                k.kind.as_str(),
                k.dst,
                k.eid,
                c.pdus,
                c.bytes,
                c.ecn_marked,
                c.ecn_max,
                c.frame_bytes
            ));
        }
        s
    }

    /// Totals so far.
    pub fn summary(&self) -> FlowsSummary {
        let flows = |kind| {
            self.rows
                .keys()
                .filter(|k| k.kind == kind)
                .map(|k| (k.dst, k.eid))
                .collect::<BTreeSet<_>>()
                .len()
        };
        FlowsSummary {
            data_flows: flows(Kind::Data),
            update_flows: flows(Kind::FlowUpdate),
            ..self.sum.clone()
        }
    }
}

/// The CSV of one capture file, and its summary.
pub fn flows_csv(
    file: &[u8],
    opts: &Options,
    bin_ms: u64,
) -> Result<(String, FlowsSummary), String> {
    let mut st = FlowStats::new(bin_ms)?;
    st.add_file(file, opts)?;
    Ok((st.to_csv(), st.summary()))
}
