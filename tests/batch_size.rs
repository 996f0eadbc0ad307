//! Acceptance: the same generated input — with duplicates, malformed lines,
//! late events that arrive within the rollover buffer, and prior-month
//! stragglers placed so far behind that no batch size can reach them —
//! processed with batch sizes 1, 7 and 5000 gives identical
//! `monthly_activity` (job figures included), `dvms`, `users`,
//! `global_stats_rollups`, and the job analytics' `job_day_stats` and
//! stored matching facts.
//!
//! The input's properties are established by an independent scan of the
//! JSONL (no dvmtop analysis code), and the scan also proves that the
//! stragglers are out of reach: before each of them, at least 5000 distinct
//! accepted events lie on or after the day that makes its month's rollover
//! due. Any pending set holding the straggler holds at most 5000 events, so
//! one of those was already processed, which requires the rollover first.
//! (Events of a month that has not rolled over yet are processed at any
//! batch size, so the set of counted events cannot depend on it.)
//!
//! Batch size 1 is one transaction per event, so the input is a window of
//! the generated stream just long enough for all of this (see [`window`]),
//! and the three backtests run side by side in their own namespaces.

mod common;

use chrono::{DateTime, Datelike, Days, NaiveDate};
use common::*;
use dvmtop::generate::{GenConfig, GenStats, STRAGGLER_DAY, generate};
use dvmtop::run::{Start, Summary};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

const BATCH_SIZES: [usize; 3] = [1, 7, 5000];
const LARGEST_BATCH: usize = 5000;
const BUFFER_DAYS: u64 = 3;

fn gen_config() -> GenConfig {
    GenConfig {
        seed: 3,
        start: dvmtop_core::YearMonth {
            year: 2024,
            month: 1,
        },
        months: 3,
        // Just enough that days 4 … 24 of a month hold more than 5000 events
        // (the scan below checks the exact margin: 5100 for this seed).
        events_per_day: 250,
        late_rate: 0.03,
        late_max_hours: 36,
        dup_rate: 0.01,
        malformed_rate: 0.005,
        future_rate: 0.0,
        straggler_rate: 0.004,
        sign: false,
    }
}

/// Batch size 1 costs a transaction per event, so the input is the
/// shortest window of the generated stream that still has every property:
/// from the first event dated on or after `window().0` (2024-01's
/// stragglers are generated on days ≥ 25 — earlier ones are emitted within
/// their own month) up to the first event dated on or after `window().1`,
/// the day after 2024-02's stragglers were emitted (2024-03-25). In between
/// lie the two full rollover stretches the stragglers must be behind.
fn window() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(2024, 1, STRAGGLER_DAY - 1).unwrap(),
        NaiveDate::from_ymd_opt(2024, 3, STRAGGLER_DAY + 1).unwrap(),
    )
}

/// The generated JSONL, windowed as above, and what the generator
/// reported (for the whole stream).
fn input() -> (String, GenStats) {
    let mut out = Vec::new();
    let stats = generate(&gen_config(), &mut out).expect("generate");
    let text = String::from_utf8(out).expect("utf-8");
    let (from, to) = window();
    let mut started = false;
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        let day = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["created_at"].as_i64())
            .map(day_of);
        started = started || day.is_some_and(|d| d >= from);
        if !started {
            continue;
        }
        if day.is_some_and(|d| d >= to) {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    (kept, stats)
}

type Month = (i32, u32);

fn day_of(ts: i64) -> NaiveDate {
    DateTime::from_timestamp(ts, 0)
        .expect("timestamp in range")
        .date_naive()
}

fn month_of(d: NaiveDate) -> Month {
    (d.year(), d.month())
}

/// First day on which the rollover of `m` is due (auto policy).
fn rollover_day(m: Month) -> NaiveDate {
    let (y, mo) = if m.1 == 12 {
        (m.0 + 1, 1)
    } else {
        (m.0, m.1 + 1)
    };
    NaiveDate::from_ymd_opt(y, mo, 1).expect("valid month") + Days::new(BUFFER_DAYS)
}

fn ym(m: Month) -> String {
    format!("{:04}-{:02}", m.0, m.1)
}

