//! PostgreSQL faults under `serve` (issue 13): restarts at random moments
//! (immediate and fast shutdowns) never make `serve` exit, and the tables
//! end exactly as an uninterrupted run's; after a restart the namespace
//! lock is held again, so a second `serve` on the namespace is refused.
//!
//! Each test starts its own PostgreSQL and Redis (tests/common/fault.rs)
//! and drives the real binary. The queue is filled by `dvmtop ingest`
//! before `serve` starts, so both runs read the same queue whatever the
//! timing; after `serve` stops, `dvmtop cleanup` makes the last day's
//! cleanup independent of when the last rollover was committed (what a
//! backtest's catch-up does at its end).

mod common;

use common::fault::{Postgres, Redis, RedisOpts, ScratchDir, Shutdown};
use common::process::{Dvmtop, Finished, GenStats, Running, generate, tail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const DB: &str = "dvmtop_fault";

/// A table's rows as text, through `psql` on the throwaway server.
fn dump(pg: &Postgres, ns: &str, table: &str, order: &str, excluded: &[&str]) -> String {
    let cols = pg.psql(
        DB,
        &format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = '{ns}' \
             AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    );
    let expr = cols
        .lines()
        .map(str::trim)
        .filter(|c| !c.is_empty() && !excluded.contains(c))
        .map(|c| format!("coalesce({c}::text, '∅')"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    assert!(!expr.is_empty(), "{ns}.{table} has no columns");
    pg.psql(
        DB,
        &format!("SELECT {expr} FROM {ns}.{table} ORDER BY {order}"),
    )
}

fn status(d: &Dvmtop) -> Option<Value> {
    let out = d.output(["status", "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Everything accepted is accounted for by processing, the queue is empty,
/// and nothing moved for a while.
fn settled(d: &Dvmtop, accepted: u64, serve: &mut Running, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    let mut last: Option<Value> = None;
    loop {
        assert!(
            serve.try_wait().is_none(),
            "serve exited: {:?}",
            serve.finish(Duration::ZERO)
        );
        if let Some(st) = status(d) {
            let c = &st["counters"];
            let rejected: u64 = c
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| k.starts_with("rejected:"))
                        .map(|(_, v)| u(v))
                        .sum()
                })
                .unwrap_or(0);
            let accounted = u(&c["processed"])
                + u(&c["ignored_prior_month"])
                + u(&c["duplicate"])
                + rejected
                + u(&st["overflow_size"]);
            let done = u(&st["queue_depth"]) == 0 && accounted == accepted;
            if done && last.as_ref() == Some(&st["counters"]) {
                return st;
            }
            last = done.then(|| st["counters"].clone());
        }
        assert!(
            Instant::now() < deadline,
            "serve did not process everything within {limit:?}: {}",
            status(d).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(700));
    }
}

fn ingest(d: &Dvmtop, input: &Path) -> Value {
    let out = d.output(["ingest", "--no-relays", input.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or(""),
    )
    .expect("ingest prints a JSON object");
    v
}

/// A serve that gives up at once on a held namespace (no `--lock-wait`):
/// a second one must be refused, not wait.
fn serve(d: &Dvmtop) -> Running {
    d.spawn([
        "serve",
        "--no-relays",
        "--lock-wait",
        "0",
        "--commit-events",
        "2000",
        "--batch-size",
        "1000",
    ])
}

/// Stops a serve that must still be running, and checks it stopped cleanly.
fn stop(mut s: Running, what: &str) -> Finished {
    assert!(
        s.try_wait().is_none(),
        "{what}: serve exited early: {:?}",
        s.finish(Duration::ZERO)
    );
    let done = s.terminate(Duration::from_secs(120));
    assert!(done.status.success(), "{what}: {done:?}");
    done
}

fn input(dir: &Path, months: &str, per_day: &str, seed: &str) -> (std::path::PathBuf, GenStats) {
    let input = dir.join(format!("in-{seed}.jsonl"));
    let stats = generate(
        &[
            "--seed",
            seed,
            "--months",
            months,
            "--events-per-day",
            per_day,
            "--dup-rate",
            "0.01",
            "--malformed-rate",
            "0.002",
            "--late-rate",
            "0.02",
        ],
        &input,
    );
    (input, stats)
}

/// SPEC §9 and issue 13: `serve` reconnects after PostgreSQL restarts —
/// at random moments, ten of them, immediate (crash recovery) and fast
/// shutdowns alternating — never exits, and ends with exactly the tables
/// of an uninterrupted run.
#[test]
fn serve_survives_postgres_restarts_at_random_moments() {
    let redis = Redis::start(RedisOpts::aof());
    let mut pg = Postgres::start();
    let scratch = ScratchDir::new("pgrestarts");
    let (input, stats) = input(scratch.path(), "3", "400", "13");
    let seed: u64 = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("FAULT_SEED={seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // The uninterrupted reference.
    let reference = Dvmtop::new(pg.url(DB), redis.url(), "pgref", scratch.path());
    let accepted = u(&ingest(&reference, &input)["ingest"]["accepted"]);
    assert!(accepted > 10_000, "{accepted} accepted of {stats:?}");
    let mut s = serve(&reference);
    settled(&reference, accepted, &mut s, Duration::from_secs(300));
    stop(s, "reference");
    assert!(reference.output(["cleanup"]).status.success());

    // The same queue, under restarts.
    let d = Dvmtop::new(pg.url(DB), redis.url(), "pgchaos", scratch.path());
    assert_eq!(u(&ingest(&d, &input)["ingest"]["accepted"]), accepted);
    let mut s = serve(&d);
    let t = Instant::now();
    let mut retried = 0;
    let restarts: usize = std::env::var("FAULT_RESTARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for i in 0..restarts {
        // The first often lands while serve opens the namespace.
        let gap = if i == 0 { 0..600 } else { 50..1200 };
        std::thread::sleep(Duration::from_millis(rng.random_range(gap)));
        let mode = if i % 2 == 0 {
            Shutdown::Immediate
        } else {
            Shutdown::Fast
        };
        pg.restart(mode);
        println!("restart {i} ({mode:?}) at {:.1?}", t.elapsed());
        assert!(
            s.try_wait().is_none(),
            "serve exited after restart {i} ({mode:?}): {:?}",
            s.finish(Duration::ZERO)
        );
        retried += s
            .stdout_lines()
            .iter()
            .filter(|l| l.contains("\"retrying\""))
            .count();
    }
    let st = settled(&d, accepted, &mut s, Duration::from_secs(300));
    println!("settled {:.1?} after the first restart", t.elapsed());
    let done = stop(s, "under restarts");
    println!(
        "retry lines: {retried}; stderr:\n{}",
        tail(&done.stderr, 10)
    );
    assert!(d.output(["cleanup"]).status.success());
    assert!(u(&st["monthly_rows"]) >= 2, "{st}");

    let mut problems = Vec::new();
    for (table, order, exclude) in common::STATE_TABLES {
        let a = dump(&pg, "pgref", table, order, exclude);
        let b = dump(&pg, "pgchaos", table, order, exclude);
        if a != b {
            problems.push(format!(
                "{table}: {} vs {} rows\n uninterrupted: {}\n restarted: {}",
                a.lines().count(),
                b.lines().count(),
                tail(&a, 5),
                tail(&b, 5)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "FAULT_SEED={seed}: tables differ:\n{}",
        problems.join("\n")
    );
}

/// The second `serve` must not be running; it was refused with the
/// namespace named (never a second process beside the first).
fn assert_refused(second: &mut Running, what: &str) {
    let Some(status) = second.wait_with_timeout(Duration::from_secs(30)) else {
        let out = second.kill();
        panic!("{what}: a second serve was accepted beside the first:\n{out:?}");
    };
    let out = second.finish(Duration::ZERO);
    assert!(!status.success(), "{what}: {out:?}");
    assert!(
        out.stderr.contains("in use by another dvmtop process"),
        "{what}: {out:?}"
    );
}

/// Issue 13: the namespace lock died with a PostgreSQL restart and a
/// second `serve` was accepted. Now the first re-acquires it: the second
/// is refused after immediate and fast restarts, and the first goes on
/// processing.
#[test]
fn the_lock_is_held_again_after_a_postgres_restart() {
    let redis = Redis::start(RedisOpts::aof());
    let mut pg = Postgres::start();
    let scratch = ScratchDir::new("pglock");
    let (first, _) = input(scratch.path(), "1", "40", "21");
    let d = Dvmtop::new(pg.url(DB), redis.url(), "pglock", scratch.path());
    let mut accepted = u(&ingest(&d, &first)["ingest"]["accepted"]);
    let mut s = serve(&d);
    settled(&d, accepted, &mut s, Duration::from_secs(120));
    for (i, mode) in [Shutdown::Immediate, Shutdown::Fast]
        .into_iter()
        .enumerate()
    {
        pg.restart(mode);
        // Reconnecting takes the serve a moment; the second one comes
        // once PostgreSQL is back.
        std::thread::sleep(Duration::from_secs(3));
        let mut second = serve(&d);
        assert_refused(&mut second, &format!("after a {mode:?} restart"));
        // The first still processes what comes.
        let (more, _) = input(scratch.path(), "1", "40", &format!("3{i}"));
        // (The namespace's counts, cumulative.)
        accepted = u(&ingest(&d, &more)["ingest"]["accepted"]);
        settled(&d, accepted, &mut s, Duration::from_secs(120));
    }
    stop(s, "the first serve");
}

/// A second `serve` started the moment PostgreSQL is back races the
/// first one's reconnect: either it is refused, or the first stops
/// processing — saying why — and never writes beside it. Never both.
#[test]
fn a_second_serve_racing_the_reconnect_never_runs_beside_the_first() {
    let redis = Redis::start(RedisOpts::aof());
    let mut pg = Postgres::start();
    let scratch = ScratchDir::new("pgrace");
    let (first, _) = input(scratch.path(), "1", "40", "41");
    let d = Dvmtop::new(pg.url(DB), redis.url(), "pgrace", scratch.path());
    let accepted = u(&ingest(&d, &first)["ingest"]["accepted"]);
    let mut s = serve(&d);
    settled(&d, accepted, &mut s, Duration::from_secs(120));
    pg.restart(Shutdown::Immediate);
    let mut second = serve(&d);
    match second.wait_with_timeout(Duration::from_secs(15)) {
        Some(_) => {
            let out = second.finish(Duration::ZERO);
            assert!(
                out.stderr.contains("in use by another dvmtop process"),
                "{out:?}"
            );
            println!("the second serve was refused");
            stop(s, "the first serve");
        }
        None => {
            // The second took the lock: the first must have stopped.
            let first = s
                .wait_with_timeout(Duration::from_secs(15))
                .map(|_| s.finish(Duration::ZERO));
            let Some(first) = first else {
                second.kill();
                panic!("two serves run on one namespace");
            };
            assert!(!first.status.success(), "{first:?}");
            assert!(first.stderr.contains("taken over"), "{first:?}");
            println!("the first serve stopped: {}", first.stderr.trim());
            stop(second, "the second serve");
        }
    }
}
