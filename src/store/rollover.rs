//! `monthly_activity`: writing and reading rows, and a month's figures from
//! its detail rows (the rollover dialog's preview; the processor's own
//! rows come from [`dvmtop_core::month::MonthAcc`] and must agree with it).

use super::{Db, MonthRow};
use crate::error::Result;
use dvmtop_core::YearMonth;
use sqlx::{Postgres, Row};

/// The month's figures from its detail rows; `$1`/`$2` bound the month's
/// days.
const SUMMARY: &str = "
WITH k AS (
  SELECT kind, sum(requests) AS r, sum(responses) AS s FROM kind_stats_rollups
  WHERE day >= $1 AND day < $2 AND kind BETWEEN 5000 AND 5999 GROUP BY kind),
d AS (
  SELECT dvm, sum(responses) AS s, sum(feedback) AS f FROM dvm_stats_rollups
  WHERE day >= $1 AND day < $2 GROUP BY dvm)
SELECT
  (SELECT coalesce(sum(r), 0) FROM k)::int8 AS total_requests,
  (SELECT coalesce(sum(s), 0) FROM d)::int8 AS total_responses,
  (SELECT coalesce(sum(f), 0) FROM d)::int8 AS total_feedback,
  (SELECT count(*) FROM d WHERE s + f > 0)::int8 AS unique_dvms,
  (SELECT count(DISTINCT e) FROM entity_activity a, unnest(a.entity) e
     WHERE a.role = 0 AND a.day >= $1 AND a.day < $2)::int8 AS unique_users,
  (SELECT count(*) FROM k WHERE r + s > 0)::int8 AS unique_kinds,
  (SELECT dvm FROM d WHERE s > 0 ORDER BY s DESC, dvm LIMIT 1) AS most_popular_dvm,
  (SELECT kind FROM k WHERE r > 0 ORDER BY r DESC, kind LIMIT 1) AS most_popular_kind,
  (SELECT coalesce(jsonb_object_agg(dvm, jsonb_build_object('responses', s, 'feedback', f)), '{}') FROM d) AS dvm_activity,
  (SELECT coalesce(jsonb_object_agg(kind::text, jsonb_build_object('requests', r, 'responses', s)), '{}') FROM k) AS kind_activity";

fn row_of(m: YearMonth, r: &sqlx::postgres::PgRow) -> Result<MonthRow> {
    Ok(MonthRow {
        year_month: m,
        total_requests: r.try_get("total_requests")?,
        total_responses: r.try_get("total_responses")?,
        total_feedback: r.try_get("total_feedback")?,
        unique_dvms: r.try_get("unique_dvms")?,
        unique_users: r.try_get("unique_users")?,
        unique_kinds: r.try_get("unique_kinds")?,
        most_popular_dvm: r.try_get("most_popular_dvm")?,
        most_popular_kind: r
            .try_get::<Option<i32>, _>("most_popular_kind")?
            .map(|k| dvmtop_core::JobKind(k as u32)),
        jobs_answered: r.try_get("jobs_answered").unwrap_or(0),
        median_response_s: r.try_get("median_response_s").unwrap_or(None),
        p90_response_s: r.try_get("p90_response_s").unwrap_or(None),
        dvm_activity: r.try_get("dvm_activity")?,
        kind_activity: r.try_get("kind_activity")?,
        created_at: r.try_get("created_at").ok(),
    })
}

/// What the month's row would be if it rolled over now, from its detail
/// rows — event counts only: the job analytics (issue 14) come from the
/// processor's matcher and are left at zero / null here.
pub async fn month_summary<'e>(
    exec: impl sqlx::Executor<'e, Database = Postgres>,
    m: YearMonth,
) -> Result<MonthRow> {
    let r = sqlx::query(SUMMARY)
        .bind(m.start())
        .bind(m.end())
        .fetch_one(exec)
        .await?;
    row_of(m, &r)
}

/// Writes one `monthly_activity` row (insert or replace). `created_at`
/// comes from the row when it has one (a restore), else stays or is now.
pub async fn upsert_month(
    conn: &mut sqlx::PgConnection,
    row: &MonthRow,
) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO monthly_activity (year_month, total_requests, total_responses, total_feedback,
           unique_dvms, unique_users, unique_kinds, most_popular_dvm, most_popular_kind, dvm_activity, kind_activity,
           created_at, jobs_answered, median_response_s, p90_response_s)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, coalesce($12, now()), $13, $14, $15)
         ON CONFLICT (year_month) DO UPDATE SET total_requests = EXCLUDED.total_requests,
           total_responses = EXCLUDED.total_responses, total_feedback = EXCLUDED.total_feedback,
           unique_dvms = EXCLUDED.unique_dvms, unique_users = EXCLUDED.unique_users,
           unique_kinds = EXCLUDED.unique_kinds, most_popular_dvm = EXCLUDED.most_popular_dvm,
           most_popular_kind = EXCLUDED.most_popular_kind, dvm_activity = EXCLUDED.dvm_activity,
           kind_activity = EXCLUDED.kind_activity, jobs_answered = EXCLUDED.jobs_answered,
           median_response_s = EXCLUDED.median_response_s, p90_response_s = EXCLUDED.p90_response_s,
           created_at = coalesce($12, monthly_activity.created_at)
         RETURNING created_at",
    )
    .bind(row.year_month.to_string())
    .bind(row.total_requests)
    .bind(row.total_responses)
    .bind(row.total_feedback)
    .bind(row.unique_dvms)
    .bind(row.unique_users)
    .bind(row.unique_kinds)
    .bind(&row.most_popular_dvm)
    .bind(super::kind_column(row.most_popular_kind))
    .bind(&row.dvm_activity)
    .bind(&row.kind_activity)
    .bind(row.created_at)
    .bind(row.jobs_answered)
    .bind(row.median_response_s)
    .bind(row.p90_response_s)
    .fetch_one(conn)
    .await?)
}

/// One `monthly_activity` row, read inside a transaction.
pub async fn monthly_row_in(
    conn: &mut sqlx::PgConnection,
    m: YearMonth,
) -> Result<Option<MonthRow>> {
    let r = sqlx::query("SELECT * FROM monthly_activity WHERE year_month = $1")
        .bind(m.to_string())
        .fetch_optional(conn)
        .await?;
    r.map(|r| row_of(m, &r)).transpose()
}

impl Db {
    pub async fn monthly_row(&self, m: YearMonth) -> Result<Option<MonthRow>> {
        let r = sqlx::query("SELECT * FROM monthly_activity WHERE year_month = $1")
            .bind(m.to_string())
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| row_of(m, &r)).transpose()
    }

    /// Every `monthly_activity` row, oldest first.
    pub async fn monthly_rows(&self) -> Result<Vec<MonthRow>> {
        let rows = sqlx::query("SELECT * FROM monthly_activity ORDER BY year_month")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let ym: String = r.try_get("year_month")?;
                let m = ym
                    .parse()
                    .map_err(|e: String| crate::error::Error::Namespace(e))?;
                row_of(m, r)
            })
            .collect()
    }
}
