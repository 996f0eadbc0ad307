//! Read-side queries of the TUI's DVM and kind views. A rolling window
//! folds the hourly cells of `entity_activity` (the same cells as the
//! overview's window stats, so the figures agree); a closed month reads
//! `monthly_activity`, which outlives the detail rows. Only the arrays a
//! query needs are unnested: the users' public keys (the bulk of a day
//! row) are never read.

use super::Db;
use crate::error::Result;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike, Utc};
use dvmtop_core::jobs::Scope;
use sqlx::Row;

/// `[start, end)` and the days they touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

impl Range {
    /// The first hour of `first_day` inside the range. The cells are
    /// filtered by day and hour as integers: computing each cell's
    /// timestamp cost ~10× the whole query.
    pub(crate) fn first_hour(&self) -> i16 {
        if self.start.date() == self.first_day {
            self.start.hour() as i16
        } else {
            0
        }
    }

    /// Whether the range is whole days (every hour of its days).
    pub(crate) fn whole_days(&self) -> bool {
        self.first_hour() == 0 && self.last_hour_end() == 24
    }

    /// The hours of `last_day` inside the range end before this one.
    pub(crate) fn last_hour_end(&self) -> i16 {
        if self.end.date() == self.last_day {
            self.end.hour() as i16
        } else {
            24
        }
    }
}

/// Job figures of a DVM or kind over a period (README "Job analytics"):
/// requests answered, median and p90 response time in seconds. Exact for
/// a closed month (`monthly_activity`), within 1 % for a rolling window
/// (`job_day_stats`); a closed month keeps no p90 per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobFigures {
    pub answered: i64,
    pub median_s: Option<i64>,
    pub p90_s: Option<i64>,
}

/// One DVM of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct DvmRow {
    pub id: String,
    /// From its newest NIP-89 announcement.
    pub name: Option<String>,
    pub responses: i64,
    pub feedback: i64,
    /// Request kinds it answered or sent feedback for (for a closed month: the kinds it served
    /// at some time overlapping the month, as `monthly_activity` keeps no
    /// kinds per DVM).
    pub kinds: Vec<i32>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// `None`: no longer in `dvms` (deleted by retention).
    pub active: Option<bool>,
    pub jobs: JobFigures,
}

/// One request kind of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct KindRow {
    pub kind: i32,
    pub requests: i64,
    pub responses: i64,
    /// Distinct DVMs that answered it.
    pub dvms: i64,
    /// Most responses (ties: smallest id); unknown for a closed month.
    pub top_dvm: Option<String>,
    pub top_dvm_name: Option<String>,
    pub jobs: JobFigures,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: Option<String>,
    pub(crate) about: Option<String>,
    pub(crate) kinds: Vec<i32>,
    pub(crate) announced_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub(crate) first_seen: DateTime<Utc>,
    pub(crate) last_seen: DateTime<Utc>,
    pub active: bool,
    pub(crate) deactivated_at: Option<DateTime<Utc>>,
}

/// One DVM's page.
#[derive(Debug, Clone, PartialEq)]
pub struct DvmDetail {
    pub(crate) id: String,
    pub profile: Option<Profile>,
    pub lifecycle: Option<Lifecycle>,
    /// Every kind it ever answered: (kind, first, last).
    pub kinds: Vec<(i32, DateTime<Utc>, DateTime<Utc>)>,
    /// Responses per day over the period (days without any: absent).
    pub per_day: Vec<(NaiveDate, i64)>,
    /// Its rows of the monthly history: (month, responses, feedback).
    pub months: Vec<(String, i64, i64)>,
    /// Its job figures over the period.
    pub jobs: JobFigures,
    /// Its feedback over the period's days by `status` tag, in
    /// [`dvmtop_core::jobs::FeedbackStatus`] order.
    pub feedback_status: [i64; 5],
}

/// One kind's page.
#[derive(Debug, Clone, PartialEq)]
pub struct KindDetail {
    pub(crate) kind: i32,
    /// The DVMs that answered it in the period, most responses first
    /// (id, name, responses; responses are unknown — -1 — for a closed month).
    pub dvms: Vec<(String, Option<String>, i64)>,
    /// (day, requests, responses).
    pub per_day: Vec<(NaiveDate, i64, i64)>,
    /// The kind's job figures over the period.
    pub jobs: JobFigures,
}

