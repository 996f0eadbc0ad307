//! The period a DVM or kind view covers (pure): a rolling window on the
//! processing clock — the same windows as the overview's window stats —
//! or one closed month from `monthly_activity`.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use dvmtop_core::YearMonth;
use dvmtop_core::windows::window_starts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    Last24h,
    Last7d,
    #[default]
    Last30d,
    /// A closed (rolled-up) month.
    Month(YearMonth),
}

impl Period {
    pub(crate) fn label(self) -> String {
        match self {
            Period::Last24h => "24 h".into(),
            Period::Last7d => "7 d".into(),
            Period::Last30d => "30 d".into(),
            Period::Month(m) => m.to_string(),
        }
    }

    /// `[start, end)` in UTC: a rolling window at processing clock `clock`
    /// (the current hour included), or the month. `None` for a rolling
    /// window before anything was processed.
    pub fn bounds(self, clock: Option<i64>) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default();
        if let Period::Month(m) = self {
            return Some((midnight(m.start()), midnight(m.end())));
        }
        let t = clock?;
        let i = match self {
            Period::Last24h => 1,
            Period::Last7d => 2,
            _ => 3,
        };
        let start = window_starts(t)[i].1.naive_utc();
        let end = DateTime::from_timestamp(t - t.rem_euclid(3600) + 3600, 0)?.naive_utc();
        Some((start, end))
    }

    /// The days `bounds` touches, first and last (inclusive).
    pub fn days(self, clock: Option<i64>) -> Option<(NaiveDate, NaiveDate)> {
        let (s, e) = self.bounds(clock)?;
        let last = (e - chrono::Duration::seconds(1)).date();
        Some((s.date(), last))
    }

    /// The next period `w` selects: 30 d → 7 d → 24 h → closed months,
    /// newest first → 30 d. `months` are the closed months, oldest first.
    pub(crate) fn cycle(self, months: &[YearMonth], forward: bool) -> Period {
        let mut all = vec![Period::Last30d, Period::Last7d, Period::Last24h];
        all.extend(months.iter().rev().map(|m| Period::Month(*m)));
        let i = all.iter().position(|p| *p == self).unwrap_or(0);
        let n = all.len();
        let j = if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        };
        all[j]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ym(y: i32, m: u32) -> YearMonth {
        YearMonth::new(y, m).unwrap()
    }

    #[test]
    fn rolling_windows_match_the_window_stats() {
        let t = chrono::Utc
            .with_ymd_and_hms(2025, 1, 15, 10, 30, 0)
            .unwrap()
            .timestamp();
        let (s, e) = Period::Last30d.bounds(Some(t)).unwrap();
        assert_eq!(
            s.to_string(),
            "2024-12-16 00:00:00",
            "SPEC §6: Dec 16 … Jan 15"
        );
        assert_eq!(e.to_string(), "2025-01-15 11:00:00");
        let (s, _) = Period::Last24h.bounds(Some(t)).unwrap();
        assert_eq!(s.to_string(), "2025-01-14 10:00:00");
        let (s, _) = Period::Last7d.bounds(Some(t)).unwrap();
        assert_eq!(s.to_string(), "2025-01-08 00:00:00");
        assert_eq!(Period::Last7d.bounds(None), None);
        let d = Period::Last30d.days(Some(t)).unwrap();
        assert_eq!(d.0.to_string(), "2024-12-16");
        assert_eq!(d.1.to_string(), "2025-01-15");
    }

    #[test]
    fn months_cover_the_whole_month() {
        let (s, e) = Period::Month(ym(2024, 2)).bounds(None).unwrap();
        assert_eq!(s.to_string(), "2024-02-01 00:00:00");
        assert_eq!(e.to_string(), "2024-03-01 00:00:00");
        let (a, b) = Period::Month(ym(2024, 12)).days(None).unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("2024-12-01".into(), "2024-12-31".into())
        );
    }

    #[test]
    fn cycling_goes_through_every_closed_month_and_back() {
        let months = [ym(2024, 1), ym(2024, 2)];
        let mut p = Period::default();
        let mut seen = vec![p];
        for _ in 0..5 {
            p = p.cycle(&months, true);
            seen.push(p);
        }
        assert_eq!(
            seen,
            vec![
                Period::Last30d,
                Period::Last7d,
                Period::Last24h,
                Period::Month(ym(2024, 2)),
                Period::Month(ym(2024, 1)),
                Period::Last30d
            ]
        );
        assert_eq!(
            Period::Last30d.cycle(&months, false),
            Period::Month(ym(2024, 1))
        );
        // A month no longer in the list falls back to the start.
        assert_eq!(Period::Month(ym(2020, 1)).cycle(&[], true), Period::Last7d);
    }
}
