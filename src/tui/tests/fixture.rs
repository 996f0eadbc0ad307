//! Fixed data for update and render tests: no wall clock, no services.

use crate::pipeline::status::{AwaitingRollover, Latency, Session};
use crate::pipeline::{BatchReport, EntityCounts, Phase, PipelineStatus};
use crate::store::{JobRun, MonthRow, WindowStats};
use crate::tui::app::{App, DbPoll, DbView, Info, Mode, Msg, Poll, RedisView, update};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use dvmtop_core::YearMonth;
use dvmtop_core::clock::{Awaiting, Policy};
use std::collections::BTreeMap;

pub(crate) fn ym(y: i32, m: u32) -> YearMonth {
    YearMonth::new(y, m).unwrap()
}

pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub(crate) fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// The wall clock the render tests pass in.
pub(crate) fn now() -> DateTime<Utc> {
    at(2025, 6, 1, 12, 0, 0)
}

pub(crate) fn info() -> Info {
    Info {
        namespace: "sample".into(),
        mode: Mode::Backtest,
        batch_size: 5000,
        policy: Policy::Manual,
        buffer_days: 3,
        readonly: false,
        mouse: false,
    }
}

pub(crate) fn dvm(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

pub(crate) fn month_row(m: &str, requests: i64) -> MonthRow {
    MonthRow {
        year_month: m.parse().unwrap(),
        total_requests: requests,
        total_responses: requests * 9 / 10,
        total_feedback: requests / 5,
        unique_dvms: 61,
        unique_users: 1_234 + requests / 100,
        unique_kinds: 17,
        most_popular_dvm: Some(dvm(0xab)),
        most_popular_kind: Some(dvmtop_core::JobKind(5300)),
        jobs_answered: requests * 8 / 10,
        median_response_s: Some(12),
        p90_response_s: Some(95),
        dvm_activity: serde_json::json!({}),
        kind_activity: serde_json::json!({}),
        created_at: None,
    }
}

fn window(name: &'static str, scale: i64) -> WindowStats {
    WindowStats {
        window: name,
        requests: 410 * scale,
        responses: 371 * scale,
        feedback: 52 * scale,
        completion: Some(371.0 / 410.0),
        unique_users: 37 * scale.min(40),
        unique_dvms: 12 + scale.min(40),
        unique_kinds: 9 + scale.min(8),
        popular_dvm: Some(dvm(0x5c)),
        popular_kind: Some(dvmtop_core::JobKind(5300)),
        competitive_kind: Some(dvmtop_core::JobKind(5050)),
        answered: 330 * scale,
        answered_pct: Some(330.0 * 100.0 / 410.0),
        median_response_s: Some(40 + scale),
        p90_response_s: Some(300 + 10 * scale),
        dvm_jobs: Vec::new(),
        kind_jobs: Vec::new(),
    }
}

fn job(
    id: i64,
    job: &str,
    reference: NaiveDate,
    started: DateTime<Utc>,
    ms: i64,
    rows: &[(&str, i64)],
) -> JobRun {
    JobRun {
        id,
        job: job.parse().unwrap(),
        reference_time: Some(reference.and_hms_opt(0, 0, 0).unwrap().and_utc()),
        year_month: None,
        started_at: started,
        finished_at: Some(started + chrono::Duration::milliseconds(ms)),
        rows: rows.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        outcome: dvmtop_core::Outcome::Ok,
        attempts: 1,
        detail: None,
    }
}

pub(crate) fn db_view() -> DbView {
    let t0 = at(2025, 6, 1, 11, 58, 0);
    DbView {
        current_month: Some("2024-03".into()),
        current_day: Some(day(2024, 3, 14)),
        clock: Some(at(2024, 3, 14, 17, 42, 9).timestamp()),
        overflow_size: 1_250,
        overflow_days: vec![(day(2024, 3, 15), 1_190), (day(2024, 3, 16), 60)],
        dvms_active: 58,
        dvms_inactive: 7,
        users_active: 2_911,
        users_inactive: 340,
        monthly_rows: 2,
        confirmed_month: None,
        counters: BTreeMap::from([
            ("processed".into(), 812_345),
            ("duplicate".into(), 120),
            ("ignored_prior_month".into(), 33),
            ("rejected:malformed".into(), 2),
        ]),
        dead_letters: 2,
        jobs: vec![
            job(
                9,
                "daily_cleanup",
                day(2024, 3, 14),
                t0,
                41,
                &[("entity_activity", 1_872), ("users_deactivated", 12)],
            ),
            job(
                8,
                "daily_cleanup",
                day(2024, 3, 13),
                t0 - chrono::Duration::seconds(9),
                38,
                &[("entity_activity", 1_790)],
            ),
            job(
                7,
                "backup",
                day(2024, 3, 1),
                t0 - chrono::Duration::seconds(70),
                12,
                &[("monthly_activity", 1)],
            ),
            job(
                6,
                "monthly_rollover",
                day(2024, 3, 1),
                t0 - chrono::Duration::seconds(71),
                230,
                &[("monthly_activity", 1)],
            ),
            job(
                5,
                "daily_cleanup",
                day(2024, 3, 12),
                t0 - chrono::Duration::seconds(80),
                35,
                &[],
            ),
        ],
    }
}

pub(crate) fn redis_view() -> RedisView {
    RedisView {
        depth: 48_211,
        ingest: BTreeMap::from([
            ("events_read".into(), 901_777),
            ("accepted".into(), 899_120),
            ("rejected:malformed".into(), 1_204),
            ("rejected:future".into(), 311),
            ("rejected:duplicate".into(), 1_142),
        ]),
        dead_letters: 1_515,
        relays: relays(),
    }
}

/// Three relays: one up, one down with its error, one being connected.
pub(crate) fn relays() -> Vec<crate::relay::RelayStatus> {
    use crate::relay::RelayStatus;
    let t = now().timestamp();
    let rejected = |bad_sig: u64, future: u64| {
        BTreeMap::from([
            ("bad_id".to_owned(), 0),
            ("bad_sig".to_owned(), bad_sig),
            ("future".to_owned(), future),
            ("irrelevant_kind".to_owned(), 0),
            ("malformed".to_owned(), 0),
        ])
    };
    vec![
        RelayStatus {
            url: "wss://nos.lol".into(),
            connected: true,
            state: "connected".into(),
            events_received: 18_220,
            accepted: 17_902,
            duplicates: 310,
            rejected: rejected(6, 2),
            last_event_at: Some(t - 4),
            ..Default::default()
        },
        RelayStatus {
            url: "wss://relay.damus.io".into(),
            connected: false,
            state: "disconnected".into(),
            events_received: 9_100,
            accepted: 41,
            duplicates: 9_057,
            rejected: rejected(0, 1),
            last_event_at: Some(t - 700),
            last_error: Some("connect: IO error: Connection refused (os error 111)".into()),
            last_error_at: Some(t - 65),
            ..Default::default()
        },
        RelayStatus {
            url: "ws://127.0.0.1:7777".into(),
            state: "connecting".into(),
            rejected: rejected(0, 0),
            ..Default::default()
        },
    ]
}

pub(crate) fn poll(at: DateTime<Utc>, depth: u64, accepted: u64, processed: i64) -> Poll {
    let mut view = db_view();
    view.counters.insert("processed".into(), processed);
    let mut redis = redis_view();
    redis.depth = depth;
    redis.ingest.insert("accepted".into(), accepted);
    Poll {
        at,
        db: Ok(DbPoll {
            view,
            windows: Some(vec![
                window("1h", 1),
                window("24h", 24),
                window("7d", 160),
                window("30d", 700),
            ]),
            months: Some(vec![
                month_row("2024-01", 281_455),
                month_row("2024-02", 302_118),
            ]),
        }),
        redis: Ok(redis),
    }
}

pub(crate) fn batch(day: NaiveDate, processed: usize, awaiting: Option<Awaiting>) -> BatchReport {
    BatchReport {
        seq: 412,
        day: Some(day),
        consumed: processed,
        processed,
        overflow: 1_250,
        awaiting,
        millis: 38.4,
        ..Default::default()
    }
}

/// A running backtest mid-March 2024 with two months rolled up.
pub(crate) fn busy_app() -> App {
    let mut app = App::new(info());
    // Polls a few seconds apart give rates and a depth history.
    let base = at(2025, 6, 1, 11, 59, 0);
    let depths = [
        52_000u64, 51_200, 50_900, 50_100, 49_800, 49_000, 48_700, 48_211,
    ];
    for (i, d) in depths.iter().enumerate() {
        let i = i as i64;
        update(
            &mut app,
            Msg::Polled(Box::new(poll(
                base + chrono::Duration::seconds(i * 2),
                *d,
                890_000 + i as u64 * 1_300,
                800_000 + i * 1_763,
            ))),
        );
    }
    update(&mut app, Msg::Status(Box::new(running_status())));
    app.note = None;
    app
}

/// A snapshot of a backtest running mid-March 2024.
pub(crate) fn running_status() -> PipelineStatus {
    PipelineStatus {
        phase: Phase::Running,
        month: Some(ym(2024, 3)),
        day: Some(day(2024, 3, 14)),
        clock: Some(at(2024, 3, 14, 17, 42, 9).timestamp()),
        overflow: 1_250,
        overflow_days: vec![(day(2024, 3, 15), 1_190), (day(2024, 3, 16), 60)],
        committed_seq: 411,
        last_batch: Some(batch(day(2024, 3, 14), 4_800, None)),
        latency: Latency {
            last_ms: 38.4,
            avg_ms: 37.8,
            max_ms: 44.0,
            batches: 3,
        },
        session: Session {
            batches: 3,
            consumed: 14_400,
            processed: 14_400,
            ..Default::default()
        },
        processed_per_s: 88_000.0,
        entities: Some(EntityCounts {
            dvms_active: 58,
            dvms_inactive: 7,
            users_active: 2_911,
            users_inactive: 340,
        }),
        ..Default::default()
    }
}

/// The same snapshot with `month`'s rollover waiting for confirmation.
pub(crate) fn waiting_status(month: YearMonth, blocked: bool, requests: i64) -> PipelineStatus {
    PipelineStatus {
        phase: if blocked {
            Phase::Waiting
        } else {
            Phase::Running
        },
        month: Some(month),
        awaiting: Some(AwaitingRollover {
            month,
            blocked,
            since: at(2025, 6, 1, 11, 0, 0),
            preview: month_row(&month.to_string(), requests),
        }),
        ..running_status()
    }
}

/// Twelve audited runs that fold into twelve lines (no two no-op cleanups
/// in a row): more than the overview's cleanup pane shows at 80×24.
pub(crate) fn many_jobs(app: &mut App) {
    let d = app.db.data.as_mut().expect("polled");
    let base = d.jobs[0].clone();
    d.jobs = (0..12)
        .map(|i| {
            let mut j = base.clone();
            j.id = 100 - i;
            j.reference_time = Some(at(2024, 3, 14 - i as u32, 0, 0, 0));
            j.rows = [("entity_activity".to_owned(), 1_000 + i)].into();
            j
        })
        .collect();
}