/// Per-DVM cells of a rolling window.
const DVMS_WINDOW: &str = "
WITH c AS (
  SELECT u.entity, sum(u.responses)::int8 AS responses, sum(u.feedback)::int8 AS feedback,
         array_agg(DISTINCT u.kind ORDER BY u.kind)
           FILTER (WHERE u.responses + u.feedback > 0 AND u.kind BETWEEN 5000 AND 5999) AS kinds
  FROM entity_activity a,
       unnest(a.hour, a.entity, a.kind, a.responses, a.feedback) AS u(hour, entity, kind, responses, feedback)
  WHERE a.role = 1 AND a.day >= $1 AND a.day <= $2
    AND (a.day > $1 OR u.hour >= $3) AND (a.day < $2 OR u.hour < $4)
  GROUP BY u.entity),
h AS (SELECT encode(entity, 'hex') AS id, responses, feedback, kinds FROM c)
SELECT h.id, p.name, h.responses, h.feedback, coalesce(h.kinds, '{}') AS kinds,
       d.first_seen, d.last_seen, d.is_active
FROM h LEFT JOIN dvms d ON d.id = h.id LEFT JOIN dvm_profiles p ON p.id = h.id";

/// A window of whole days (7 d, 30 d: they start at midnight and end at
/// the clock) from the daily rollups; the kinds a DVM served in it are the
/// `kind_dvm_support` spans that reach into it (no event is later than the
/// clock). Same figures as folding the hourly cells, a tenth of the time.
const DVMS_DAYS: &str = "
WITH d AS (
  SELECT dvm, sum(responses)::int8 AS responses, sum(feedback)::int8 AS feedback
  FROM dvm_stats_rollups WHERE day >= $1 AND day <= $2
  GROUP BY dvm HAVING sum(responses + feedback) > 0)
SELECT d.dvm AS id, p.name, d.responses, d.feedback,
       coalesce((SELECT array_agg(s.kind ORDER BY s.kind) FROM kind_dvm_support s
                 WHERE s.dvm = d.dvm AND s.last_seen >= $3 AND s.kind BETWEEN 5000 AND 5999), '{}') AS kinds,
       x.first_seen, x.last_seen, x.is_active
FROM d LEFT JOIN dvms x ON x.id = d.dvm LEFT JOIN dvm_profiles p ON p.id = d.dvm";

const DVMS_MONTH: &str = "
SELECT e.key AS id, p.name, coalesce((e.value->>'responses')::int8, 0) AS responses,
       coalesce((e.value->>'feedback')::int8, 0) AS feedback,
       coalesce((e.value->>'answered')::int8, 0) AS answered,
       (e.value->>'median_response_s')::int8 AS median_s, (e.value->>'p90_response_s')::int8 AS p90_s,
       coalesce((SELECT array_agg(s.kind ORDER BY s.kind) FROM kind_dvm_support s
                 WHERE s.dvm = e.key AND s.first_seen < $2 AND s.last_seen >= $1), '{}') AS kinds,
       d.first_seen, d.last_seen, d.is_active
FROM monthly_activity m, jsonb_each(m.dvm_activity) e
LEFT JOIN dvms d ON d.id = e.key LEFT JOIN dvm_profiles p ON p.id = e.key
WHERE m.year_month = $3";

/// A DVM's job figures and feedback by status in a closed month.
const DVM_MONTH_JOBS: &str = "
SELECT coalesce((a->>'answered')::int8, 0) AS answered, (a->>'median_response_s')::int8 AS median_s,
       (a->>'p90_response_s')::int8 AS p90_s,
       coalesce((a->'feedback_status'->>'payment-required')::int8, 0) AS fb0,
       coalesce((a->'feedback_status'->>'processing')::int8, 0) AS fb1,
       coalesce((a->'feedback_status'->>'error')::int8, 0) AS fb2,
       coalesce((a->'feedback_status'->>'success')::int8, 0) AS fb3,
       coalesce((a->'feedback_status'->>'partial')::int8, 0) AS fb4
FROM (SELECT dvm_activity->$1 AS a FROM monthly_activity WHERE year_month = $2) m
WHERE a IS NOT NULL";

/// A request kind's job figures in a closed month (no p90 per kind).
const KIND_MONTH_JOBS: &str = "
SELECT coalesce((a->>'answered')::int8, 0) AS answered, (a->>'median_response_s')::int8 AS median_s,
       NULL::int8 AS p90_s
FROM (SELECT kind_activity->$1 AS a FROM monthly_activity WHERE year_month = $2) m
WHERE a IS NOT NULL";

