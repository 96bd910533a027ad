//! Impairments as users write them (issue 27: `o7sctl port set PORT loss 1% dup 0.1%
//! reorder 1% delay 5ms corrupt 0.1%`, the layers' `loss`/`dup`/`reorder`/`delay`/`corrupt`
//! keys): rates in parts
//! per million, delays up to [`MAX_DELAY`].

use std::time::Duration;

/// Rates are in parts per million: 1% is 10,000.
pub const PPM: u32 = 1_000_000;
/// The longest delay (held frames are memory).
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Parses a rate as `o7sctl port set` and the configuration take it: "1%", "0.1%", or a
/// fraction "0.01"; into parts per million.
pub fn parse_ppm(s: &str) -> Result<u32, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 10_000.0),
        None => (s, 1_000_000.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': expected a percentage (1%, 0.1%) or a fraction (0.01)"))?;
    if !v.is_finite() || v < 0.0 || v * scale > f64::from(PPM) {
        return Err(format!("'{s}': a rate is between 0 and 100%"));
    }
    Ok((v * scale).round() as u32)
}

/// Parses a delay: "5ms", "200us", "0.5s", "0".
pub fn parse_delay(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((t, "ms"), |i| t.split_at(i));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected a delay such as 5ms, 200us or 0.5s"))?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "us" => v / 1e6,
        _ => return Err(format!("'{s}': the unit is s, ms or us")),
    };
    if !secs.is_finite() || secs < 0.0 || secs > MAX_DELAY.as_secs_f64() {
        return Err(format!("'{s}': a delay is between 0 and {MAX_DELAY:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_delays_parse_as_the_cli_gives_them() {
        assert_eq!(parse_ppm("1%"), Ok(10_000));
        assert_eq!(parse_ppm("0.1%"), Ok(1_000));
        assert_eq!(parse_ppm("0.01"), Ok(10_000));
        assert_eq!(parse_ppm("100%"), Ok(PPM));
        assert_eq!(parse_ppm("0"), Ok(0));
        for bad in ["101%", "-1%", "1.5", "lots", "nan", "inf%"] {
            assert!(parse_ppm(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_delay("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_delay("200us"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_delay("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("0"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("3"), Ok(Duration::from_millis(3)));
        for bad in ["5 parsecs", "2s", "-1ms", "ms", "5h"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
    }
}
