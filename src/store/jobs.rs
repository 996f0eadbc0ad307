//! Job analytics in PostgreSQL: the matching state's facts (`job_facts`)
//! and the window response-time histograms (`job_day_stats`), written by
//! the commit of a group; the facts read back at start-up, the histograms
//! by the window figures.

use super::Db;
use crate::error::Result;
use chrono::NaiveDate;
use dvmtop_core::analyze::Pending;
use dvmtop_core::jobs::Scope;
use dvmtop_core::keys::hex_of;
use sqlx::{Postgres, Transaction};
use std::collections::BTreeMap;

/// The scope column and key of a histogram row.
pub fn scope_key(s: &Scope) -> (i16, String) {
    match s {
        Scope::All => (0, String::new()),
        Scope::Dvm(pk) => (1, hex_of(pk)),
        Scope::Kind(k) => (2, k.to_string()),
    }
}

/// Appends the group's job facts, one row per day.
pub(super) async fn write_facts(tx: &mut Transaction<'_, Postgres>, p: &Pending) -> Result<()> {
    if p.job_facts.is_empty() {
        return Ok(());
    }
    let (mut days, mut rq, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for (day, f) in &p.job_facts {
        days.push(*day);
        rq.push(f.requests.as_slice());
        rs.push(f.results.as_slice());
    }
    sqlx::query(
        "INSERT INTO job_facts (day, requests, results) SELECT * FROM UNNEST($1::date[], $2::bytea[], $3::bytea[])",
    )
    .bind(days)
    .bind(rq)
    .bind(rs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds the group's histogram changes to `job_day_stats` (cells whose
/// count drops to zero leave the arrays).
pub(super) async fn write_hist(tx: &mut Transaction<'_, Postgres>, p: &Pending) -> Result<()> {
    // Sorted, so each (day, scope, key) row is built in (hour, bucket) order
    // and the rows are locked in one order by every commit.
    let mut cells: BTreeMap<(NaiveDate, i16, String, i16, i16), i64> = BTreeMap::new();
    for ((day, hour, scope, bucket), n) in &p.job_hist {
        if *n != 0 {
            let (s, k) = scope_key(scope);
            *cells
                .entry((*day, s, k, i16::from(*hour), *bucket))
                .or_default() += n;
        }
    }
    cells.retain(|_, n| *n != 0);
    if cells.is_empty() {
        return Ok(());
    }
    let n = cells.len();
    let (mut day, mut scope, mut key) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut hour, mut bucket, mut count) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((d, s, k, h, b), c) in cells {
        day.push(d);
        scope.push(s);
        key.push(k);
        hour.push(h);
        bucket.push(b);
        count.push(c.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
    }
    sqlx::query(
        "INSERT INTO job_day_stats (day, scope, key, hour, bucket, count)
         SELECT day, scope, key, array_agg(hour ORDER BY hour, bucket),
                array_agg(bucket ORDER BY hour, bucket), array_agg(count ORDER BY hour, bucket)
         FROM UNNEST($1::date[], $2::int2[], $3::text[], $4::int2[], $5::int2[], $6::int4[])
           AS u(day, scope, key, hour, bucket, count)
         GROUP BY day, scope, key
         ON CONFLICT (day, scope, key) DO UPDATE SET (hour, bucket, count) = (
           SELECT coalesce(array_agg(h ORDER BY h, b), '{}'), coalesce(array_agg(b ORDER BY h, b), '{}'),
                  coalesce(array_agg(c ORDER BY h, b), '{}')
           FROM (SELECT h, b, sum(c)::int4 AS c
                 FROM unnest(job_day_stats.hour || EXCLUDED.hour, job_day_stats.bucket || EXCLUDED.bucket,
                             job_day_stats.count || EXCLUDED.count) AS x(h, b, c)
                 GROUP BY h, b HAVING sum(c) <> 0) s)",
    )
    .bind(day)
    .bind(scope)
    .bind(key)
    .bind(hour)
    .bind(bucket)
    .bind(count)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes the facts of days before `cut` (after a rollover).
pub(super) async fn forget_facts(tx: &mut Transaction<'_, Postgres>, cut: NaiveDate) -> Result<()> {
    sqlx::query("DELETE FROM job_facts WHERE day < $1")
        .bind(cut)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One `job_day_stats` row: (day, scope, key, [(hour, bucket, count)]).
pub type HistRow = (NaiveDate, i16, String, Vec<(i16, i16, i32)>);

impl Db {
    /// Every stored job fact, for the matcher's rebuild.
    pub async fn load_job_facts(&self) -> Result<Vec<(NaiveDate, Vec<u8>, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT day, requests, results FROM job_facts ORDER BY day")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The histogram rows of days `from ..= to`.
    pub async fn load_job_hist(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<HistRow>> {
        type Raw = (NaiveDate, i16, String, Vec<i16>, Vec<i16>, Vec<i32>);
        let rows: Vec<Raw> = sqlx::query_as(
            "SELECT day, scope, key, hour, bucket, count FROM job_day_stats WHERE day >= $1 AND day <= $2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(d, s, k, h, b, c)| {
                let cells = h
                    .into_iter()
                    .zip(b)
                    .zip(c)
                    .map(|((h, b), c)| (h, b, c))
                    .collect();
                (d, s, k, cells)
            })
            .collect())
    }
}
