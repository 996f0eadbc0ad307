//! The design notes' situations (SPEC §4–§5), each pinned as a test against
//! the real services.

mod common;
use common::*;
use dvmtop::pipeline::{Processor, Progress};
use dvmtop::run::Services;
use dvmtop_core::YearMonth;
use dvmtop_core::clock::Policy;

async fn processor(ns: &TestNs, policy: Policy, batch: usize) -> (Services, Processor) {
    let mut cfg = ns.config();
    cfg.params.policy = policy;
    cfg.batch_size = batch;
    let s = ns.open(&cfg).await;
    let p = Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
        .await
        .unwrap();
    (s, p)
}

fn req(who: u8, ts: i64, n: usize) -> String {
    event_line(who, ts, 5300, vec![vec!["i", &n.to_string(), "text"]], "")
}

fn ym(s: &str) -> YearMonth {
    s.parse().unwrap()
}

async fn counter(s: &Services, name: &str) -> i64 {
    s.db.snapshot()
        .await
        .unwrap()
        .counters
        .get(name)
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn full_batch_of_next_month_inside_buffer_is_processed_at_once() {
    for policy in [Policy::Manual, Policy::Auto] {
        let ns = TestNs::new("fullbatch");
        let (s, mut p) = processor(&ns, policy, 10).await;
        push_lines(&s.queue, &[req(1, at(2024, 1, 20, 12), 0)]).await;
        settle(&mut p).await;
        // A whole batch of February events, all before Feb 4 (the buffer):
        // the FAQ's deadlock. They are processed without any rollover.
        let feb: Vec<String> = (0..10)
            .map(|i| req(2, at(2024, 2, 1 + (i as u32 % 3), 10), i))
            .collect();
        push_lines(&s.queue, &feb).await;
        let log = settle(&mut p).await;
        assert!(
            matches!(log.last(), Some(Progress::Idle)),
            "{policy:?}: {log:?}"
        );
        assert_eq!(counter(&s, "processed").await, 11);
        assert_eq!(
            p.clock_state().month,
            Some(ym("2024-01")),
            "no rollover inside the buffer"
        );
        assert_eq!(p.overflow_len(), 0);
        assert!(s.db.monthly_rows().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn month_without_events_still_rolls_over_as_zeros() {
    let ns = TestNs::new("gapmonth");
    let (s, mut p) = processor(&ns, Policy::Auto, 100).await;
    push_lines(
        &s.queue,
        &[req(1, at(2024, 1, 10, 0), 0), req(2, at(2024, 3, 10, 0), 1)],
    )
    .await;
    settle(&mut p).await;
    let rows = s.db.monthly_rows().await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.year_month.to_string())
            .collect::<Vec<_>>(),
        ["2024-01", "2024-02"]
    );
    assert_eq!(
        (
            rows[0].total_requests,
            rows[0].unique_users,
            rows[0].unique_kinds
        ),
        (1, 1, 1)
    );
    let feb = &rows[1];
    assert_eq!(
        (feb.total_requests, feb.total_responses, feb.total_feedback),
        (0, 0, 0)
    );
    assert_eq!(
        (feb.unique_users, feb.unique_dvms, feb.unique_kinds),
        (0, 0, 0)
    );
    assert_eq!(
        (feb.most_popular_dvm.clone(), feb.most_popular_kind),
        (None, None)
    );
    assert_eq!(p.clock_state().month, Some(ym("2024-03")));
}

#[tokio::test]
async fn prior_month_events_after_rollover_are_ignored_and_counted() {
    let ns = TestNs::new("prior");
    let (s, mut p) = processor(&ns, Policy::Auto, 100).await;
    push_lines(
        &s.queue,
        &[req(1, at(2024, 1, 10, 0), 0), req(2, at(2024, 2, 10, 0), 1)],
    )
    .await;
    settle(&mut p).await;
    let jan =
        s.db.monthly_row(ym("2024-01"))
            .await
            .unwrap()
            .expect("January rolled up");
    push_lines(
        &s.queue,
        &[
            req(3, at(2024, 1, 15, 0), 2),
            req(3, at(2023, 12, 31, 23), 3),
        ],
    )
    .await;
    settle(&mut p).await;
    assert_eq!(counter(&s, "ignored_prior_month").await, 2);
    assert_eq!(counter(&s, "processed").await, 2);
    assert_eq!(
        s.db.monthly_row(ym("2024-01")).await.unwrap(),
        Some(jan),
        "a closed month never changes"
    );
    assert_eq!(s.db.snapshot().await.unwrap().totals["total_requests"], 2);
}

#[tokio::test]
async fn late_event_of_the_open_month_lands_in_its_own_day() {
    let ns = TestNs::new("late");
    let (s, mut p) = processor(&ns, Policy::Auto, 100).await;
    push_lines(
        &s.queue,
        &[req(1, at(2024, 1, 10, 5), 0), req(1, at(2024, 1, 12, 5), 1)],
    )
    .await;
    settle(&mut p).await;
    push_lines(&s.queue, &[req(2, at(2024, 1, 11, 7), 2)]).await;
    settle(&mut p).await;
    let days: Vec<(chrono::NaiveDate, i64)> =
        sqlx::query_as("SELECT day, requests FROM kind_stats_rollups ORDER BY day")
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    let d = |n| chrono::NaiveDate::from_ymd_opt(2024, 1, n).unwrap();
    assert_eq!(days, [(d(10), 1), (d(11), 1), (d(12), 1)]);
    assert_eq!(
        p.clock_state().day,
        Some(d(12)),
        "a late event does not move the current day back"
    );
    let hour: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT hour FROM entity_activity_hourly WHERE hour < '2024-01-12' AND hour >= '2024-01-11'",
    )
    .fetch_optional(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(hour.map(|h| h.timestamp()), Some(at(2024, 1, 11, 7)));
}

#[tokio::test]
async fn under_manual_the_month_after_next_waits_for_confirmation_and_nothing_is_lost() {
    let ns = TestNs::new("manual");
    let (s, mut p) = processor(&ns, Policy::Manual, 4).await;
    let mut lines = vec![req(1, at(2024, 1, 10, 0), 0)];
    lines.extend((0..3).map(|i| req(2, at(2024, 2, 10, i), 10 + i as usize))); // M+1, rollover due
    lines.extend((0..6).map(|i| req(3, at(2024, 3, 2, i), 20 + i as usize))); // M+2: must wait
    push_lines(&s.queue, &lines).await;
    let log = settle(&mut p).await;
    let Some(Progress::Blocked(a)) = log.last() else {
        panic!("expected to wait: {log:?}")
    };
    assert_eq!(a.month, ym("2024-01"));
    assert!(a.blocked);
    // M+1 was processed while the rollover waited; M+2 waits, durably.
    assert_eq!(counter(&s, "processed").await, 4);
    assert!(s.db.monthly_rows().await.unwrap().is_empty());
    let snap = s.db.snapshot().await.unwrap();
    let waiting = snap.overflow_size as u64 + s.queue.depth().await.unwrap();
    assert_eq!(waiting, 6, "every M+2 event is still pending");
    assert_eq!(
        snap.overflow_size, 4,
        "the overflow never holds more than a batch"
    );
    // Waiting is stable: stepping again changes nothing.
    assert!(matches!(
        settle(&mut p).await.last(),
        Some(Progress::Blocked(_))
    ));
    // Confirming a month that is not open is refused.
    assert!(!p.confirm(ym("2023-12")).await.unwrap());
    assert!(p.confirm(ym("2024-01")).await.unwrap());
    let log = settle(&mut p).await;
    assert!(
        log.iter()
            .any(|x| matches!(x, Progress::Rolled { row, .. } if row.year_month == ym("2024-01")))
    );
    assert!(matches!(log.last(), Some(Progress::Idle)));
    assert_eq!(counter(&s, "processed").await, 10);
    assert_eq!(
        p.clock_state().month,
        Some(ym("2024-02")),
        "March 2 is inside February's buffer"
    );
    let jan = s.db.monthly_row(ym("2024-01")).await.unwrap().unwrap();
    assert_eq!((jan.total_requests, jan.unique_users), (1, 1));
}

#[tokio::test]
async fn external_confirmation_reaches_a_waiting_pipeline() {
    let ns = TestNs::new("extconfirm");
    let (s, mut p) = processor(&ns, Policy::Manual, 10).await;
    push_lines(
        &s.queue,
        &[req(1, at(2024, 1, 10, 0), 0), req(2, at(2024, 3, 10, 0), 1)],
    )
    .await;
    assert!(matches!(
        settle(&mut p).await.last(),
        Some(Progress::Blocked(_))
    ));
    let msg = dvmtop::commands::confirm(&ns.config(), None).await.unwrap();
    assert!(msg.contains("2024-01"), "{msg}");
    p.refresh_requests().await.unwrap();
    let log = settle(&mut p).await;
    // January rolls; March 10 is then the month after the open one
    // (February), processed while February's own due rollover waits.
    let awaiting = log.iter().find_map(|x| match x {
        Progress::Batch(b) => b.awaiting,
        _ => None,
    });
    assert!(
        matches!(awaiting, Some(a) if a.month == ym("2024-02") && !a.blocked),
        "{log:?}"
    );
    assert!(matches!(log.last(), Some(Progress::Idle)));
    assert_eq!(s.db.monthly_rows().await.unwrap().len(), 1);
}

#[tokio::test]
async fn rollover_is_idempotent() {
    let ns = TestNs::new("idem");
    let (s, mut p) = processor(&ns, Policy::Auto, 100).await;
    let lines = [
        req(1, at(2024, 1, 10, 0), 0),
        req(2, at(2024, 1, 11, 0), 1),
        req(3, at(2024, 2, 10, 0), 2),
    ];
    push_lines(&s.queue, &lines).await;
    settle(&mut p).await;
    let rows = s.db.monthly_rows().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].total_requests, 2);
    // A restart that finds the same input again (re-queued by a DVMDash
    // list, say) rolls nothing up twice; re-writing the row (an operator's
    // restore) keeps one row.
    drop(p);
    let mut p = Processor::open(
        s.db.clone(),
        s.queue.clone(),
        Services::settings(&ns.config()),
    )
    .await
    .unwrap();
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(&s.queue.keys.queue)
        .arg(&lines)
        .query_async(&mut con)
        .await
        .unwrap();
    settle(&mut p).await;
    let mut tx = s.db.pool.begin().await.unwrap();
    dvmtop::store::upsert_month(&mut tx, &rows[0])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.db.monthly_rows().await.unwrap(), rows);
    let snap = s.db.snapshot().await.unwrap();
    assert_eq!(snap.counters.get("ignored_prior_month"), Some(&2));
}

#[tokio::test]
async fn consumes_a_dvmdash_list_of_raw_events() {
    let ns = TestNs::new("dvmdash");
    let mut cfg = ns.config();
    let key = format!("{}_dvmdash_events", ns.name);
    cfg.queue_key = Some(key.clone());
    let s = ns.open(&cfg).await;
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string("tests/fixtures/dvm-events-real.jsonl")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.push(lines[0].clone());
    lines.push("{oops".into());
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&lines)
        .query_async(&mut con)
        .await
        .unwrap();
    let mut p = Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
        .await
        .unwrap();
    settle(&mut p).await;
    let snap = s.db.snapshot().await.unwrap();
    assert_eq!(snap.counters.get("processed"), Some(&118));
    assert_eq!(snap.counters.get("duplicate"), Some(&1));
    assert_eq!(snap.counters.get("rejected:malformed"), Some(&1));
    assert_eq!(snap.dead_letters, 1);
    assert_eq!(s.queue.depth().await.unwrap(), 0);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
}
