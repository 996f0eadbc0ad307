//! Alerts: conditions an operator must see however they look — a banner
//! line in the TUI, a line on stderr, an entry of `status --json`'s
//! `alerts` array. Kept small and generic (a kind, a severity, a message,
//! since when) so that new kinds need no new shape.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Redis lost queued events: it restarted without its data, was flushed,
/// or the list is shorter than the committed position says.
pub const QUEUE_LOST: &str = "queue_lost";
/// Redis persists nothing (neither AOF nor RDB snapshots): a restart
/// loses the queue, which is the ground truth.
pub const REDIS_NOT_PERSISTENT: &str = "redis_not_persistent";
/// Redis does not answer; everything that needs it waits and retries.
pub const REDIS_UNREACHABLE: &str = "redis_unreachable";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Severity {
        if s == "critical" {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What happened, e.g. [`QUEUE_LOST`]; one alert per kind is current.
    pub kind: String,
    pub severity: Severity,
    /// One line: what happened, what it cost, what to do.
    pub message: String,
    /// When it was (first) noticed.
    pub since: DateTime<Utc>,
}

impl Alert {
    pub fn new(
        kind: &str,
        severity: Severity,
        message: impl Into<String>,
        since: DateTime<Utc>,
    ) -> Alert {
        Alert {
            kind: kind.to_owned(),
            severity,
            message: message.into(),
            since,
        }
    }

    /// As a line for stderr or a banner: `error: …` / `warning: …`.
    pub fn line(&self) -> String {
        let level = match self.severity {
            Severity::Critical => "error",
            Severity::Warning => "warning",
        };
        format!(
            "{level}: {} (since {})",
            self.message,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// Adds `a` to `alerts`, replacing the alert of the same kind (keeping
/// the earlier `since` when the message is unchanged).
pub fn upsert(alerts: &mut Vec<Alert>, a: Alert) {
    match alerts.iter_mut().find(|x| x.kind == a.kind) {
        Some(x) if x.message == a.message => {}
        Some(x) => *x = a,
        None => alerts.push(a),
    }
    alerts.sort_by(|x, y| y.severity.cmp(&x.severity).then(x.kind.cmp(&y.kind)));
}

/// How much Redis persists, as `CONFIG GET appendonly` and `save` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    pub(crate) aof: bool,
    pub(crate) rdb: bool,
}

impl Persistence {
    /// From the values of `appendonly` (`yes`/`no`) and `save` (`""` or
    /// pairs such as `3600 1 300 100`).
    pub fn from_config(appendonly: &str, save: &str) -> Persistence {
        Persistence {
            aof: appendonly.eq_ignore_ascii_case("yes"),
            rdb: !save.trim().is_empty(),
        }
    }

    /// The warning when neither is on.
    pub fn alert(self, url: &str, now: DateTime<Utc>) -> Option<Alert> {
        (!self.aof && !self.rdb).then(|| {
            Alert::new(
                REDIS_NOT_PERSISTENT,
                Severity::Warning,
                format!(
                    "Redis at {url} persists nothing (appendonly no, save \"\"): a Redis restart loses every queued event; turn on appendonly yes"
                ),
                now,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_warns_only_when_nothing_is_kept() {
        let p = |a, s| {
            Persistence::from_config(a, s)
                .alert("redis://x", DateTime::UNIX_EPOCH)
                .is_some()
        };
        assert!(p("no", ""));
        assert!(p("no", "  "));
        assert!(!p("yes", ""));
        assert!(!p("no", "3600 1 300 100"));
        assert!(!p("YES", "3600 1"));
    }

    fn t0() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    #[test]
    fn upsert_keeps_one_alert_per_kind_most_severe_first() {
        let mut v = Vec::new();
        upsert(
            &mut v,
            Alert::new(REDIS_NOT_PERSISTENT, Severity::Warning, "a", t0()),
        );
        let first = Alert::new(QUEUE_LOST, Severity::Critical, "lost 3", t0());
        upsert(&mut v, first.clone());
        let mut same = first.clone();
        same.since += chrono::Duration::seconds(5);
        upsert(&mut v, same);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], first, "critical first, the earlier since kept");
        upsert(
            &mut v,
            Alert::new(QUEUE_LOST, Severity::Critical, "lost 5", t0()),
        );
        assert_eq!((v.len(), v[0].message.as_str()), (2, "lost 5"));
        assert!(v[0].line().starts_with("error: lost 5 (since "));
        assert!(v[1].line().starts_with("warning: a"));
    }
}
