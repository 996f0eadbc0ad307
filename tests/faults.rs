//! Redis faults under a running dvmtop (issue 13), each against a Redis
//! of the test's own (`common::fault`); PostgreSQL is the shared server
//! (never restarted here), one namespace per run.
//!
//! * With AOF, Redis killed and started again mid-backtest and mid-serve:
//!   the run finishes without a restart of dvmtop, with the tables of an
//!   uninterrupted run, and no loss reported.
//! * Without persistence, the queue lost under `serve`: said on stderr and
//!   in `status --json` (`alerts`), and still there after dvmtop stopped.
//! * Without persistence, the queue lost mid-backtest (after processing
//!   began; once the whole file was queued; right after ingest began,
//!   under it): `--resume` ends with the tables and the summary's counts
//!   of an uninterrupted run.
//! * `ingest` waits for Redis instead of exiting.

mod common;
use common::fault::{Redis, RedisOpts, ScratchDir};
use common::process::{Dvmtop, Running, generate};
use common::{TestNs, database_url, table_dump};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn input(dir: &Path, months: &str, per_day: &str) -> PathBuf {
    let f = dir.join("in.jsonl");
    generate(
        &[
            "--months",
            months,
            "--events-per-day",
            per_day,
            "--seed",
            "13",
        ],
        &f,
    );
    f
}

/// Like [`input`], with what the summary counts besides accepted events:
/// duplicates, malformed lines, late events and stragglers of a closed
/// month.
fn input_with_rejects(dir: &Path) -> PathBuf {
    let f = dir.join("rejects.jsonl");
    generate(
        &[
            "--months",
            "2",
            "--events-per-day",
            "1500",
            "--seed",
            "13",
            "--dup-rate",
            "0.02",
            "--malformed-rate",
            "0.002",
            "--late-rate",
            "0.02",
            "--straggler-rate",
            "0.002",
        ],
        &f,
    );
    f
}

/// The reference: the same backtest on the shared Redis, uninterrupted.
fn reference(input: &Path) -> TestNs {
    reference_with_summary(input).0
}

