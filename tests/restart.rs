//! Issue 16, restart after a crash: a start that finds the namespace lock
//! held waits for it (saying once whom it waits for, from
//! `pg_stat_activity`) and then proceeds, so a supervisor's immediate
//! restart after `kill -9` works; a live holder makes it give up with one
//! line after the wait.

mod common;
use common::process::{Dvmtop, Finished, Running, Signal, generate};
use common::*;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Two months of traffic (a rollover in between), ~18 000 events, all
/// valid and distinct: the file and its event count.
fn input(ns: &TestNs) -> (PathBuf, u64) {
    let file = std::env::temp_dir().join(&ns.name).join("in.jsonl");
    let stats = generate(
        &[
            "--seed",
            "16",
            "--start",
            "2024-01",
            "--months",
            "2",
            "--events-per-day",
            "300",
        ],
        &file,
    );
    assert_eq!(
        stats.lines, stats.events,
        "no duplicates or malformed lines"
    );
    (file, stats.events)
}

fn serve(d: &Dvmtop, file: &Path, extra: &[&str]) -> Running {
    let mut args = vec![
        "serve".to_owned(),
        "--no-relays".to_owned(),
        file.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    d.spawn(args)
}

/// Waits until the namespace's queue is drained with `events` ingested
/// and processed (read through `dvmtop status --json`).
async fn drained(ns: &TestNs, events: u64) {
    let cfg = ns.config();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(v) = dvmtop::commands::status(&cfg).await {
            let n = |k: &str| v["counters"][k].as_u64().unwrap_or(0);
            let accepted = v["ingest"]["accepted"].as_u64().unwrap_or(0);
            if accepted == events
                && v["queue_depth"] == 0
                && v["overflow_size"] == 0
                && n("processed") + n("ignored_prior_month") == events
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} not drained within 300 s",
            ns.name
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An uninterrupted serve of `file` to the end: the reference tables.
async fn reference_serve(file: &Path, events: u64) -> TestNs {
    let ns = TestNs::new("rsref");
    let d = Dvmtop::shared(&ns);
    let mut run = serve(&d, file, &["--commit-events", "2000"]);
    drained(&ns, events).await;
    let done = run.terminate(Duration::from_secs(60));
    assert!(done.status.success(), "reference serve: {}", done.stderr);
    ns
}

async fn assert_same_tables(a: &TestNs, b: &TestNs) {
    let da = dvmtop::store::Db::connect_existing(&database_url(), &a.name)
        .await
        .unwrap();
    let db = dvmtop::store::Db::connect_existing(&database_url(), &b.name)
        .await
        .unwrap();
    let tables = common::STATE_TABLES;
    for (table, order, exclude) in tables {
        let x = table_dump(&da, table, order, exclude).await;
        let y = table_dump(&db, table, order, exclude).await;
        assert_eq!(x.len(), y.len(), "{table}: row counts differ");
        assert!(x == y, "{table} differs between the runs");
    }
}

fn finished_ok(done: &Finished, what: &str) {
    assert!(
        done.status.success(),
        "{what}: {:?}\n{}",
        done.status,
        done.stderr
    );
}

/// `kill -9` a serve mid-run and start it again at once, as a supervisor
/// does: accepted, and the tables end as an uninterrupted serve's.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_right_after_kill_9_is_accepted_and_ends_with_the_same_tables() {
    let ns = TestNs::new("rskill");
    let (file, events) = input(&ns);
    let reference = reference_serve(&file, events).await;
    let d = Dvmtop::shared(&ns);
    let mut first = serve(&d, &file, &["--commit-events", "2000"]);
    first.wait_for_json("a month opened", Duration::from_secs(120), |v| {
        v["event"] == "month_opened"
    });
    first.wait_for_json("progress", Duration::from_secs(120), |v| {
        v["event"] == "progress"
    });
    first.kill();
    // Immediately: PostgreSQL may not have ended the dead session yet.
    let mut second = serve(&d, &file, &["--commit-events", "2000"]);
    drained(&ns, events).await;
    let done = second.terminate(Duration::from_secs(60));
    finished_ok(&done, "the restarted serve");
    assert!(!done.stderr.contains("in use"), "{}", done.stderr);
    assert_same_tables(&reference, &ns).await;
}

/// A session holding the namespace lock (as a crashed process's lingering
/// backend does): the start says once whom it waits for, and proceeds as
/// soon as the lock is let go.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_waits_for_a_held_lock_names_the_holder_and_proceeds() {
    let ns = TestNs::new("rswait");
    let (file, _) = input(&ns);
    let mut holder = sqlx::PgConnection::connect(&format!(
        "{}?application_name=lingering-session-{}",
        database_url(),
        ns.name
    ))
    .await
    .unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("dvmtop:{}", ns.name))
        .execute(&mut holder)
        .await
        .unwrap();
    let d = Dvmtop::shared(&ns);
    let mut run = serve(&d, &file, &[]);
    let t0 = Instant::now();
    // The notice comes on stderr, once.
    while !run.stderr().contains("waiting up to 30 s") {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no notice: {}",
            run.stderr()
        );
        assert!(run.try_wait().is_none(), "serve ended: {}", run.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notice = run.stderr();
    assert!(
        notice.contains(&format!("held by lingering-session-{}", ns.name)),
        "{notice}"
    );
    assert!(
        notice.contains("PostgreSQL backend") && notice.contains("connected since"),
        "{notice}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(run.try_wait().is_none(), "gave up early: {}", run.stderr());
    holder.close().await.unwrap();
    run.wait_for_json("the run starts", Duration::from_secs(60), |v| {
        v["event"] == "month_opened"
    });
    let done = run.terminate(Duration::from_secs(60));
    finished_ok(&done, "serve");
    assert_eq!(
        done.stderr.matches("waiting up to").count(),
        1,
        "{}",
        done.stderr
    );
}

/// A live serve holds the namespace: a second start gives up after its
/// wait (`--lock-wait 2`) with one line naming the holder.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_holder_makes_a_start_give_up_after_the_wait() {
    let ns = TestNs::new("rslive");
    let (file, _) = input(&ns);
    let d = Dvmtop::shared(&ns);
    let mut first = serve(&d, &file, &[]);
    first.wait_for_json("a month opened", Duration::from_secs(120), |v| {
        v["event"] == "month_opened"
    });
    let t0 = Instant::now();
    let out = d.output(["serve", "--no-relays", "--lock-wait", "2"]);
    let waited = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(30), "waited {waited:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "the notice, then the error: {err}");
    assert!(lines[0].contains("waiting up to 2 s"), "{err}");
    let pid = format!("dvmtop serve pid={}", first.pid());
    assert!(
        lines[1].contains("is in use by another dvmtop process"),
        "{err}"
    );
    assert!(lines[1].contains(&pid), "names the holder {pid}: {err}");
    assert!(lines[1].contains("(waited 2 s)"), "{err}");
    first.signal(Signal::Term);
    finished_ok(&first.finish(Duration::from_secs(60)), "the holder");
}
