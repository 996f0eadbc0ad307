//! The TUI views' queries against the real PostgreSQL, after a real
//! backtest: every DVM and kind of a window with exact figures (checked
//! against hand counts and against the hourly detail rows), closed months
//! from `monthly_activity`, a DVM's and a kind's page.

mod common;
use common::*;
use dvmtop::run::Start;
use dvmtop::store::{Db, Range};
use dvmtop::tui::views::Period;

const D1: u8 = 0xd1;
const D2: u8 = 0xd2;
const D3: u8 = 0xd3;
const U1: u8 = 0xa1;
const U2: u8 = 0xa2;

fn hex(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

/// Jan–Mar 2024: January and February roll over (auto), March stays open
/// with the clock at 2024-03-10 12:00.
fn events() -> Vec<String> {
    let mut l = Vec::new();
    let mut n = 0;
    let mut ev = |seed: u8, t: i64, kind: i64, tags: Vec<Vec<&str>>| {
        n += 1;
        l.push(event_line(seed, t + n, kind, tags, &format!("e{n}")));
    };
    ev(D1, at(2024, 1, 10, 8), 31990, vec![vec!["k", "5300"]]);
    for _ in 0..2 {
        ev(U1, at(2024, 1, 15, 9), 5300, vec![]);
        ev(D1, at(2024, 1, 15, 10), 6300, vec![]);
    }
    ev(D3, at(2024, 1, 20, 10), 6300, vec![]);
    for _ in 0..3 {
        ev(U1, at(2024, 2, 20, 9), 5300, vec![]);
        ev(D1, at(2024, 2, 20, 10), 6300, vec![]);
    }
    for _ in 0..2 {
        ev(U2, at(2024, 3, 1, 9), 5050, vec![]);
        ev(D2, at(2024, 3, 1, 10), 6050, vec![]);
    }
    ev(D2, at(2024, 3, 1, 11), 7000, vec![vec!["k", "5050"]]);
    ev(U2, at(2024, 3, 5, 9), 5100, vec![]);
    ev(U1, at(2024, 3, 10, 11), 5300, vec![]);
    ev(D1, at(2024, 3, 10, 12), 6300, vec![]);
    // The announcement's content is JSON with the name.
    l[0] = event_line(
        D1,
        at(2024, 1, 10, 8),
        31990,
        vec![vec!["k", "5300"]],
        r#"{"name":"Translator","about":"translates"}"#,
    );
    l
}

fn range(p: Period, clock: Option<i64>) -> Range {
    let (start, end) = p.bounds(clock).unwrap();
    let (first_day, last_day) = p.days(clock).unwrap();
    Range {
        start,
        end,
        first_day,
        last_day,
    }
}

/// Responses per DVM in [start, end) straight from the hourly detail view.
async fn hourly_responses(db: &Db, r: Range) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT entity, sum(responses)::int8 FROM entity_activity_hourly
         WHERE role = 1 AND hour >= $1 AND hour < $2 GROUP BY entity HAVING sum(responses + feedback) > 0
         ORDER BY entity",
    )
    .bind(r.start.and_utc())
    .bind(r.end.and_utc())
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn dvm_and_kind_views_read_exact_figures() {
    let ns = TestNs::new("views");
    let cfg = ns.config();
    let file = write_input(&cfg, "in.jsonl", &events());
    backtest(&cfg, &[file], Start::Fresh).await;
    let db = Db::connect(&cfg.database_url, &cfg.namespace)
        .await
        .unwrap();
    let clock = db.committed_clock().await.unwrap();
    assert_eq!(clock, Some(at(2024, 3, 10, 12) + 20));

    // 30 d: Feb 9 … Mar 10.
    let r30 = range(Period::Last30d, clock);
    let mut dvms = db.view_dvms(r30, None).await.unwrap();
    dvms.sort_by(|a, b| a.id.cmp(&b.id));
    let got: Vec<_> = dvms
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                d.name.clone(),
                d.responses,
                d.feedback,
                d.kinds.clone(),
                d.active,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                hex(D1),
                Some("Translator".into()),
                4,
                0,
                vec![5300],
                Some(true)
            ),
            (hex(D2), None, 2, 1, vec![5050], Some(true)),
        ]
    );
    let hourly = hourly_responses(&db, r30).await;
    let ours: Vec<(String, i64)> = dvms.iter().map(|d| (d.id.clone(), d.responses)).collect();
    assert_eq!(ours, hourly, "the view agrees with the detail rows");
    assert!(dvms[0].first_seen.is_some() && dvms[0].last_seen.is_some());

    // 24 h: only the last response.
    let r24 = range(Period::Last24h, clock);
    let d24 = db.view_dvms(r24, None).await.unwrap();
    assert_eq!(d24.len(), 1);
    assert_eq!((d24[0].id.clone(), d24[0].responses), (hex(D1), 1));

    // A closed month, from monthly_activity.
    let jan = dvmtop_core::YearMonth::new(2024, 1).unwrap();
    let rj = range(Period::Month(jan), clock);
    let mut dj = db.view_dvms(rj, Some("2024-01")).await.unwrap();
    dj.sort_by(|a, b| a.id.cmp(&b.id));
    let got: Vec<_> = dj
        .iter()
        .map(|d| (d.id.clone(), d.responses, d.kinds.clone()))
        .collect();
    assert_eq!(
        got,
        vec![(hex(D1), 2, vec![5300]), (hex(D3), 1, vec![5300])]
    );

    // Kinds of the 30 days: every request kind, exact.
    let mut kinds = db.view_kinds(r30, None).await.unwrap();
    kinds.sort_by_key(|k| k.kind);
    let got: Vec<_> = kinds
        .iter()
        .map(|k| {
            (
                k.kind,
                k.requests,
                k.responses,
                k.dvms,
                k.top_dvm.clone(),
                k.top_dvm_name.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (5050, 2, 2, 1, Some(hex(D2)), None),
            (5100, 1, 0, 0, None, None),
            (5300, 4, 4, 1, Some(hex(D1)), Some("Translator".into())),
        ]
    );
    let mut kj = db.view_kinds(rj, Some("2024-01")).await.unwrap();
    kj.sort_by_key(|k| k.kind);
    assert_eq!(
        kj.iter()
            .map(|k| (k.kind, k.requests, k.responses, k.dvms))
            .collect::<Vec<_>>(),
        vec![(5300, 2, 3, 2)]
    );

    // D1's page.
    let p = db.view_dvm(&hex(D1), r30, None).await.unwrap();
    assert_eq!(
        p.profile.as_ref().and_then(|p| p.name.clone()),
        Some("Translator".into())
    );
    assert!(p.lifecycle.as_ref().is_some_and(|l| l.active));
    assert_eq!(p.kinds.iter().map(|k| k.0).collect::<Vec<_>>(), vec![5300]);
    let day = |m, d| chrono::NaiveDate::from_ymd_opt(2024, m, d).unwrap();
    assert_eq!(p.per_day, vec![(day(2, 20), 3), (day(3, 10), 1)]);
    assert_eq!(
        p.months,
        vec![("2024-01".into(), 2, 0), ("2024-02".into(), 3, 0)]
    );

    // A closed month's page takes its job figures and feedback from the
    // month's row (the daily rows may be gone by retention).
    let pj = db.view_dvm(&hex(D1), rj, Some("2024-01")).await.unwrap();
    let stored: serde_json::Value = sqlx::query_scalar(
        "SELECT dvm_activity->$1 FROM monthly_activity WHERE year_month = '2024-01'",
    )
    .bind(hex(D1))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(pj.jobs.answered, stored["answered"].as_i64().unwrap());
    assert_eq!(
        pj.feedback_status[2],
        stored["feedback_status"]["error"].as_i64().unwrap()
    );

    // Kind 5300's page.
    let k = db.view_kind(5300, r30, None).await.unwrap();
    assert_eq!(k.dvms, vec![(hex(D1), Some("Translator".into()), 4)]);
    assert_eq!(k.per_day, vec![(day(2, 20), 3, 3), (day(3, 10), 1, 1)]);
    let kjan = db.view_kind(5300, rj, Some("2024-01")).await.unwrap();
    assert_eq!(kjan.dvms.len(), 2, "both DVMs served 5300 in January");

    // The loader runs the same queries by name.
    use dvmtop::tui::views::{Loaded, Query, loader};
    match loader::load(&db, &Query::Dvms(Period::Last30d))
        .await
        .unwrap()
    {
        Loaded::Dvms(rows) => assert_eq!(rows.len(), 2),
        other => panic!("{other:?}"),
    }
    let march = dvmtop_core::YearMonth::new(2024, 3).unwrap();
    match loader::load(&db, &Query::OpenMonth(march)).await.unwrap() {
        Loaded::OpenMonth(row) => {
            assert_eq!(
                (row.total_requests, row.total_responses, row.total_feedback),
                (4, 3, 1)
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_empty_namespace_lists_nothing() {
    let ns = TestNs::new("viewsempty");
    let cfg = ns.config();
    let _s = ns.open(&cfg).await;
    let db = Db::connect(&cfg.database_url, &cfg.namespace)
        .await
        .unwrap();
    use dvmtop::tui::views::{Loaded, Query, loader};
    assert_eq!(
        loader::load(&db, &Query::Dvms(Period::Last30d))
            .await
            .unwrap(),
        Loaded::Dvms(Vec::new())
    );
    assert_eq!(
        loader::load(&db, &Query::Kinds(Period::Last7d))
            .await
            .unwrap(),
        Loaded::Kinds(Vec::new())
    );
    assert!(
        loader::load(&db, &Query::Dvm(hex(D1), Period::Last30d))
            .await
            .is_err()
    );
}

/// An event line from any public key (placeholder signature).
fn line_from(pubkey: &str, created_at: i64, kind: i64, content: &str) -> String {
    let mut ev = dvmtop::event::Event {
        id: String::new(),
        pubkey: pubkey.to_owned(),
        created_at,
        kind,
        tags: Vec::new(),
        content: content.to_owned(),
        sig: "0".repeat(128),
    };
    ev.id = dvmtop::event::compute_id(&ev);
    serde_json::json!({"id": ev.id, "pubkey": ev.pubkey, "created_at": ev.created_at, "kind": ev.kind,
        "tags": ev.tags, "content": ev.content, "sig": ev.sig})
    .to_string()
}

/// Query times of the views with 1,000 DVMs and 50,000 users in the
/// window (a benchmark, not a timed test: run it explicitly):
/// `cargo nextest run --release --run-ignored only -E 'test(view_queries_at_scale)' --no-capture`
#[tokio::test]
#[ignore = "benchmark: run explicitly"]
async fn view_queries_at_scale() {
    use dvmtop::tui::views::{Query, loader};
    let ns = TestNs::new("viewscale");
    let cfg = ns.config();
    // 35 days of March–April 2024: 3,000 requests a day from 50,000 users,
    // each answered by one of 1,000 DVMs, 20 kinds; every DVM announced.
    let mut lines = Vec::new();
    let day0 = at(2024, 3, 1, 0);
    for d in 0..35i64 {
        for i in 0..3_000i64 {
            let n = d * 3_000 + i;
            let t = day0 + d * 86_400 + (i * 86_400 / 3_000);
            let user = format!("{:064x}", 1_000_000 + (n * 7_919) % 50_000);
            let dvm = format!("{:064x}", 2_000_000 + (n * 104_729) % 1_000);
            let kind = 5000 + (n % 20) * 50;
            lines.push(line_from(&user, t, kind, &format!("r{n}")));
            lines.push(line_from(&dvm, t + 5, kind + 1000, &format!("s{n}")));
        }
    }
    for k in 0..1_000i64 {
        let dvm = format!("{:064x}", 2_000_000 + k);
        let content = serde_json::json!({"name": format!("DVM number {k}")}).to_string();
        lines.push(line_from(&dvm, day0 + 60, 31990, &content));
    }
    let file = write_input(&cfg, "scale.jsonl", &lines);
    let t = std::time::Instant::now();
    backtest(&cfg, &[file], Start::Fresh).await;
    println!("backtest of {} events: {:?}", lines.len(), t.elapsed());
    let db = Db::connect(&cfg.database_url, &cfg.namespace)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let dvms: i64 = sqlx::query_scalar("SELECT count(*) FROM dvms")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    println!("{dvms} DVMs, {users} users");
    assert_eq!((dvms, users), (1_000, 50_000));
    let top = format!("{:064x}", 2_000_000);
    let april = dvmtop_core::YearMonth::new(2024, 4).unwrap();
    let march = dvmtop_core::YearMonth::new(2024, 3).unwrap();
    let queries = [
        ("DVMs 30 d", Query::Dvms(Period::Last30d)),
        ("DVMs 24 h", Query::Dvms(Period::Last24h)),
        ("DVMs closed month", Query::Dvms(Period::Month(march))),
        ("kinds 30 d", Query::Kinds(Period::Last30d)),
        ("kinds closed month", Query::Kinds(Period::Month(march))),
        ("DVM detail 30 d", Query::Dvm(top.clone(), Period::Last30d)),
        ("kind detail 30 d", Query::Kind(5300, Period::Last30d)),
        ("open month figures", Query::OpenMonth(april)),
    ];
    for (name, q) in &queries {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let got = loader::load(&db, q).await.unwrap();
            times.push(t.elapsed());
            rows = match got {
                dvmtop::tui::views::Loaded::Dvms(r) => r.len(),
                dvmtop::tui::views::Loaded::Kinds(r) => r.len(),
                dvmtop::tui::views::Loaded::Dvm(d) => d.per_day.len(),
                dvmtop::tui::views::Loaded::Kind(k) => k.dvms.len(),
                dvmtop::tui::views::Loaded::OpenMonth(_) => 1,
            };
        }
        times.sort();
        println!(
            "view query {name}: median {:?} (min {:?}, max {:?}), {rows} rows",
            times[2], times[0], times[4]
        );
    }
    // The detail pages' per-day reads use the 0009 indexes.
    for (sql, index) in [
        (
            format!("EXPLAIN SELECT day, responses FROM dvm_stats_rollups WHERE dvm = '{top}' AND day >= '2024-03-06' AND day <= '2024-04-04'"),
            "dvm_stats_rollups_dvm_day",
        ),
        (
            "EXPLAIN SELECT day, requests, responses FROM kind_stats_rollups WHERE kind = 5300 AND day >= '2024-03-06' AND day <= '2024-04-04'".to_owned(),
            "kind_stats_rollups",
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&db.pool).await.unwrap();
        println!("{}", plan.join("\n"));
        assert!(plan.join(" ").contains(index), "{plan:?}");
    }
}
