//! Acceptance (issue 14): the job figures of `monthly_activity` equal an
//! independent computation over the JSONL — straightforward code here
//! (serde_json and chrono only, nothing from dvmtop's matching, clock or
//! store), compared field by field with the rows a default backtest wrote.
//!
//! Rules of the independent computation (README "Job analytics"):
//! * accepted events as in `monthly_exact.rs`: parse, DVM kind, first
//!   occurrence of an id; ignored (prior month) iff an earlier accepted
//!   event already had a day ≥ first day of the next month + 3 days;
//! * a processed result (6000–6999) answers the processed request named by
//!   its first `e` tag when `|result − request| ≤ 7 days`; latency =
//!   max(0, result − request);
//! * per (DVM, request) the earliest result, per request the earliest of
//!   any DVM; a sample belongs to the month of its result;
//! * jobs_answered = overall samples in the month; median = sorted index
//!   ⌊(n−1)/2⌋, p90 = sorted index ⌈0.9·n⌉ − 1, null without samples; per
//!   DVM (answered, median, p90) from its own samples, per request kind
//!   (answered, median) from the overall samples;
//! * feedback_status: per DVM and month, feedback events by `status` tag
//!   value (the five NIP-90 values; others not counted).
//!
//! Hand-made lines add what must hold whatever the generator does: a
//! result queued before its request, an earlier result of the same DVM
//! queued after a later one, a result outside the horizon, a result naming
//! a request that never comes, an unknown status.

mod common;

use chrono::{DateTime, Datelike, Days, NaiveDate};
use common::*;
use dvmtop::generate::{GenConfig, STRAGGLER_DAY, generate};
use dvmtop::run::Start;
use serde_json::Value;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};

const BUFFER_DAYS: u64 = 3;
const HORIZON: i64 = 7 * 86_400;
const STATUSES: [&str; 5] = [
    "payment-required",
    "processing",
    "error",
    "success",
    "partial",
];

type Month = (i32, u32);

fn day_of(ts: i64) -> NaiveDate {
    DateTime::from_timestamp(ts, 0).unwrap().date_naive()
}

fn month_of_ts(ts: i64) -> Month {
    let d = day_of(ts);
    (d.year(), d.month())
}

fn rollover_day(m: Month) -> NaiveDate {
    let (y, mo) = if m.1 == 12 {
        (m.0 + 1, 1)
    } else {
        (m.0, m.1 + 1)
    };
    NaiveDate::from_ymd_opt(y, mo, 1).unwrap() + Days::new(BUFFER_DAYS)
}

fn ym(m: Month) -> String {
    format!("{:04}-{:02}", m.0, m.1)
}

fn id_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Hand-made jobs, dated from `t` (mid-February), in queue order.
fn extra_lines(t: i64) -> Vec<String> {
    let r1 = event_line(0xb1, t, 5300, vec![vec!["i", "r1"]], "");
    let r2 = event_line(0xb1, t + 100, 5300, vec![vec!["i", "r2"]], "");
    let r3 = event_line(0xb1, t + 200, 5100, vec![vec!["i", "r3"]], "");
    let (i1, i2, i3) = (id_of(&r1), id_of(&r2), id_of(&r3));
    let res = |dvm: u8, at: i64, kind: i64, of: &str| {
        event_line(
            dvm,
            at,
            kind,
            vec![vec!["e", of], vec!["e", &"ee".repeat(32)]],
            "out",
        )
    };
    vec![
        // DVM c1 answers r1 after 40 s — queued before r1 itself.
        res(0xc1, t + 40, 6300, &i1),
        r1,
        // DVM c2 answers r1 after 10 s: r1's overall latency is 10 s.
        res(0xc2, t + 10, 6300, &i1),
        r2,
        // Outside the horizon: no answer.
        res(0xc1, t + 100 + HORIZON + 1, 6300, &i2),
        // Names a request that never comes.
        res(0xc1, t + 5, 6300, &"dd".repeat(32)),
        r3,
        // c1 answers r3 after 60 s, then its earlier answer (30 s) arrives.
        res(0xc1, t + 260, 6100, &i3),
        res(0xc1, t + 230, 6100, &i3),
        event_line(
            0xc1,
            t + 101,
            7000,
            vec![vec!["status", "error"], vec!["e", &i2]],
            "",
        ),
        event_line(
            0xc1,
            t + 102,
            7000,
            vec![vec!["status", "bogus"], vec!["e", &i2]],
            "",
        ),
    ]
}

