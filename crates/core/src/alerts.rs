//! What an operator must be told at once: the alert rules, as pure
//! functions of facts the shell gathers (no I/O, no clock: `now` is an
//! input). The same evaluation feeds the TUI's banner, `status --json`'s
//! `alerts` array and the metrics, so they cannot disagree.
//!
//! Trend rules (a growing queue, rising dead letters) need history: the
//! [`Trends`] kept by the process that samples (the namespace's holder,
//! every [`SAMPLE_EVERY_S`] seconds) and persisted with its alerts, so a
//! one-shot `status` reports them too.

use crate::YearMonth;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How often the holder samples the queue and dead letters.
pub const SAMPLE_EVERY_S: i64 = 15;

pub use crate::alert::{Alert, Severity};

/// Alert thresholds (flags `--alert-*`, the config file's `[alerts]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// The queue grew without a pause for longer than this.
    pub queue_growing_min: u32,
    /// A live service's processing clock is further behind the wall
    /// clock than this.
    pub lag_min: u32,
    /// A relay has been down this long.
    pub relay_down_min: u32,
    /// This many new dead letters within [`Thresholds::dead_letters_window_min`].
    pub dead_letters_rise: u64,
    pub(crate) dead_letters_window_min: u32,
    /// A failed job (cleanup, rollover, backup) is reported this long.
    pub failed_job_hours: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            queue_growing_min: 10,
            lag_min: 60,
            relay_down_min: 5,
            dead_letters_rise: 100,
            dead_letters_window_min: 15,
            failed_job_hours: 24,
        }
    }
}

/// A relay as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFact {
    pub url: String,
    pub connected: bool,
    /// Stopped on purpose (not an outage).
    pub stopped: bool,
    /// Since when it is down, where known.
    pub down_since: Option<DateTime<Utc>>,
}

/// A failed job run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedJob {
    /// cleanup, monthly_rollover, backup, …
    pub job: String,
    pub month: Option<YearMonth>,
    pub at: DateTime<Utc>,
    pub detail: String,
}

/// What the shell read, this instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facts {
    /// A rollover due and waiting for confirmation, and since when.
    pub awaiting: Option<(YearMonth, Option<DateTime<Utc>>)>,
    /// The processing clock (unix seconds) of a live service; `None` for
    /// a backtest (its clock is in the past by design) or before any event.
    pub live_clock: Option<i64>,
    pub relays: Vec<RelayFact>,
    /// Failed job runs, newest first.
    pub failed_jobs: Vec<FailedJob>,
}

/// How many events were dead-lettered so far, from refusal counters
/// (`rejected:<reason>` → count, ingest's and the pipeline's): every
/// refusal is parked in the dead-letter list except an ingest duplicate,
/// which is only counted — a file with repeated events is not bad input.
/// Monotonic, unlike the (capped) list's length.
pub fn dead_lettered<'a>(counters: impl IntoIterator<Item = (&'a str, i64)>) -> u64 {
    counters
        .into_iter()
        .filter(|(k, _)| k.starts_with("rejected:") && *k != "rejected:duplicate")
        .map(|(_, v)| v.max(0) as u64)
        .sum()
}

/// Sampled history for the trend rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Trends {
    /// The last queue depth sampled.
    pub(crate) depth: Option<u64>,
    /// When the queue started growing without a pause (cleared when it
    /// shrinks or empties).
    pub(crate) growing_since: Option<DateTime<Utc>>,
    /// (when, total dead letters), oldest first, within the window.
    pub(crate) dead_letters: VecDeque<(DateTime<Utc>, u64)>,
}

impl Trends {
    /// Takes one sample.
    pub fn sample(&mut self, at: DateTime<Utc>, depth: u64, dead_letters: u64, t: &Thresholds) {
        self.growing_since = match self.depth {
            Some(prev) if depth > prev => self.growing_since.or(Some(at)),
            Some(prev) if depth == prev && depth > 0 => self.growing_since,
            _ => None,
        };
        self.depth = Some(depth);
        let keep = Duration::minutes(i64::from(t.dead_letters_window_min));
        // One sample at or before the window's start stays, as the base.
        while self.dead_letters.len() >= 2 && at - self.dead_letters[1].0 >= keep {
            self.dead_letters.pop_front();
        }
        self.dead_letters.push_back((at, dead_letters));
    }

