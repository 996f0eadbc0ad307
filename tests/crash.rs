//! Crash safety (SPEC §3): a backtest killed with SIGKILL at random points —
//! during ingest and during processing — and continued with `--resume` ends
//! with exactly the tables of an uninterrupted run: no event lost (not even
//! between ingest dedup and enqueue), none counted twice.
//!
//! Runs the real binary: `dvmtop gen` writes the input, an uninterrupted
//! `dvmtop backtest` fills a reference namespace, and a second namespace is
//! killed (SIGKILL) and resumed several times before a
//! last `--resume` run finishes it. Then both are compared table by table,
//! summary by summary, and against the generator's own counts.
//!
//! Where the random kills land is a matter of timing; the second test pins
//! one such landing deterministically: a resume whose processor catches up
//! with the restarted ingest, so that a day is processed in two slices.

mod common;
use common::*;

use common::process::{Dvmtop, Finished, GenStats, Running, Signal, generate, tail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Input size: ~44 k lines over 3 months (2 rollovers); one uninterrupted
/// debug-build backtest takes ~4–7 s (more on a loaded machine), ingest
/// alone ~1.5 s.
const EVENTS_PER_DAY: &str = "500";
/// At least this many SIGKILLs before the final run.
const MIN_KILLS: usize = 6;
/// The first kills come early, while the file is still being ingested.
const EARLY_KILLS: usize = 3;
const MAX_ATTEMPTS: usize = 14;
/// How long one run may take at most (a loaded machine is slow).
const RUN_LIMIT: Duration = Duration::from_secs(900);

fn backtest_cmd(ns: &TestNs, input: &Path, resume: bool) -> Command {
    let mut c = Dvmtop::shared(ns).command();
    c.arg("backtest").arg(input).arg("--headless");
    if resume {
        c.arg("--resume");
    }
    // The interrupted runs commit small groups (so kills land between,
    // during and after many commits); the reference uses the default.
    if ns.name.contains("_crash_") {
        c.arg("--commit-events").arg("2000");
    }
    c
}

/// A backtest run to its end.
fn backtest(ns: &TestNs, input: &Path, resume: bool, what: &str) -> Finished {
    Running::spawn(backtest_cmd(ns, input, resume), what).finish(RUN_LIMIT)
}

/// The input: `dvmtop gen`, with duplicates, malformed lines, late
/// events and stragglers of closed months.
fn generate_input(input: &Path) -> GenStats {
    generate(
        &[
            "--seed",
            "7",
            "--months",
            "3",
            "--events-per-day",
            EVENTS_PER_DAY,
            "--dup-rate",
            "0.02",
            "--malformed-rate",
            "0.002",
            "--late-rate",
            "0.02",
            "--straggler-rate",
            "0.0005",
        ],
        input,
    )
}

/// The last stdout line of a finished headless backtest: its summary.
fn summary_of(out: &Finished, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstderr: {}\nstdout tail: {}",
        out.status,
        out.stderr,
        tail(&out.stdout, 3)
    );
    let v = out.last_json();
    assert_eq!(
        v["event"], "summary",
        "{what}: last line is not a summary: {v}"
    );
    v
}

