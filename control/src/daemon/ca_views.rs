//! The columns of `o7sctl flow list` and `o7sctl port list` for MB-ECN and a port's egress
//! cap: values as people read them, and the exact ones for `--json` and the metrics.

use o7s_abi::msg::{CaStats, PortStats};
use serde_json::{json, Map, Value};

/// The flow list's columns that show a flow's `ca` (its exact values, nested under `ca`)
/// for reading: the metrics take the nested values instead.
pub(crate) const CA_SHOWN: &[&str] = &[
    "congestion",
    "rate",
    "window",
    "slot_us",
    "tx_ece",
    "rx_ece",
    "updates_in",
    "updates_out",
    "waits",
];

/// A rate in bit/s as people read it: three significant digits and a unit (`81.3M`,
/// `100M`, `1.5G`, `812k`), or the number itself below 1000.
pub(crate) fn format_rate(bps: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    #[allow(clippy::cast_precision_loss)] // three digits are shown
    let v = bps as f64;
    // 999,600 is "1M", not "1000k".
    let Some((unit, suffix)) = UNITS.iter().find(|(u, _)| v >= u * 0.9995) else {
        return bps.to_string();
    };
    let x = v / unit;
    let decimals = match x {
        x if x >= 99.95 => 0,
        x if x >= 9.995 => 1,
        _ => 2,
    };
    let digits = format!("{x:.decimals$}");
    let digits = if digits.contains('.') {
        digits.trim_end_matches('0').trim_end_matches('.')
    } else {
        &digits
    };
    format!("{digits}{suffix}")
}

/// A port's egress cap as people read it: `-` when it has none.
fn cap(bps: u64) -> String {
    if bps == 0 {
        "-".into()
    } else {
        format_rate(bps)
    }
}

/// The [`CA_SHOWN`] columns of a flow (null, shown "-", and `congestion` "-" when the
/// flow runs no congestion avoidance), and its exact state as `ca` when it runs one.
fn ca_columns(ca: Option<&CaStats>) -> Value {
    match ca {
        Some(c) => json!({"congestion": "mb-ecn", "rate": format_rate(c.rate_bps),
                          "window": c.window_bytes, "slot_us": c.slot_ns / 1000,
                          "tx_ece": c.tx_ece, "rx_ece": c.rx_ece,
                          "updates_in": c.updates_in, "updates_out": c.updates_out,
                          "waits": c.waits,
                          "ca": serde_json::to_value(c).unwrap_or(Value::Null)}),
        None => {
            let mut m: Map<String, Value> = CA_SHOWN
                .iter()
                .map(|k| (k.to_string(), Value::Null))
                .collect();
            m.insert("congestion".into(), json!("-"));
            Value::Object(m)
        }
    }
}

/// The flow list's columns that show a flow's FRCP state for reading (its exact values
/// are nested under `frcp_state`, which the metrics take).
pub(crate) const FRCP_SHOWN: &[&str] = &["rto", "srtt", "in_flight", "retransmits"];

/// An `o7sctl flow list` row with its QoS cube and FRCP columns added: `frcp` says what
/// the app's library runs (`-`: nothing, `in-order`, `rtx`: in order with retransmission),
/// then the RTO, smoothed RTT, packets in flight, retransmissions and the peer's window
/// (null, shown "-", without FRCP).
pub(super) fn with_frcp(mut row: Value, cube: &str, f: Option<&o7s_abi::msg::FrcpStats>) -> Value {
    let cols = match f {
        Some(f) => json!({
            "cube": cube,
            "frcp": if f.rtx { "rtx" } else { "in-order" },
            "rto": fmt_us(f.rto_us),
            "srtt": if f.srtt_us == 0 { Value::Null } else { json!(fmt_us(f.srtt_us)) },
            "in_flight": f.in_flight,
            "retransmits": f.retransmits,
            "frcp_state": {
                "frcp_rto_us": f.rto_us, "frcp_srtt_us": f.srtt_us,
                "frcp_in_flight": f.in_flight, "frcp_window": f.window,
                "frcp_sent": f.sent, "frcp_retransmits": f.retransmits,
                "frcp_delivered": f.delivered, "frcp_duplicates": f.duplicates,
                "frcp_bad": f.bad,
            },
        }),
        None => {
            let mut m: Map<String, Value> = FRCP_SHOWN
                .iter()
                .map(|k| (k.to_string(), Value::Null))
                .collect();
            m.insert("cube".into(), json!(cube));
            m.insert("frcp".into(), json!("-"));
            Value::Object(m)
        }
    };
    if let (Value::Object(m), Value::Object(c)) = (&mut row, cols) {
        m.extend(c);
    }
    row
}

