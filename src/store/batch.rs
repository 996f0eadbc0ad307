//! One batch, one transaction: rollup deltas, overflow changes, counters,
//! dead letters, seen ids and the queue sequence all commit together, so a
//! replayed batch is recognised by its sequence and never applied twice.

use super::Db;
use crate::analyze::{Delta, EntityRole};
use crate::error::Result;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Postgres, Transaction};

/// Everything one batch commits.
#[derive(Debug, Default)]
pub struct BatchWrite<'a> {
    /// Queue sequence of this batch and how many head elements it consumed.
    pub seq: i64,
    pub consumed: i32,
    pub day: Option<NaiveDate>,
    pub delta: Option<&'a Delta>,
    /// The overflow buffer after this batch, when it changed (FIFO).
    pub overflow: Option<Vec<&'a str>>,
    pub ignored_prior_month: i64,
    /// Refused elements: (reason, raw).
    pub rejected: Vec<(&'static str, &'a str)>,
}

fn ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

async fn add_counters(
    tx: &mut Transaction<'_, Postgres>,
    counters: &[(String, i64)],
) -> Result<()> {
    let (names, values): (Vec<&str>, Vec<i64>) = counters
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(n, v)| (n.as_str(), *v))
        .unzip();
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

async fn write_delta(tx: &mut Transaction<'_, Postgres>, day: NaiveDate, d: &Delta) -> Result<()> {
    // entity_activity
    let n = d.activity.len();
    let (mut hour, mut role, mut entity, mut kind) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut rq, mut rs, mut fb) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((h, r, e, k), c) in &d.activity {
        hour.push(ts(*h));
        role.push(*r as i16);
        entity.push(e.as_str());
        kind.push(*k as i32);
        rq.push(c.requests as i32);
        rs.push(c.responses as i32);
        fb.push(c.feedback as i32);
    }
    sqlx::query(
        "INSERT INTO entity_activity (hour, role, entity, kind, requests, responses, feedback)
         SELECT * FROM UNNEST($1::timestamptz[], $2::int2[], $3::text[], $4::int4[], $5::int4[], $6::int4[], $7::int4[])
         ON CONFLICT (hour, role, entity, kind) DO UPDATE SET
           requests = entity_activity.requests + EXCLUDED.requests,
           responses = entity_activity.responses + EXCLUDED.responses,
           feedback = entity_activity.feedback + EXCLUDED.feedback",
    )
    .bind(hour)
    .bind(role)
    .bind(entity)
    .bind(kind)
    .bind(rq)
    .bind(rs)
    .bind(fb)
    .execute(&mut **tx)
    .await?;

    // dvm_stats_rollups
    let (dvm, (resp, feed)): (Vec<&str>, (Vec<i64>, Vec<i64>)) = d
        .dvm_day
        .iter()
        .map(|(k, c)| (k.as_str(), (c.responses, c.feedback)))
        .unzip();
    sqlx::query(
        "INSERT INTO dvm_stats_rollups (day, dvm, responses, feedback)
         SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::int8[])
         ON CONFLICT (day, dvm) DO UPDATE SET
           responses = dvm_stats_rollups.responses + EXCLUDED.responses,
           feedback = dvm_stats_rollups.feedback + EXCLUDED.feedback",
    )
    .bind(day)
    .bind(dvm)
    .bind(resp)
    .bind(feed)
    .execute(&mut **tx)
    .await?;

    // kind_stats_rollups
    let mut k = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (kind, c) in &d.kind_day {
        k.0.push(*kind as i32);
        k.1.push(c.requests);
        k.2.push(c.responses);
        k.3.push(c.feedback);
    }
    sqlx::query(
        "INSERT INTO kind_stats_rollups (day, kind, requests, responses, feedback)
         SELECT $1, * FROM UNNEST($2::int4[], $3::int8[], $4::int8[], $5::int8[])
         ON CONFLICT (day, kind) DO UPDATE SET
           requests = kind_stats_rollups.requests + EXCLUDED.requests,
           responses = kind_stats_rollups.responses + EXCLUDED.responses,
           feedback = kind_stats_rollups.feedback + EXCLUDED.feedback",
    )
    .bind(day)
    .bind(k.0)
    .bind(k.1)
    .bind(k.2)
    .bind(k.3)
    .execute(&mut **tx)
    .await?;

    // users and dvms: first/last seen widen, activity adds up and
    // reactivates.
    let mut new_entities: Vec<(i16, String)> = Vec::new();
    for (table, spans, count_cols) in [
        ("users", &d.users, "requests"),
        ("dvms", &d.dvms, "responses, feedback"),
    ] {
        let mut v = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (id, (s, c)) in spans {
            v.0.push(id.as_str());
            v.1.push(ts(s.first));
            v.2.push(ts(s.last));
            v.3.push(c.requests);
            v.4.push(c.responses);
            v.5.push(c.feedback);
        }
        let (values, updates) = if table == "users" {
            (
                "rq",
                format!("requests = {table}.requests + EXCLUDED.requests"),
            )
        } else {
            (
                "rs, fb",
                format!(
                    "responses = {table}.responses + EXCLUDED.responses, feedback = {table}.feedback + EXCLUDED.feedback"
                ),
            )
        };
        let fresh: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "WITH up AS (INSERT INTO {table} (id, first_seen, last_seen, is_active, {count_cols})
             SELECT id, f, l, true, {values}
             FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int8[], $5::int8[], $6::int8[]) AS u(id, f, l, rq, rs, fb)
             ON CONFLICT (id) DO UPDATE SET
               first_seen = LEAST({table}.first_seen, EXCLUDED.first_seen),
               last_seen = GREATEST({table}.last_seen, EXCLUDED.last_seen),
               is_active = true, deactivated_at = NULL, {updates}
             RETURNING id, xmax = 0 AS fresh)
             SELECT id FROM up WHERE fresh"
        )))
        .bind(v.0)
        .bind(v.1)
        .bind(v.2)
        .bind(v.3)
        .bind(v.4)
        .bind(v.5)
        .fetch_all(&mut **tx)
        .await?;
        // Only entities new to the table can be new to ever_seen: this keeps
        // the all-time unique count off the per-batch hot path.
        let role = if table == "users" {
            EntityRole::User
        } else {
            EntityRole::Dvm
        };
        new_entities.extend(fresh.into_iter().map(|id| (role as i16, id)));
    }

    // kind_dvm_support (after dvms: it references them)
    let mut s = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((kind, dvm), span) in &d.support {
        s.0.push(*kind as i32);
        s.1.push(dvm.as_str());
        s.2.push(ts(span.first));
        s.3.push(ts(span.last));
    }
    sqlx::query(
        "INSERT INTO kind_dvm_support (kind, dvm, first_seen, last_seen)
         SELECT * FROM UNNEST($1::int4[], $2::text[], $3::timestamptz[], $4::timestamptz[])
         ON CONFLICT (kind, dvm) DO UPDATE SET
           first_seen = LEAST(kind_dvm_support.first_seen, EXCLUDED.first_seen),
           last_seen = GREATEST(kind_dvm_support.last_seen, EXCLUDED.last_seen)",
    )
    .bind(s.0)
    .bind(s.1)
    .bind(s.2)
    .bind(s.3)
    .execute(&mut **tx)
    .await?;

    // dvm_profiles: the newest announcement wins.
    for (id, (at, p)) in &d.profiles {
        let kinds: Vec<i32> = p.kinds.iter().map(|k| *k as i32).collect();
        sqlx::query(
            "INSERT INTO dvm_profiles (id, name, about, picture, kinds, announced_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, about = EXCLUDED.about, picture = EXCLUDED.picture,
               kinds = EXCLUDED.kinds, announced_at = EXCLUDED.announced_at
             WHERE dvm_profiles.announced_at <= EXCLUDED.announced_at",
        )
        .bind(id)
        .bind(&p.name)
        .bind(&p.about)
        .bind(&p.picture)
        .bind(kinds)
        .bind(ts(*at))
        .execute(&mut **tx)
        .await?;
    }

    // ever_seen + global running totals in one statement.
    let mut e: (Vec<i16>, Vec<String>) = new_entities.into_iter().unzip();
    for kind in d
        .kind_day
        .iter()
        .filter(|(k, c)| (5000..=5999).contains(*k) && c.requests + c.responses > 0)
        .map(|(k, _)| k)
    {
        e.0.push(2);
        e.1.push(kind.to_string());
    }
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
    .bind(e.0)
    .bind(e.1)
    .bind(d.totals.requests)
    .bind(d.totals.responses)
    .bind(d.totals.feedback)
    .bind(d.max_ts.map(ts))
    .execute(&mut **tx)
    .await?;

    // seen ids for processing-side dedup
    if !d.new_ids.is_empty() {
        let blob: Vec<u8> = d.new_ids.iter().flat_map(|k| k.to_be_bytes()).collect();
        sqlx::query("INSERT INTO seen_ids (day, ids) VALUES ($1, $2)")
            .bind(day)
            .bind(blob)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Db {
    /// Commits one batch atomically. Returns false (and changes nothing)
    /// when this sequence was already applied.
    pub async fn apply_batch(&self, w: &BatchWrite<'_>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let last: i64 = sqlx::query_scalar("SELECT last_seq FROM pipeline_state FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        if last >= w.seq {
            return Ok(false);
        }
        if let (Some(day), Some(d)) = (w.day, w.delta) {
            write_delta(&mut tx, day, d).await?;
        }
        if let Some(payloads) = &w.overflow {
            sqlx::query("UPDATE overflow SET payloads = $1")
                .bind(payloads)
                .execute(&mut *tx)
                .await?;
        }
        if !w.rejected.is_empty() {
            let (reason, raw): (Vec<&str>, Vec<&str>) = w.rejected.iter().copied().unzip();
            sqlx::query("INSERT INTO dead_letters (reason, payload) SELECT * FROM UNNEST($1::text[], $2::text[])")
                .bind(reason)
                .bind(raw)
                .execute(&mut *tx)
                .await?;
        }
        let mut counters = std::collections::BTreeMap::from([
            (
                "processed".to_owned(),
                w.delta.map_or(0, |d| d.new_ids.len() as i64),
            ),
            (
                "duplicate".to_owned(),
                w.delta.map_or(0, |d| d.duplicates as i64),
            ),
            ("ignored_prior_month".to_owned(), w.ignored_prior_month),
        ]);
        for (reason, _) in &w.rejected {
            *counters.entry(format!("rejected:{reason}")).or_default() += 1;
        }
        add_counters(&mut tx, &counters.into_iter().collect::<Vec<_>>()).await?;
        sqlx::query(
            "UPDATE pipeline_state SET last_seq = $1, last_count = $2,
               clock = GREATEST(clock, $3), updated_at = now()",
        )
        .bind(w.seq)
        .bind(w.consumed)
        .bind(w.delta.and_then(|d| d.max_ts))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
