//! Per-relay figures, kept in a Redis hash `<ns>:relay:<url>` (URLs listed
//! in the set `<ns>:relays`), so `dvmtop status` and the TUI of any process
//! can read them. Counters are incremented (several processes feeding one
//! namespace from the same relay add up); states and times are overwritten.
//!
//! Hash fields: `state` (connecting, connected, disconnected, stopped),
//! `events_received`, `accepted`, `duplicates`, `redelivered`,
//! `rejected:<reason>`, `last_event_at` (wall clock, unix s, of the newest
//! receipt), `last_event_created_at`, `last_error`, `last_error_at`,
//! `connected_since`, `connects`, `eose_at`, `synced_at`, `notices`,
//! `last_notice`, `closed_by_relay`, `invalid_messages`, `heartbeat_at`.

use crate::error::Result;
use crate::event::Reject;
use crate::queue::Queue;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A relay whose process has not refreshed its hash for this long is not
/// shown as connected (its process is gone).
pub(crate) const STALE_AFTER_SECS: i64 = 30;

/// Pending changes to one relay's hash, written in one transaction.
pub(crate) struct StatsWriter {
    queue: Queue,
    url: String,
    incr: BTreeMap<String, i64>,
    set: BTreeMap<&'static str, String>,
    del: BTreeSet<&'static str>,
    last_write: Option<Instant>,
    failing: bool,
}

impl StatsWriter {
    pub(crate) fn new(queue: Queue, url: String) -> StatsWriter {
        StatsWriter {
            queue,
            url,
            incr: BTreeMap::new(),
            set: BTreeMap::new(),
            del: BTreeSet::new(),
            last_write: None,
            failing: false,
        }
    }

    pub(crate) fn add(&mut self, field: impl Into<String>, n: u64) {
        if n > 0 {
            *self.incr.entry(field.into()).or_default() += n as i64;
        }
    }

    pub(crate) fn set(&mut self, field: &'static str, v: impl ToString) {
        self.del.remove(field);
        self.set.insert(field, v.to_string());
    }

    pub(crate) fn clear(&mut self, field: &'static str) {
        self.set.remove(field);
        self.del.insert(field);
    }

    /// Whether the heartbeat is due.
    pub(crate) fn due(&self, every: Duration) -> bool {
        self.last_write.is_none_or(|t| t.elapsed() >= every)
    }

    /// Writes the pending changes with a fresh heartbeat. A failure keeps
    /// them for the next write (the figures are not lost, only late) and
    /// is logged once per outage.
    pub(crate) async fn write(&mut self) {
        self.set("heartbeat_at", chrono::Utc::now().timestamp());
        let incr: Vec<(String, i64)> = self.incr.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let set: Vec<(&str, String)> = self.set.iter().map(|(k, v)| (*k, v.clone())).collect();
        let del: Vec<&str> = self.del.iter().copied().collect();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            self.queue.relay_update(&self.url, &incr, &set, &del),
        )
        .await;
        self.last_write = Some(Instant::now());
        match r {
            Ok(Ok(())) => {
                self.incr.clear();
                self.set.clear();
                self.del.clear();
                if self.failing {
                    tracing::info!(relay = %self.url, "relay stats written again");
                }
                self.failing = false;
            }
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed("Redis did not answer within 10 s"),
        }
    }

    fn failed(&mut self, e: &str) {
        if !self.failing {
            tracing::warn!(relay = %self.url, error = %e, "cannot write relay stats; retrying");
        }
        self.failing = true;
    }
}

