//! One commit group, one transaction: the activity rows, rollup deltas,
//! entity rows, overflow, counters, dead letters, seen ids, the input
//! sources' positions and the queue position all commit together, so a replayed group is recognised by its
//! sequence and never applied twice.

use super::Db;
use crate::error::Result;
use crate::store::MonthRow;
use chrono::{DateTime, NaiveDate, Utc};
use dvmtop_core::EntityRole;
use dvmtop_core::YearMonth;
use dvmtop_core::activity::Entry;
use dvmtop_core::analyze::{Counts, Pending};
use dvmtop_core::entities::{Changes, Entity};
use dvmtop_core::keys::{Pubkey, hex_of};
use sqlx::{Postgres, Transaction};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything one commit writes (owned: it is written by a task of its
/// own while the processor goes on).
pub struct Commit {
    /// Queue sequence of this group and how many head elements it consumed.
    pub(crate) seq: i64,
    pub(crate) consumed: i64,
    pub(crate) pending: Pending,
    /// Whole `entity_activity` rows (old content merged with the pending).
    pub(crate) rows: Vec<(NaiveDate, EntityRole, Arc<Vec<Entry>>)>,
    pub(crate) entities: Changes,
    /// The overflow buffer after this group, when it changed (FIFO), with
    /// the day of each element.
    pub(crate) overflow: Option<(Vec<String>, Vec<NaiveDate>)>,
    pub(crate) ignored_prior_month: i64,
    /// Refused elements (payloads cut to 64 KiB, sizes kept).
    pub(crate) rejected: Vec<crate::queue::Refused>,
    /// Months closed in this group, with their rows.
    pub(crate) rollovers: Vec<MonthRow>,
    /// The open month after this group.
    pub(crate) month: Option<YearMonth>,
    /// The furthest position of each input source among the elements
    /// this group consumed.
    pub(crate) positions: dvmtop_core::source::Positions,
    /// After a rollover: job facts of days before this are deleted
    /// (nothing can match them any more).
    pub(crate) jobs_cut: Option<NaiveDate>,
    /// The window-histogram rows this group changed, whole.
    pub(crate) hist_rows: Vec<super::jobs::HistRow>,
}

pub(crate) fn ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

async fn add_counters(
    tx: &mut Transaction<'_, Postgres>,
    counters: BTreeMap<String, i64>,
) -> Result<()> {
    let (names, values): (Vec<String>, Vec<i64>) =
        counters.into_iter().filter(|(_, v)| *v != 0).unzip();
    if names.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO counters (name, value) SELECT * FROM UNNEST($1::text[], $2::int8[])
         ON CONFLICT (name) DO UPDATE SET value = counters.value + EXCLUDED.value",
    )
    .bind(names)
    .bind(values)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces one `entity_activity` row with `entries`.
async fn write_row(
    tx: &mut Transaction<'_, Postgres>,
    day: NaiveDate,
    role: EntityRole,
    entries: &[Entry],
) -> Result<()> {
    let n = entries.len();
    let mut hour = Vec::with_capacity(n);
    let mut entity = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut rq = Vec::with_capacity(n);
    let mut rs = Vec::with_capacity(n);
    let mut fb = Vec::with_capacity(n);
    for e in entries {
        hour.push(i16::from(e.hour));
        entity.push(e.entity.as_slice());
        kind.push(e.kind.0 as i32);
        rq.push(e.counts.requests as i32);
        rs.push(e.counts.responses as i32);
        fb.push(e.counts.feedback as i32);
    }
    sqlx::query(
        "INSERT INTO entity_activity (day, role, hour, entity, kind, requests, responses, feedback)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (day, role) DO UPDATE SET hour = EXCLUDED.hour, entity = EXCLUDED.entity,
           kind = EXCLUDED.kind, requests = EXCLUDED.requests, responses = EXCLUDED.responses,
           feedback = EXCLUDED.feedback",
    )
    .bind(day)
    .bind(role as i16)
    .bind(hour)
    .bind(entity)
    .bind(kind)
    .bind(rq)
    .bind(rs)
    .bind(fb)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_rollups(tx: &mut Transaction<'_, Postgres>, p: &Pending) -> Result<()> {
    let mut d: (Vec<NaiveDate>, Vec<String>, Vec<i64>, Vec<i64>) = Default::default();
    // Feedback by status, one array per status column.
    let mut st: [Vec<i64>; 5] = Default::default();
    for ((day, dvm), c) in &p.dvm_day {
        d.0.push(*day);
        d.1.push(hex_of(dvm));
        d.2.push(c.responses);
        d.3.push(c.feedback);
        let by = p.dvm_status.get(&(*day, *dvm)).copied().unwrap_or_default();
        for (col, n) in st.iter_mut().zip(by) {
            col.push(n);
        }
    }
    let [s0, s1, s2, s3, s4] = st;
    sqlx::query(
        "INSERT INTO dvm_stats_rollups (day, dvm, responses, feedback,
           fb_payment_required, fb_processing, fb_error, fb_success, fb_partial)
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::int8[], $4::int8[],
           $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[])
         ON CONFLICT (day, dvm) DO UPDATE SET
           responses = dvm_stats_rollups.responses + EXCLUDED.responses,
           feedback = dvm_stats_rollups.feedback + EXCLUDED.feedback,
           fb_payment_required = dvm_stats_rollups.fb_payment_required + EXCLUDED.fb_payment_required,
           fb_processing = dvm_stats_rollups.fb_processing + EXCLUDED.fb_processing,
           fb_error = dvm_stats_rollups.fb_error + EXCLUDED.fb_error,
           fb_success = dvm_stats_rollups.fb_success + EXCLUDED.fb_success,
           fb_partial = dvm_stats_rollups.fb_partial + EXCLUDED.fb_partial",
    )
    .bind(d.0)
    .bind(d.1)
    .bind(d.2)
    .bind(d.3)
    .bind(s0)
    .bind(s1)
    .bind(s2)
    .bind(s3)
    .bind(s4)
    .execute(&mut **tx)
    .await?;

    let n = p.kind_day.len();
    let (mut day, mut kind) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut rq, mut rs, mut fb) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((d, k), c) in &p.kind_day {
        day.push(*d);
        kind.push(k.0 as i32);
        rq.push(c.requests);
        rs.push(c.responses);
        fb.push(c.feedback);
    }
    sqlx::query(
        "INSERT INTO kind_stats_rollups (day, kind, requests, responses, feedback)
         SELECT * FROM UNNEST($1::date[], $2::int4[], $3::int8[], $4::int8[], $5::int8[])
         ON CONFLICT (day, kind) DO UPDATE SET
           requests = kind_stats_rollups.requests + EXCLUDED.requests,
           responses = kind_stats_rollups.responses + EXCLUDED.responses,
           feedback = kind_stats_rollups.feedback + EXCLUDED.feedback",
    )
    .bind(day)
    .bind(kind)
    .bind(rq)
    .bind(rs)
    .bind(fb)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Entity rows per statement. A group can change every user of a month
