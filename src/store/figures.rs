//! The monitoring figures of `dvmtop status` (the FAQ's list): table
//! sizes, active ratios, the last rollover, cleanup and backup.

use super::{Db, JobRun};
use crate::error::Result;
use chrono::{DateTime, Utc};
use dvmtop_core::{Job, Outcome, YearMonth};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(sqlx::FromRow)]
struct SizeRow {
    bytes: i64,
    months: i64,
    first: Option<String>,
    last: Option<String>,
    log_rows: i64,
    dvm_ratio: Option<f64>,
    user_ratio: Option<f64>,
}

/// Monitoring figures (the FAQ's list) for `dvmtop status`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figures {
    pub(crate) entity_activity_rows: i64,
    pub(crate) entity_activity_bytes: i64,
    /// Rows of every bounded table, for growth checks.
    pub(crate) table_rows: BTreeMap<String, i64>,
    pub(crate) dvms_active_ratio: Option<f64>,
    pub(crate) users_active_ratio: Option<f64>,
    pub(crate) monthly_activity_rows: i64,
    pub(crate) first_month: Option<String>,
    pub(crate) last_month: Option<String>,
    pub(crate) last_rollover_ms: Option<i64>,
    pub(crate) last_rollover_month: Option<YearMonth>,
    pub(crate) last_cleanup_ms: Option<i64>,
    pub(crate) last_cleanup_reference: Option<DateTime<Utc>>,
    pub(crate) last_cleanup_outcome: Option<Outcome>,
    pub(crate) last_backup_outcome: Option<Outcome>,
    pub(crate) cleanup_log_rows: i64,
}

/// Tables whose size retention bounds.
pub(crate) const BOUNDED_TABLES: [&str; 9] = [
    "entity_activity",
    "dvm_stats_rollups",
    "kind_stats_rollups",
    "time_window_stats",
    "dvms",
    "users",
    "kind_dvm_support",
    "seen_ids",
    "overflow",
];

impl Db {
    /// On-disk size (with indexes and TOAST) of every table of the namespace.
    pub(crate) async fn table_bytes(&self) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        )
        .bind(&self.namespace)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn table_rows(&self) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for t in BOUNDED_TABLES {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                    .fetch_one(&self.pool)
                    .await?;
            out.insert(t.to_owned(), n);
        }
        Ok(out)
    }

    pub(crate) async fn retention_figures(&self) -> Result<Figures> {
        let table_rows = self.table_rows().await?;
        let z: SizeRow = sqlx::query_as(
            "SELECT pg_total_relation_size('entity_activity') AS bytes,
               (SELECT count(*) FROM monthly_activity) AS months, (SELECT min(year_month) FROM monthly_activity) AS first,
               (SELECT max(year_month) FROM monthly_activity) AS last, (SELECT count(*) FROM cleanup_log) AS log_rows,
               (SELECT avg(is_active::int)::float8 FROM dvms) AS dvm_ratio,
               (SELECT avg(is_active::int)::float8 FROM users) AS user_ratio",
        )
        .fetch_one(&self.pool)
        .await?;
        let rollover = self
            .job_runs(Some(Job::MonthlyRollover), 1, None)
            .await?
            .into_iter()
            .next();
        let cleanup = self
            .job_runs(Some(Job::DailyCleanup), 1, None)
            .await?
            .into_iter()
            .next();
        let backup = self
            .job_runs(Some(Job::Backup), 1, None)
            .await?
            .into_iter()
            .next();
        Ok(Figures {
            entity_activity_rows: table_rows["entity_activity"],
            entity_activity_bytes: z.bytes,
            table_rows,
            dvms_active_ratio: z.dvm_ratio,
            users_active_ratio: z.user_ratio,
            monthly_activity_rows: z.months,
            first_month: z.first,
            last_month: z.last,
            last_rollover_ms: rollover.as_ref().and_then(JobRun::millis),
            last_rollover_month: rollover.and_then(|r| r.year_month),
            last_cleanup_ms: cleanup.as_ref().and_then(JobRun::millis),
            last_cleanup_reference: cleanup.as_ref().and_then(|c| c.reference_time),
            last_cleanup_outcome: cleanup.map(|c| c.outcome),
            last_backup_outcome: backup.map(|b| b.outcome),
            cleanup_log_rows: z.log_rows,
        })
    }
}