/// One relay as `dvmtop status --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RelayStatus {
    pub url: String,
    /// Connected now: the state says so and its process is alive.
    pub connected: bool,
    /// connecting, connected, disconnected, stopped; `stale` when the
    /// process that wrote it stopped refreshing it.
    pub state: String,
    /// Distinct events received (re-deliveries of an event this relay
    /// already sent are `redelivered`, not counted here).
    pub events_received: u64,
    /// Queued: new to the namespace.
    pub accepted: u64,
    /// Valid, but already queued (from another relay or source).
    pub duplicates: u64,
    pub redelivered: u64,
    /// Refused by reason (malformed, irrelevant_kind, bad_id, bad_sig, future).
    pub rejected: BTreeMap<String, u64>,
    /// When the newest event arrived (wall clock, unix seconds).
    pub(crate) last_event_at: Option<i64>,
    /// The newest `created_at` received.
    pub(crate) last_event_created_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub(crate) connected_since: Option<i64>,
    pub connects: u64,
    /// Wall clock up to which everything the relay sent has been written
    /// (the next subscription asks from shortly before it).
    pub synced_at: Option<i64>,
    pub notices: u64,
    pub last_notice: Option<String>,
    pub(crate) closed_by_relay: u64,
    pub invalid_messages: u64,
    pub(crate) heartbeat_at: Option<i64>,
}

impl RelayStatus {
    pub(crate) fn from_hash(url: &str, h: &BTreeMap<String, String>, now: i64) -> RelayStatus {
        let n = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let t = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
        let s = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
        let heartbeat_at = t("heartbeat_at");
        let alive = heartbeat_at.is_some_and(|b| now - b <= STALE_AFTER_SECS);
        let raw_state = s("state").unwrap_or_else(|| "unknown".into());
        let state = if alive || raw_state == "stopped" {
            raw_state
        } else {
            "stale".into()
        };
        let mut rejected: BTreeMap<String, u64> = Reject::ALL
            .iter()
            .filter(|r| **r != Reject::Duplicate)
            .map(|r| (r.as_str().to_owned(), 0))
            .collect();
        for (k, v) in h {
            if let Some(reason) = k.strip_prefix("rejected:") {
                rejected.insert(reason.to_owned(), v.parse().unwrap_or(0));
            }
        }
        RelayStatus {
            url: url.to_owned(),
            connected: state == "connected",
            state,
            events_received: n("events_received"),
            accepted: n("accepted"),
            duplicates: n("duplicates"),
            redelivered: n("redelivered"),
            rejected,
            last_event_at: t("last_event_at"),
            last_event_created_at: t("last_event_created_at"),
            last_error: s("last_error"),
            last_error_at: t("last_error_at"),
            connected_since: t("connected_since"),
            connects: n("connects"),
            synced_at: t("synced_at"),
            notices: n("notices"),
            last_notice: s("last_notice"),
            closed_by_relay: n("closed_by_relay"),
            invalid_messages: n("invalid_messages"),
            heartbeat_at,
        }
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Every relay of the namespace, by URL.
pub async fn relay_status(queue: &Queue, now: i64) -> Result<Vec<RelayStatus>> {
    Ok(queue
        .relay_hashes()
        .await?
        .iter()
        .map(|(url, h)| RelayStatus::from_hash(url, h, now))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_hash() {
        let h: BTreeMap<String, String> = [
            ("state", "connected"),
            ("events_received", "7"),
            ("accepted", "5"),
            ("duplicates", "1"),
            ("rejected:bad_sig", "1"),
            ("last_error", ""),
            ("heartbeat_at", "1000"),
            ("connects", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let s = RelayStatus::from_hash("ws://r", &h, 1010);
        assert!(s.connected);
        assert_eq!((s.events_received, s.accepted, s.duplicates), (7, 5, 1));
        assert_eq!(s.rejected["bad_sig"], 1);
        assert_eq!(s.rejected["future"], 0);
        assert!(!s.rejected.contains_key("duplicate"));
        assert_eq!(s.rejected_total(), 1);
        assert_eq!(s.last_error, None);
        assert_eq!(s.connects, 0);
        // Its process stopped refreshing the hash: not connected any more.
        let s = RelayStatus::from_hash("ws://r", &h, 1000 + STALE_AFTER_SECS + 1);
        assert!(!s.connected);
        assert_eq!(s.state, "stale");
    }
}
