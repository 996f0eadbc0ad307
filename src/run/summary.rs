//! The final summary of a run: ingest and processing counters of the
//! namespace, cumulative across resumes (the last stdout line headless).

use super::Services;
use crate::error::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The final line of a headless backtest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub events_read: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    pub processed: u64,
    pub ignored_prior_month: u64,
    pub rollovers: u64,
    pub current_month: Option<String>,
    pub queue_depth: u64,
    pub overflow_size: u64,
    pub(crate) dead_letters: u64,
    pub(crate) elapsed_s: f64,
    pub(crate) events_per_s: f64,
    pub interrupted: bool,
    /// An input broke off (truncated array, damaged gzip) or could not be
    /// read: everything complete before the break was processed, and the
    /// run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) input_error: Option<String>,
    /// Backups that failed during the run (each audited as failed in
    /// `job_runs`): the run fails too, after this summary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backup_failures: Vec<BackupFailure>,
    /// The queue was lost during the run (the `queue_lost` alert's
    /// message): a backtest's figures then miss what Redis lost, so it
    /// fails after this summary (`--resume` recovers it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_lost: Option<String>,
}

/// A backup after a rollover that could not be written.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupFailure {
    /// The month whose rollover it followed.
    pub month: String,
    /// Why (the file and the system's reason).
    pub error: String,
}

/// The backups that failed since `since` (from the job audit, so a
/// failure is seen whatever reported it).
pub async fn backup_failures(
    s: &Services,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<BackupFailure>> {
    let runs =
        s.db.job_runs(Some(dvmtop_core::Job::Backup), 10_000, None)
            .await?;
    let mut failed: Vec<BackupFailure> = runs
        .into_iter()
        .filter(|r| r.started_at >= since && r.outcome == dvmtop_core::Outcome::Failed)
        .map(|r| BackupFailure {
            month: r.year_month.map_or_else(|| "?".into(), |m| m.to_string()),
            error: r.detail.unwrap_or_default(),
        })
        .collect();
    failed.reverse();
    Ok(failed)
}

/// Ingest + processing counters of a namespace, cumulative across resumes.
pub async fn summarize(
    s: &Services,
    elapsed: Duration,
    processed_before: u64,
    interrupted: bool,
) -> Result<Summary> {
    let ingest = s.queue.ingest_stats().await?;
    let snap = s.db.snapshot().await?;
    let mut rejected: BTreeMap<String, u64> = crate::event::Reject::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), 0))
        .collect();
    for (k, v) in &ingest {
        if let Some(reason) = k.strip_prefix("rejected:") {
            *rejected.entry(reason.to_owned()).or_default() += v;
        }
    }
    for (k, v) in &snap.counters {
        if let Some(reason) = k.strip_prefix("rejected:") {
            *rejected.entry(reason.to_owned()).or_default() += *v as u64;
        }
    }
    let counter = |k: &str| snap.counters.get(k).copied().unwrap_or(0) as u64;
    *rejected.entry("duplicate".into()).or_default() += counter("duplicate");
    let processed = counter("processed");
    let secs = elapsed.as_secs_f64();
    Ok(Summary {
        events_read: ingest.get("events_read").copied().unwrap_or(0),
        accepted: ingest.get("accepted").copied().unwrap_or(0),
        rejected,
        processed,
        ignored_prior_month: counter("ignored_prior_month"),
        rollovers: snap.monthly_rows as u64,
        current_month: snap.current_month,
        queue_depth: s.queue.depth().await?,
        overflow_size: snap.overflow_size as u64,
        dead_letters: s.queue.dead_letters().await? + snap.dead_letters as u64,
        elapsed_s: (secs * 1000.0).round() / 1000.0,
        events_per_s: if secs > 0.0 {
            ((processed - processed_before.min(processed)) as f64 / secs).round()
        } else {
            0.0
        },
        interrupted,
        input_error: None,
        backup_failures: Vec::new(),
        queue_lost: None,
    })
}

/// The `queue_lost` alert raised since `since`, if any.
pub async fn queue_lost(
    s: &Services,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>> {
    Ok(s.db
        .alerts()
        .await?
        .into_iter()
        .find(|a| a.kind == dvmtop_core::alert::QUEUE_LOST && a.since >= since)
        .map(|a| a.message))
}
