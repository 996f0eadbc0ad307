//! Retention (SPEC §6) and backups (SPEC §8), always on the queue's clock.
//!
//! The daily cleanup runs when the processing day advances, with reference
//! time R = start of the new day: detail rows older than the grace period go
//! (never those of a month not yet rolled up), entities silent for 30 days
//! are deactivated and for 60 days deleted into `cleanup_log`. Every
//! statement touches a bounded batch in its own transaction and is retried
//! on transient errors; every run is audited in `job_runs`.

use crate::error::{Error, Result};
use crate::store::{Db, MonthRow};
use chrono::{DateTime, NaiveDate, Utc};
use dvmtop_core::EntityRole;
use dvmtop_core::YearMonth;
use dvmtop_core::entities::Lifecycle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use dvmtop_core::retention::{Cutoffs, RetentionConfig, cutoffs};
use dvmtop_core::time::midnight as at;

/// One audited job run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CleanupRun {
    pub id: i64,
    pub job: String,
    pub reference_time: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows: BTreeMap<String, i64>,
    pub outcome: String,
    pub attempts: i32,
    pub detail: Option<String>,
}

impl CleanupRun {
    pub fn millis(&self) -> Option<i64> {
        self.finished_at
            .map(|f| (f - self.started_at).num_milliseconds())
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    job: String,
    reference_time: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    rows_affected: sqlx::types::Json<BTreeMap<String, i64>>,
    outcome: String,
    attempts: i32,
    detail: Option<String>,
}

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

impl Db {
    pub(crate) async fn job_started(
        &self,
        job: &str,
        reference: Option<DateTime<Utc>>,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar("INSERT INTO job_runs (job, reference_time, outcome) VALUES ($1, $2, 'running') RETURNING id")
            .bind(job)
            .bind(reference)
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn job_finished(
        &self,
        id: i64,
        rows: &BTreeMap<String, i64>,
        outcome: &str,
        attempts: i32,
        detail: Option<&str>,
    ) -> Result<CleanupRun> {
        sqlx::query(
            "UPDATE job_runs SET finished_at = clock_timestamp(), rows_affected = $2, outcome = $3, attempts = $4, detail = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(sqlx::types::Json(rows))
        .bind(outcome)
        .bind(attempts)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(self
            .job_runs(None, 1, Some(id))
            .await?
            .into_iter()
            .next()
            .expect("the run just written"))
    }

    /// Runs interrupted by a crash are marked so, not left "running".
    pub async fn mark_interrupted_jobs(&self) -> Result<u64> {
        Ok(sqlx::query("UPDATE job_runs SET outcome = 'interrupted', finished_at = now() WHERE outcome = 'running'")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The newest audited runs (of one job, or all), newest first.
    pub async fn job_runs(
        &self,
        job: Option<&str>,
        limit: i64,
        id: Option<i64>,
    ) -> Result<Vec<CleanupRun>> {
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT id, job, reference_time, started_at, finished_at, rows_affected, outcome, attempts, detail
             FROM job_runs WHERE ($1::text IS NULL OR job = $1) AND ($3::int8 IS NULL OR id = $3)
             ORDER BY id DESC LIMIT $2",
        )
        .bind(job)
        .bind(limit)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| CleanupRun {
                id: r.id,
                job: r.job,
                reference_time: r.reference_time,
                started_at: r.started_at,
                finished_at: r.finished_at,
                rows: r.rows_affected.0,
                outcome: r.outcome,
                attempts: r.attempts,
                detail: r.detail,
            })
            .collect())
    }

    /// Records a committed rollover in the audit.
    pub async fn audit_rollover(&self, m: YearMonth, started: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_runs (job, reference_time, started_at, finished_at, rows_affected, outcome, detail)
             VALUES ('monthly_rollover', $1, $4, clock_timestamp(), $2, 'ok', $3)",
        )
        .bind(at(m.end()))
        .bind(sqlx::types::Json(BTreeMap::from([("monthly_activity".to_owned(), 1i64)])))
        .bind(format!("rolled up {m}"))
        .bind(started)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Phase 2 for a list of ids (`$1` reference time, `$2` ids, `$3` the
/// deletion cut-off, a guard): each row is deleted into `cleanup_log` with
/// what it did; `kind_dvm_support` rows go with their DVM (counted first,
/// then cascaded).
const DELETE_ENTITY: &str = "
WITH gone AS (
  DELETE FROM {t} e WHERE e.id = ANY($2) AND NOT e.is_active AND e.last_seen < $3 RETURNING e.*),
logged AS (
  INSERT INTO cleanup_log (entity, entity_type, first_seen, last_seen, deactivated_at, deleted_at, details)
  SELECT id, '{kind}', first_seen, last_seen, deactivated_at, $1, {details} FROM gone
  RETURNING 1)
SELECT (SELECT count(*) FROM logged), {support}";

/// The daily cleanup with reference day `r`; `open` is the month not yet
/// rolled up, `lifecycle` what the entity book decided for `r` (see
/// [`dvmtop_core::entities::Entities::lifecycle`]). Audited in `job_runs`
/// whatever happens.
pub async fn daily_cleanup(
    db: &Db,
    r: NaiveDate,
    open: Option<YearMonth>,
    c: &RetentionConfig,
    lifecycle: &Lifecycle,
) -> Result<CleanupRun> {
    let reference = at(r);
    let id = db.job_started("daily_cleanup", Some(reference)).await?;
    let mut attempts = 1;
    let mut rows = BTreeMap::new();
    let result = run_cleanup(db, r, open, c, lifecycle, &mut rows, &mut attempts).await;
    match result {
        Ok(()) => db.job_finished(id, &rows, "ok", attempts, None).await,
        Err(e) => {
            let _ = db
                .job_finished(id, &rows, "failed", attempts, Some(&e.to_string()))
                .await;
            Err(e)
        }
    }
}

/// The entity tables by role.
fn table_of(role: EntityRole) -> &'static str {
    match role {
        EntityRole::User => "users",
        EntityRole::Dvm => "dvms",
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
    // Detail and window stats: whole rows older than the cut-off.
    for (table, sql) in [
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
    ] {
        let n = drain(db, sql, cut.detail, limit, attempts).await?;
        rows.insert(table.into(), n);
    }
    let n = drain(db, "DELETE FROM time_window_stats WHERE ctid IN (SELECT ctid FROM time_window_stats WHERE as_of < $1 LIMIT $2)", at(cut.detail), limit, attempts).await?;
    rows.insert("time_window_stats".into(), n);

    // Phase 1: deactivate. The reference time is the deactivation time.
    for role in EntityRole::BOTH {
        let table = table_of(role);
        let sql = format!(
            "UPDATE {table} SET is_active = false, deactivated_at = $1
             WHERE id = ANY($2) AND is_active AND last_seen < $3"
        );
        let mut total = 0;
        for chunk in lifecycle.deactivate[role as usize].chunks(limit as usize) {
            let ids: Vec<String> = chunk.iter().map(dvmtop_core::keys::hex_of).collect();
            total += retry(attempts, || {
                let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(reference)
                    .bind(ids.clone())
                    .bind(cut.inactive);
                async move { Ok(q.execute(&db.pool).await?.rows_affected() as i64) }
            })
            .await?;
        }
        rows.insert(format!("{table}_deactivated"), total);
    }

    // Phase 2: delete into cleanup_log (kind_dvm_support goes with its DVM).
    for (role, kind, details, support) in [
        (EntityRole::User, "user", "jsonb_build_object('requests', requests)", "0::int8"),
        (
            EntityRole::Dvm,
            "dvm",
            "jsonb_build_object('responses', responses, 'feedback', feedback, 'kinds',
               (SELECT coalesce(jsonb_agg(k.kind ORDER BY k.kind), '[]') FROM kind_dvm_support k WHERE k.dvm = gone.id))",
            "(SELECT count(*) FROM kind_dvm_support k WHERE k.dvm = ANY($2))",
        ),
    ] {
        let table = table_of(role);
        let sql = DELETE_ENTITY
            .replace("{t}", table)
            .replace("{kind}", kind)
            .replace("{details}", details)
            .replace("{support}", support);
        let (mut deleted, mut support_rows) = (0i64, 0i64);
        for chunk in lifecycle.delete[role as usize].chunks(limit as usize) {
            let ids: Vec<String> = chunk.iter().map(dvmtop_core::keys::hex_of).collect();
            let (n, s): (i64, i64) = retry(attempts, || {
                let q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(reference)
                    .bind(ids.clone())
                    .bind(cut.delete);
                async move { Ok(q.fetch_one(&db.pool).await?) }
            })
            .await?;
            deleted += n;
            support_rows += s;
        }
        rows.insert(format!("{table}_deleted"), deleted);
        if role == EntityRole::Dvm {
            rows.insert("kind_dvm_support".into(), support_rows);
        }
    }

    // cleanup_log: by age, then by size.
    let n = drain(db, "DELETE FROM cleanup_log WHERE id IN (SELECT id FROM cleanup_log WHERE deleted_at < $1 LIMIT $2)", cut.cleanup_log, limit, attempts).await?;
    let max_rows = i64::from(c.cleanup_log_max_rows);
    let over = drain(db, "DELETE FROM cleanup_log WHERE id IN (SELECT id FROM cleanup_log ORDER BY id DESC OFFSET $1 LIMIT $2)", max_rows, limit, attempts).await?;
    rows.insert("cleanup_log".into(), n + over);
    Ok(())
}

/// Name of the backup written after the rollover of `m`.
pub fn backup_name(m: YearMonth) -> String {
    format!("monthly_activity-{m}.json")
}

/// The backup file: every `monthly_activity` row at the time of writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    pub namespace: String,
    pub rolled_up: String,
    pub written_at: DateTime<Utc>,
    pub rows: Vec<MonthRow>,
}

/// Writes all `monthly_activity` rows atomically (temp file, fsync,
/// rename) into `dir`, named after the month just rolled up.
pub async fn write_backup(db: &Db, dir: &Path, m: YearMonth) -> Result<PathBuf> {
    let rows = db.monthly_rows().await?;
    let backup = Backup {
        format: "dvmtop-monthly-activity-v1".into(),
        namespace: db.namespace.clone(),
        rolled_up: m.to_string(),
        written_at: Utc::now(),
        rows,
    };
    let dir = dir.to_owned();
    let path = dir.join(backup_name(m));
    let text = serde_json::to_vec_pretty(&backup).map_err(|e| Error::Config(e.to_string()))?;
    let target = path.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("backup")
        ));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(|e| Error::Config(format!("backup task: {e}")))?
    .map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// Puts a backup's rows back. Idempotent: restoring twice changes nothing.
pub async fn restore(db: &Db, file: &Path) -> Result<Restored> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
        path: file.display().to_string(),
        source,
    })?;
    let backup: Backup = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{} is not a dvmtop backup: {e}", file.display())))?;
    let mut out = Restored::default();
    let existing: BTreeMap<YearMonth, MonthRow> = db
        .monthly_rows()
        .await?
        .into_iter()
        .map(|r| (r.year_month, r))
        .collect();
    let mut tx = db.pool.begin().await?;
    for row in &backup.rows {
        match existing.get(&row.year_month) {
            Some(old)
                if MonthRow {
                    created_at: row.created_at,
                    ..old.clone()
                } == *row =>
            {
                out.unchanged += 1;
                continue;
            }
            Some(_) => out.updated += 1,
            None => out.inserted += 1,
        }
        crate::store::upsert_month(&mut tx, row).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// Monitoring figures (the FAQ's list) for `dvmtop status`.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub entity_activity_rows: i64,
    pub entity_activity_bytes: i64,
    /// Rows of every bounded table, for growth checks.
    pub table_rows: BTreeMap<String, i64>,
    pub dvms_active_ratio: Option<f64>,
    pub users_active_ratio: Option<f64>,
    pub monthly_activity_rows: i64,
    pub first_month: Option<String>,
    pub last_month: Option<String>,
    pub last_rollover_ms: Option<i64>,
    pub last_rollover_month: Option<String>,
    pub last_cleanup_ms: Option<i64>,
    pub last_cleanup_reference: Option<DateTime<Utc>>,
    pub last_cleanup_outcome: Option<String>,
    pub last_backup_outcome: Option<String>,
    pub cleanup_log_rows: i64,
}

/// Tables whose size retention bounds.
pub const BOUNDED_TABLES: [&str; 9] = [
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
    pub async fn table_bytes(&self) -> Result<BTreeMap<String, i64>> {
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

    pub async fn retention_figures(&self) -> Result<Figures> {
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
            .job_runs(Some("monthly_rollover"), 1, None)
            .await?
            .into_iter()
            .next();
        let cleanup = self
            .job_runs(Some("daily_cleanup"), 1, None)
            .await?
            .into_iter()
            .next();
        let backup = self
            .job_runs(Some("backup"), 1, None)
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
            last_rollover_ms: rollover.as_ref().and_then(CleanupRun::millis),
            last_rollover_month: rollover.and_then(|r| {
                r.detail
                    .map(|d| d.trim_start_matches("rolled up ").to_owned())
            }),
            last_cleanup_ms: cleanup.as_ref().and_then(CleanupRun::millis),
            last_cleanup_reference: cleanup.as_ref().and_then(|c| c.reference_time),
            last_cleanup_outcome: cleanup.map(|c| c.outcome),
            last_backup_outcome: backup.map(|b| b.outcome),
            cleanup_log_rows: z.log_rows,
        })
    }
}
