//! The job audit (`job_runs`, SPEC §6): every daily cleanup, rollover and
//! backup, with what it did and how it ended. It is the TUI's cleanup
//! history and the source of the monitoring figures.

use super::Db;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use dvmtop_core::time::midnight;
use dvmtop_core::{Job, Outcome, YearMonth};
use serde::Serialize;
use std::collections::BTreeMap;

/// One audited job run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    pub id: i64,
    pub(crate) job: Job,
    pub reference_time: Option<DateTime<Utc>>,
    /// The month a rollover closed, or a backup was written after.
    pub(crate) year_month: Option<YearMonth>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// Rows affected, per table (or per lifecycle step).
    pub rows: BTreeMap<String, i64>,
    pub outcome: Outcome,
    pub(crate) attempts: i32,
    pub(crate) detail: Option<String>,
}

impl JobRun {
    pub(crate) fn millis(&self) -> Option<i64> {
        self.finished_at
            .map(|f| (f - self.started_at).num_milliseconds())
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    job: String,
    reference_time: Option<DateTime<Utc>>,
    year_month: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    rows_affected: sqlx::types::Json<BTreeMap<String, i64>>,
    outcome: String,
    attempts: i32,
    detail: Option<String>,
}

impl TryFrom<JobRow> for JobRun {
    type Error = Error;
    fn try_from(r: JobRow) -> Result<JobRun> {
        let corrupt = |e: String| Error::Namespace(format!("job_runs row {}: {e}", r.id));
        Ok(JobRun {
            id: r.id,
            job: r.job.parse().map_err(corrupt)?,
            reference_time: r.reference_time,
            year_month: r
                .year_month
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(corrupt)?,
            started_at: r.started_at,
            finished_at: r.finished_at,
            rows: r.rows_affected.0,
            outcome: r.outcome.parse().map_err(corrupt)?,
            attempts: r.attempts,
            detail: r.detail,
        })
    }
}

const JOB_STARTED: &str = "INSERT INTO job_runs (job, reference_time, year_month, outcome)
     VALUES ($1, $2, $3, 'running') RETURNING id";

const JOB_FINISHED: &str =
    "UPDATE job_runs SET finished_at = clock_timestamp(), rows_affected = $2,
       outcome = $3, attempts = $4, detail = $5 WHERE id = $1";

const JOB_RUNS: &str = "SELECT id, job, reference_time, year_month, started_at, finished_at,
       rows_affected, outcome, attempts, detail
     FROM job_runs WHERE ($1::text IS NULL OR job = $1) AND ($3::int8 IS NULL OR id = $3)
     ORDER BY id DESC LIMIT $2";

const ROLLOVER: &str = "INSERT INTO job_runs (job, reference_time, year_month, started_at,
       finished_at, rows_affected, outcome, detail)
     VALUES ('monthly_rollover', $1, $2, $3, clock_timestamp(), $4, 'ok', $5)";

impl Db {
    pub(crate) async fn job_started(
        &self,
        job: Job,
        reference: Option<DateTime<Utc>>,
        month: Option<YearMonth>,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(JOB_STARTED)
            .bind(job.as_str())
            .bind(reference)
            .bind(month.map(|m| m.to_string()))
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn job_finished(
        &self,
        id: i64,
        rows: &BTreeMap<String, i64>,
        outcome: Outcome,
        attempts: i32,
        detail: Option<&str>,
    ) -> Result<JobRun> {
        sqlx::query(JOB_FINISHED)
            .bind(id)
            .bind(sqlx::types::Json(rows))
            .bind(outcome.as_str())
            .bind(attempts)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        self.job_runs(None, 1, Some(id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Namespace(format!("job run {id} vanished while it was written")))
    }

    /// Runs interrupted by a crash are marked so, not left "running".
    pub(crate) async fn mark_interrupted_jobs(&self) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE job_runs SET outcome = 'interrupted', finished_at = now() WHERE outcome = 'running'",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The newest audited runs (of one job, or all), newest first.
    pub async fn job_runs(
        &self,
        job: Option<Job>,
        limit: i64,
        id: Option<i64>,
    ) -> Result<Vec<JobRun>> {
        let rows: Vec<JobRow> = sqlx::query_as(JOB_RUNS)
            .bind(job.map(Job::as_str))
            .bind(limit)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(JobRun::try_from).collect()
    }

    /// Records a committed rollover in the audit.
    pub(crate) async fn audit_rollover(&self, m: YearMonth, started: DateTime<Utc>) -> Result<()> {
        sqlx::query(ROLLOVER)
            .bind(midnight(m.end()))
            .bind(m.to_string())
            .bind(started)
            .bind(sqlx::types::Json(BTreeMap::from([(
                "monthly_activity".to_owned(),
                1i64,
            )])))
            .bind(format!("rolled up {m}"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