/// [`reference`], and its summary line.
fn reference_with_summary(input: &Path) -> (TestNs, Value) {
    let ns = TestNs::new("faultref");
    let out = Dvmtop::shared(&ns).output([
        "backtest".as_ref(),
        input.as_os_str(),
        "--headless".as_ref(),
        "--fresh".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    let summary: Value = serde_json::from_str(last).expect("the summary line");
    assert_eq!(summary["event"], "summary", "{summary}");
    (ns, summary)
}

/// What a summary counts (not how long it took, or whether it failed).
fn counts(summary: &Value) -> Value {
    let mut c = serde_json::Map::new();
    for k in [
        "events_read",
        "accepted",
        "rejected",
        "processed",
        "ignored_prior_month",
        "rollovers",
        "current_month",
        "queue_depth",
        "overflow_size",
        "dead_letters",
    ] {
        c.insert(k.to_owned(), summary[k].clone());
    }
    Value::Object(c)
}

async fn assert_same_tables(a: &str, b: &str) {
    let url = database_url();
    let da = dvmtop::store::Db::connect(&url, a).await.unwrap();
    let db = dvmtop::store::Db::connect(&url, b).await.unwrap();
    assert!(
        !table_dump(&da, "monthly_activity", "year_month", &[])
            .await
            .is_empty(),
        "the input rolls no month over"
    );
    for (table, order, exclude) in common::STATE_TABLES {
        let (x, y) = (
            table_dump(&da, table, order, exclude).await,
            table_dump(&db, table, order, exclude).await,
        );
        assert!(
            x == y,
            "table {table}: {} rows uninterrupted, {} after the Redis restart",
            x.len(),
            y.len()
        );
    }
}

fn status(d: &Dvmtop) -> Value {
    // The serve creates the namespace; until then status refuses it.
    let start = std::time::Instant::now();
    let mut out = d.output(["status", "--json"]);
    while !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("does not exist")
        && start.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        out = d.output(["status", "--json"]);
    }
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json")
}

fn alerts_of(st: &Value, kind: &str) -> Vec<Value> {
    st["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("no alerts array: {st}"))
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

fn processed(st: &Value) -> u64 {
    st["counters"]["processed"].as_u64().unwrap_or(0)
}

/// Kills Redis (SIGKILL: AOF fsynced on every write keeps everything) once
/// the run has processed something, and brings it back after `down`.
fn kill_redis_mid_run(run: &mut Running, redis: &mut Redis, down: Duration) {
    run.wait_for_json("progress", Duration::from_secs(120), |v| {
        v["event"] == "progress" && v["processed"].as_u64().unwrap_or(0) > 0
    });
    redis.kill();
    std::thread::sleep(down);
    redis.start_again();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_mid_backtest_finishes_with_identical_tables() {
    let scratch = ScratchDir::new("aof-backtest");
    let file = input(scratch.path(), "2", "1500");
    let reference = reference(&file);
    let mut redis = Redis::start(RedisOpts::aof());
    let ns = TestNs::new("aofbt");
    let d = Dvmtop::new(database_url(), redis.url(), &ns.name, scratch.path());
    let mut run = d.spawn([
        "backtest",
        file.to_str().unwrap(),
        "--headless",
        "--fresh",
        "--batch-size",
        "500",
    ]);
    kill_redis_mid_run(&mut run, &mut redis, Duration::from_secs(2));
    let done = run.finish(Duration::from_secs(300));
    assert!(done.status.success(), "{done:?}");
    let summary = done.last_json();
    assert_eq!(summary["event"], "summary", "{summary}");
    assert_eq!(summary["queue_depth"], 0, "{summary}");
    assert!(
        !done.stderr.contains("queue of namespace"),
        "no loss with AOF: {}",
        done.stderr
    );
    let retries = done
        .json_lines()
        .iter()
        .filter(|v| v["event"] == "retrying")
        .count();
    println!("retries while Redis was down: {retries}");
    assert!(alerts_of(&status(&d), "queue_lost").is_empty());
    assert_same_tables(&reference.name, &ns.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_mid_serve_finishes_with_identical_tables() {
    let scratch = ScratchDir::new("aof-serve");
    let file = input(scratch.path(), "2", "1500");
    let reference = reference(&file);
    let expected = processed(&status(&Dvmtop::shared(&reference)));
    let mut redis = Redis::start(RedisOpts::aof());
    let ns = TestNs::new("aofserve");
    let d = Dvmtop::new(database_url(), redis.url(), &ns.name, scratch.path());
    let mut serve = d.spawn([
        "serve",
        "--no-relays",
        "--rollover",
        "auto",
        "--batch-size",
        "500",
        file.to_str().unwrap(),
    ]);
    // serve prints no progress lines before it has processed something:
    // watch the committed counters instead.
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed(&status(&d)) == 0 {
        assert!(Instant::now() < deadline, "serve processed nothing");
        if serve.try_wait().is_some() {
            panic!("serve exited: {:?}", serve.finish(Duration::ZERO));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Enough other keys that, with a delay per key, loading the AOF takes
    // seconds after the restart: every command then meets `LOADING` (a
    // transaction's too, as an aborted EXEC), which is a Redis not yet
    // available, never a reason to exit.
    let () = redis::cmd("EVAL")
        .arg("for i = 1, 20000 do redis.call('SET', 'filler:' .. i, i) end")
        .arg(0)
        .query(&mut redis.connection())
        .expect("filler keys");
    redis.kill();
    std::thread::sleep(Duration::from_secs(2));
    assert!(serve.try_wait().is_none(), "serve must wait for Redis");
    redis.start_again_with(&["--key-load-delay", "150"]);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = status(&d);
        if processed(&st) == expected && st["queue_depth"] == 0 {
            assert!(alerts_of(&st, "queue_lost").is_empty(), "{st}");
            break;
        }
        if serve.try_wait().is_some() {
            panic!("serve exited: {:?}", serve.finish(Duration::ZERO));
        }
        assert!(
            Instant::now() < deadline,
            "serve never caught up after the restart: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = serve.terminate(Duration::from_secs(60));
    assert!(done.status.success(), "{done:?}");
    assert_same_tables(&reference.name, &ns.name).await;
}

#[test]
fn a_queue_lost_with_redis_is_reported_on_stderr_and_in_status() {
    let scratch = ScratchDir::new("lost");
    let file = input(scratch.path(), "3", "300");
    let mut redis = Redis::start(RedisOpts::memory());
    let ns = TestNs::new("lost");
    let d = Dvmtop::new(database_url(), redis.url(), &ns.name, scratch.path());
    // Manual rollovers: serve stops at the end of the second month until
    // January is confirmed, with the third month still queued.
    let mut serve = d.spawn([
        "serve",
        "--no-relays",
        "--rollover",
        "manual",
        file.to_str().unwrap(),
    ]);
    // Blocked: the pipeline committed everything it could and says so.
    serve.wait_for_json("blocked", Duration::from_secs(180), |v| {
        v["event"] == "awaiting_confirmation"
    });
    std::thread::sleep(Duration::from_millis(500));
    let st = status(&d);
    let queued = st["queue_depth"].as_u64().unwrap_or(0);
    assert!(queued > 0 && processed(&st) > 0, "{st}");
    // The warning that Redis persists nothing came at start.
    let st = status(&d);
    assert_eq!(
        alerts_of(&st, "redis_not_persistent").len(),
        1,
        "{}",
        st["alerts"]
    );
    redis.restart();
    let line = wait_for_stderr(&mut serve, "queue of namespace", Duration::from_secs(60));
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains("Redis restarted without its data"), "{line}");
    for f in std::fs::read_dir(scratch.path().join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        for l in text.lines().filter(|l| l.contains("queue lost")) {
            println!("log: {l}");
        }
    }
    let st = status(&d);
    let lost = alerts_of(&st, "queue_lost");
    assert_eq!(lost.len(), 1, "{}", st["alerts"]);
    assert_eq!(lost[0]["severity"], "critical");
    assert!(
        lost[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("at least {queued} queued events")),
        "what was lost ({queued}): {}",
        lost[0]
    );
    chrono::DateTime::parse_from_rfc3339(lost[0]["since"].as_str().unwrap()).expect("RFC 3339");
    let done = serve.terminate(Duration::from_secs(60));
    assert!(done.status.success(), "{done:?}");
    // Kept in PostgreSQL: a later status still says it.
    assert_eq!(alerts_of(&status(&d), "queue_lost").len(), 1);
}

/// The queue's length in a Redis of the test's own (0 while it is away).
fn queued(redis: &Redis, ns: &str) -> u64 {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("LLEN").arg(format!("{ns}:queue")).query(&mut c))
        .unwrap_or(0)
}

/// When the Redis without persistence restarts under the backtest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossAt {
    /// Once the run reports processed events: queued events not yet
    /// processed are lost, some of what was read is committed.
    Processing,
    /// Once ingest queued the whole file, before it is all processed: the
    /// restart loses only queued events.
    Queued,
    /// As soon as ingest queued its first chunk and the pipeline is up
    /// (a Redis restart while a backtest starts fails the start): ingest
    /// is still reading, and finds Redis without its position.
    Ingest,
}

/// A backtest whose Redis (no persistence) restarts at `at`, then the
/// same backtest with `--resume`; returns the namespace and the resumed
/// run's summary.
async fn lost_then_resumed(scratch: &ScratchDir, file: &Path, at: LossAt) -> (TestNs, Value) {
    let mut redis = Redis::start(RedisOpts::memory());
    let ns = TestNs::new("lostresume");
    let d = Dvmtop::new(database_url(), redis.url(), &ns.name, scratch.path());
    let mut run = d.spawn([
        "backtest",
        file.to_str().unwrap(),
        "--headless",
        "--fresh",
        "--batch-size",
        "500",
    ]);
    match at {
        LossAt::Processing => {
            run.wait_for_json("progress", Duration::from_secs(120), |v| {
                v["event"] == "progress" && v["processed"].as_u64().unwrap_or(0) > 0
            });
        }
        LossAt::Queued => {
            let lines = std::fs::read_to_string(file).unwrap().lines().count() as u64;
            let at_end = |r: &Redis| -> bool {
                redis::cmd("HVALS")
                    .arg(format!("{}:offsets", ns.name))
                    .query::<Vec<u64>>(&mut r.connection())
                    .is_ok_and(|v| v.contains(&lines))
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            while !at_end(&redis) {
                assert!(Instant::now() < deadline, "ingest never reached the end");
                assert!(run.try_wait().is_none(), "the backtest ended early");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                queued(&redis, &ns.name) > 0,
                "processing kept up with ingest: the input is too small for this case"
            );
        }
        LossAt::Ingest => {
            let deadline = Instant::now() + Duration::from_secs(120);
            let epoch = |r: &Redis| -> bool {
                redis::cmd("EXISTS")
                    .arg(format!("{}:epoch", ns.name))
                    .query(&mut r.connection())
                    .unwrap_or(false)
            };
            while queued(&redis, &ns.name) == 0 || !epoch(&redis) {
                assert!(Instant::now() < deadline, "ingest queued nothing");
                assert!(run.try_wait().is_none(), "the backtest ended early");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    redis.restart();
    let first = run.finish(Duration::from_secs(300));
    println!("{at:?}: first run {:?}", first.status);
    for l in first.stderr.lines().filter(|l| l.starts_with("error")) {
        println!("  {l}");
    }
    match at {
        // The backtest fails: its figures miss what Redis lost.
        LossAt::Processing | LossAt::Queued => {
            assert!(
                first.stderr.contains("queue of namespace"),
                "the loss is said: {}",
                first.stderr
            );
            // Failed by the pipeline's loss, or by its ingest still
            // running into it.
            assert!(!first.status.success(), "{first:?}");
            assert!(
                first
                    .stderr
                    .contains("this backtest's figures are incomplete")
                    || first
                        .stderr
                        .contains("Redis lost this input's queue position"),
                "{}",
                first.stderr
            );
        }
        // Ingest stops rather than queue on behind the hole, and says so
        // (the pipeline may not have had a queue generation yet).
        LossAt::Ingest => {
            assert!(!first.status.success(), "{first:?}");
            assert!(
                first
                    .stderr
                    .contains("Redis lost this input's queue position"),
                "{}",
                first.stderr
            );
        }
    }
    // What the loss left: the file's committed position, short of its end
    // (after the processing began, it is past the start too).
    let db = dvmtop::store::Db::connect(&database_url(), &ns.name)
        .await
        .unwrap();
    let committed: Vec<i64> = sqlx::query_scalar("SELECT elements FROM source_positions")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let lines = std::fs::read_to_string(file).unwrap().lines().count() as i64;
    println!("{at:?}: committed position {committed:?} of {lines} elements");
    match at {
        // The pipeline commits what it had read before the restart; on an
        // idle machine that can be the whole file (the last queued elements
        // already read into its batch or overflow), and the loss was then
        // of nothing unprocessed. The counts below are checked either way.
        LossAt::Processing | LossAt::Queued => assert!(
            committed.len() == 1 && committed[0] > 0 && committed[0] <= lines,
            "{committed:?} of {lines}"
        ),
        LossAt::Ingest => assert!(committed.iter().all(|&n| n < lines), "{committed:?}"),
    }
    let again = d.output([
        "backtest".as_ref(),
        file.as_os_str(),
        "--headless".as_ref(),
        "--resume".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "--resume: {stderr}");
    let stdout = String::from_utf8_lossy(&again.stdout);
    let last = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    let summary: Value = serde_json::from_str(last).expect("the resumed run's summary");
    (ns, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_a_lost_queue_counts_exactly_as_an_uninterrupted_run() {
    let scratch = ScratchDir::new("lost-resume");
    let file = input_with_rejects(scratch.path());
    let (reference, expected) = reference_with_summary(&file);
    for k in ["ignored_prior_month", "dead_letters"] {
        assert!(expected[k].as_u64().unwrap_or(0) > 0, "{k}: {expected}");
    }
    assert!(
        expected["rejected"]["duplicate"].as_u64().unwrap_or(0) > 0,
        "{expected}"
    );
    for at in [LossAt::Processing, LossAt::Queued, LossAt::Ingest] {
        let (ns, summary) = lost_then_resumed(&scratch, &file, at).await;
        assert_eq!(
            counts(&summary),
            counts(&expected),
            "{at:?}: the summary after --resume (left) against an uninterrupted run"
        );
        assert_same_tables(&reference.name, &ns.name).await;
    }
}

fn wait_for_stderr(run: &mut Running, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = run.stderr().lines().find(|l| l.contains(needle)) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no stderr line with {needle:?}: {}",
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ingest_waits_for_redis_instead_of_exiting() {
    use std::io::Write;
    let scratch = ScratchDir::new("ingest-wait");
    // Ingest writes chunks of 2,000 lines: the first half is one chunk.
    let lines: Vec<String> = (0..4000)
        .map(|i| {
            common::event_line(
                (i % 50) as u8 + 1,
                common::at(2024, 3, 1, 0) + i as i64 * 60,
                5300,
                vec![],
                "",
            )
        })
        .collect();
    let fifo = scratch.path().join("feed.jsonl");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(ok.success());
    let mut redis = Redis::start(RedisOpts::aof());
    let ns = TestNs::new("ingestwait");
    let d = Dvmtop::new(database_url(), redis.url(), &ns.name, scratch.path());
    let mut ingest = d.spawn(["ingest", fifo.to_str().unwrap()]);
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let queued = |r: &Redis| -> u64 {
        redis::cmd("LLEN")
            .arg(format!("{}:queue", ns.name))
            .query(&mut r.connection())
            .unwrap_or(0)
    };
    w.write_all((lines[..2000].join("\n") + "\n").as_bytes())
        .unwrap();
    w.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while queued(&redis) < 2000 {
        assert!(Instant::now() < deadline, "the first half was not queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    redis.kill();
    w.write_all((lines[2000..].join("\n") + "\n").as_bytes())
        .unwrap();
    drop(w);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        ingest.try_wait().is_none(),
        "ingest exited while Redis was down: {:?}",
        ingest.finish(Duration::ZERO)
    );
    redis.start_again();
    let done = ingest.finish(Duration::from_secs(60));
    assert!(done.status.success(), "{done:?}");
    assert_eq!(queued(&redis), 4000, "every line queued once");
    assert_eq!(
        done.last_json()["ingest"]["accepted"],
        4000,
        "{}",
        done.stdout
    );
}
