//! `dvmtop bench`: one reproducible run on this machine that generates a
//! realistic backfill and measures ingest, the Redis ceiling, processing
//! (overall and per month of data), an end-to-end backtest, peak RSS and
//! table sizes.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::generate::{GenConfig, Population, generate_population};
use crate::ingest::{self, IngestConfig, Source};
use crate::pipeline::{self, Processor, Progress, Publisher, Wake};
use crate::run::{Services, Start};
use dvmtop_core::YearMonth;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub months: u32,
    pub events_per_day: u32,
    pub seed: u64,
    /// Also run a full concurrent backtest into a second namespace.
    pub end_to_end: bool,
    /// The population of the population run (users, DVMs).
    pub users: usize,
    pub dvms: usize,
    /// Skip the verified-ingest, population and JSON-array runs.
    pub main_only: bool,
}

/// Events a day in the population run: enough requests a month (~390 k)
/// that every one of 370 k users is active in it, and no more (at 30 k a
/// day the month's dedup set crossed a hash-table doubling, +18 MB, a cost
/// of volume, not of population).
const POPULATION_EVENTS_PER_DAY: u32 = 27_000;
/// Events a day of the signed dataset: ~100 k events in one month.
const SIGNED_EVENTS_PER_DAY: u32 = 3_300;
/// Lines of the main file ingested again as JSONL and as a JSON array.
const ARRAY_SAMPLE_LINES: usize = 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MonthRate {
    pub(crate) month: String,
    pub(crate) events: u64,
    pub(crate) seconds: f64,
    pub(crate) events_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub(crate) events_generated: u64,
    pub(crate) lines: u64,
    pub(crate) file_bytes: u64,
    pub(crate) batch_size: usize,
    pub(crate) ingest_events_per_s: f64,
    /// Parse + NIP-01 id hash of the same lines on one core, no Redis:
    /// what one core of ingest could reach at best (ingest validates on
    /// every core since issue 15, so it may pass it).
    pub(crate) parse_hash_ceiling_events_per_s: f64,
    pub(crate) ingest_over_parse_hash_ceiling: f64,
    pub(crate) redis_ceiling_events_per_s: f64,
    pub(crate) processing_events_per_s: f64,
    pub(crate) processing_over_redis_ceiling: f64,
    pub(crate) end_to_end_events_per_s: Option<f64>,
    pub(crate) per_month: Vec<MonthRate>,
    /// After the last batch: the final commit and window snapshot.
    pub(crate) final_flush_s: f64,
    pub(crate) last_over_first_month: Option<f64>,
    /// Peak RSS of the whole run, and of each phase (generation excluded).
    pub(crate) peak_rss_mib: f64,
    pub(crate) peak_rss_by_phase_mib: BTreeMap<String, f64>,
    pub(crate) table_bytes: BTreeMap<String, i64>,
    pub(crate) processed: u64,
    pub(crate) rollovers: u64,
    /// Threads that parse, hash and verify ingest's input.
    pub(crate) validation_threads: usize,
    pub(crate) verified_ingest: Option<VerifiedIngest>,
    pub(crate) population: Option<PopulationRun>,
    pub(crate) json_array: Option<ArrayRun>,
}

/// Ingest with `--verify-signatures` of a signed dataset.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VerifiedIngest {
    pub(crate) events: u64,
    pub(crate) accepted: u64,
    pub(crate) events_per_s: f64,
    /// The same lines verified on one core, no Redis: what one core
    /// allows.
    pub(crate) one_core_verify_events_per_s: f64,
}

/// Processing of a month with a large population.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PopulationRun {
    pub(crate) users: usize,
    pub(crate) dvms: usize,
    pub(crate) events: u64,
    /// The busiest closed month's unique users and DVMs.
    pub(crate) month_unique_users: i64,
    pub(crate) month_unique_dvms: i64,
    pub(crate) ingest_events_per_s: f64,
    pub(crate) processing_events_per_s: f64,
    pub(crate) processing_peak_rss_mib: f64,
}

/// The same lines ingested as JSONL and as one JSON array.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ArrayRun {
    pub(crate) lines: u64,
    pub(crate) jsonl_events_per_s: f64,
    pub(crate) array_events_per_s: f64,
    pub(crate) jsonl_peak_rss_mib: f64,
    pub(crate) array_peak_rss_mib: f64,
}

