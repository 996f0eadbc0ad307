//! The daily cleanup (SPEC §6), carried out: what the policy
//! ([`dvmtop_core::retention`]) and the entity book decided, written in
//! bounded batches, each its own transaction, retried with backoff on
//! transient errors, and audited in `job_runs` whatever happens.

use super::{RetentionConfig, cutoffs};
use crate::error::Result;
use crate::store::{Db, JobRun};
use chrono::NaiveDate;
use dvmtop_core::entities::Lifecycle;
use dvmtop_core::keys::hex_of;
use dvmtop_core::time::midnight as at;
use dvmtop_core::{EntityRole, Job, Outcome, YearMonth};
use std::collections::BTreeMap;
use std::time::Duration;

/// Runs `f` until it succeeds, retrying transient errors with backoff.
async fn retry<T, F, Fut>(attempts: &mut i32, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        match f().await {
            Err(e) if e.is_transient() && *attempts < 5 => {
                *attempts += 1;
                tracing::warn!(error = %e, "cleanup statement failed; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
}

/// Repeats a bounded statement (`$1` cut-off, `$2` batch size) until it
/// affects fewer rows than a batch; each round is its own transaction.
async fn drain<T>(
    db: &Db,
    sql: &'static str,
    cutoff: T,
    limit: i64,
    attempts: &mut i32,
) -> Result<i64>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + Send
        + Clone
        + 'static,
{
    let mut total = 0;
    loop {
        let n = retry(attempts, || {
            let q = sqlx::query(sql).bind(cutoff.clone()).bind(limit);
            async move { Ok(q.execute(&db.pool).await?.rows_affected() as i64) }
        })
        .await?;
        total += n;
        if n < limit {
            return Ok(total);
        }
    }
}

/// Whole detail rows older than the cut-off (`$1` day, `$2` batch size).
const DETAIL: [(&str, &str); 4] = [
    (
        "entity_activity",
        "DELETE FROM entity_activity WHERE ctid IN (SELECT ctid FROM entity_activity WHERE day < $1 LIMIT $2)",
    ),
    (
        "dvm_stats_rollups",
        "DELETE FROM dvm_stats_rollups WHERE ctid IN (SELECT ctid FROM dvm_stats_rollups WHERE day < $1 LIMIT $2)",
    ),
    (
        "kind_stats_rollups",
        "DELETE FROM kind_stats_rollups WHERE ctid IN (SELECT ctid FROM kind_stats_rollups WHERE day < $1 LIMIT $2)",
    ),
    (
        "job_day_stats",
        "DELETE FROM job_day_stats WHERE ctid IN (SELECT ctid FROM job_day_stats WHERE day < $1 LIMIT $2)",
    ),
];

const WINDOW_SNAPSHOTS: &str = "DELETE FROM time_window_stats WHERE ctid IN
  (SELECT ctid FROM time_window_stats WHERE as_of < $1 LIMIT $2)";

/// Phase 1 (`$1` reference time = deactivation time, `$2` ids, `$3` the
/// inactive cut-off, a guard).
const DEACTIVATE_USERS: &str = "UPDATE users SET is_active = false, deactivated_at = $1
  WHERE id = ANY($2) AND is_active AND last_seen < $3";
const DEACTIVATE_DVMS: &str = "UPDATE dvms SET is_active = false, deactivated_at = $1
  WHERE id = ANY($2) AND is_active AND last_seen < $3";

/// Phase 2 (`$1` reference time, `$2` ids, `$3` the deletion cut-off, a
/// guard): each row is deleted into `cleanup_log` with what it did; a
/// DVM's `kind_dvm_support` rows go with it (counted first, then
/// cascaded). Returns (entities deleted, support rows).
const DELETE_USERS: &str = "
WITH gone AS (
  DELETE FROM users e WHERE e.id = ANY($2) AND NOT e.is_active AND e.last_seen < $3 RETURNING e.*),
logged AS (
  INSERT INTO cleanup_log (entity, entity_type, first_seen, last_seen, deactivated_at, deleted_at, details)
  SELECT id, 'user', first_seen, last_seen, deactivated_at, $1, jsonb_build_object('requests', requests)
  FROM gone RETURNING 1)
SELECT (SELECT count(*) FROM logged), 0::int8";
const DELETE_DVMS: &str = "
WITH gone AS (
  DELETE FROM dvms e WHERE e.id = ANY($2) AND NOT e.is_active AND e.last_seen < $3 RETURNING e.*),
logged AS (
  INSERT INTO cleanup_log (entity, entity_type, first_seen, last_seen, deactivated_at, deleted_at, details)
  SELECT id, 'dvm', first_seen, last_seen, deactivated_at, $1,
    jsonb_build_object('responses', responses, 'feedback', feedback, 'kinds',
      (SELECT coalesce(jsonb_agg(k.kind ORDER BY k.kind), '[]') FROM kind_dvm_support k WHERE k.dvm = gone.id))
  FROM gone RETURNING 1)
SELECT (SELECT count(*) FROM logged), (SELECT count(*) FROM kind_dvm_support k WHERE k.dvm = ANY($2))";

/// `cleanup_log`: by age (`$1` cut-off), then by size (`$1` rows kept).
const LOG_BY_AGE: &str = "DELETE FROM cleanup_log WHERE id IN
  (SELECT id FROM cleanup_log WHERE deleted_at < $1 LIMIT $2)";
const LOG_BY_SIZE: &str = "DELETE FROM cleanup_log WHERE id IN
  (SELECT id FROM cleanup_log ORDER BY id DESC OFFSET $1 LIMIT $2)";

/// The daily cleanup with reference day `r`; `open` is the month not yet
/// rolled up, `lifecycle` what the entity book decided for `r` (see
/// [`dvmtop_core::entities::Entities::lifecycle`]). Audited in `job_runs`
/// whatever happens.
pub(crate) async fn daily_cleanup(
    db: &Db,
    r: NaiveDate,
    open: Option<YearMonth>,
    c: &RetentionConfig,
    lifecycle: &Lifecycle,
) -> Result<JobRun> {
    let id = db.job_started(Job::DailyCleanup, Some(at(r)), None).await?;
    let mut attempts = 1;
    let mut rows = BTreeMap::new();
    let result = run_cleanup(db, r, open, c, lifecycle, &mut rows, &mut attempts).await;
    match result {
        Ok(()) => {
            db.job_finished(id, &rows, Outcome::Ok, attempts, None)
                .await
        }
        Err(e) => {
            let _ = db
                .job_finished(id, &rows, Outcome::Failed, attempts, Some(&e.to_string()))
                .await;
            Err(e)
        }
    }
}

async fn run_cleanup(
    db: &Db,
    r: NaiveDate,
    open: Option<YearMonth>,
    c: &RetentionConfig,
    lifecycle: &Lifecycle,
    rows: &mut BTreeMap<String, i64>,
    attempts: &mut i32,
) -> Result<()> {
    let cut = cutoffs(r, open, c);
    let limit = i64::from(c.batch_rows.max(1));
    let reference = at(r);
    for (table, sql) in DETAIL {
        let n = drain(db, sql, cut.detail, limit, attempts).await?;
        rows.insert(table.into(), n);
    }
    let n = drain(db, WINDOW_SNAPSHOTS, at(cut.detail), limit, attempts).await?;
    rows.insert("time_window_stats".into(), n);

    for (role, sql) in [
        (EntityRole::User, DEACTIVATE_USERS),
        (EntityRole::Dvm, DEACTIVATE_DVMS),
    ] {
        let mut total = 0;
        for chunk in lifecycle.deactivate[role as usize].chunks(limit as usize) {
            let ids: Vec<String> = chunk.iter().map(hex_of).collect();
            total += retry(attempts, || {
                let q = sqlx::query(sql)
                    .bind(reference)
                    .bind(ids.clone())
                    .bind(cut.inactive);
                async move { Ok(q.execute(&db.pool).await?.rows_affected() as i64) }
            })
            .await?;
        }
        rows.insert(format!("{}_deactivated", role.table()), total);
    }

    for (role, sql) in [
        (EntityRole::User, DELETE_USERS),
        (EntityRole::Dvm, DELETE_DVMS),
    ] {
        let (mut deleted, mut support_rows) = (0i64, 0i64);
        for chunk in lifecycle.delete[role as usize].chunks(limit as usize) {
            let ids: Vec<String> = chunk.iter().map(hex_of).collect();
            let (n, s): (i64, i64) = retry(attempts, || {
                let q = sqlx::query_as(sql)
                    .bind(reference)
                    .bind(ids.clone())
                    .bind(cut.delete);
                async move { Ok(q.fetch_one(&db.pool).await?) }
            })
            .await?;
            deleted += n;
            support_rows += s;
        }
        rows.insert(format!("{}_deleted", role.table()), deleted);
        if role == EntityRole::Dvm {
            rows.insert("kind_dvm_support".into(), support_rows);
        }
    }

    let n = drain(db, LOG_BY_AGE, cut.cleanup_log, limit, attempts).await?;
    let max_rows = i64::from(c.cleanup_log_max_rows);
    let over = drain(db, LOG_BY_SIZE, max_rows, limit, attempts).await?;
    rows.insert("cleanup_log".into(), n + over);
    Ok(())
}
