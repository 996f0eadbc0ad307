//! Calendar vocabulary: UTC days and months, and the unix-second helpers
//! the clock and the analysis share.

use chrono::{DateTime, Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A UTC calendar day.
pub type Day = NaiveDate;

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct YearMonth {
    pub year: i32,
    pub month: u32,
}

impl YearMonth {
    pub fn new(year: i32, month: u32) -> Option<YearMonth> {
        (1..=12)
            .contains(&month)
            .then_some(YearMonth { year, month })
    }
    pub fn of(day: NaiveDate) -> YearMonth {
        YearMonth {
            year: day.year(),
            month: day.month(),
        }
    }
    pub fn start(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid by construction")
    }
    pub fn next(self) -> YearMonth {
        if self.month == 12 {
            YearMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
    /// First day of the following month (exclusive end of this one).
    pub fn end(self) -> NaiveDate {
        self.next().start()
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for YearMonth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a month as YYYY-MM, got {s:?}");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        YearMonth::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?).ok_or_else(bad)
    }
}

impl TryFrom<String> for YearMonth {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<YearMonth> for String {
    fn from(m: YearMonth) -> String {
        m.to_string()
    }
}

/// Latest representable timestamp we accept (9999-12-31T23:59:59Z).
pub(crate) const MAX_TS: i64 = 253_402_300_799;

/// UTC day of a unix timestamp (clamped into chrono's range).
pub fn day_of(ts: i64) -> NaiveDate {
    DateTime::from_timestamp(ts.clamp(0, MAX_TS), 0)
        .expect("clamped into range")
        .date_naive()
}

/// A day's midnight UTC as an instant.
pub fn midnight(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    DateTime::from_timestamp(day_start(day), 0).expect("a NaiveDate's midnight is in range")
}

/// Unix seconds of a day's midnight UTC.
pub fn day_start(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_month_arithmetic() {
        let dec = YearMonth::new(2024, 12).unwrap();
        assert_eq!(dec.next(), YearMonth::new(2025, 1).unwrap());
        assert_eq!(dec.to_string(), "2024-12");
        assert_eq!("2024-12".parse::<YearMonth>().unwrap(), dec);
        assert!("2024-13".parse::<YearMonth>().is_err());
    }
}
