//! What the processor loads at start-up (and when a row is not in its
//! cache): activity day rows, the entity book, the open months' figures.

use super::Db;
use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use dvmtop_core::EntityRole;
use dvmtop_core::YearMonth;
use dvmtop_core::activity::Entry;
use dvmtop_core::analyze::Counts;
use dvmtop_core::entities::Entity;
use dvmtop_core::month::MonthAcc;
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::collections::BTreeMap;

impl Db {
    /// One `entity_activity` row's cells (empty when there is none).
    pub(crate) async fn load_day_row(
        &self,
        day: NaiveDate,
        role: EntityRole,
    ) -> Result<Vec<Entry>> {
        let row = sqlx::query(
            "SELECT day, role, hour, entity, kind, requests, responses, feedback FROM entity_activity
             WHERE day = $1 AND role = $2",
        )
        .bind(day)
        .bind(role as i16)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => decode_row(&r)?.2,
            None => Vec::new(),
        })
    }

    /// The figures of the months from `open` on (not rolled up yet), from
    /// their committed detail rows.
    pub(crate) async fn load_open_months(
        &self,
        open: YearMonth,
    ) -> Result<BTreeMap<YearMonth, MonthAcc>> {
        use futures_util::TryStreamExt;
        let mut months: BTreeMap<YearMonth, MonthAcc> = Default::default();
        let from = open.start();
        let mut users = sqlx::query_as::<_, (NaiveDate, Vec<Vec<u8>>)>(
            "SELECT day, entity FROM entity_activity WHERE role = 0 AND day >= $1",
        )
        .bind(from)
        .fetch(&self.pool);
        while let Some((day, entities)) = users.try_next().await? {
            let acc = months.entry(YearMonth::of(day)).or_default();
            for e in entities {
                acc.add_user(e.as_slice().try_into().map_err(|_| {
                    Error::Namespace(format!("entity_activity row {day}/0 holds a bad entity"))
                })?);
            }
        }
        drop(users);
        type DvmDay = (NaiveDate, String, i64, i64, i64, i64, i64, i64, i64);
        let dvms: Vec<DvmDay> = sqlx::query_as(
            "SELECT day, dvm, responses, feedback, fb_payment_required, fb_processing, fb_error,
               fb_success, fb_partial FROM dvm_stats_rollups WHERE day >= $1",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        for (day, dvm, responses, feedback, s0, s1, s2, s3, s4) in dvms {
            let pk = dvmtop_core::keys::hex32(&dvm).ok_or_else(|| {
                Error::Namespace(format!("dvm_stats_rollups holds a bad dvm id {dvm:?}"))
            })?;
            months.entry(YearMonth::of(day)).or_default().add_dvm_day(
                pk,
                responses,
                feedback,
                [s0, s1, s2, s3, s4],
            );
        }
        let kinds: Vec<(NaiveDate, i32, i64, i64)> = sqlx::query_as(
            "SELECT day, kind, requests, responses FROM kind_stats_rollups WHERE day >= $1",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        for (day, kind, requests, responses) in kinds {
            months.entry(YearMonth::of(day)).or_default().add_kind_day(
                dvmtop_core::JobKind(kind as u32),
                requests,
                responses,
            );
        }
        Ok(months)
    }

    /// The `users` and `dvms` tables, for the processor's entity book.
    pub async fn load_entities(&self) -> Result<dvmtop_core::entities::Entities> {
        type Row = (
            String,
            DateTime<Utc>,
            DateTime<Utc>,
            bool,
            Option<DateTime<Utc>>,
            i64,
            i64,
            i64,
        );
        let mut out: [Vec<([u8; 32], Entity)>; 2] = [Vec::new(), Vec::new()];
        for (role, sql) in [
            (
                EntityRole::User,
                "SELECT id, first_seen, last_seen, is_active, deactivated_at, requests, 0::int8, 0::int8 FROM users",
            ),
            (
                EntityRole::Dvm,
                "SELECT id, first_seen, last_seen, is_active, deactivated_at, 0::int8, responses, feedback FROM dvms",
            ),
        ] {
            let rows: Vec<Row> = sqlx::query_as(sql).fetch_all(&self.pool).await?;
            for (id, first, last, active, deact, rq, rs, fb) in rows {
                let pk = dvmtop_core::keys::hex32(&id).ok_or_else(|| {
                    crate::error::Error::Namespace(format!(
                        "{id:?} in {}.{} is not a hex public key",
                        self.namespace,
                        if role == EntityRole::User {
                            "users"
                        } else {
                            "dvms"
                        }
                    ))
                })?;
                out[role as usize].push((
                    pk,
                    Entity {
                        first_seen: first.timestamp(),
                        last_seen: last.timestamp(),
                        is_active: active,
                        deactivated_at: deact.map(|d| d.timestamp()),
                        requests: rq,
                        responses: rs,
                        feedback: fb,
                    },
                ));
            }
        }
        let [users, dvms] = out;
        Ok(dvmtop_core::entities::Entities::from_rows(users, dvms))
    }
}

/// An `entity_activity` row (all columns) back into cells.
pub(crate) fn decode_row(row: &PgRow) -> Result<(NaiveDate, EntityRole, Vec<Entry>)> {
    let day: NaiveDate = row.try_get("day")?;
    let role: i16 = row.try_get("role")?;
    let corrupt = || {
        crate::error::Error::Namespace(format!(
            "entity_activity row {day}/{role} is corrupt (arrays of unequal length, a bad hour or entity)"
        ))
    };
    let role = match role {
        0 => EntityRole::User,
        1 => EntityRole::Dvm,
        _ => return Err(corrupt()),
    };
    let hour: Vec<i16> = row.try_get("hour")?;
    let entity: Vec<Vec<u8>> = row.try_get("entity")?;
    let kind: Vec<i32> = row.try_get("kind")?;
    let rq: Vec<i32> = row.try_get("requests")?;
    let rs: Vec<i32> = row.try_get("responses")?;
    let fb: Vec<i32> = row.try_get("feedback")?;
    let n = hour.len();
    if [entity.len(), kind.len(), rq.len(), rs.len(), fb.len()]
        .iter()
        .any(|l| *l != n)
    {
        return Err(corrupt());
    }
    let entries = (0..n)
        .map(|i| {
            Ok(Entry {
                hour: u8::try_from(hour[i])
                    .ok()
                    .filter(|h| *h < 24)
                    .ok_or_else(corrupt)?,
                entity: entity[i].as_slice().try_into().map_err(|_| corrupt())?,
                kind: dvmtop_core::JobKind(u32::try_from(kind[i]).map_err(|_| corrupt())?),
                counts: Counts {
                    requests: rq[i].into(),
                    responses: rs[i].into(),
                    feedback: fb[i].into(),
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((day, role, entries))
}
