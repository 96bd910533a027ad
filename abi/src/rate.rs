//! Rates as users write them: `100M`, `1.5G`, `800k`, `100mbit`, a number of bit/s, or
//! `0`/`none` for no cap (o7sd's configuration, `o7sctl port set`, the data plane).

/// The largest egress queue a port may be given, PDUs per N-1 flow.
pub const MAX_QUEUE: u32 = 65_536;

/// Parses a rate such as `100M`, `1.5G`, `800k` or `100000000` (bit/s; `0` or `none`: no
/// cap).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    let t = t
        .strip_suffix("bit")
        .or_else(|| t.strip_suffix("bps"))
        .unwrap_or(t);
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (t.get(..i), 1e3),
        Some((i, 'm' | 'M')) => (t.get(..i), 1e6),
        Some((i, 'g' | 'G')) => (t.get(..i), 1e9),
        _ => (Some(t), 1.0),
    };
    let v: f64 = num
        .and_then(|n| n.parse().ok())
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("'{s}': expected a rate such as 100M, 1G or 0 (none)"))?;
    let bps = v * mul;
    if bps > 1e12 {
        return Err(format!("'{s}': more than 1 Tbit/s"));
    }
    if bps > 0.0 && bps < 8000.0 {
        return Err(format!("'{s}': below 8 kbit/s"));
    }
    Ok(bps as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_suffixes_and_bad_ones_are_refused() {
        assert_eq!(parse_rate("100M"), Ok(100_000_000));
        assert_eq!(parse_rate("100mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("800k"), Ok(800_000));
        assert_eq!(parse_rate("12345678"), Ok(12_345_678));
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("none"), Ok(0));
        for bad in ["", "M", "-5M", "fast", "1e30", "7", "nanM"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