/// `dvmtop status --json` of a namespace. A kill before the first run
/// had set the namespace up leaves none (`status` then refuses it, and
/// creates nothing): everything is still zero.
fn status(ns: &TestNs) -> Value {
    let out = Dvmtop::shared(ns).output(["status", "--json"]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if !out.status.success() && text(&out.stderr).contains("does not exist") {
        return serde_json::json!({});
    }
    assert!(
        out.status.success(),
        "dvmtop status failed: {}",
        text(&out.stderr)
    );
    serde_json::from_str(text(&out.stdout).trim()).expect("status JSON")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Progress of a namespace as seen by `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    /// Input lines ingest has handled (Redis, atomic with the enqueue).
    read: u64,
    /// Queue elements the processor has committed as processed or ignored.
    done: u64,
    queue_depth: u64,
    overflow: u64,
}

fn seen(st: &Value) -> Seen {
    Seen {
        read: u(&st["ingest"]["events_read"]),
        done: u(&st["counters"]["processed"]) + u(&st["counters"]["ignored_prior_month"]),
        queue_depth: u(&st["queue_depth"]),
        overflow: u(&st["overflow_size"]),
    }
}

/// Waits until no process holds the namespace's lock any more (the
/// killed process's PostgreSQL session may take a moment to go away).
async fn wait_lock_released(ns: &TestNs) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&database_url())
        .await
        .expect("connect to PostgreSQL");
    let key = format!("dvmtop:{}", ns.name);
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut conn)
            .await
            .expect("try lock");
        if got {
            let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                .bind(&key)
                .fetch_one(&mut conn)
                .await
                .expect("unlock");
            return;
        }
        assert!(
            Instant::now() < until,
            "the killed dvmtop's namespace lock was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every element of the namespace's Redis dead-letter list (lines refused
/// at ingest, with their reason), in order.
async fn redis_dead_letters(ns: &TestNs) -> Vec<String> {
    let client = redis::Client::open(redis_url()).expect("REDIS_URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    redis::cmd("LRANGE")
        .arg(dvmtop::queue::Keys::new(&ns.name, None).dead())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("LRANGE dead letters")
}

/// Rows only in `a` and rows only in `b` (multiset difference).
fn row_diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for r in a {
        *count.entry(r).or_default() += 1;
    }
    for r in b {
        *count.entry(r).or_default() -= 1;
    }
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for (r, n) in count {
        for _ in 0..n.max(0) {
            only_a.push(r.to_owned());
        }
        for _ in 0..(-n).max(0) {
            only_b.push(r.to_owned());
        }
    }
    (only_a, only_b)
}

#[derive(Debug)]
struct Attempt {
    delay_ms: u64,
    /// `killed`, or how the run ended on its own.
    outcome: String,
    before: Seen,
    after: Seen,
    during_ingest: bool,
    during_processing: bool,
}

#[tokio::test]
async fn sigkill_at_random_points_then_resume_matches_uninterrupted_run() {
    let test_started = Instant::now();
    let reference = TestNs::new("crashref");
    let crashed = TestNs::new("crash");
    let ref_dir: PathBuf = reference.config().data_dir;
    let crash_dir: PathBuf = crashed.config().data_dir;
    std::fs::create_dir_all(&ref_dir).unwrap();
    std::fs::create_dir_all(&crash_dir).unwrap();

    // The input, with duplicates, malformed lines, late events and
    // stragglers of closed months.
    let input = ref_dir.join("input.jsonl");
    let t = Instant::now();
    let input_stats = generate_input(&input);
    println!("generated {input_stats:?} in {:.1?}", t.elapsed());
    assert!(
        input_stats.lines > 20_000
            && input_stats.duplicates > 0
            && input_stats.malformed > 0
            && input_stats.stragglers > 0
    );

    // 1. The reference: one uninterrupted run.
    let t = Instant::now();
    let out = backtest(&reference, &input, false, "the reference backtest");
    let ref_elapsed = t.elapsed();
    let ref_summary = summary_of(&out, "reference backtest");
    println!("reference backtest: {ref_elapsed:.1?}: {ref_summary}");
    let expected_done = u(&ref_summary["processed"]) + u(&ref_summary["ignored_prior_month"]);
    let ref_ms = ref_elapsed.as_millis() as f64;

    // 2. The crash run: SIGKILL at seeded random delays, resume, repeat.
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED_C4A5);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut before = Seen::default();
    let mut finished_on_its_own = false;
    while !finished_on_its_own {
        let kills = attempts.iter().filter(|a| a.outcome == "killed").count();
        let in_ingest = attempts.iter().any(|a| a.during_ingest);
        let in_processing = attempts.iter().any(|a| a.during_processing);
        if kills >= MIN_KILLS && in_ingest && in_processing {
            break;
        }
        assert!(
            attempts.len() < MAX_ATTEMPTS,
            "could not land the kills where needed in {MAX_ATTEMPTS} attempts: {attempts:#?}"
        );
        // Early kills land during start-up and ingest (ingest alone takes
        // ~1.5 s); later ones a random share of the estimated remaining
        // processing time, so they land during processing, before the end.
        let ingest_phase =
            attempts.len() < EARLY_KILLS || (!in_ingest && before.read < input_stats.lines);
        let delay_ms = if ingest_phase {
            // (Stretched if a loaded machine starts too slowly to ingest.)
            let stretch = attempts.len().saturating_sub(EARLY_KILLS) as u64 * 200;
            rng.random_range(50..=400 + stretch)
        } else {
            let remaining = 1.0 - before.done as f64 / expected_done.max(1) as f64;
            150 + (rng.random_range(0.1..0.4) * remaining.max(0.05) * ref_ms) as u64
        };
        wait_lock_released(&crashed).await;
        let resume = !attempts.is_empty();
        let mut child = Running::spawn(
            backtest_cmd(&crashed, &input, resume),
            "the crashed namespace's backtest",
        );
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        // (No signal once it has exited on its own.)
        child.signal(Signal::Kill);
        let out = child.finish(RUN_LIMIT);
        let outcome = match out.status.signal() {
            Some(9) => "killed".to_owned(),
            _ if out.status.success() => {
                // It finished before the kill: that is a complete run.
                finished_on_its_own = true;
                "finished before the kill".to_owned()
            }
            _ => panic!(
                "attempt {} ({}, {delay_ms} ms) failed on its own: {:?}\nstderr: {}",
                attempts.len() + 1,
                if resume { "--resume" } else { "first run" },
                out.status,
                out.stderr
            ),
        };
        let after = seen(&status(&crashed));
        let killed = outcome == "killed";
        let a = Attempt {
            delay_ms,
            during_ingest: killed && after.read > before.read && after.read < input_stats.lines,
            during_processing: killed && after.done > before.done && after.done < expected_done,
            outcome,
            before,
            after,
        };
        println!(
            "attempt {}: {} ms, {}: ingest {} → {} of {} lines, processed+ignored {} → {} of {}, queue {}, overflow {}{}{}",
            attempts.len() + 1,
            a.delay_ms,
            a.outcome,
            a.before.read,
            a.after.read,
            input_stats.lines,
            a.before.done,
            a.after.done,
            expected_done,
            a.after.queue_depth,
            a.after.overflow,
            if a.during_ingest {
                " [during ingest]"
            } else {
                ""
            },
            if a.during_processing {
                " [during processing]"
            } else {
                ""
            },
        );
        before = after;
        attempts.push(a);
    }
    // The final run continues to the end.
    wait_lock_released(&crashed).await;
    let t = Instant::now();
    let out = backtest(&crashed, &input, true, "the final --resume backtest");
    let crash_summary = summary_of(&out, "final --resume backtest");
    println!("final --resume run: {:.1?}: {crash_summary}", t.elapsed());

    let kills = attempts.iter().filter(|a| a.outcome == "killed").count();
    assert!(
        kills >= MIN_KILLS,
        "only {kills} kills landed (the run finished on its own): {attempts:#?}"
    );
    assert!(
        attempts.iter().any(|a| a.during_ingest),
        "no kill landed during ingest: {attempts:#?}"
    );
    assert!(
        attempts.iter().any(|a| a.during_processing),
        "no kill landed during processing: {attempts:#?}"
    );

    // 3. Compare. Collect every difference, then fail once with all of them.
    let mut problems: Vec<String> = Vec::new();

    // Summaries: identical counts, and everything drained.
    for k in [
        "events_read",
        "accepted",
        "rejected",
        "processed",
        "ignored_prior_month",
        "rollovers",
        "current_month",
        "dead_letters",
    ] {
        if ref_summary[k] != crash_summary[k] {
            problems.push(format!(
                "summary.{k}: uninterrupted {} vs crashed {}",
                ref_summary[k], crash_summary[k]
            ));
        }
    }
    for (what, s) in [("uninterrupted", &ref_summary), ("crashed", &crash_summary)] {
        for (k, want) in [
            ("queue_depth", Value::from(0)),
            ("overflow_size", Value::from(0)),
            ("interrupted", Value::from(false)),
        ] {
            if s[k] != want {
                problems.push(format!("{what} summary.{k} = {} (want {want})", s[k]));
            }
        }
    }

    // Ground truth: the generator's counts. Every line read once; every
    // distinct valid event accepted once (stragglers included); every
    // repeated line refused as a duplicate at ingest, every cut line as
    // malformed.
    for (what, s) in [("uninterrupted", &ref_summary), ("crashed", &crash_summary)] {
        let checks = [
            ("events_read", u(&s["events_read"]), input_stats.lines),
            (
                "accepted",
                u(&s["accepted"]),
                input_stats.events + input_stats.stragglers,
            ),
            (
                "rejected.duplicate",
                u(&s["rejected"]["duplicate"]),
                input_stats.duplicates,
            ),
            (
                "rejected.malformed",
                u(&s["rejected"]["malformed"]),
                input_stats.malformed,
            ),
            (
                "rejected.future",
                u(&s["rejected"]["future"]),
                input_stats.future,
            ),
            ("rollovers", u(&s["rollovers"]), 2),
        ];
        for (k, got, want) in checks {
            if got != want {
                problems.push(format!("{what}: {k} = {got}, the generator says {want}"));
            }
        }
    }

    // Accounting, from each namespace's raw counters (Redis ingest hash,
    // PostgreSQL counters). Ingest: every line read is accepted or refused
    // (duplicates included). Processing: every accepted element is
    // processed, ignored (month closed), refused, or a processing-side
    // duplicate — and as ingest already deduplicates by id, a
    // processing-side duplicate would mean an element enqueued twice.
    for (what, ns) in [("uninterrupted", &reference), ("crashed", &crashed)] {
        let st = status(ns);
        let ingest = &st["ingest"];
        let counters = &st["counters"];
        let sum_prefixed = |o: &Value, prefix: &str| -> u64 {
            o.as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| k.starts_with(prefix))
                        .map(|(_, v)| u(v))
                        .sum()
                })
                .unwrap_or(0)
        };
        let read = u(&ingest["events_read"]);
        let accepted = u(&ingest["accepted"]);
        let refused_at_ingest = sum_prefixed(ingest, "rejected:");
        if read != accepted + refused_at_ingest {
            problems.push(format!(
                "{what}: ingest read {read} ≠ accepted {accepted} + refused {refused_at_ingest} ({ingest})"
            ));
        }
        let processed = u(&counters["processed"]);
        let ignored = u(&counters["ignored_prior_month"]);
        let dup = u(&counters["duplicate"]);
        let refused_at_processing = sum_prefixed(counters, "rejected:");
        if accepted != processed + ignored + dup + refused_at_processing {
            problems.push(format!(
                "{what}: accepted {accepted} ≠ processed {processed} + ignored {ignored} + duplicate {dup} + refused {refused_at_processing}"
            ));
        }
        if dup != 0 {
            problems.push(format!(
                "{what}: {dup} processing-side duplicates: an event was enqueued twice"
            ));
        }
        if u(&st["queue_depth"]) != 0 || u(&st["overflow_size"]) != 0 {
            problems.push(format!(
                "{what}: not drained: queue {} overflow {}",
                st["queue_depth"], st["overflow_size"]
            ));
        }
    }

    // Tables, row by row.
    let ref_db = dvmtop::store::Db::connect(&database_url(), &reference.name)
        .await
        .expect("connect reference");
    let crash_db = dvmtop::store::Db::connect(&database_url(), &crashed.name)
        .await
        .expect("connect crashed");
    let tables = STATE_TABLES;
    // Job analytics (issue 14): the matching state's facts, each exactly
    // once, and answered jobs in the months compared below.
    let (fa, fb) = (
        job_facts_dump(&ref_db).await,
        job_facts_dump(&crash_db).await,
    );
    if fa != fb {
        let (only_a, only_b) = row_diff(&fa, &fb);
        problems.push(format!(
            "job_facts: {} vs {} facts; {} only in the uninterrupted run, {} only in the crashed run",
            fa.len(),
            fb.len(),
            only_a.len(),
            only_b.len()
        ));
    } else {
        println!("job_facts: identical ({} facts)", fa.len());
    }
    let answered: Vec<i64> =
        sqlx::query_scalar("SELECT jobs_answered FROM monthly_activity ORDER BY year_month")
            .fetch_all(&ref_db.pool)
            .await
            .expect("jobs_answered");
    assert!(
        answered.iter().all(|n| *n > 0),
        "the reference answered no jobs in some month: {answered:?}"
    );
    for (table, order, exclude) in tables {
        let a = table_dump(&ref_db, table, order, exclude).await;
        let b = table_dump(&crash_db, table, order, exclude).await;
        // The overflow is one row of parked payloads; empty means `{}`.
        let empty = |rows: &[String]| rows.iter().all(|r| r.ends_with("|{}"));
        if table == "overflow" && !(empty(&a) && empty(&b)) {
            problems.push(format!(
                "overflow not empty: uninterrupted {} rows, crashed {} rows",
                a.len(),
                b.len()
            ));
        }
        if a != b {
            let (only_a, only_b) = row_diff(&a, &b);
            let show = |rows: &[String]| {
                rows.iter()
                    .take(12)
                    .map(|r| format!("\n      {r}"))
                    .collect::<String>()
            };
            problems.push(format!(
                "table {table}: {} vs {} rows; {} only in the uninterrupted run:{}\n    {} only in the crashed run:{}",
                a.len(),
                b.len(),
                only_a.len(),
                show(&only_a),
                only_b.len(),
                show(&only_b)
            ));
        } else {
            println!("table {table}: identical ({} rows)", a.len());
        }
    }
    assert!(
        !table_dump(&ref_db, "monthly_activity", "year_month", &[])
            .await
            .is_empty(),
        "the reference rolled no month over: the input is too small to test rollovers"
    );

    // Lines refused at ingest go to Redis's dead-letter list: the same
    // lines, in the same order, each exactly once.
    let (a, b) = (
        redis_dead_letters(&reference).await,
        redis_dead_letters(&crashed).await,
    );
    if a != b {
        let (only_a, only_b) = row_diff(&a, &b);
        problems.push(format!(
            "Redis dead letters: {} vs {}; {} only uninterrupted, {} only crashed",
            a.len(),
            b.len(),
            only_a.len(),
            only_b.len()
        ));
    }
    if a.len() as u64 != input_stats.malformed {
        problems.push(format!(
            "Redis dead letters: {} (the generator wrote {} malformed lines)",
            a.len(),
            input_stats.malformed
        ));
    }

    println!(
        "{} runs killed ({} during ingest, {} during processing); test took {:.1?}",
        kills,
        attempts.iter().filter(|a| a.during_ingest).count(),
        attempts.iter().filter(|a| a.during_processing).count(),
        test_started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "the crashed-and-resumed run differs from the uninterrupted one:\n  {}\nkills: {attempts:#?}",
        problems.join("\n  ")
    );
}

/// Every resume starts with processing catching up with ingest (the queue
/// is short while ingest restarts), so a day can be processed in two
/// slices where the uninterrupted run had one. That must not change the
/// tables: here the kill lands right after the processor committed
/// everything ingest had enqueued so far — a job request — and the
/// request's feedback (no `k` tag) is only enqueued after the resume.
#[tokio::test]
async fn resume_that_splits_a_day_into_two_slices_matches_uninterrupted_run() {
    use dvmtop::pipeline::Processor;
    use dvmtop::run::Services;
    let user = 0x11u8;
    let t = at(2024, 1, 10, 10);
    let request = event_line(user, t, 5300, vec![vec!["i", "hello", "text"]], "");
    let request_id = serde_json::from_str::<Value>(&request).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_pk = format!("{user:02x}").repeat(32);
    let feedback = event_line(
        0x22,
        t + 3,
        7000,
        vec![
            vec!["status", "processing"],
            vec!["e", &request_id],
            vec!["p", &user_pk],
        ],
        "",
    );

    // Uninterrupted: both enqueued, then processed.
    let reference = TestNs::new("splitref");
    let cfg = reference.config();
    let s = reference.open(&cfg).await;
    push_lines(&s.queue, &[request.clone(), feedback.clone()]).await;
    let mut p = Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
        .await
        .unwrap();
    settle(&mut p).await;

    // Killed after processing the request, resumed after the feedback came.
    let crashed = TestNs::new("splitcrash");
    let cfg2 = crashed.config();
    let s2 = crashed.open(&cfg2).await;
    push_lines(&s2.queue, std::slice::from_ref(&request)).await;
    let mut p2 = Processor::open(s2.db.clone(), s2.queue.clone(), Services::settings(&cfg2))
        .await
        .unwrap();
    settle(&mut p2).await;
    drop(p2);
    push_lines(&s2.queue, std::slice::from_ref(&feedback)).await;
    let mut p2 = Processor::open(s2.db.clone(), s2.queue.clone(), Services::settings(&cfg2))
        .await
        .unwrap();
    settle(&mut p2).await;

    for (table, order) in [
        ("kind_stats_rollups", "day, kind"),
        ("entity_activity", "day, role"),
        ("dvm_stats_rollups", "day, dvm"),
        ("kind_dvm_support", "kind, dvm"),
        ("counters", "name"),
    ] {
        assert_eq!(
            table_dump(&s.db, table, order, &[]).await,
            table_dump(&s2.db, table, order, &[]).await,
            "table {table}: uninterrupted (left) vs split by a resume (right)"
        );
    }
}
