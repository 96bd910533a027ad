//! The flows' schedule (`"0-70,14-24,44-58,63-80"`), its time scale, and the periods
//! between consecutive events (joins and leaves).

/// Times closer than this (s) are the same instant.
pub const EPS: f64 = 1e-6;

/// One flow's interval, unscaled (s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Join time.
    pub start_s: f64,
    /// Leave time (the run's end for the last flow).
    pub end_s: f64,
}

/// A schedule that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    /// No entries.
    #[error("the schedule is empty (expected e.g. 0-70,14-24,44-58,63-80)")]
    Empty,
    /// An entry is not START-END.
    #[error("schedule entry {index} `{text}` is not START-END in seconds with START < END")]
    Entry {
        /// 1-based entry.
        index: usize,
        /// The text.
        text: String,
    },
    /// The time scale is not a positive number.
    #[error("--time-scale {0} is not a positive number")]
    Scale(f64),
}

/// Parses `"0-70,14-24"`: entry i is flow i (1-based).
pub fn parse(text: &str) -> Result<Vec<Entry>, ScheduleError> {
    let mut out = Vec::new();
    for (i, part) in text.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            continue;
        }
        let err = || ScheduleError::Entry {
            index: i + 1,
            text: part.to_string(),
        };
        let (a, b) = part.split_once('-').ok_or_else(err)?;
        let start_s: f64 = a.trim().parse().map_err(|_| err())?;
        let end_s: f64 = b.trim().parse().map_err(|_| err())?;
        if !(start_s.is_finite() && end_s.is_finite() && start_s >= 0.0 && start_s < end_s) {
            return Err(err());
        }
        out.push(Entry { start_s, end_s });
    }
    if out.is_empty() {
        return Err(ScheduleError::Empty);
    }
    Ok(out)
}

/// A schedule with its time scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Unscaled entries.
    pub entries: Vec<Entry>,
    /// Every schedule time is multiplied by this.
    pub scale: f64,
}

/// The interval between two consecutive events, in scaled seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// The event that opens it (s, scaled).
    pub start_s: f64,
    /// The next event, or the run's end (s, scaled).
    pub end_s: f64,
    /// Entries (0-based) active throughout.
    pub active: Vec<usize>,
    /// Entries that join at `start_s`.
    pub joined: Vec<usize>,
    /// Entries that leave at `start_s`.
    pub left: Vec<usize>,
}

impl Schedule {
    /// A schedule whose times are multiplied by `scale`.
    pub fn new(entries: Vec<Entry>, scale: f64) -> Result<Self, ScheduleError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(ScheduleError::Scale(scale));
        }
        Ok(Self { entries, scale })
    }

    /// Entry `i`'s (start, end), scaled.
    pub fn scaled(&self, i: usize) -> Option<(f64, f64)> {
        self.entries
            .get(i)
            .map(|e| (e.start_s * self.scale, e.end_s * self.scale))
    }

    /// The run's end: the last leave time, scaled.
    pub fn end_s(&self) -> f64 {
        self.entries.iter().map(|e| e.end_s).fold(0.0, f64::max) * self.scale
    }

    /// Entries active during all of `[from, to]` (scaled s).
    pub fn active_during(&self, from: f64, to: f64) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| {
                self.scaled(i)
                    .is_some_and(|(s, e)| s <= from + EPS && e >= to - EPS)
            })
            .collect()
    }

    /// The periods between consecutive events, in time order.
    pub fn periods(&self) -> Vec<Period> {
        let mut times: Vec<f64> = (0..self.entries.len())
            .filter_map(|i| self.scaled(i))
            .flat_map(|(s, e)| [s, e])
            .collect();
        times.sort_by(f64::total_cmp);
        times.dedup_by(|a, b| (*a - *b).abs() <= EPS);
        let near = |a: f64, b: f64| (a - b).abs() <= EPS;
        times
            .windows(2)
            .filter_map(|w| match *w {
                [start_s, end_s] => Some(Period {
                    start_s,
                    end_s,
                    active: self.active_during(start_s, end_s),
                    joined: (0..self.entries.len())
                        .filter(|&i| self.scaled(i).is_some_and(|(s, _)| near(s, start_s)))
                        .collect(),
                    left: (0..self.entries.len())
                        .filter(|&i| self.scaled(i).is_some_and(|(_, e)| near(e, start_s)))
                        .collect(),
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blog_schedule_periods() {
        let s = Schedule::new(parse("0-70,14-24,44-58,63-80").unwrap(), 1.0).unwrap();
        let p = s.periods();
        let spans: Vec<(f64, f64, Vec<usize>)> = p
            .iter()
            .map(|p| (p.start_s, p.end_s, p.active.clone()))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0.0, 14.0, vec![0]),
                (14.0, 24.0, vec![0, 1]),
                (24.0, 44.0, vec![0]),
                (44.0, 58.0, vec![0, 2]),
                (58.0, 63.0, vec![0]),
                (63.0, 70.0, vec![0, 3]),
                (70.0, 80.0, vec![3]),
            ]
        );
        assert_eq!(p[1].joined, vec![1]);
        assert_eq!(p[2].left, vec![1]);
        assert_eq!(p[6].left, vec![0]);
        assert!(p[6].joined.is_empty());
        assert_eq!(s.end_s(), 80.0);
    }

    #[test]
    fn time_scale_multiplies_every_time() {
        let s = Schedule::new(parse("0-70,14-24,44-58,63-80").unwrap(), 0.25).unwrap();
        let p = s.periods();
        let bounds: Vec<(f64, f64)> = p.iter().map(|p| (p.start_s, p.end_s)).collect();
        assert_eq!(
            bounds,
            vec![
                (0.0, 3.5),
                (3.5, 6.0),
                (6.0, 11.0),
                (11.0, 14.5),
                (14.5, 15.75),
                (15.75, 17.5),
                (17.5, 20.0),
            ]
        );
        assert_eq!(p[3].active, vec![0, 2]);
        assert_eq!(s.end_s(), 20.0);
        assert_eq!(s.scaled(1), Some((3.5, 6.0)));
    }

    #[test]
    fn simultaneous_events_make_one_period_boundary() {
        let s = Schedule::new(parse("0-10,5-10,10-20").unwrap(), 1.0).unwrap();
        let p = s.periods();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].joined, vec![2]);
        assert_eq!(p[2].left, vec![0, 1]);
        assert_eq!(p[2].active, vec![2]);
    }

    #[test]
    fn bad_schedules() {
        assert_eq!(parse(" ").unwrap_err(), ScheduleError::Empty);
        assert!(matches!(
            parse("0-70,24-14").unwrap_err(),
            ScheduleError::Entry { index: 2, .. }
        ));
        assert!(parse("0-x").is_err());
        assert_eq!(
            Schedule::new(vec![], 0.0).unwrap_err(),
            ScheduleError::Scale(0.0)
        );
    }
}
