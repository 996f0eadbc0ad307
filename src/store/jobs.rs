//! Job analytics in PostgreSQL: the matching state's facts (`job_facts`)
//! and the window response-time histograms (`job_day_stats`), written by
//! the commit of a group; the facts read back at start-up, the histograms
//! by the window figures.

use super::Db;
use crate::error::{Error, Result};
use chrono::NaiveDate;
use dvmtop_core::analyze::Pending;
use dvmtop_core::jobs::{HistCells, Scope, decode_cells};
use dvmtop_core::keys::hex_of;
use sqlx::{Postgres, Transaction};

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
    // A statement per day: binding every day at once had the driver
    // build one buffer of the whole group's facts (16 MiB at 250 k events).
    for (day, f) in &p.job_facts {
        sqlx::query("INSERT INTO job_facts (day, requests, results) VALUES ($1, $2, $3)")
            .bind(day)
            .bind(f.requests.as_slice())
            .bind(f.results.as_slice())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Writes the window-histogram rows the group changed, whole.
pub(super) async fn write_hist(tx: &mut Transaction<'_, Postgres>, rows: &[HistRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let (mut day, mut scope, mut key, mut cells) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (d, s, c) in rows {
        let (sc, k) = scope_key(s);
        day.push(*d);
        scope.push(sc);
        key.push(k);
        cells.push(c.as_slice());
    }
    sqlx::query(
        "INSERT INTO job_day_stats (day, scope, key, cells)
         SELECT * FROM UNNEST($1::date[], $2::int2[], $3::text[], $4::bytea[])
         ON CONFLICT (day, scope, key) DO UPDATE SET cells = EXCLUDED.cells",
    )
    .bind(day)
    .bind(scope)
    .bind(key)
    .bind(cells)
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

/// A changed histogram row as a commit writes it: day, scope, encoded
/// cells ([`dvmtop_core::jobs::encode_cells`]).
pub type HistRow = (NaiveDate, Scope, Vec<u8>);

/// The scope of a stored row; `None` for a key that names nothing.
fn scope_of(scope: i16, key: &str) -> Option<Scope> {
    match scope {
        0 => Some(Scope::All),
        1 => dvmtop_core::keys::hex32(key).map(Scope::Dvm),
        2 => key
            .parse()
            .ok()
            .map(|k| Scope::Kind(dvmtop_core::JobKind(k))),
        _ => None,
    }
}

impl Db {
    /// Every stored job fact, for the matcher's rebuild.
    pub async fn load_job_facts(&self) -> Result<Vec<(NaiveDate, Vec<u8>, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT day, requests, results FROM job_facts ORDER BY day")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The histogram rows of days `from ..= to`, decoded.
    pub async fn load_job_hist(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, Scope, HistCells)>> {
        let rows: Vec<(NaiveDate, i16, String, Vec<u8>)> = sqlx::query_as(
            "SELECT day, scope, key, cells FROM job_day_stats WHERE day >= $1 AND day <= $2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(d, s, k, c)| {
                let corrupt =
                    || Error::Namespace(format!("job_day_stats row {d} {s} {k} is corrupt"));
                let scope = scope_of(s, &k).ok_or_else(corrupt)?;
                let cells = decode_cells(&c).ok_or_else(corrupt)?;
                Ok((d, scope, cells))
            })
            .collect()
    }
}