/// Facts about the input, from straightforward code over the JSONL.
#[derive(Debug, Default)]
struct Facts {
    lines: u64,
    malformed: u64,
    duplicates: u64,
    /// Distinct valid events (what ingest enqueues).
    accepted: u64,
    /// Accepted events whose month had already rolled over: (line, month).
    ignored: Vec<(usize, Month)>,
    /// Of those, the generator's stragglers (content "straggler …").
    ignored_stragglers: u64,
    /// Smallest number of accepted events at or after the rollover day that
    /// precede an ignored event in the file.
    min_margin: Option<usize>,
    /// Duplicate lines of a month already rolled over (their fate would
    /// depend on ingest/processing timing): must be 0.
    ignored_duplicates: u64,
    /// Events that arrive after a later day's event.
    late: u64,
    /// Events of month M arriving after an event of M+1, before M rolls.
    late_in_buffer: BTreeMap<Month, u64>,
    /// Generated stragglers that were emitted within their own month (the
    /// generator emits those of days 5–24 on day `STRAGGLER_DAY` of the same
    /// month): just late events, counted normally.
    same_month_stragglers: u64,
    /// Months whose rollover became due.
    closed: Vec<Month>,
}

fn is_dvm_kind(kind: i64) -> bool {
    !matches!(kind, 5666 | 6666 | 5969 | 6969)
        && (matches!(kind, 5000..=6999) || kind == 7000 || kind == 31990)
}

fn scan(text: &str) -> Facts {
    let mut f = Facts::default();
    let mut seen: HashSet<String> = HashSet::new();
    // Days of the accepted (not ignored) events, in file order.
    let mut accepted_days: Vec<NaiveDate> = Vec::new();
    let mut max_day: Option<NaiveDate> = None;
    for (n, line) in text.lines().enumerate() {
        f.lines += 1;
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                f.malformed += 1;
                continue;
            }
        };
        let (Some(id), Some(ts), Some(kind), Some(content)) = (
            v["id"].as_str(),
            v["created_at"].as_i64(),
            v["kind"].as_i64(),
            v["content"].as_str(),
        ) else {
            f.malformed += 1;
            continue;
        };
        assert!(is_dvm_kind(kind), "unexpected kind {kind} on line {n}");
        let day = day_of(ts);
        let month = month_of(day);
        let rolled = max_day.is_some_and(|m| m >= rollover_day(month));
        if !seen.insert(id.to_owned()) {
            f.duplicates += 1;
            if rolled {
                f.ignored_duplicates += 1;
            }
            continue;
        }
        f.accepted += 1;
        if rolled {
            f.ignored.push((n, month));
            if content.starts_with("straggler") {
                f.ignored_stragglers += 1;
            }
            let due = rollover_day(month);
            let margin = accepted_days.iter().filter(|d| **d >= due).count();
            f.min_margin = Some(f.min_margin.map_or(margin, |m| m.min(margin)));
            continue;
        }
        if content.starts_with("straggler") && max_day.is_some_and(|m| month_of(m) == month) {
            f.same_month_stragglers += 1;
        }
        if let Some(m) = max_day {
            if day < m {
                f.late += 1;
            }
            if month_of(m) > month {
                *f.late_in_buffer.entry(month).or_default() += 1;
            }
        }
        accepted_days.push(day);
        max_day = max_day.max(Some(day));
    }
    if let Some(last) = max_day {
        let mut m = month_of(accepted_days[0]);
        while rollover_day(m) <= last {
            f.closed.push(m);
            m = month_of(rollover_day(m));
        }
    }
    f
}

struct Run {
    batch_size: usize,
    summary: Summary,
    elapsed: Duration,
    tables: BTreeMap<&'static str, Vec<String>>,
}

async fn run(batch_size: usize, input: &[u8]) -> Run {
    let ns = TestNs::new(&format!("batch{batch_size}"));
    let mut cfg = ns.config();
    cfg.batch_size = batch_size;
    // Commit points must not matter either: batch size 7 commits every
    // few hundred events (many commits under way while it goes on), the
    // others with the defaults.
    if batch_size == 7 {
        cfg.commit.target_events = 300;
        cfg.commit.max_events = 1200;
    }
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let file = cfg.data_dir.join("input.jsonl");
    std::fs::write(&file, input).unwrap();
    let started = Instant::now();
    let summary = backtest(&cfg, &[file.display().to_string()], Start::New).await;
    let elapsed = started.elapsed();
    let s = ns.open(&cfg).await;
    let mut tables = BTreeMap::new();
    for (table, order, exclude) in [
        ("monthly_activity", "year_month", &["created_at"][..]),
        ("dvms", "id", &[][..]),
        ("users", "id", &[][..]),
        ("global_stats_rollups", "id", &[][..]),
        ("job_day_stats", "day, scope, key", &[][..]),
    ] {
        tables.insert(table, table_dump(&s.db, table, order, exclude).await);
    }
    tables.insert("job_facts", job_facts_dump(&s.db).await);
    Run {
        batch_size,
        summary,
        elapsed,
        tables,
    }
}