/// (370 k in the population benchmark): sent as one statement, its
/// parameters were encoded twice over (arguments, then the socket's
/// buffer), ~70 MB at the peak. In slices, what a commit holds for them
/// no longer grows with the population; the rows and the transaction are
/// the same.
const ENTITY_ROWS_PER_STATEMENT: usize = 20_000;

/// Changed `users`/`dvms` rows, with their absolute values (so writing one
/// twice is harmless): entities already in the table by a plain UPDATE
/// (cheaper than an upsert), new ones by an upsert.
async fn write_entities(tx: &mut Transaction<'_, Postgres>, c: &Changes) -> Result<()> {
    const USERS_UPDATE: &str = "UPDATE users t SET first_seen = u.f, last_seen = u.l, is_active = u.a,
           deactivated_at = u.d, requests = u.rq
         FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bool[], $5::timestamptz[],
           $6::int8[], $7::int8[], $8::int8[]) AS u(id, f, l, a, d, rq, rs, fb)
         WHERE t.id = u.id";
    const USERS_UPSERT: &str = "INSERT INTO users (id, first_seen, last_seen, is_active, deactivated_at, requests)
         SELECT id, f, l, a, d, rq FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bool[],
           $5::timestamptz[], $6::int8[], $7::int8[], $8::int8[]) AS u(id, f, l, a, d, rq, rs, fb)
         ON CONFLICT (id) DO UPDATE SET first_seen = EXCLUDED.first_seen,
           last_seen = EXCLUDED.last_seen, is_active = EXCLUDED.is_active,
           deactivated_at = EXCLUDED.deactivated_at, requests = EXCLUDED.requests";
    const DVMS_UPDATE: &str = "UPDATE dvms t SET first_seen = u.f, last_seen = u.l, is_active = u.a,
           deactivated_at = u.d, responses = u.rs, feedback = u.fb
         FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bool[], $5::timestamptz[],
           $6::int8[], $7::int8[], $8::int8[]) AS u(id, f, l, a, d, rq, rs, fb)
         WHERE t.id = u.id";
    const DVMS_UPSERT: &str = "INSERT INTO dvms (id, first_seen, last_seen, is_active, deactivated_at, responses, feedback)
         SELECT id, f, l, a, d, rs, fb FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bool[],
           $5::timestamptz[], $6::int8[], $7::int8[], $8::int8[]) AS u(id, f, l, a, d, rq, rs, fb)
         ON CONFLICT (id) DO UPDATE SET first_seen = EXCLUDED.first_seen,
           last_seen = EXCLUDED.last_seen, is_active = EXCLUDED.is_active,
           deactivated_at = EXCLUDED.deactivated_at, responses = EXCLUDED.responses,
           feedback = EXCLUDED.feedback";
    for role in EntityRole::BOTH {
        let (update, upsert) = match role {
            EntityRole::User => (USERS_UPDATE, USERS_UPSERT),
            EntityRole::Dvm => (DVMS_UPDATE, DVMS_UPSERT),
        };
        for rows in c.changed[role as usize].chunks(ENTITY_ROWS_PER_STATEMENT) {
            write_entity_rows(tx, update, rows).await?;
        }
        for rows in c.fresh[role as usize].chunks(ENTITY_ROWS_PER_STATEMENT) {
            write_entity_rows(tx, upsert, rows).await?;
        }
    }
    Ok(())
}