/// An `o7sctl flow list` row with its CRC32 trailer columns added: `crc` is `crc32` when
/// the flow carries the trailer (its QoS has `ber` 0), else `-`; `crc_errors` counts the
/// SDUs from the peer that failed it (null without the trailer), exact, so the metrics take it
/// as it is (`o7s_flow_crc_errors_total`).
pub(super) fn with_crc(mut row: Value, errors: Option<u32>) -> Value {
    if let Value::Object(m) = &mut row {
        m.insert(
            "crc".into(),
            json!(if errors.is_some() { "crc32" } else { "-" }),
        );
        m.insert("crc_errors".into(), json!(errors));
    }
    row
}

/// An `o7sctl flow list` row with its congestion columns added.
pub(super) fn with_ca(mut row: Value, ca: Option<&CaStats>) -> Value {
    if let (Value::Object(m), Value::Object(c)) = (&mut row, ca_columns(ca)) {
        m.extend(c);
    }
    row
}

/// An `o7sctl port list` row: every counter of the port, and its cap as `rate` besides
/// the exact `rate_bps`.
pub(super) fn port_row(p: &PortStats) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        // udp ports have no XDP, UMEM or link: no columns of zeros.
        if p.mac == "-" {
            m.retain(|k, _| !(k.contains("xdp") || k.starts_with("umem") || k == "link"));
        }
        m.insert("rate".into(), json!(cap(p.rate_bps)));
        m.insert("impair".into(), json!(impairs(p)));
    }
    v
}

/// A port's impairments in words ("loss 1% delay 5ms"), or "-".
fn impairs(p: &PortStats) -> String {
    let pct = |ppm: u32| format!("{}%", f64::from(ppm) / 1e4);
    let mut w = vec![];
    for (k, v) in [
        ("loss", p.impair_loss_ppm),
        ("dup", p.impair_dup_ppm),
        ("reorder", p.impair_reorder_ppm),
        ("corrupt", p.impair_corrupt_ppm),
    ] {
        if v > 0 {
            w.push(format!("{k} {}", pct(v)));
        }
    }
    if p.impair_delay_us > 0 {
        w.push(format!("delay {}", fmt_us(p.impair_delay_us)));
    }
    if w.is_empty() {
        "-".into()
    } else {
        w.join(" ")
    }
}