fn input() -> String {
    let cfg = GenConfig {
        seed: 14,
        start: dvmtop_core::YearMonth {
            year: 2024,
            month: 1,
        },
        months: 3,
        events_per_day: 260,
        late_rate: 0.03,
        late_max_hours: 36,
        dup_rate: 0.01,
        malformed_rate: 0.005,
        future_rate: 0.0,
        straggler_rate: 0.004,
        sign: false,
    };
    let mut out = Vec::new();
    generate(&cfg, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let cut = NaiveDate::from_ymd_opt(2024, 3, STRAGGLER_DAY + 1).unwrap();
    let insert_on = NaiveDate::from_ymd_opt(2024, 2, 14).unwrap();
    let mut inserted = false;
    let mut kept = String::new();
    for line in text.lines() {
        let ts = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["created_at"].as_i64());
        if ts.is_some_and(|ts| day_of(ts) >= cut) {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
        if let Some(ts) = ts.filter(|ts| !inserted && day_of(*ts) == insert_on) {
            for l in extra_lines(ts) {
                kept.push_str(&l);
                kept.push('\n');
            }
            inserted = true;
        }
    }
    assert!(inserted);
    kept
}

struct Ev {
    id: String,
    pubkey: String,
    created_at: i64,
    kind: i64,
    first_e: Option<String>,
    status: Option<String>,
}

fn parse(line: &str) -> Option<Ev> {
    let v: Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let s = |k: &str| o.get(k)?.as_str().map(str::to_owned);
    let tags = o.get("tags")?.as_array()?;
    let tag = |name: &str| {
        tags.iter()
            .filter_map(Value::as_array)
            .find(|t| t.first().and_then(Value::as_str) == Some(name))
            .and_then(|t| t.get(1)?.as_str().map(str::to_owned))
    };
    s("content")?;
    s("sig")?;
    Some(Ev {
        id: s("id")?,
        pubkey: s("pubkey")?,
        created_at: o.get("created_at")?.as_i64()?,
        kind: o.get("kind")?.as_i64()?,
        first_e: tag("e").filter(|e| e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit())),
        status: tag("status"),
    })
}

fn is_dvm_kind(kind: i64) -> bool {
    !matches!(kind, 5666 | 6666 | 5969 | 6969)
        && matches!(kind, 5000..=5999 | 6000..=6999 | 7000 | 31990)
}

/// A DVM's job fields: answered, median, p90, feedback by status.
type DvmJobs = (i64, Option<i64>, Option<i64>, BTreeMap<String, i64>);

/// The job fields of one month, as compared.
#[derive(Debug, Default, Clone, PartialEq)]
struct JobFields {
    jobs_answered: i64,
    median: Option<i64>,
    p90: Option<i64>,
    /// dvm → (answered, median, p90, feedback_status)
    dvms: BTreeMap<String, DvmJobs>,
    /// kind → (answered, median)
    kinds: BTreeMap<i64, (i64, Option<i64>)>,
}

fn median(v: &mut [i64]) -> Option<i64> {
    v.sort_unstable();
    (!v.is_empty()).then(|| v[(v.len() - 1) / 2])
}

fn p90(v: &mut [i64]) -> Option<i64> {
    v.sort_unstable();
    let n = v.len() as f64;
    (!v.is_empty()).then(|| v[((0.9 * n).ceil() as usize) - 1])
}

struct Expected {
    months: BTreeMap<Month, JobFields>,
    closed: Vec<Month>,
    ignored: usize,
    min_margin: Option<usize>,
    /// Results queued before the request they answer.
    early_results: usize,
    /// Every sample: (result time, latency, request kind), overall and
    /// (dvm, result time, latency) per DVM.
    samples: Vec<(i64, i64, i64)>,
    dvm_samples: Vec<(String, i64, i64)>,
    /// The processing clock at the end: the largest processed created_at.
    clock: i64,
}

