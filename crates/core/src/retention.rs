//! The retention policy (SPEC §6), pure: thresholds and the cut-offs of
//! one daily cleanup. The shell carries the cleanup out.

use crate::time::{YearMonth, midnight as at};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Thresholds (days unless named otherwise); defaults as in SPEC §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Detail and window-stat rows older than this are deleted.
    pub activity_days: u32,
    /// Active entities silent longer than this become inactive.
    pub inactive_after_days: u32,
    /// Inactive entities silent longer than this are deleted.
    pub delete_after_days: u32,
    /// `cleanup_log` entries older than this are deleted.
    pub cleanup_log_days: u32,
    /// `cleanup_log` is trimmed to at most this many rows (oldest first).
    pub cleanup_log_max_rows: u32,
    /// Rows per cleanup statement (one transaction each).
    pub batch_rows: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            activity_days: 35,
            inactive_after_days: 30,
            delete_after_days: 60,
            cleanup_log_days: 365,
            cleanup_log_max_rows: 100_000,
            batch_rows: 10_000,
        }
    }
}

/// The cut-off instants of one cleanup (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Detail rows strictly before this go.
    pub detail: NaiveDate,
    pub inactive: DateTime<Utc>,
    pub delete: DateTime<Utc>,
    pub cleanup_log: DateTime<Utc>,
}

/// Cut-offs for reference day `r`. Detail rows are kept for the grace
/// period, and never deleted from `open` (the month not yet rolled up) on.
pub fn cutoffs(r: NaiveDate, open: Option<YearMonth>, c: &RetentionConfig) -> Cutoffs {
    let back = |days: u32| {
        r.checked_sub_days(Days::new(days.into()))
            .unwrap_or(NaiveDate::MIN)
    };
    let grace = back(c.activity_days);
    Cutoffs {
        detail: open.map_or(grace, |m| grace.min(m.start())),
        inactive: at(back(c.inactive_after_days)),
        delete: at(back(c.delete_after_days)),
        cleanup_log: at(back(c.cleanup_log_days)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn cutoffs_follow_the_reference_day() {
        let c = RetentionConfig::default();
        let cut = cutoffs(d(2025, 3, 15), YearMonth::new(2025, 3), &c);
        assert_eq!(cut.detail, d(2025, 2, 8), "35 days back");
        assert_eq!(cut.inactive, at(d(2025, 2, 13)));
        assert_eq!(cut.delete, at(d(2025, 1, 14)));
        // A month not rolled up keeps all its rows, however long it waits.
        let waiting = cutoffs(d(2025, 3, 15), YearMonth::new(2025, 1), &c);
        assert_eq!(waiting.detail, d(2025, 1, 1));
    }
}
