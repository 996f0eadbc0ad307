//! The shell around the core, against the real services: one runtime, one
//! published snapshot that every view renders the same way.

mod common;
use common::*;
use dvmtop::pipeline::Phase;
use dvmtop::run::{Mode, Runtime, Start, report};
use dvmtop::tui::app::{App, Info, Msg, update};
use dvmtop_core::clock::Policy;

fn lines() -> Vec<String> {
    let mut v = Vec::new();
    for d in 1..=28u32 {
        for h in [2, 14] {
            let n = v.len();
            v.push(event_line(
                1 + (n % 5) as u8,
                at(2024, 1, d, h),
                5300,
                vec![vec!["i", &n.to_string()]],
                "",
            ));
            v.push(event_line(
                90,
                at(2024, 1, d, h) + 60,
                6300,
                vec![vec!["i", &n.to_string()]],
                "",
            ));
        }
    }
    for d in 1..=9u32 {
        v.push(event_line(
            2,
            at(2024, 2, d, 3),
            5300,
            vec![],
            &d.to_string(),
        ));
    }
    v
}

fn info(ns: &str, policy: Policy) -> Info {
    Info {
        namespace: ns.into(),
        mode: Mode::Backtest,
        batch_size: 5000,
        policy,
        buffer_days: 3,
        readonly: false,
        mouse: false,
    }
}

/// The TUI's state and the JSON reporter see the same last snapshot, and
/// it agrees with the tables.
#[tokio::test(flavor = "multi_thread")]
async fn the_tui_and_headless_render_the_same_snapshot() {
    let ns = TestNs::new("samesnap");
    let mut cfg = ns.config();
    cfg.batch_size = 7;
    let file = write_input(&cfg, "in.jsonl", &lines());
    let mut rt = Runtime::launch(&cfg, Mode::Backtest, &[file], Start::New)
        .await
        .unwrap();
    let events = rt.take_events().unwrap();
    let mut seen = rt.status();
    let name = ns.name.clone();
    let tui = async move {
        let mut app = App::new(info(&name, Policy::Auto));
        while seen.changed().await.is_ok() {
            let s = seen.borrow_and_update().clone();
            update(&mut app, Msg::Status(Box::new(s)));
        }
        app
    };
    let mut json = Vec::new();
    let reporter = report(rt.status(), events, |v| json.push(v));
    let (end, last, app) = tokio::join!(rt.ended(), reporter, tui);
    end.unwrap();
    let stopped = rt.shutdown(std::time::Duration::from_secs(10)).await;
    assert_eq!(app.status, last, "one snapshot, two views");
    assert_eq!(last.phase, Phase::Finished);
    let snap = stopped.services.db.snapshot().await.unwrap();
    assert_eq!(last.session.processed as i64, snap.counters["processed"]);
    assert_eq!(last.month.map(|m| m.to_string()), snap.current_month);
    assert_eq!(last.clock, snap.clock_unix);
    assert_eq!(app.state_line().1, "■ FINISHED");
    // The JSON lines name the rollover the snapshot counted.
    let rolled: Vec<_> = json.iter().filter(|v| v["event"] == "rollover").collect();
    assert_eq!(rolled.len() as u64, last.session.rollovers);
    assert_eq!(rolled[0]["month"], "2024-01");
}

/// A backtest whose input ends while a rollover waits (manual policy) does
/// not finish until it is confirmed; then it rolls the month over, like the
/// headless (auto) run of the same input.
#[tokio::test(flavor = "multi_thread")]
async fn a_manual_backtest_waits_at_its_end_and_confirming_finishes_it() {
    let ns = TestNs::new("waitend");
    let mut cfg = ns.config();
    cfg.params.policy = Policy::Manual;
    let file = write_input(&cfg, "in.jsonl", &lines());
    let mut rt = Runtime::launch(&cfg, Mode::Backtest, &[file], Start::New)
        .await
        .unwrap();
    let mut status = rt.status();
    let waiting = status
        .wait_for(|s| s.phase == Phase::Waiting)
        .await
        .unwrap()
        .clone();
    let a = waiting.awaiting.expect("January waits");
    assert_eq!(a.month.to_string(), "2024-01");
    assert_eq!(a.preview.total_requests, 56);
    // Another process's `dvmtop confirm` (through PostgreSQL NOTIFY).
    let msg = dvmtop::commands::confirm(&cfg, None).await.unwrap();
    assert!(msg.contains("2024-01"), "{msg}");
    let end = tokio::time::timeout(std::time::Duration::from_secs(20), rt.ended())
        .await
        .expect("the confirmation wakes the pipeline");
    assert_eq!(end, Ok(dvmtop::pipeline::RunEnd::Drained));
    let stopped = rt.shutdown(std::time::Duration::from_secs(10)).await;
    let row = stopped
        .services
        .db
        .monthly_row(a.month)
        .await
        .unwrap()
        .expect("January rolled over");
    assert_eq!(
        dvmtop_core::MonthRow {
            created_at: None,
            ..row
        },
        a.preview,
        "the previewed row is the row written"
    );
}