    /// Dead letters added within the window (a count that went down —
    /// the list was trimmed or cleared — restarts the count).
    pub(crate) fn dead_letters_added(&self) -> u64 {
        let (Some(first), Some(last)) = (self.dead_letters.front(), self.dead_letters.back())
        else {
            return 0;
        };
        last.1.saturating_sub(first.1)
    }
}

fn ago(now: DateTime<Utc>, since: DateTime<Utc>) -> String {
    let m = (now - since).num_minutes().max(0);
    match m {
        0 => "under a minute".into(),
        1..=119 => format!("{m} min"),
        _ => format!("{} h {} min", m / 60, m % 60),
    }
}

/// Every alert that holds now, most severe first.
pub fn evaluate(now: DateTime<Utc>, f: &Facts, trends: &Trends, t: &Thresholds) -> Vec<Alert> {
    let mut out = Vec::new();
    if let Some((m, since)) = f.awaiting {
        out.push(Alert {
            kind: "rollover_waiting".into(),
            severity: Severity::Warning,
            message: format!(
                "the rollover of {m} waits for confirmation{} (dvmtop confirm, or c in the TUI)",
                since.map_or_else(String::new, |s| format!(" for {}", ago(now, s)))
            ),
            since: since.unwrap_or(now),
        });
    }
    if let Some(s) = trends.growing_since
        && now - s > Duration::minutes(i64::from(t.queue_growing_min))
    {
        out.push(Alert {
            kind: "queue_growing".into(),
            severity: Severity::Warning,
            message: format!(
                "the queue has grown for {} (depth {}): processing does not keep up",
                ago(now, s),
                trends.depth.unwrap_or(0)
            ),
            since: s,
        });
    }
    if let Some(clock) = f.live_clock {
        let lag = now.timestamp() - clock;
        if lag > i64::from(t.lag_min) * 60 {
            out.push(Alert {
                kind: "processing_lag".into(),
                severity: Severity::Warning,
                message: format!(
                    "processing is {} behind the wall clock (threshold {} min)",
                    ago(now, now - Duration::seconds(lag)),
                    t.lag_min
                ),
                since: DateTime::from_timestamp(clock, 0).unwrap_or(now),
            });
        }
    }
    for r in &f.relays {
        let down_for = r.down_since.map(|s| now - s);
        let long = down_for.is_none_or(|d| d > Duration::minutes(i64::from(t.relay_down_min)));
        if !r.connected && !r.stopped && long {
            out.push(Alert {
                kind: "relay_down".into(),
                severity: Severity::Warning,
                message: format!(
                    "relay {} is down{}",
                    r.url,
                    r.down_since
                        .map_or_else(String::new, |s| format!(" for {}", ago(now, s)))
                ),
                since: r.down_since.unwrap_or(now),
            });
        }
    }
    let added = trends.dead_letters_added();
    if added >= t.dead_letters_rise.max(1) {
        out.push(Alert {
            kind: "dead_letters_rising".into(),
            severity: Severity::Warning,
            message: format!(
                "{added} new dead letters in the last {} min (see dvmtop status --json, dead_letters)",
                t.dead_letters_window_min
            ),
            since: trends.dead_letters.front().map_or(now, |s| s.0),
        });
    }
    let recent = Duration::hours(i64::from(t.failed_job_hours));
    for j in f.failed_jobs.iter().filter(|j| now - j.at <= recent) {
        out.push(Alert {
            kind: "job_failed".into(),
            severity: Severity::Critical,
            message: format!(
                "{}{} failed {} ago: {}",
                j.job,
                j.month.map_or_else(String::new, |m| format!(" of {m}")),
                ago(now, j.at),
                j.detail
            ),
            since: j.at,
        });
    }
    out.sort_by_key(|a| std::cmp::Reverse(a.severity));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn kinds(a: &[Alert]) -> Vec<&str> {
        a.iter().map(|a| a.kind.as_str()).collect()
    }

    #[test]
    fn nothing_to_say_on_a_quiet_namespace() {
        let t = Thresholds::default();
        assert!(evaluate(at(0), &Facts::default(), &Trends::default(), &t).is_empty());
    }

    #[test]
    fn a_waiting_rollover_says_since_when() {
        let f = Facts {
            awaiting: Some(("2024-01".parse().unwrap(), Some(at(0)))),
            ..Facts::default()
        };
        let a = evaluate(at(90), &f, &Trends::default(), &Thresholds::default());
        assert_eq!(kinds(&a), ["rollover_waiting"]);
        assert_eq!(a[0].since, at(0));
        assert!(a[0].message.contains("2024-01") && a[0].message.contains("90 min"));
    }

    #[test]
    fn a_queue_growing_past_the_threshold_alerts_and_a_dip_clears_it() {
        let t = Thresholds::default();
        let mut tr = Trends::default();
        for (n, m) in (0..=11).enumerate() {
            tr.sample(at(m), 100 + n as u64, 0, &t);
        }
        // Growing since the second sample (minute 1): 10 min at minute 11.
        assert!(evaluate(at(11), &Facts::default(), &tr, &t).is_empty());
        tr.sample(at(12), 200, 0, &t);
        tr.sample(at(12), 200, 0, &t); // unchanged: still growing
        let a = evaluate(at(12), &Facts::default(), &tr, &t);
        assert_eq!(kinds(&a), ["queue_growing"]);
        assert_eq!(a[0].since, at(1));
        tr.sample(at(13), 150, 0, &t);
        assert!(evaluate(at(13), &Facts::default(), &tr, &t).is_empty());
    }

    #[test]
    fn an_empty_queue_is_not_growing() {
        let t = Thresholds::default();
        let mut tr = Trends::default();
        for m in 0..30 {
            tr.sample(at(m), 0, 0, &t);
        }
        assert_eq!(tr.growing_since, None);
    }

    #[test]
    fn duplicates_are_counted_but_not_dead_letters() {
        let c = [
            ("rejected:duplicate", 564),
            ("rejected:malformed", 3),
            ("rejected:too_old", 2),
            ("accepted", 1000),
            ("duplicate", 40),
        ];
        assert_eq!(dead_lettered(c), 5);
        assert_eq!(dead_lettered([("rejected:duplicate", 564)]), 0);
    }

    #[test]
    fn dead_letters_rising_counts_only_the_window() {
        let t = Thresholds {
            dead_letters_rise: 10,
            dead_letters_window_min: 15,
            ..Thresholds::default()
        };
        let mut tr = Trends::default();
        tr.sample(at(0), 0, 0, &t);
        tr.sample(at(5), 0, 9, &t);
        assert!(evaluate(at(5), &Facts::default(), &tr, &t).is_empty());
        tr.sample(at(10), 0, 10, &t);
        assert_eq!(
            kinds(&evaluate(at(10), &Facts::default(), &tr, &t)),
            ["dead_letters_rising"]
        );
        // 30 minutes later with no new ones: the window moved past them.
        tr.sample(at(40), 0, 10, &t);
        tr.sample(at(41), 0, 10, &t);
        assert_eq!(tr.dead_letters_added(), 0);
    }

    #[test]
    fn lag_only_for_a_live_service_and_past_the_threshold() {
        let t = Thresholds::default();
        let mut f = Facts {
            live_clock: Some(at(0).timestamp()),
            ..Facts::default()
        };
        assert!(evaluate(at(60), &f, &Trends::default(), &t).is_empty());
        assert_eq!(
            kinds(&evaluate(at(61), &f, &Trends::default(), &t)),
            ["processing_lag"]
        );
        f.live_clock = None;
        assert!(evaluate(at(600), &f, &Trends::default(), &t).is_empty());
    }

    #[test]
    fn relays_down_long_enough_and_failed_jobs_most_severe_first() {
        let t = Thresholds::default();
        let f = Facts {
            relays: vec![
                RelayFact {
                    url: "wss://a".into(),
                    connected: false,
                    stopped: false,
                    down_since: Some(at(0)),
                },
                RelayFact {
                    url: "wss://b".into(),
                    connected: false,
                    stopped: false,
                    down_since: Some(at(8)),
                },
                RelayFact {
                    url: "wss://c".into(),
                    connected: false,
                    stopped: true,
                    down_since: Some(at(0)),
                },
            ],
            failed_jobs: vec![
                FailedJob {
                    job: "backup".into(),
                    month: Some("2024-01".parse().unwrap()),
                    at: at(9),
                    detail: "disk full".into(),
                },
                FailedJob {
                    job: "cleanup".into(),
                    month: None,
                    at: at(10 - 25 * 60),
                    detail: "old".into(),
                },
            ],
            ..Facts::default()
        };
        let a = evaluate(at(10), &f, &Trends::default(), &t);
        assert_eq!(kinds(&a), ["job_failed", "relay_down"]);
        assert!(a[0].message.contains("backup of 2024-01") && a[0].message.contains("disk full"));
        assert!(a[1].message.contains("wss://a"));
    }
}