fn compute(text: &str) -> Expected {
    let mut seen = HashSet::new();
    let mut max_day: Option<NaiveDate> = None;
    let mut accepted_days: Vec<NaiveDate> = Vec::new();
    let mut ignored = 0;
    let mut min_margin: Option<usize> = None;
    // Processed events.
    let mut requests: HashMap<String, (i64, i64)> = HashMap::new();
    let mut results: Vec<(String, i64, String)> = Vec::new();
    let mut feedback: Vec<(String, i64, Option<String>)> = Vec::new();
    let mut early_results = 0;
    let mut clock = 0;
    for line in text.lines() {
        let Some(ev) = parse(line) else { continue };
        if !is_dvm_kind(ev.kind) || !seen.insert(ev.id.clone()) {
            continue;
        }
        let day = day_of(ev.created_at);
        let month = month_of_ts(ev.created_at);
        if max_day.is_some_and(|m| m >= rollover_day(month)) {
            ignored += 1;
            let due = rollover_day(month);
            let margin = accepted_days.iter().filter(|d| **d >= due).count();
            min_margin = Some(min_margin.map_or(margin, |m| m.min(margin)));
            continue;
        }
        accepted_days.push(day);
        max_day = max_day.max(Some(day));
        clock = clock.max(ev.created_at);
        match ev.kind {
            5000..=5999 => {
                requests.insert(ev.id, (ev.created_at, ev.kind));
            }
            6000..=6999 => {
                if let Some(e) = ev.first_e {
                    early_results += usize::from(!requests.contains_key(&e));
                    results.push((ev.pubkey, ev.created_at, e));
                }
            }
            7000 => feedback.push((ev.pubkey, ev.created_at, ev.status)),
            _ => {}
        }
    }
    // Earliest result per (DVM, request) and per request.
    let mut per_dvm: HashMap<(String, String), i64> = HashMap::new();
    let mut overall: HashMap<String, i64> = HashMap::new();
    for (dvm, t, e) in &results {
        let Some((q, _)) = requests.get(e) else {
            continue;
        };
        if (t - q).abs() > HORIZON {
            continue;
        }
        let d = per_dvm.entry((dvm.clone(), e.clone())).or_insert(*t);
        *d = (*d).min(*t);
        let o = overall.entry(e.clone()).or_insert(*t);
        *o = (*o).min(*t);
    }
    let samples: Vec<(i64, i64, i64)> = overall
        .iter()
        .map(|(e, t)| (*t, (t - requests[e].0).max(0), requests[e].1))
        .collect();
    let dvm_samples: Vec<(String, i64, i64)> = per_dvm
        .iter()
        .map(|((d, e), t)| (d.clone(), *t, (t - requests[e].0).max(0)))
        .collect();
    let mut all: BTreeMap<Month, Vec<i64>> = BTreeMap::new();
    let mut by_kind: BTreeMap<(Month, i64), Vec<i64>> = BTreeMap::new();
    let mut by_dvm: BTreeMap<(Month, String), Vec<i64>> = BTreeMap::new();
    for (e, t) in &overall {
        let (q, kind) = requests[e];
        all.entry(month_of_ts(*t)).or_default().push((t - q).max(0));
        by_kind
            .entry((month_of_ts(*t), kind))
            .or_default()
            .push((t - q).max(0));
    }
    for ((dvm, e), t) in &per_dvm {
        let (q, _) = requests[e];
        by_dvm
            .entry((month_of_ts(*t), dvm.clone()))
            .or_default()
            .push((t - q).max(0));
    }
    let mut status: BTreeMap<(Month, String), BTreeMap<String, i64>> = BTreeMap::new();
    for (dvm, t, s) in &feedback {
        let counts = status
            .entry((month_of_ts(*t), dvm.clone()))
            .or_insert_with(|| STATUSES.iter().map(|s| (s.to_string(), 0)).collect());
        if let Some(s) = s.as_deref().filter(|s| STATUSES.contains(s)) {
            *counts.get_mut(s).unwrap() += 1;
        }
    }
    let mut months: BTreeMap<Month, JobFields> = BTreeMap::new();
    for (m, mut v) in all {
        let f = months.entry(m).or_default();
        f.jobs_answered = v.len() as i64;
        f.median = median(&mut v);
        f.p90 = p90(&mut v);
    }
    for ((m, k), mut v) in by_kind {
        months
            .entry(m)
            .or_default()
            .kinds
            .insert(k, (v.len() as i64, median(&mut v)));
    }
    for ((m, d), mut v) in by_dvm {
        let st = status
            .get(&(m, d.clone()))
            .cloned()
            .unwrap_or_else(|| STATUSES.iter().map(|s| (s.to_string(), 0)).collect());
        months
            .entry(m)
            .or_default()
            .dvms
            .insert(d, (v.len() as i64, median(&mut v), p90(&mut v), st));
    }
    // DVMs with feedback but no answers in the month.
    for ((m, d), st) in status {
        months
            .entry(m)
            .or_default()
            .dvms
            .entry(d)
            .or_insert((0, None, None, st));
    }
    let mut closed = Vec::new();
    if let (Some(first), Some(last)) = (accepted_days.first(), max_day) {
        let mut m = (first.year(), first.month());
        while rollover_day(m) <= last {
            closed.push(m);
            m = if m.1 == 12 {
                (m.0 + 1, 1)
            } else {
                (m.0, m.1 + 1)
            };
        }
    }
    Expected {
        months,
        closed,
        ignored,
        min_margin,
        early_results,
        samples,
        dvm_samples,
        clock,
    }
}

