//! Jain's fairness index, max-min fair shares and the convergence rule.

/// A flow is converged while within this fraction of its fair share.
pub const TOLERANCE: f64 = 0.10;

/// Jain's fairness index `(sum x)^2 / (n * sum x^2)`: 1 when all shares are equal, `1/n`
/// when one flow has everything. `None` for no flows or all zeros.
pub fn jain(xs: &[f64]) -> Option<f64> {
    let sum: f64 = xs.iter().sum();
    let sum_sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sum_sq <= 0.0 {
        return None;
    }
    Some(sum * sum / (xs.len() as f64 * sum_sq))
}

/// Max-min fair share of `n` flows that each want `demand` over a link of `cap`
/// (`None` for no flows).
pub fn fair_share(cap: f64, demand: f64, n: usize) -> Option<f64> {
    (n > 0).then(|| demand.min(cap / n as f64))
}

/// Whether every value is within `tol` (a fraction) of `share`.
pub fn all_within(values: &[f64], share: f64, tol: f64) -> bool {
    values
        .iter()
        .all(|x| (x - share).abs() <= tol * share + 1e-9)
}

/// The first index from which `ok` holds to the end; `None` if the last is not ok (or
/// `ok` is empty).
pub fn settled_from(ok: &[bool]) -> Option<usize> {
    match ok.iter().rposition(|o| !o) {
        None if ok.is_empty() => None,
        None => Some(0),
        Some(last_bad) if last_bad + 1 < ok.len() => Some(last_bad + 1),
        Some(_) => None,
    }
}

/// Convergence time after an event at `event_s`: `bin_starts[k] - event_s` for the first bin
/// `k` after which every flow of `values[b]` (the active flows' Mbit/s in bin `b`) stays
/// within [`TOLERANCE`] of `share` to the end of the period; `None` if never.
pub fn convergence_s(
    bin_starts: &[f64],
    values: &[Vec<f64>],
    share: f64,
    event_s: f64,
) -> Option<f64> {
    let ok: Vec<bool> = values
        .iter()
        .map(|v| all_within(v, share, TOLERANCE))
        .collect();
    let k = settled_from(&ok)?;
    bin_starts.get(k).map(|t| (t - event_s).max(0.0))
}

/// Mean of some values (`None` if there are none).
pub fn mean(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (n, sum) = xs
        .into_iter()
        .fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_of_equal_and_unequal_shares() {
        assert_eq!(jain(&[50.0, 50.0]), Some(1.0));
        assert_eq!(jain(&[25.0, 25.0, 25.0, 25.0]), Some(1.0));
        // (80 + 20)^2 / (2 * (6400 + 400)) = 10000 / 13600
        assert_eq!(jain(&[80.0, 20.0]), Some(10000.0 / 13600.0));
        // one flow has everything: 1/n
        assert_eq!(jain(&[100.0, 0.0, 0.0, 0.0]), Some(0.25));
        // (1 + 2 + 3)^2 / (3 * 14) = 36 / 42
        assert_eq!(jain(&[1.0, 2.0, 3.0]), Some(36.0 / 42.0));
        assert_eq!(jain(&[70.0]), Some(1.0));
        assert_eq!(jain(&[]), None);
        assert_eq!(jain(&[0.0, 0.0]), None);
    }

    #[test]
    fn fair_share_is_max_min() {
        assert_eq!(fair_share(100.0, 80.0, 1), Some(80.0));
        assert_eq!(fair_share(100.0, 80.0, 2), Some(50.0));
        assert_eq!(fair_share(100.0, 30.0, 2), Some(30.0));
        assert_eq!(fair_share(100.0, 80.0, 0), None);
    }

    #[test]
    fn converges_at_a_known_bin() {
        // Event at 14.0 s, 100 ms bins from 14.0; two flows, fair share 50. Bins 0-4 are
        // off (80/20, 70/30, then 44/56 is within 10 % but bin 3 falls out again), from
        // bin 4 on both stay within 45..55: convergence = bin 4's start - 14.0 = 0.4 s.
        let starts: Vec<f64> = (0..10).map(|i| 14.0 + f64::from(i) * 0.1).collect();
        let vals = vec![
            vec![80.0, 20.0],
            vec![70.0, 30.0],
            vec![54.0, 46.0],
            vec![60.0, 40.0],
            vec![55.0, 45.0],
            vec![52.0, 48.0],
            vec![50.0, 50.0],
            vec![49.0, 51.0],
            vec![53.0, 47.0],
            vec![50.5, 49.5],
        ];
        assert_eq!(
            convergence_s(&starts, &vals, 50.0, 14.0),
            Some(starts[4] - 14.0)
        );
        // Already converged in the first bin: 0.
        assert_eq!(
            convergence_s(&starts[4..], &vals[4..], 50.0, starts[4]),
            Some(0.0)
        );
    }

    #[test]
    fn never_converges() {
        let starts: Vec<f64> = (0..5).map(|i| f64::from(i) * 0.1).collect();
        // Settled for a while, then out again in the last bin.
        let vals = vec![
            vec![50.0, 50.0],
            vec![50.0, 50.0],
            vec![50.0, 50.0],
            vec![50.0, 50.0],
            vec![80.0, 20.0],
        ];
        assert_eq!(convergence_s(&starts, &vals, 50.0, 0.0), None);
        assert_eq!(convergence_s(&[], &[], 50.0, 0.0), None);
        assert_eq!(settled_from(&[true, false, true]), Some(2));
        assert_eq!(settled_from(&[true, true]), Some(0));
        assert_eq!(settled_from(&[false]), None);
    }

    #[test]
    fn mean_of_nothing() {
        assert_eq!(mean([]), None);
        assert_eq!(mean([1.0, 2.0]), Some(1.5));
    }
}