/// DVMDash's processor on this machine at its best batch size (SPEC §1):
/// the figure every rate is compared with.
const DVMDASH_EVENTS_PER_S: f64 = 3_400.0;

/// `rate` as "N events/s (M× DVMDash)".
fn versus_dvmdash(rate: f64) -> String {
    format!(
        "{rate} events/s ({:.0}× DVMDash's ~{DVMDASH_EVENTS_PER_S})",
        rate / DVMDASH_EVENTS_PER_S
    )
}

/// The parse + hash ceiling: every line of `file` parsed as an event and
/// its NIP-01 id computed and compared, on one core, reading from the page
/// cache (the file was just written) — no validation chain, no Redis.
/// Returns (events parsed, seconds).
fn parse_hash_ceiling(file: &std::path::Path) -> std::io::Result<(u64, f64)> {
    use std::io::BufRead;
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut line = String::new();
    let (mut parsed, mut matching) = (0u64, 0u64);
    let started = Instant::now();
    while input.read_line(&mut line)? > 0 {
        if let Ok(ev) = crate::event::Event::parse(line.trim_end()) {
            parsed += 1;
            matching += u64::from(crate::event::compute_id(&ev) == ev.id);
        }
        line.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::debug!(parsed, matching, "parse + hash ceiling pass");
    Ok((parsed, secs))
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs).round()
    } else {
        0.0
    }
}

/// Runs `dvmtop backtest FILE --headless --fresh` in a child process:
/// its events/s (from the summary line) and its peak RSS (VmHWM, read
/// while it runs).
async fn end_to_end(cfg: &Config, path: &str, dir: &std::path::Path) -> Result<(f64, f64)> {
    let namespace = format!("{}_e2e", cfg.namespace);
    child_backtest(
        cfg,
        &namespace,
        path,
        "--fresh",
        &dir.join("e2e-summary.jsonl"),
    )
    .await
}

/// Runs `dvmtop backtest PATH --headless START` (`--fresh`, `--resume`)
/// in `namespace` as a child process: its events/s (from the summary
/// line, written to `out_path`) and its peak RSS (VmHWM, read while it
/// runs).
async fn child_backtest(
    cfg: &Config,
    namespace: &str,
    path: &str,
    start: &str,
    out_path: &std::path::Path,
) -> Result<(f64, f64)> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Io { path: what, source }
    };
    let exe = std::env::current_exe().map_err(io("the dvmtop executable"))?;
    let out = std::fs::File::create(out_path).map_err(io(&out_path.display().to_string()))?;
    let mut child = std::process::Command::new(exe)
        .arg("--namespace")
        .arg(namespace)
        .arg("--database-url")
        .arg(&cfg.database_url)
        .arg("--redis-url")
        .arg(&cfg.redis_url)
        .arg("--data-dir")
        .arg(&cfg.data_dir)
        .args(
            cfg.redis_ca
                .iter()
                .flat_map(|ca| [std::ffi::OsStr::new("--redis-ca"), ca.as_os_str()]),
        )
        .arg("--batch-size")
        .arg(cfg.batch_size.to_string())
        .arg("--commit-events")
        .arg(cfg.commit.target_events.to_string())
        .args(["backtest", path, "--headless", start])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(io("dvmtop backtest (child)"))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        }) {
            peak = peak.max((kib / 1024.0 * 10.0).round() / 10.0);
        }
        if let Some(st) = child.try_wait().map_err(io("dvmtop backtest (child)"))? {
            break st;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(out_path).map_err(io(&out_path.display().to_string()))?;
    let summary: Option<serde_json::Value> = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok());
    match summary.and_then(|v| v["events_per_s"].as_f64()) {
        Some(rate) if status.success() => Ok((rate, peak)),
        _ => Err(Error::Config(format!(
            "the backtest in {namespace} failed ({status}); its output is in {}",
            out_path.display()
        ))),
    }
}

/// Peak RSS per phase of the run.
struct PeakRss {
    phases: BTreeMap<String, f64>,
    whole: f64,
}

impl PeakRss {
    fn start() -> PeakRss {
        reset_peak_rss();
        PeakRss {
            phases: BTreeMap::new(),
            whole: 0.0,
        }
    }