fn first_difference(a: &[String], b: &[String]) -> String {
    if let Some((i, (x, y))) = a.iter().zip(b).enumerate().find(|(_, (x, y))| x != y) {
        return format!("row {i}:\n  {x}\n  {y}");
    }
    format!("{} rows vs {} rows", a.len(), b.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_sizes_1_7_5000_give_identical_tables() {
    let (text, stats) = input();
    let facts = scan(&text);
    println!("generator (whole stream): {stats:?}");
    println!(
        "input: {} lines, {} accepted, {} duplicates, {} malformed, {} late ({:?} within the buffer), \
         {} ignored (stragglers {}), min margin {:?}, closed {:?}; \
         {} generated stragglers were emitted within their own month",
        facts.lines,
        facts.accepted,
        facts.duplicates,
        facts.malformed,
        facts.late,
        facts.late_in_buffer,
        facts.ignored.len(),
        facts.ignored_stragglers,
        facts.min_margin,
        facts.closed,
        facts.same_month_stragglers,
    );

    // The input has every awkward property the acceptance point names.
    assert!(facts.duplicates > 0, "no duplicates in the input");
    assert!(facts.malformed > 0, "no malformed lines in the input");
    assert!(facts.late > 0, "no late events in the input");
    let closed = vec![(2024, 1), (2024, 2)];
    assert_eq!(facts.closed, closed, "two months roll over");
    for m in &closed {
        assert!(
            facts.late_in_buffer.get(m).copied().unwrap_or(0) > 0,
            "no late events of {} arriving within its rollover buffer",
            ym(*m)
        );
        assert!(
            facts.ignored.iter().any(|(_, im)| im == m),
            "no stragglers of {} after its rollover",
            ym(*m)
        );
    }
    // Every ignored event is one of the generator's stragglers, and out of
    // reach of every batch size.
    assert_eq!(facts.ignored_stragglers, facts.ignored.len() as u64);
    let margin = facts.min_margin.expect("some stragglers");
    assert!(
        margin >= LARGEST_BATCH,
        "a straggler is only {margin} events behind its month's rollover day: \
         batch size {LARGEST_BATCH} could reach it (raise events_per_day)"
    );
    assert_eq!(
        facts.ignored_duplicates, 0,
        "a duplicate of a closed month's event makes the counters timing-dependent"
    );

    // The three runs are independent namespaces: run them side by side.
    let started = Instant::now();
    let input = text.as_bytes();
    let (r1, r7, r5000) = tokio::join!(
        run(BATCH_SIZES[0], input),
        run(BATCH_SIZES[1], input),
        run(BATCH_SIZES[2], input)
    );
    println!(
        "all three backtests (concurrently): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let runs = [r1, r7, r5000];
    for r in &runs {
        println!(
            "batch size {}: {:.2} s, summary {}",
            r.batch_size,
            r.elapsed.as_secs_f64(),
            serde_json::to_string(&r.summary).unwrap()
        );
    }

    for r in &runs {
        let s = &r.summary;
        let b = r.batch_size;
        assert_eq!(s.events_read, facts.lines, "batch size {b}");
        assert_eq!(s.accepted, facts.accepted, "batch size {b}");
        assert_eq!(s.rejected["malformed"], facts.malformed, "batch size {b}");
        assert_eq!(s.rejected["duplicate"], facts.duplicates, "batch size {b}");
        assert_eq!(
            s.ignored_prior_month,
            facts.ignored.len() as u64,
            "batch size {b}: stragglers counted as ignored_prior_month"
        );
        assert_eq!(
            s.processed,
            facts.accepted - facts.ignored.len() as u64,
            "batch size {b}"
        );
        assert_eq!(s.rollovers, 2, "batch size {b}");
        assert_eq!(
            s.current_month.as_deref(),
            Some("2024-03"),
            "batch size {b}"
        );
        assert_eq!((s.queue_depth, s.overflow_size), (0, 0), "batch size {b}");
        assert!(!s.interrupted);
        assert_eq!(r.tables["monthly_activity"].len(), 2, "batch size {b}");
        // Job analytics (issue 14) are part of the rows compared below.
        assert!(
            !r.tables["job_day_stats"].is_empty() && !r.tables["job_facts"].is_empty(),
            "batch size {b}: no job analytics"
        );
        assert_eq!(r.tables["global_stats_rollups"].len(), 1);
        assert!(!r.tables["dvms"].is_empty() && !r.tables["users"].is_empty());
    }
    let base = &runs[2];
    for r in &runs[..2] {
        for (table, rows) in &r.tables {
            assert!(
                rows == &base.tables[table],
                "{table} differs between batch size {} and {}: {}",
                r.batch_size,
                base.batch_size,
                first_difference(rows, &base.tables[table])
            );
        }
    }
}