const KINDS_WINDOW: &str = "
WITH r AS (
  SELECT u.kind, sum(u.requests)::int8 AS req
  FROM entity_activity a, unnest(a.hour, a.kind, a.requests) AS u(hour, kind, requests)
  WHERE a.role = 0 AND a.day >= $1 AND a.day <= $2
    AND (a.day > $1 OR u.hour >= $3) AND (a.day < $2 OR u.hour < $4)
  GROUP BY u.kind),
d AS (
  SELECT u.kind, u.entity, sum(u.responses)::int8 AS s
  FROM entity_activity a,
       unnest(a.hour, a.entity, a.kind, a.responses) AS u(hour, entity, kind, responses)
  WHERE a.role = 1 AND a.day >= $1 AND a.day <= $2
    AND (a.day > $1 OR u.hour >= $3) AND (a.day < $2 OR u.hour < $4)
    AND u.responses > 0
  GROUP BY u.kind, u.entity),
k AS (SELECT kind, sum(s)::int8 AS s, count(*)::int8 AS n FROM d GROUP BY kind),
top AS (SELECT DISTINCT ON (kind) kind, encode(entity, 'hex') AS dvm FROM d
        ORDER BY kind, s DESC, encode(entity, 'hex'))
SELECT coalesce(r.kind, k.kind) AS kind, coalesce(r.req, 0) AS requests, coalesce(k.s, 0) AS responses,
       coalesce(k.n, 0) AS dvms, top.dvm AS top_dvm, p.name AS top_dvm_name
FROM r FULL JOIN k ON k.kind = r.kind
LEFT JOIN top ON top.kind = coalesce(r.kind, k.kind)
LEFT JOIN dvm_profiles p ON p.id = top.dvm
WHERE coalesce(r.kind, k.kind) BETWEEN 5000 AND 5999";

const KINDS_MONTH: &str = "
SELECT e.key::int4 AS kind, coalesce((e.value->>'requests')::int8, 0) AS requests,
       coalesce((e.value->>'responses')::int8, 0) AS responses,
       coalesce((e.value->>'answered')::int8, 0) AS answered,
       (e.value->>'median_response_s')::int8 AS median_s, NULL::int8 AS p90_s,
       (SELECT count(*) FROM kind_dvm_support s
         WHERE s.kind = e.key::int4 AND s.first_seen < $2 AND s.last_seen >= $1)::int8 AS dvms,
       NULL::text AS top_dvm, NULL::text AS top_dvm_name
FROM monthly_activity m, jsonb_each(m.kind_activity) e
WHERE m.year_month = $3 AND e.key ~ '^[0-9]+$'";

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// The job columns of a closed month's row; absent (a window's query):
/// zeros, filled in from the histograms afterwards.
fn job_columns(r: &sqlx::postgres::PgRow) -> JobFigures {
    JobFigures {
        answered: r.try_get("answered").unwrap_or(0),
        median_s: r.try_get("median_s").unwrap_or(None),
        p90_s: r.try_get("p90_s").unwrap_or(None),
    }
}

fn fold_figures(fold: &dvmtop_core::windows::JobFold, scope: &Scope) -> JobFigures {
    let (answered, median_s, p90_s) = fold.figures(scope);
    JobFigures {
        answered,
        median_s,
        p90_s,
    }
}

fn dvm_row(r: &sqlx::postgres::PgRow) -> Result<DvmRow> {
    Ok(DvmRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        responses: r.try_get("responses")?,
        feedback: r.try_get("feedback")?,
        kinds: r.try_get("kinds")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        active: r.try_get("is_active")?,
        jobs: job_columns(r),
    })
}

fn kind_row(r: &sqlx::postgres::PgRow) -> Result<KindRow> {
    Ok(KindRow {
        kind: r.try_get("kind")?,
        requests: r.try_get("requests")?,
        responses: r.try_get("responses")?,
        dvms: r.try_get("dvms")?,
        top_dvm: r.try_get("top_dvm")?,
        top_dvm_name: r.try_get("top_dvm_name")?,
        jobs: job_columns(r),
    })
}

impl Db {
    /// The window histograms of a range, folded per scope (hours outside
    /// the range left out).
    async fn job_fold(&self, range: Range) -> Result<dvmtop_core::windows::JobFold> {
        let mut fold = dvmtop_core::windows::JobFold::default();
        let (first, last) = (range.first_hour() as u8, range.last_hour_end() as u8);
        for (day, scope, cells) in self.load_job_hist(range.first_day, range.last_day).await? {
            let keep = |h: u8| {
                (day != range.first_day || h >= first) && (day != range.last_day || h < last)
            };
            fold.add(&scope, &cells, keep);
        }
        Ok(fold)
    }