/// One statement of [`write_entities`].
async fn write_entity_rows(
    tx: &mut Transaction<'_, Postgres>,
    sql: &'static str,
    rows: &[(Pubkey, Entity)],
) -> Result<()> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let (mut first, mut last) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut active, mut deactivated) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut rq, mut rs, mut fb) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (pk, e) in rows.iter() {
        id.push(hex_of(pk));
        first.push(ts(e.first_seen));
        last.push(ts(e.last_seen));
        active.push(e.is_active);
        deactivated.push(e.deactivated_at.map(ts));
        rq.push(e.requests);
        rs.push(e.responses);
        fb.push(e.feedback);
    }
    sqlx::query(sql)
        .bind(id)
        .bind(first)
        .bind(last)
        .bind(active)
        .bind(deactivated)
        .bind(rq)
        .bind(rs)
        .bind(fb)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// kind_dvm_support (after dvms: it references them) and profiles.
async fn write_support(tx: &mut Transaction<'_, Postgres>, p: &Pending) -> Result<()> {
    let n = p.support.len();
    let (mut kind, mut dvm) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut first, mut last) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for ((k, d), span) in &p.support {
        kind.push(k.0 as i32);
        dvm.push(hex_of(d));
        first.push(ts(span.first));
        last.push(ts(span.last));
    }
    sqlx::query(
        "INSERT INTO kind_dvm_support (kind, dvm, first_seen, last_seen)
         SELECT * FROM UNNEST($1::int4[], $2::text[], $3::timestamptz[], $4::timestamptz[])
         ON CONFLICT (kind, dvm) DO UPDATE SET
           first_seen = LEAST(kind_dvm_support.first_seen, EXCLUDED.first_seen),
           last_seen = GREATEST(kind_dvm_support.last_seen, EXCLUDED.last_seen)",
    )
    .bind(kind)
    .bind(dvm)
    .bind(first)
    .bind(last)
    .execute(&mut **tx)
    .await?;

    // dvm_profiles: the newest announcement wins.
    for (id, (at, p)) in &p.profiles {
        let kinds: Vec<i32> = p.kinds.iter().map(|k| *k as i32).collect();
        sqlx::query(
            "INSERT INTO dvm_profiles (id, name, about, picture, kinds, announced_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, about = EXCLUDED.about, picture = EXCLUDED.picture,
               kinds = EXCLUDED.kinds, announced_at = EXCLUDED.announced_at
             WHERE dvm_profiles.announced_at <= EXCLUDED.announced_at",
        )
        .bind(hex_of(id))
        .bind(&p.name)
        .bind(&p.about)
        .bind(&p.picture)
        .bind(kinds)
        .bind(ts(*at))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// ever_seen (entities new to their table, job kinds) and the global
/// running totals in one statement.
async fn write_totals(tx: &mut Transaction<'_, Postgres>, p: &Pending, c: &Changes) -> Result<()> {
    let (mut role, mut id): (Vec<i16>, Vec<String>) = (Vec::new(), Vec::new());
    for r in EntityRole::BOTH {
        for (pk, _) in &c.fresh[r as usize] {
            role.push(r as i16);
            id.push(hex_of(pk));
        }
    }
    for kind in p.job_kinds() {
        role.push(2);
        id.push(kind.to_string());
    }
    let Counts {
        requests,
        responses,
        feedback,
    } = p.totals;
    sqlx::query(
        "WITH ins AS (
           INSERT INTO ever_seen (role, id) SELECT * FROM UNNEST($1::int2[], $2::text[])
           ON CONFLICT DO NOTHING RETURNING role)
         UPDATE global_stats_rollups SET
           total_requests = total_requests + $3,
           total_responses = total_responses + $4,
           total_feedback = total_feedback + $5,
           unique_users = unique_users + (SELECT count(*) FROM ins WHERE role = 0),
           unique_dvms = unique_dvms + (SELECT count(*) FROM ins WHERE role = 1),
           unique_kinds = unique_kinds + (SELECT count(*) FROM ins WHERE role = 2),
           last_event_at = GREATEST(last_event_at, $6)",
    )
    .bind(role)
    .bind(id)
    .bind(requests)
    .bind(responses)
    .bind(feedback)
    .bind(p.max_ts.map(ts))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_seen(tx: &mut Transaction<'_, Postgres>, p: &Pending) -> Result<()> {
    let (days, blobs): (Vec<NaiveDate>, Vec<Vec<u8>>) = p
        .new_ids
        .iter()
        .map(|(day, ids)| (*day, ids.iter().flat_map(|k| k.to_be_bytes()).collect()))
        .unzip();
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO seen_ids (day, ids) SELECT * FROM UNNEST($1::date[], $2::bytea[])")
        .bind(days)
        .bind(blobs)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Db {
    /// A source's committed position (see `dvmtop_core::source`): 0 when
    /// nothing of it was committed.
    pub(crate) async fn committed_position(&self, source: &str) -> Result<u64> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT elements FROM source_positions WHERE source = $1")
                .bind(source)
                .fetch_optional(&self.pool)
                .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Commits one group atomically. Returns false (and changes nothing)
    /// when this sequence was already applied.
    pub(crate) async fn commit(&self, c: &Commit) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let p = &c.pending;
        // Per-part timings for the debug log (the profile in BENCHMARKS.md).
        let mut t = std::time::Instant::now();
        let mut lap = || {
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            t = std::time::Instant::now();
            (ms * 10.0).round() / 10.0
        };
        for (day, role, entries) in &c.rows {
            write_row(&mut tx, *day, *role, entries.as_slice()).await?;
        }
        let rows_ms = lap();
        let (mut rollups_ms, mut entities_ms, mut support_ms, mut totals_ms, mut seen_ms) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut jobs_ms = 0.0;
        if !p.is_empty() {
            write_rollups(&mut tx, p).await?;
            rollups_ms = lap();
            write_entities(&mut tx, &c.entities).await?;
            entities_ms = lap();
            write_support(&mut tx, p).await?;
            support_ms = lap();
            write_totals(&mut tx, p, &c.entities).await?;
            totals_ms = lap();
            write_seen(&mut tx, p).await?;
            seen_ms = lap();
            super::jobs::write_facts(&mut tx, p).await?;
            super::jobs::write_hist(&mut tx, &c.hist_rows).await?;
            jobs_ms = lap();
        }
        tracing::debug!(
            seq = c.seq,
            activity_rows = c.rows.len(),
            users = c.entities.changed[0].len() + c.entities.fresh[0].len(),
            rows_ms,
            rollups_ms,
            entities_ms,
            support_ms,
            totals_ms,
            seen_ms,
            jobs_ms,
            "commit parts"
        );
        if let Some((payloads, days)) = &c.overflow {
            sqlx::query("UPDATE overflow SET payloads = $1, days = $2")
                .bind(payloads)
                .bind(days)
                .execute(&mut *tx)
                .await?;
        }
        if !c.rejected.is_empty() {
            let reason: Vec<&str> = c.rejected.iter().map(|r| r.reason).collect();
            let raw: Vec<&str> = c.rejected.iter().map(|r| r.raw.as_str()).collect();
            let size: Vec<i64> = c.rejected.iter().map(|r| r.size as i64).collect();
            sqlx::query("INSERT INTO dead_letters (reason, payload, size) SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])")
                .bind(reason)
                .bind(raw)
                .bind(size)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(last) = c.rollovers.last() {
            for row in &c.rollovers {
                super::upsert_month(&mut tx, row).await?;
            }
            // Events of a closed month are ignored from now on: their ids
            // need no deduplication any more.
            let closed = last.year_month;
            sqlx::query("DELETE FROM seen_ids WHERE day < $1")
                .bind(closed.end())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(cut) = c.jobs_cut {
            super::jobs::forget_facts(&mut tx, cut).await?;
        }
        let mut counters = BTreeMap::from([
            ("processed".to_owned(), p.processed as i64),
            ("duplicate".to_owned(), p.duplicates as i64),
            ("ignored_prior_month".to_owned(), c.ignored_prior_month),
        ]);
        for r in &c.rejected {
            *counters
                .entry(format!("rejected:{}", r.reason))
                .or_default() += 1;
        }
        add_counters(&mut tx, counters).await?;
        if !c.positions.is_empty() {
            let (ids, ns): (Vec<&str>, Vec<i64>) = c
                .positions
                .0
                .iter()
                .map(|(id, n)| (id.as_str(), *n as i64))
                .unzip();
            sqlx::query(
                "INSERT INTO source_positions (source, elements)
                 SELECT * FROM UNNEST($1::text[], $2::int8[])
                 ON CONFLICT (source) DO UPDATE
                   SET elements = GREATEST(source_positions.elements, EXCLUDED.elements)",
            )
            .bind(ids)
            .bind(ns)
            .execute(&mut *tx)
            .await?;
        }
        // The queue position last: its row lock is held only briefly (day
        // advances update the same row while a commit is under way). A
        // sequence already applied rolls everything back.
        let last: i64 = sqlx::query_scalar("SELECT last_seq FROM pipeline_state FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        // Only while this process's session holds the namespace lock.
        self.fence(&mut tx).await?;
        if last >= c.seq {
            tx.rollback().await?;
            return Ok(false);
        }
        // A rollover moves the open month and spends the confirmations of
        // the months it closed; a later month's (the processor's open
        // month, confirmed while this commit was under way) stays.
        // `YYYY-MM` compares as text in month order.
        let rolled = !c.rollovers.is_empty();
        sqlx::query(
            "UPDATE pipeline_state SET last_seq = $1, last_count = $2,
               clock = GREATEST(clock, $3),
               current_month = CASE WHEN $4 THEN $5 ELSE current_month END,
               confirmed_month = CASE WHEN $4 AND confirmed_month < $5 THEN NULL
                 ELSE confirmed_month END,
               updated_at = now()",
        )
        .bind(c.seq)
        .bind(c.consumed)
        .bind(p.max_ts)
        .bind(rolled)
        .bind(c.month.map(|m| m.to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