/// `|got − want| ≤ 1 %` of `want` (the stated bound of window percentiles).
fn within_bound(got: Option<i64>, want: Option<i64>) -> bool {
    match (got, want) {
        (Some(g), Some(w)) => (g - w).abs() as f64 <= 0.01 * w as f64,
        (g, w) => g == w,
    }
}

fn opt(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// The job fields of a `monthly_activity` row. DVMs whose entry shows no
/// answer and no feedback status are left out (they only responded or
/// answered outside the horizon), as in the expectation.
fn db_fields(r: &sqlx::postgres::PgRow) -> JobFields {
    let dvm_activity: Value = r.get("dvm_activity");
    let kind_activity: Value = r.get("kind_activity");
    let mut f = JobFields {
        jobs_answered: r.get("jobs_answered"),
        median: r.get("median_response_s"),
        p90: r.get("p90_response_s"),
        ..Default::default()
    };
    for (d, e) in dvm_activity.as_object().unwrap() {
        let st: BTreeMap<String, i64> = e["feedback_status"]
            .as_object()
            .unwrap_or_else(|| panic!("{d}: no feedback_status in {e}"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
            .collect();
        let answered = e["answered"].as_i64().unwrap();
        if answered > 0 || e["feedback"].as_i64().unwrap() > 0 {
            f.dvms.insert(
                d.clone(),
                (
                    answered,
                    opt(&e["median_response_s"]),
                    opt(&e["p90_response_s"]),
                    st,
                ),
            );
        }
    }
    for (k, e) in kind_activity.as_object().unwrap() {
        let answered = e["answered"].as_i64().unwrap();
        if answered > 0 {
            f.kinds
                .insert(k.parse().unwrap(), (answered, opt(&e["median_response_s"])));
        } else {
            assert!(e["median_response_s"].is_null(), "kind {k}: {e}");
        }
    }
    f
}

#[tokio::test]
async fn job_figures_equal_an_independent_computation() {
    let text = input();
    let x = compute(&text);
    let ns = TestNs::new("jobsexact");
    let cfg = ns.config();
    assert_eq!(x.closed, vec![(2024, 1), (2024, 2)]);
    assert!(x.ignored > 0, "some stragglers are ignored");
    assert!(
        x.min_margin.unwrap() >= cfg.batch_size,
        "stragglers out of reach"
    );
    assert!(x.early_results > 1, "results queued before their request");
    println!(
        "{} ignored, {} results queued before their request",
        x.ignored, x.early_results
    );

    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let file = cfg.data_dir.join("input.jsonl");
    std::fs::write(&file, &text).unwrap();
    let s = backtest(&cfg, &[file.display().to_string()], Start::New).await;
    assert_eq!(s.ignored_prior_month, x.ignored as u64);

    let services = ns.open(&cfg).await;
    let rows = sqlx::query("SELECT * FROM monthly_activity ORDER BY year_month")
        .fetch_all(&services.db.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let m: String = r.get("year_month");
        let month = x
            .closed
            .iter()
            .find(|c| ym(**c) == m)
            .copied()
            .unwrap_or_else(|| panic!("unexpected month {m}"));
        let want = &x.months[&month];
        let got = db_fields(r);
        println!(
            "{m}: {} answered, median {:?} s, p90 {:?} s, {} DVMs, {} kinds",
            want.jobs_answered,
            want.median,
            want.p90,
            want.dvms.len(),
            want.kinds.len()
        );
        assert!(want.jobs_answered > 1000, "a real sample");
        assert_eq!(
            (got.jobs_answered, got.median, got.p90),
            (want.jobs_answered, want.median, want.p90),
            "{m}: monthly job figures"
        );
        for d in want.dvms.keys().chain(got.dvms.keys()) {
            assert_eq!(got.dvms.get(d), want.dvms.get(d), "{m}: dvm {d}");
        }
        for k in want.kinds.keys().chain(got.kinds.keys()) {
            assert_eq!(got.kinds.get(k), want.kinds.get(k), "{m}: kind {k}");
        }
    }
    // `status --json` carries the window figures: answered counts exact,
    // percentiles within 1 %, per DVM and per kind too. A window starts at
    // midnight 7 or 30 days before the clock's day (README "Months").
    let status = dvmtop::commands::status(&cfg).await.expect("status");
    let windows = status["windows"].as_array().expect("windows");
    let clock_day = day_of(x.clock);
    for (name, days) in [("7d", 7u64), ("30d", 30)] {
        let from = (clock_day - Days::new(days))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp();
        let w = windows
            .iter()
            .find(|w| w["window"] == name)
            .unwrap_or_else(|| panic!("no {name} window"));
        let mut lat: Vec<i64> = x
            .samples
            .iter()
            .filter(|(t, _, _)| *t >= from && *t <= x.clock)
            .map(|(_, l, _)| *l)
            .collect();
        let n = lat.len() as i64;
        let (med, p) = (median(&mut lat), p90(&mut lat));
        println!(
            "window {name}: {n} answered, median {med:?}, p90 {p:?}; status: {}",
            w["answered"]
        );
        assert!(n > 100, "{name}: a real sample");
        assert_eq!(w["answered"].as_i64(), Some(n), "{name}: answered");
        let requests = w["requests"].as_i64().unwrap();
        let pct = w["answered_pct"].as_f64().unwrap();
        assert!((pct - n as f64 * 100.0 / requests as f64).abs() < 1e-9);
        assert!(
            within_bound(opt(&w["median_response_s"]), med),
            "{name}: median {w}"
        );
        assert!(within_bound(opt(&w["p90_response_s"]), p), "{name}: p90");
        // Per kind 5300 and per DVM, the same way.
        let mut k: Vec<i64> = x
            .samples
            .iter()
            .filter(|(t, _, kind)| *t >= from && *t <= x.clock && *kind == 5300)
            .map(|(_, l, _)| *l)
            .collect();
        let kw = w["kind_jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key"] == "5300")
            .expect("kind 5300");
        assert_eq!(kw["answered"].as_i64(), Some(k.len() as i64));
        assert!(within_bound(opt(&kw["median_response_s"]), median(&mut k)));
        for dw in w["dvm_jobs"].as_array().unwrap() {
            let d = dw["key"].as_str().unwrap();
            let mut v: Vec<i64> = x
                .dvm_samples
                .iter()
                .filter(|(dd, t, _)| dd == d && *t >= from && *t <= x.clock)
                .map(|(_, _, l)| *l)
                .collect();
            assert_eq!(dw["answered"].as_i64(), Some(v.len() as i64), "{name} {d}");
            assert!(
                within_bound(opt(&dw["p90_response_s"]), p90(&mut v)),
                "{name} {d}"
            );
        }
    }

    // The hand-made jobs, spelled out: c1 answered r1 (40 s, queued before
    // r1) and r3 (30 s, its earlier result arriving second); c2 answered
    // r1 after 10 s; the error feedback counted, the unknown status not.
    let feb = &x.months[&(2024, 2)];
    let c1 = &feb.dvms[&"c1".repeat(32)];
    assert_eq!((c1.0, c1.1, c1.2), (2, Some(30), Some(40)));
    assert_eq!(c1.3["error"], 1);
    assert_eq!(c1.3.values().sum::<i64>(), 1);
    let c2 = &feb.dvms[&"c2".repeat(32)];
    assert_eq!((c2.0, c2.1, c2.2), (1, Some(10), Some(10)));
}
