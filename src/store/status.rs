//! Read-side queries: month rows, window stats on the processing clock, and
//! the status snapshot.

use super::Db;
use crate::error::Result;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;

pub use dvmtop_core::windows::WindowStats;

/// Window stats at processing clock `t` (SPEC §7: event time, never the
/// wall clock), folded in Rust from the `entity_activity` rows of the
/// days concerned, streamed one row at a time, and their `job_day_stats`
/// response-time histograms.
pub async fn windows(db: &Db, t: i64) -> Result<Vec<WindowStats>> {
    use futures_util::TryStreamExt;
    let (first, last) = dvmtop_core::windows::day_range(t);
    let mut w = dvmtop_core::windows::Windows::new(t);
    let mut rows = sqlx::query(
        "SELECT day, role, hour, entity, kind, requests, responses, feedback FROM entity_activity
         WHERE day >= $1 AND day <= $2",
    )
    .bind(first)
    .bind(last)
    .fetch(&db.pool);
    while let Some(row) = rows.try_next().await? {
        let (day, role, entries) = super::load::decode_row(&row)?;
        w.add_row(day, role, &entries);
    }
    drop(rows);
    for (day, scope, cells) in db.load_job_hist(first, last).await? {
        w.add_job_row(day, &scope, &cells);
    }
    Ok(w.finish())
}

/// The database side of `dvmtop status`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub current_month: Option<String>,
    pub(crate) current_day: Option<NaiveDate>,
    /// Processing clock (largest created_at processed), RFC 3339.
    pub(crate) clock: Option<String>,
    pub clock_unix: Option<i64>,
    pub overflow_size: i64,
    pub(crate) dvms_active: i64,
    pub(crate) dvms_inactive: i64,
    pub(crate) users_active: i64,
    pub(crate) users_inactive: i64,
    pub(crate) monthly_rows: i64,
    pub(crate) confirmed_month: Option<String>,
    /// processed, duplicate, ignored_prior_month, rejected:<reason>.
    pub counters: BTreeMap<String, i64>,
    pub totals: BTreeMap<String, i64>,
    pub dead_letters: i64,
    /// `pipeline_state.updated_at`: changes with every commit, day advance
    /// and confirmation, and is new after a `--fresh` wipe — what tells a
    /// reader that figures read at the same clock may differ.
    #[serde(skip)]
    pub(crate) state_version: DateTime<Utc>,
}

impl Db {
    /// processed, duplicate, ignored_prior_month, rejected:<reason>.
    pub(crate) async fn counters(&self) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM counters")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn snapshot(&self) -> Result<Snapshot> {
        let s = sqlx::query(
            "SELECT p.current_month, p.current_day, p.clock, p.confirmed_month, p.updated_at,
               (SELECT coalesce(cardinality(payloads), 0)::int8 FROM overflow) AS overflow_size,
               (SELECT count(*) FILTER (WHERE is_active) FROM dvms) AS dvms_active,
               (SELECT count(*) FILTER (WHERE NOT is_active) FROM dvms) AS dvms_inactive,
               (SELECT count(*) FILTER (WHERE is_active) FROM users) AS users_active,
               (SELECT count(*) FILTER (WHERE NOT is_active) FROM users) AS users_inactive,
               (SELECT count(*) FROM monthly_activity) AS monthly_rows,
               (SELECT count(*) FROM dead_letters) AS dead_letters,
               g.total_requests, g.total_responses, g.total_feedback, g.unique_dvms, g.unique_users, g.unique_kinds
             FROM pipeline_state p, global_stats_rollups g",
        )
        .fetch_one(&self.pool)
        .await?;
        let counters = self.counters().await?;
        let clock: Option<i64> = s.try_get("clock")?;
        let mut totals = BTreeMap::new();
        for k in [
            "total_requests",
            "total_responses",
            "total_feedback",
            "unique_dvms",
            "unique_users",
            "unique_kinds",
        ] {
            totals.insert(k.to_owned(), s.try_get::<i64, _>(k)?);
        }
        Ok(Snapshot {
            current_month: s.try_get("current_month")?,
            current_day: s.try_get("current_day")?,
            clock: clock
                .and_then(|c| DateTime::from_timestamp(c, 0))
                .map(|c| c.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            clock_unix: clock,
            overflow_size: s.try_get("overflow_size")?,
            dvms_active: s.try_get("dvms_active")?,
            dvms_inactive: s.try_get("dvms_inactive")?,
            users_active: s.try_get("users_active")?,
            users_inactive: s.try_get("users_inactive")?,
            monthly_rows: s.try_get("monthly_rows")?,
            confirmed_month: s.try_get("confirmed_month")?,
            counters,
            totals,
            dead_letters: s.try_get("dead_letters")?,
            state_version: s.try_get("updated_at")?,
        })
    }

    /// Stores the window stats at clock `t` as a `time_window_stats` snapshot.
    pub(crate) async fn snapshot_windows(&self, t: i64) -> Result<()> {
        let as_of = DateTime::from_timestamp(t, 0).unwrap_or_default();
        for w in windows(self, t).await? {
            sqlx::query(
                "INSERT INTO time_window_stats (as_of, window_name, requests, responses, feedback, unique_users,
                   unique_dvms, unique_kinds, popular_dvm, popular_kind, competitive_kind,
                   answered, median_response_s, p90_response_s)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (as_of, window_name) DO UPDATE SET requests = EXCLUDED.requests,
                   responses = EXCLUDED.responses, feedback = EXCLUDED.feedback, unique_users = EXCLUDED.unique_users,
                   unique_dvms = EXCLUDED.unique_dvms, unique_kinds = EXCLUDED.unique_kinds,
                   popular_dvm = EXCLUDED.popular_dvm, popular_kind = EXCLUDED.popular_kind,
                   competitive_kind = EXCLUDED.competitive_kind, answered = EXCLUDED.answered,
                   median_response_s = EXCLUDED.median_response_s, p90_response_s = EXCLUDED.p90_response_s",
            )
            .bind(as_of)
            .bind(w.window)
            .bind(w.requests)
            .bind(w.responses)
            .bind(w.feedback)
            .bind(w.unique_users)
            .bind(w.unique_dvms)
            .bind(w.unique_kinds)
            .bind(&w.popular_dvm)
            .bind(super::kind_column(w.popular_kind))
            .bind(super::kind_column(w.competitive_kind))
            .bind(w.answered)
            .bind(w.median_response_s)
            .bind(w.p90_response_s)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

impl Db {
    /// The overflow buffer by UTC day (it holds at most one batch).
    pub(crate) async fn overflow_by_day(&self) -> Result<Vec<(NaiveDate, i64)>> {
        Ok(
            sqlx::query_as(
                "SELECT d, count(*) FROM overflow, unnest(days) d GROUP BY d ORDER BY d",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }
}