fn fmt_us(us: u32) -> String {
    if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn frcp_columns_read_as_people_read_them_and_nest_the_exact_values() {
        let f = o7s_abi::msg::FrcpStats {
            rtx: true,
            rto_us: 1500,
            srtt_us: 2000,
            in_flight: 3,
            window: 61,
            sent: 100,
            retransmits: 4,
            delivered: 90,
            duplicates: 5,
            bad: 6,
        };
        let row = with_frcp(json!({"flow": 3}), "BE", Some(&f));
        assert_eq!(
            (&row["cube"], &row["frcp"], &row["rto"], &row["srtt"]),
            (&json!("BE"), &json!("rtx"), &json!("1500us"), &json!("2ms"))
        );
        assert_eq!(
            (&row["in_flight"], &row["retransmits"]),
            (&json!(3), &json!(4))
        );
        let n = &row["frcp_state"];
        assert_eq!(
            [
                &n["frcp_rto_us"],
                &n["frcp_srtt_us"],
                &n["frcp_in_flight"],
                &n["frcp_window"],
                &n["frcp_sent"],
                &n["frcp_retransmits"],
                &n["frcp_delivered"],
                &n["frcp_duplicates"],
                &n["frcp_bad"]
            ],
            [1500, 2000, 3, 61, 100, 4, 90, 5, 6]
                .map(|x| json!(x))
                .each_ref()
        );
        let row = with_frcp(
            json!({"flow": 3}),
            "VOICE",
            Some(&o7s_abi::msg::FrcpStats { rtx: false, ..f }),
        );
        assert_eq!(
            (&row["frcp"], &row["cube"]),
            (&json!("in-order"), &json!("VOICE"))
        );
        let row = with_frcp(json!({"flow": 4}), "BE", None);
        assert_eq!(row["frcp"], "-");
        assert_eq!(row["flow"], 4);
        assert!(row.get("frcp_state").is_none());
        for k in FRCP_SHOWN {
            assert_eq!(row[*k], Value::Null, "{k}");
        }
    }

    #[test]
    fn a_flow_row_says_whether_it_carries_the_crc_and_how_many_failed_it() {
        let row = with_crc(json!({"flow": 4}), Some(3));
        assert_eq!(
            (&row["crc"], &row["crc_errors"]),
            (&json!("crc32"), &json!(3))
        );
        assert_eq!(row["flow"], 4);
        let row = with_crc(json!({"flow": 5}), None);
        assert_eq!(
            (&row["crc"], &row["crc_errors"]),
            (&json!("-"), &Value::Null)
        );
    }

    #[test]
    fn a_port_shows_its_impairments_in_words() {
        let p = PortStats {
            impair_loss_ppm: 10_000,
            impair_reorder_ppm: 1_000,
            impair_delay_us: 5_000,
            ..PortStats::default()
        };
        assert_eq!(port_row(&p)["impair"], "loss 1% reorder 0.1% delay 5ms");
        let p = PortStats {
            impair_dup_ppm: 500,
            impair_delay_us: 250,
            ..PortStats::default()
        };
        assert_eq!(port_row(&p)["impair"], "dup 0.05% delay 250us");
        assert_eq!(port_row(&PortStats::default())["impair"], "-");
    }

    #[test]
    fn rates_read_with_three_digits_and_a_unit() {
        for (bps, want) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1k"),
            (812_345, "812k"),
            (999_600, "1M"),
            (81_312_345, "81.3M"),
            (100_000_000, "100M"),
            (1_500_000_000, "1.5G"),
            (9_999_999_999, "10G"),
        ] {
            assert_eq!(format_rate(bps), want, "{bps}");
        }
        assert_eq!(cap(0), "-");
        assert_eq!(cap(100_000_000), "100M");
    }

    #[test]
    fn a_flow_shows_its_mb_ecn_state_or_dashes() {
        let ca = CaStats {
            rate_bps: 81_312_345,
            window_bytes: 170_500,
            slot_ns: 16_777_216,
            cav: true,
            tx_ece: 2,
            rx_ece: 1,
            updates_in: 40,
            updates_refused: 2,
            updates_out: 41,
            rx_marked: 7,
            waits: 3,
        };
        let row = with_ca(json!({"flow": 3}), Some(&ca));
        assert_eq!(row["flow"], 3);
        assert_eq!(row["congestion"], "mb-ecn");
        assert_eq!(row["rate"], "81.3M");
        assert_eq!(row["window"], 170_500);
        assert_eq!(row["slot_us"], 16_777);
        assert_eq!(row["waits"], 3);
        assert_eq!(row["ca"]["rate_bps"], 81_312_345);
        assert_eq!(row["ca"]["rx_marked"], 7);
        for k in CA_SHOWN {
            assert!(row.get(k).is_some(), "{k}");
        }
        let none = with_ca(json!({"flow": 4}), None);
        assert_eq!(none["congestion"], "-");
        assert!(none["rate"].is_null() && none["updates_in"].is_null());
        assert!(none.get("ca").is_none());
    }

    #[test]
    fn a_port_shows_its_cap_readably_and_exactly() {
        let p = PortStats {
            mac: "-".into(),
            rate_bps: 100_000_000,
            queue_limit: 512,
            ecn_marked: 9,
            ..PortStats::default()
        };
        let row = port_row(&p);
        assert_eq!(row["rate"], "100M");
        assert_eq!(row["rate_bps"], 100_000_000);
        assert_eq!(row["queue_limit"], 512);
        assert_eq!(row["ecn_marked"], 9);
        assert!(row.get("rx_xdp").is_none() && row.get("link").is_none());
        let uncapped = port_row(&PortStats::default());
        assert_eq!(uncapped["rate"], "-");
        assert!(uncapped.get("rx_xdp").is_some());
    }
}