    /// The committed processing clock: the views' windows end where the
    /// committed data ends.
    pub async fn committed_clock(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT clock FROM pipeline_state")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Every DVM with a response or feedback in the period; `month` set:
    /// that closed month from `monthly_activity`.
    pub async fn view_dvms(&self, range: Range, month: Option<&str>) -> Result<Vec<DvmRow>> {
        let rows = match month {
            Some(m) => {
                sqlx::query(DVMS_MONTH)
                    .bind(utc(range.start))
                    .bind(utc(range.end))
                    .bind(m)
                    .fetch_all(&self.pool)
                    .await?
            }
            None if range.whole_days() => {
                sqlx::query(DVMS_DAYS)
                    .bind(range.first_day)
                    .bind(range.last_day)
                    .bind(utc(range.start))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(DVMS_WINDOW)
                    .bind(range.first_day)
                    .bind(range.last_day)
                    .bind(range.first_hour())
                    .bind(range.last_hour_end())
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut rows: Vec<DvmRow> = rows.iter().map(dvm_row).collect::<Result<_>>()?;
        if month.is_none() {
            let fold = self.job_fold(range).await?;
            for r in &mut rows {
                if let Some(pk) = dvmtop_core::keys::hex32(&r.id) {
                    r.jobs = fold_figures(&fold, &Scope::Dvm(pk));
                }
            }
        }
        Ok(rows)
    }

    /// Every request kind with a request or response in the period.
    pub async fn view_kinds(&self, range: Range, month: Option<&str>) -> Result<Vec<KindRow>> {
        let rows = match month {
            Some(m) => {
                sqlx::query(KINDS_MONTH)
                    .bind(utc(range.start))
                    .bind(utc(range.end))
                    .bind(m)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(KINDS_WINDOW)
                    .bind(range.first_day)
                    .bind(range.last_day)
                    .bind(range.first_hour())
                    .bind(range.last_hour_end())
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut rows: Vec<KindRow> = rows.iter().map(kind_row).collect::<Result<_>>()?;
        if month.is_none() {
            let fold = self.job_fold(range).await?;
            for r in &mut rows {
                r.jobs = fold_figures(&fold, &Scope::Kind(dvmtop_core::JobKind(r.kind as u32)));
            }
        }
        Ok(rows)
    }

    /// One DVM's page: profile, lifecycle, kinds, responses per day of the
    /// period, its monthly history rows.
    /// `month` set: a closed month, whose job figures and feedback come
    /// from `monthly_activity` (the daily rows may be gone by retention).
    pub async fn view_dvm(&self, id: &str, range: Range, month: Option<&str>) -> Result<DvmDetail> {
        let profile =
            sqlx::query("SELECT name, about, kinds, announced_at FROM dvm_profiles WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| -> Result<Profile> {
                    Ok(Profile {
                        name: r.try_get("name")?,
                        about: r.try_get("about")?,
                        kinds: r.try_get("kinds")?,
                        announced_at: r.try_get("announced_at")?,
                    })
                })
                .transpose()?;
        let lifecycle = sqlx::query(
            "SELECT first_seen, last_seen, is_active, deactivated_at FROM dvms WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| -> Result<Lifecycle> {
            Ok(Lifecycle {
                first_seen: r.try_get("first_seen")?,
                last_seen: r.try_get("last_seen")?,
                active: r.try_get("is_active")?,
                deactivated_at: r.try_get("deactivated_at")?,
            })
        })
        .transpose()?;
        let kinds = sqlx::query_as(
            "SELECT kind, first_seen, last_seen FROM kind_dvm_support WHERE dvm = $1 ORDER BY kind",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let per_day = sqlx::query_as(
            "SELECT day, responses FROM dvm_stats_rollups
             WHERE dvm = $1 AND day >= $2 AND day <= $3 ORDER BY day",
        )
        .bind(id)
        .bind(range.first_day)
        .bind(range.last_day)
        .fetch_all(&self.pool)
        .await?;
        let months = sqlx::query_as(
            "SELECT year_month, coalesce((dvm_activity->$1->>'responses')::int8, 0),
                    coalesce((dvm_activity->$1->>'feedback')::int8, 0)
             FROM monthly_activity WHERE dvm_activity ? $1 ORDER BY year_month",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let (jobs, fb) = match month {
            Some(m) => {
                let r = sqlx::query(DVM_MONTH_JOBS)
                    .bind(id)
                    .bind(m)
                    .fetch_optional(&self.pool)
                    .await?;
                match r {
                    Some(r) => (
                        job_columns(&r),
                        (
                            r.try_get("fb0")?,
                            r.try_get("fb1")?,
                            r.try_get("fb2")?,
                            r.try_get("fb3")?,
                            r.try_get("fb4")?,
                        ),
                    ),
                    None => Default::default(),
                }
            }
            None => {
                let jobs = match dvmtop_core::keys::hex32(id) {
                    Some(pk) => fold_figures(&self.job_fold(range).await?, &Scope::Dvm(pk)),
                    None => JobFigures::default(),
                };
                let fb: (i64, i64, i64, i64, i64) = sqlx::query_as(
                    "SELECT coalesce(sum(fb_payment_required), 0)::int8, coalesce(sum(fb_processing), 0)::int8,
                            coalesce(sum(fb_error), 0)::int8, coalesce(sum(fb_success), 0)::int8,
                            coalesce(sum(fb_partial), 0)::int8
                     FROM dvm_stats_rollups WHERE dvm = $1 AND day >= $2 AND day <= $3",
                )
                .bind(id)
                .bind(range.first_day)
                .bind(range.last_day)
                .fetch_one(&self.pool)
                .await?;
                (jobs, fb)
            }
        };
        Ok(DvmDetail {
            id: id.to_owned(),
            profile,
            lifecycle,
            kinds,
            per_day,
            months,
            jobs,
            feedback_status: [fb.0, fb.1, fb.2, fb.3, fb.4],
        })
    }

    /// One kind's page: the DVMs that answered it in the period, per day
    /// requests and responses.
    /// `month` set: a closed month (job figures from `monthly_activity`).
    pub async fn view_kind(
        &self,
        kind: i32,
        range: Range,
        month: Option<&str>,
    ) -> Result<KindDetail> {
        let dvms = if month.is_some() {
            sqlx::query_as(
                "SELECT s.dvm, p.name, -1::int8 FROM kind_dvm_support s
                 LEFT JOIN dvm_profiles p ON p.id = s.dvm
                 WHERE s.kind = $1 AND s.first_seen < $3 AND s.last_seen >= $2 ORDER BY s.dvm",
            )
            .bind(kind)
            .bind(utc(range.start))
            .bind(utc(range.end))
            .fetch_all(&self.pool)
            .await?
        } else {
            sqlx::query_as(
                "WITH d AS (
                   SELECT encode(u.entity, 'hex') AS dvm, sum(u.responses)::int8 AS s
                   FROM entity_activity a,
                        unnest(a.hour, a.entity, a.kind, a.responses) AS u(hour, entity, kind, responses)
                   WHERE a.role = 1 AND a.day >= $2 AND a.day <= $3
                     AND (a.day > $2 OR u.hour >= $4) AND (a.day < $3 OR u.hour < $5)
                     AND u.kind = $1 AND u.responses > 0
                   GROUP BY u.entity)
                 SELECT d.dvm, p.name, d.s FROM d LEFT JOIN dvm_profiles p ON p.id = d.dvm
                 ORDER BY d.s DESC, d.dvm",
            )
            .bind(kind)
            .bind(range.first_day)
            .bind(range.last_day)
            .bind(range.first_hour())
            .bind(range.last_hour_end())
            .fetch_all(&self.pool)
            .await?
        };
        let per_day = sqlx::query_as(
            "SELECT day, requests, responses FROM kind_stats_rollups
             WHERE kind = $1 AND day >= $2 AND day <= $3 ORDER BY day",
        )
        .bind(kind)
        .bind(range.first_day)
        .bind(range.last_day)
        .fetch_all(&self.pool)
        .await?;
        let jobs = match month {
            Some(m) => sqlx::query(KIND_MONTH_JOBS)
                .bind(kind.to_string())
                .bind(m)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| job_columns(&r))
                .unwrap_or_default(),
            None => fold_figures(
                &self.job_fold(range).await?,
                &Scope::Kind(dvmtop_core::JobKind(kind as u32)),
            ),
        };
        Ok(KindDetail {
            kind,
            dvms,
            per_day,
            jobs,
        })
    }
}