    /// Ends a phase: its peak, then a fresh measurement for the next.
    fn phase(&mut self, name: &str) {
        let peak = peak_rss_mib();
        self.whole = self.whole.max(peak);
        self.phases.insert(name.to_owned(), peak);
        reset_peak_rss();
    }
}

/// Starts a new peak-RSS measurement (Linux: writing 5 to clear_refs
/// resets VmHWM to the current RSS); false where that is not possible.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| (kib / 1024.0 * 10.0).round() / 10.0)
}

/// Reads the whole queue in batch-sized chunks without processing: what
/// Redis alone allows.
async fn redis_ceiling(services: &Services, batch: usize) -> Result<(u64, f64)> {
    let started = Instant::now();
    let depth = services.queue.depth().await?;
    let mut read = 0u64;
    let mut bytes = 0usize;
    while read < depth {
        let chunk = services.queue.range(read as i64, batch).await?;
        if chunk.is_empty() {
            break;
        }
        read += chunk.len() as u64;
        bytes += chunk.iter().map(String::len).sum::<usize>();
    }
    tracing::debug!(read, bytes, "redis ceiling pass");
    Ok((read, started.elapsed().as_secs_f64()))
}

pub async fn run(
    cfg: &Config,
    b: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport> {
    let dir = cfg.data_dir.join("bench");
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let file = dir.join(format!(
        "backfill-{}m-{}d-{}.jsonl",
        b.months, b.events_per_day, b.seed
    ));
    let io = |source| Error::Io {
        path: file.display().to_string(),
        source,
    };
    progress(&format!(
        "generating {} months at ~{} events/day into {}",
        b.months,
        b.events_per_day,
        file.display()
    ));
    let input = GenConfig {
        seed: b.seed,
        start: YearMonth {
            year: 2024,
            month: 1,
        },
        months: b.months,
        events_per_day: b.events_per_day,
        late_rate: 0.01,
        dup_rate: 0.005,
        malformed_rate: 0.0002,
        ..GenConfig::default()
    };
    let stats = write_generated(&file, &input, Population::default())?;
    let file_bytes = std::fs::metadata(&file).map_err(io)?.len();
    let path = file.display().to_string();

    // 0. The parse + hash ceiling of the same lines (outside the RSS
    // phases: it holds one line at a time).
    progress("parse + id hash ceiling (one core, no Redis)");
    let (parsed, secs) = parse_hash_ceiling(&file).map_err(io)?;
    let parse_hash = rate(parsed, secs);

    // 1. Ingest alone: file → queue.
    let mut rss = PeakRss::start();
    progress("ingest (file → Redis queue)");
    let (services, totals, secs) = ingest_fresh(cfg, &path, cfg.validation.clone()).await?;
    let ingest_rate = rate(totals.read, secs);

    // 2. The Redis ceiling on the same queued payloads.
    rss.phase("ingest");
    progress("Redis ceiling (read the queue without processing)");
    let (read, secs) = redis_ceiling(&services, cfg.batch_size).await?;
    let ceiling = rate(read, secs);

    // 3. Processing: queue → committed rollups, timed per month of data.
    rss.phase("redis_ceiling");
    progress("processing (queue → PostgreSQL)");
    let done = process_queue(&services, cfg).await?;
    let processing_rate = rate(done.processed, done.secs);
    let per_month: Vec<MonthRate> = done
        .months
        .iter()
        .map(|(m, (secs, events))| MonthRate {
            month: m.to_string(),
            events: *events,
            seconds: (secs * 100.0).round() / 100.0,
            events_per_s: rate(*events, *secs),
        })
        .collect();
    // Complete months: at least half the median month's events (the
    // generator's spill-over into the month after the last is not one).
    let mut sizes: Vec<u64> = per_month.iter().map(|m| m.events).collect();
    sizes.sort_unstable();
    let median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    let complete: Vec<&MonthRate> = per_month
        .iter()
        .filter(|m| m.events > 0 && m.events * 2 >= median)
        .collect();
    let last_over_first = match (complete.first(), complete.last()) {
        (Some(f), Some(l)) if complete.len() > 1 && f.events_per_s > 0.0 => {
            Some((l.events_per_s / f.events_per_s * 1000.0).round() / 1000.0)
        }
        _ => None,
    };
    rss.phase("processing");
    let snap = services.db.snapshot().await?;
    let table_bytes = services.db.table_bytes().await?;
    drop(services);

    // 4. End to end: a backtest (ingest and processing together) as its
    // own dvmtop process, in its own namespace — what an operator runs, and
    // its peak RSS free of this process's earlier phases.
    let end_to_end = if b.end_to_end {
        progress("end-to-end backtest (ingest and processing together, own process)");
        let (events_per_s, peak) = end_to_end(cfg, &path, &dir).await?;
        rss.phases.insert("end_to_end".into(), peak);
        rss.whole = rss.whole.max(peak);
        Some(events_per_s)
    } else {
        None
    };

    // 5. Verified ingest, 6. the population run, 7. JSON array vs JSONL.
    let (verified_ingest, population, json_array) = if b.main_only {
        (None, None, None)
    } else {
        let verified = verified_ingest(cfg, b, &dir, &mut progress).await?;
        let population = population_run(cfg, b, &dir, &mut progress).await?;
        let array = array_run(cfg, &file, &dir, &mut progress).await?;
        (Some(verified), Some(population), Some(array))
    };
    Ok(BenchReport {
        events_generated: stats.events,
        lines: stats.lines,
        file_bytes,
        batch_size: cfg.batch_size,
        ingest_events_per_s: ingest_rate,
        parse_hash_ceiling_events_per_s: parse_hash,
        ingest_over_parse_hash_ceiling: if parse_hash > 0.0 {
            (ingest_rate / parse_hash * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        redis_ceiling_events_per_s: ceiling,
        processing_events_per_s: processing_rate,
        processing_over_redis_ceiling: if ceiling > 0.0 {
            (processing_rate / ceiling * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        end_to_end_events_per_s: end_to_end,
        per_month,
        final_flush_s: (done.final_flush_s * 100.0).round() / 100.0,
        last_over_first_month: last_over_first,
        peak_rss_mib: rss.whole,
        peak_rss_by_phase_mib: rss.phases,
        table_bytes,
        processed: snap.counters.get("processed").copied().unwrap_or(0) as u64,
        rollovers: snap.monthly_rows as u64,
        validation_threads: crate::ingest::validation_pool().threads(),
        verified_ingest,
        population,
        json_array,
    })
}

/// `cfg` for a namespace of its own, `<namespace>_<suffix>` (its backups
/// too), so the extra runs never touch the main one's tables.
fn scoped(cfg: &Config, suffix: &str) -> Config {
    let mut c = cfg.clone();
    c.namespace = format!("{}_{suffix}", cfg.namespace);
    c.backup_dir = cfg.data_dir.join("backups").join(&c.namespace);
    c
}

/// Generates `g` with `population` into `file`, on disk before anything is
/// timed (gigabytes of dirty pages written back during the measured
/// phases would compete with PostgreSQL's fsyncs).
fn write_generated(
    file: &std::path::Path,
    g: &GenConfig,
    population: Population,
) -> Result<crate::generate::GenStats> {
    let io = |source| Error::Io {
        path: file.display().to_string(),
        source,
    };
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(file).map_err(io)?);
    let s = generate_population(g, population, &mut out).map_err(io)?;
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok(s)
}

/// Ingests `path` into `cfg`'s namespace, wiped first: the open services,
/// the totals and the seconds it took.
async fn ingest_fresh(
    cfg: &Config,
    path: &str,
    validation: crate::event::Validation,
) -> Result<(Services, ingest::IngestTotals, f64)> {
    let services = Services::open(cfg, Start::Fresh, true).await?;
    let icfg = IngestConfig {
        validation,
        high_water: u64::MAX,
        ..IngestConfig::default()
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let totals = ingest::ingest(
        &services.queue,
        Some(&services.db),
        &Source::parse(path),
        &icfg,
        &cancel,
    )
    .await?;
    Ok((services, totals, t.elapsed().as_secs_f64()))
}

/// What processing the whole queue measured.
struct Processed {
    processed: u64,
    secs: f64,
    /// After the last batch: the final commit and window snapshot.
    final_flush_s: f64,
    /// Per month of data: seconds, events.
    months: BTreeMap<YearMonth, (f64, u64)>,
}

/// Processes `services`' queue to its end with the full semantics, timing
/// every interval between two batch reports to the month of the later
/// batch (rollovers, day advances and commits included); what follows the
/// last batch is the final commit and window snapshot.
async fn process_queue(services: &Services, cfg: &Config) -> Result<Processed> {
    let mut proc = Processor::open(
        services.db.clone(),
        services.queue.clone(),
        Services::settings(cfg),
    )
    .await?;
    let (_tx, mut rx) = tokio::sync::mpsc::channel(1);
    let mut months: BTreeMap<YearMonth, (f64, u64)> = Default::default();
    let mut processed = 0u64;
    let t = Instant::now();
    let mut last = t;
    let (publisher, mut sub) = Publisher::new();
    let mut wake = Wake::new(std::time::Duration::from_secs(1));
    let processing = async move {
        let mut publisher = publisher;
        pipeline::run(&mut proc, &mut rx, &mut wake, || true, &mut publisher).await
        // The publisher goes here: the events below end.
    };
    let timing = async {
        while let Some(p) = sub.events.recv().await {
            if let Progress::Batch(r) = p {
                processed += r.processed as u64;
                let now = Instant::now();
                if let Some(day) = r.day {
                    let m = months.entry(YearMonth::of(day)).or_default();
                    m.0 += (now - last).as_secs_f64();
                    m.1 += r.processed as u64;
                }
                last = now;
            }
        }
    };
    let (end, ()) = tokio::join!(processing, timing);
    end?;
    Ok(Processed {
        processed,
        secs: t.elapsed().as_secs_f64(),
        final_flush_s: last.elapsed().as_secs_f64(),
        months,
    })
}

/// Every line of `file` through the validation chain with signatures
/// checked, on one thread, no Redis: (lines, seconds).
fn one_core_verify(file: &std::path::Path) -> std::io::Result<(u64, f64)> {
    use std::io::BufRead;
    let v = crate::event::Validation {
        verify_signatures: true,
        ..Default::default()
    };
    let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let now = chrono::Utc::now().timestamp();
    let started = Instant::now();
    let (mut lines, mut valid) = (0u64, 0u64);
    for line in input.lines() {
        lines += 1;
        valid += u64::from(crate::event::validate(&line?, &v, now).is_ok());
    }
    tracing::debug!(lines, valid, "one-core verify pass");
    Ok((lines, started.elapsed().as_secs_f64()))
}

/// Ingest of ~100 k signed events with `--verify-signatures` (in
/// `<namespace>_verify`), and the same lines verified on one core.
async fn verified_ingest(
    cfg: &Config,
    b: &BenchConfig,
    dir: &std::path::Path,
    progress: &mut impl FnMut(&str),
) -> Result<VerifiedIngest> {
    let file = dir.join(format!("signed-{SIGNED_EVENTS_PER_DAY}d-{}.jsonl", b.seed));
    progress(&format!(
        "generating ~100 k signed events into {}",
        file.display()
    ));
    let g = GenConfig {
        seed: b.seed,
        months: 1,
        events_per_day: SIGNED_EVENTS_PER_DAY,
        sign: true,
        ..GenConfig::default()
    };
    write_generated(&file, &g, Population::default())?;
    progress("one core verifying the signed events (no Redis)");
    let (lines, secs) = one_core_verify(&file).map_err(|source| Error::Io {
        path: file.display().to_string(),
        source,
    })?;
    let one_core = rate(lines, secs);
    progress("ingest with --verify-signatures (file → Redis queue)");
    let vcfg = scoped(cfg, "verify");
    let validation = crate::event::Validation {
        verify_signatures: true,
        ..cfg.validation.clone()
    };
    let (_services, totals, secs) =
        ingest_fresh(&vcfg, &file.display().to_string(), validation).await?;
    Ok(VerifiedIngest {
        events: totals.read,
        accepted: totals.accepted,
        events_per_s: rate(totals.read, secs),
        one_core_verify_events_per_s: one_core,
    })
}

/// Two months with `b.users` users and `b.dvms` DVMs (in
/// `<namespace>_population`): ingest here, then processing in a `dvmtop
/// backtest` process of its own, its rate (from its start, loading
/// included) and peak RSS.
async fn population_run(
    cfg: &Config,
    b: &BenchConfig,
    dir: &std::path::Path,
    progress: &mut impl FnMut(&str),
) -> Result<PopulationRun> {
    let file = dir.join(format!(
        "population-{}u-{}d-{}.jsonl",
        b.users, b.dvms, b.seed
    ));
    progress(&format!(
        "generating 2 months with {} users and {} DVMs into {}",
        b.users,
        b.dvms,
        file.display()
    ));
    let g = GenConfig {
        seed: b.seed,
        months: 2,
        events_per_day: POPULATION_EVENTS_PER_DAY,
        late_rate: 0.01,
        dup_rate: 0.005,
        ..GenConfig::default()
    };
    let population = Population {
        users: Some(b.users),
        dvms: Some(b.dvms),
    };
    let stats = write_generated(&file, &g, population)?;
    progress("population run: ingest");
    let pcfg = scoped(cfg, "population");
    let (services, totals, secs) =
        ingest_fresh(&pcfg, &file.display().to_string(), pcfg.validation.clone()).await?;
    let ingest_rate = rate(totals.read, secs);
    drop(services);
    // Processing alone, in a process of its own (its peak RSS free of this
    // one's earlier phases): a backtest that resumes the namespace with
    // nothing more to ingest processes the queue to its end.
    progress("population run: processing (own process)");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, b"").map_err(|source| Error::Io {
        path: empty.display().to_string(),
        source,
    })?;
    let (processing_rate, peak) = child_backtest(
        cfg,
        &pcfg.namespace,
        &empty.display().to_string(),
        "--resume",
        &dir.join("population-summary.jsonl"),
    )
    .await?;
    let services = Services::open_existing(&pcfg).await?;
    let busiest = services
        .db
        .monthly_rows()
        .await?
        .into_iter()
        .max_by_key(|r| r.unique_users);
    Ok(PopulationRun {
        users: b.users,
        dvms: b.dvms,
        events: stats.events,
        month_unique_users: busiest.as_ref().map_or(0, |r| r.unique_users),
        month_unique_dvms: busiest.as_ref().map_or(0, |r| r.unique_dvms),
        ingest_events_per_s: ingest_rate,
        processing_events_per_s: processing_rate,
        processing_peak_rss_mib: peak,
    })
}

/// The first [`ARRAY_SAMPLE_LINES`] well-formed lines of `file`, written as
/// JSONL and as one JSON array, each ingested into a fresh
/// `<namespace>_array`: events/s and peak RSS of each.
async fn array_run(
    cfg: &Config,
    file: &std::path::Path,
    dir: &std::path::Path,
    progress: &mut impl FnMut(&str),
) -> Result<ArrayRun> {
    use std::io::{BufRead, Write};
    let jsonl = dir.join("sample.jsonl");
    let array = dir.join("sample-array.json");
    progress("writing the JSONL / JSON array sample");
    let lines = (|| -> std::io::Result<u64> {
        let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
        let mut l = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&jsonl)?);
        let mut a = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&array)?);
        let mut n = 0u64;
        a.write_all(b"[\n")?;
        for line in input.lines() {
            let line = line?;
            // A cut line would swallow its neighbours in an array.
            if serde_json::from_str::<serde::de::IgnoredAny>(&line).is_err() {
                continue;
            }
            if n > 0 {
                a.write_all(b",\n")?;
            }
            l.write_all(line.as_bytes())?;
            l.write_all(b"\n")?;
            a.write_all(line.as_bytes())?;
            n += 1;
            if n as usize >= ARRAY_SAMPLE_LINES {
                break;
            }
        }
        a.write_all(b"\n]\n")?;
        for w in [l, a] {
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        Ok(n)
    })()
    .map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let acfg = scoped(cfg, "array");
    let mut measure = |what: &str| {
        progress(what);
        reset_peak_rss();
    };
    measure("ingest of the sample as JSONL");
    let (services, t, secs) =
        ingest_fresh(&acfg, &jsonl.display().to_string(), acfg.validation.clone()).await?;
    drop(services);
    let (jsonl_rate, jsonl_peak) = (rate(t.read, secs), peak_rss_mib());
    measure("ingest of the sample as a JSON array");
    let (services, t, secs) =
        ingest_fresh(&acfg, &array.display().to_string(), acfg.validation.clone()).await?;
    drop(services);
    let (array_rate, array_peak) = (rate(t.read, secs), peak_rss_mib());
    Ok(ArrayRun {
        lines,
        jsonl_events_per_s: jsonl_rate,
        array_events_per_s: array_rate,
        jsonl_peak_rss_mib: jsonl_peak,
        array_peak_rss_mib: array_peak,
    })
}

/// The report as a table for people.
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<40} {v}\n"));
    line(
        "events generated (lines)",
        format!("{} ({})", r.events_generated, r.lines),
    );
    line(
        "input size",
        format!("{:.1} MiB", r.file_bytes as f64 / 1048576.0),
    );
    line("batch size", r.batch_size.to_string());
    line(
        "parse + id hash ceiling (one core)",
        format!("{} events/s", r.parse_hash_ceiling_events_per_s),
    );
    line(
        "ingest, file → queue",
        format!("{} events/s", r.ingest_events_per_s),
    );
    line(
        "ingest / parse + hash ceiling",
        format!("{:.3}", r.ingest_over_parse_hash_ceiling),
    );
    line(
        "Redis ceiling (read queue, no processing)",
        format!("{} events/s", r.redis_ceiling_events_per_s),
    );
    line(
        "processing, queue → committed rollups",
        versus_dvmdash(r.processing_events_per_s),
    );
    line(
        "processing / Redis ceiling",
        format!("{:.3}", r.processing_over_redis_ceiling),
    );
    line(
        "end-to-end backtest",
        r.end_to_end_events_per_s
            .map_or("not run (--no-e2e)".into(), versus_dvmdash),
    );
    line(
        "last / first complete month",
        r.last_over_first_month
            .map_or("n/a".into(), |v| format!("{v:.3}")),
    );
    line(
        "final commit and snapshot",
        format!("{:.2} s (after the last batch)", r.final_flush_s),
    );
    line(
        "peak RSS (dvmtop)",
        format!(
            "{} MiB ({})",
            r.peak_rss_mib,
            r.peak_rss_by_phase_mib
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    line(
        "processed, rollovers",
        format!("{}, {}", r.processed, r.rollovers),
    );
    line("validation threads", r.validation_threads.to_string());
    if let Some(v) = &r.verified_ingest {
        line(
            "verified ingest (--verify-signatures)",
            format!(
                "{} events/s ({} events, {} accepted)",
                v.events_per_s, v.events, v.accepted
            ),
        );
        line(
            "  the same lines verified on one core",
            format!("{} events/s (no Redis)", v.one_core_verify_events_per_s),
        );
    }
    if let Some(p) = &r.population {
        line(
            "population run: processing",
            format!(
                "{} (peak RSS {} MiB)",
                versus_dvmdash(p.processing_events_per_s),
                p.processing_peak_rss_mib
            ),
        );
        line(
            "  population",
            format!(
                "{} users, {} DVMs; busiest month {} users, {} DVMs; {} events",
                p.users, p.dvms, p.month_unique_users, p.month_unique_dvms, p.events
            ),
        );
        line("  ingest", format!("{} events/s", p.ingest_events_per_s));
    }
    if let Some(a) = &r.json_array {
        line(
            "ingest, JSONL sample",
            format!(
                "{} events/s (peak RSS {} MiB, {} lines)",
                a.jsonl_events_per_s, a.jsonl_peak_rss_mib, a.lines
            ),
        );
        line(
            "ingest, same lines as a JSON array",
            format!(
                "{} events/s (peak RSS {} MiB)",
                a.array_events_per_s, a.array_peak_rss_mib
            ),
        );
    }
    s.push_str("\nper month of data:\n");
    for m in &r.per_month {
        s.push_str(&format!(
            "  {}  {:>9} events  {:>8.2} s  {:>8} events/s\n",
            m.month, m.events, m.seconds, m.events_per_s
        ));
    }
    s.push_str("\nPostgreSQL table sizes:\n");
    for (t, b) in &r.table_bytes {
        s.push_str(&format!("  {t:<24} {:>10.1} MiB\n", *b as f64 / 1048576.0));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parse_hash_ceiling_parses_every_event_of_a_file() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dvm-events-real.jsonl");
        let (parsed, secs) = parse_hash_ceiling(&file).expect("the fixture is readable");
        assert_eq!(parsed, 118);
        assert!(secs >= 0.0);
    }

    #[test]
    fn rates_are_compared_with_dvmdash() {
        assert_eq!(
            versus_dvmdash(340_000.0),
            "340000 events/s (100× DVMDash's ~3400)"
        );
    }
}
