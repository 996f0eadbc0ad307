//! The headless face of dvmtop: opening a namespace, backtests, service
//! mode and status, reporting JSON lines. The TUI drives the same
//! [`pipeline`](crate::pipeline) through the same control messages.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ingest::{self, IngestConfig, Source};
use crate::pipeline::{self, Control, Processor, Progress, RunEnd, Settings};
use crate::queue::{Keys, Queue};
use crate::relay::RelayIngest;
use crate::store::{Db, NamespaceLock};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How a run treats a namespace that already holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Wipe it first.
    Fresh,
    /// Continue where it stopped.
    Resume,
    /// Refuse a namespace with data (protects live data from a backtest).
    New,
}

/// An opened namespace: database, queue and (optionally) its lock.
pub struct Services {
    pub db: Db,
    pub queue: Queue,
    _lock: Option<NamespaceLock>,
}

impl Services {
    /// Connects, takes the namespace lock when `lock`, applies `start`,
    /// migrates.
    pub async fn open(cfg: &Config, start: Start, lock: bool) -> Result<Services> {
        let db = Db::connect(&cfg.database_url, &cfg.namespace).await?;
        let queue = Queue::connect(
            &cfg.redis_url,
            Keys::new(&cfg.namespace, cfg.queue_key.as_deref()),
        )
        .await?
        .with_dead_letter_caps(cfg.dead_letters);
        let lock = if lock { Some(db.lock().await?) } else { None };
        match start {
            Start::Fresh => {
                db.wipe().await?;
                queue.wipe().await?;
            }
            Start::New if db.has_data().await? || queue.has_data().await? => {
                return Err(Error::Namespace(format!(
                    "namespace {} already holds data: pass --fresh to start over, --resume to continue, or choose another --namespace",
                    cfg.namespace
                )));
            }
            _ => {}
        }
        db.migrate().await?;
        Ok(Services {
            db,
            queue,
            _lock: lock,
        })
    }

    pub fn settings(cfg: &Config) -> Settings {
        Settings {
            batch_size: cfg.batch_size,
            params: cfg.params,
            validation: cfg.validation.clone(),
            retention: cfg.retention,
            backup_dir: Some(cfg.backup_dir.clone()),
            commit: cfg.commit,
        }
    }
}

/// The final line of a headless backtest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub events_read: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    pub processed: u64,
    pub ignored_prior_month: u64,
    pub rollovers: u64,
    pub current_month: Option<String>,
    pub queue_depth: u64,
    pub overflow_size: u64,
    pub dead_letters: u64,
    pub elapsed_s: f64,
    pub events_per_s: f64,
    pub interrupted: bool,
    /// An input broke off (truncated array, damaged gzip): everything
    /// complete before the break was processed, and the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_error: Option<String>,
}

/// Ingest + processing counters of a namespace, cumulative across resumes.
async fn summarize(
    s: &Services,
    elapsed: Duration,
    processed_before: u64,
    interrupted: bool,
) -> Result<Summary> {
    let ingest = s.queue.ingest_stats().await?;
    let snap = s.db.snapshot().await?;
    let mut rejected: BTreeMap<String, u64> = crate::event::Reject::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), 0))
        .collect();
    for (k, v) in &ingest {
        if let Some(reason) = k.strip_prefix("rejected:") {
            *rejected.entry(reason.to_owned()).or_default() += v;
        }
    }
    for (k, v) in &snap.counters {
        if let Some(reason) = k.strip_prefix("rejected:") {
            *rejected.entry(reason.to_owned()).or_default() += *v as u64;
        }
    }
    let counter = |k: &str| snap.counters.get(k).copied().unwrap_or(0) as u64;
    *rejected.entry("duplicate".into()).or_default() += counter("duplicate");
    let processed = counter("processed");
    let secs = elapsed.as_secs_f64();
    Ok(Summary {
        events_read: ingest.get("events_read").copied().unwrap_or(0),
        accepted: ingest.get("accepted").copied().unwrap_or(0),
        rejected,
        processed,
        ignored_prior_month: counter("ignored_prior_month"),
        rollovers: snap.monthly_rows as u64,
        current_month: snap.current_month,
        queue_depth: s.queue.depth().await?,
        overflow_size: snap.overflow_size as u64,
        dead_letters: s.queue.dead_letters().await? + snap.dead_letters as u64,
        elapsed_s: (secs * 1000.0).round() / 1000.0,
        events_per_s: if secs > 0.0 {
            ((processed - processed_before.min(processed)) as f64 / secs).round()
        } else {
            0.0
        },
        interrupted,
        input_error: None,
    })
}

/// Turns pipeline progress into JSON lines: state changes always, batch
/// progress at most once a second.
pub struct Reporter<F: FnMut(Value)> {
    out: F,
    last: Instant,
    processed: u64,
    started: Instant,
    blocked: bool,
}

impl<F: FnMut(Value)> Reporter<F> {
    pub fn new(out: F) -> Self {
        Reporter {
            out,
            last: Instant::now(),
            processed: 0,
            started: Instant::now(),
            blocked: false,
        }
    }

    pub fn emit(&mut self, v: Value) {
        (self.out)(v)
    }

    pub fn progress(&mut self, p: &Progress, overflow: usize) {
        match p {
            Progress::Batch(b) => {
                self.blocked = false;
                self.processed += b.processed as u64;
                if self.last.elapsed() >= Duration::from_secs(1) {
                    self.last = Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                    (self.out)(json!({
                        "event": "progress", "day": b.day, "processed": self.processed, "overflow_size": overflow,
                        "batch_ms": (b.millis * 10.0).round() / 10.0, "events_per_s": (self.processed as f64 / secs).round(),
                        "awaiting_confirmation": b.awaiting.map(|a| a.month.to_string()),
                    }));
                }
            }
            Progress::Rolled { row, millis } => (self.out)(json!({
                "event": "rollover", "month": row.year_month, "millis": (millis * 10.0).round() / 10.0, "row": row,
            })),
            Progress::Backup { month, result } => (self.out)(match result {
                Ok(path) => json!({"event": "backup", "month": month.to_string(), "path": path}),
                Err(e) => json!({"event": "backup", "month": month.to_string(), "error": e}),
            }),
            Progress::Cleanup(run) => (self.out)(json!({"event": "cleanup", "run": run})),
            Progress::Confirmed { month, accepted } => (self.out)(
                json!({"event": "confirmed", "month": month.to_string(), "accepted": accepted}),
            ),
            Progress::Retrying { error, millis } => {
                (self.out)(json!({"event": "retrying", "error": error, "in_ms": millis}))
            }
            Progress::Paused(p) => {
                (self.out)(json!({"event": if *p { "paused" } else { "resumed" }}))
            }
            Progress::Init(m) => {
                (self.out)(json!({"event": "month_opened", "month": m.to_string()}))
            }
            Progress::DayAdvanced { .. } => {}
            Progress::DailyCleanup(cleanup) => {
                // Lifecycle changes are news; routine trimming is not.
                let lifecycle = [
                    "users_deactivated",
                    "users_deleted",
                    "dvms_deactivated",
                    "dvms_deleted",
                ];
                if lifecycle
                    .iter()
                    .any(|k| cleanup.rows.get(*k).is_some_and(|n| *n > 0))
                {
                    (self.out)(json!({"event": "cleanup", "run": cleanup}));
                }
            }
            Progress::Blocked(a) => {
                if !self.blocked {
                    self.blocked = true;
                    (self.out)(json!({
                        "event": "awaiting_confirmation", "month": a.month.to_string(),
                        "why": format!("the rollover of {} is due and the next pending day is beyond {}; confirm with `dvmtop confirm {}`", a.month, a.month.next(), a.month),
                    }));
                }
            }
            Progress::Idle | Progress::Committed(_) => {}
        }
    }
}

/// Ingests every source in order; stops early on `cancel`.
pub async fn ingest_all(
    queue: &Queue,
    files: &[String],
    cfg: &IngestConfig,
    cancel: &Arc<AtomicBool>,
) -> Result<()> {
    for f in files {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let totals = ingest::ingest(queue, &Source::parse(f), cfg, cancel).await?;
        tracing::info!(source = %f, ?totals, "ingested");
    }
    Ok(())
}

/// What every run — headless or in the TUI — starts with: the namespace
/// opened (`start` applied, migrated, locked), the ingest of `files`
/// running in a task of its own, and the processor ready.
pub struct Launched {
    pub services: Services,
    pub processor: Processor,
    /// Ingest of the input files; stops early on `cancel`.
    pub ingest: tokio::task::JoinHandle<Result<()>>,
    /// Set once every input file has been ingested (or ingest failed).
    pub input_done: Arc<AtomicBool>,
    /// The namespace's `processed` counter when the run started.
    pub processed_before: u64,
    pub started: Instant,
}

/// Opens the namespace, starts ingesting `files` and opens the processor.
pub async fn launch(
    cfg: &Config,
    files: &[String],
    start: Start,
    cancel: &Arc<AtomicBool>,
) -> Result<Launched> {
    let started = Instant::now();
    let services = Services::open(cfg, start, true).await?;
    let processed_before = services
        .db
        .snapshot()
        .await?
        .counters
        .get("processed")
        .copied()
        .unwrap_or(0) as u64;
    let ingest_cfg = IngestConfig {
        validation: cfg.validation.clone(),
        ..IngestConfig::default()
    };
    let input_done = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (queue, files, done, cancel) = (
            services.queue.clone(),
            files.to_vec(),
            input_done.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            let r = ingest_all(&queue, &files, &ingest_cfg, &cancel).await;
            if let Err(e) = &r {
                tracing::error!(error = %e, "ingest stopped");
            }
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    let processor = match Processor::open(
        services.db.clone(),
        services.queue.clone(),
        Services::settings(cfg),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            cancel.store(true, Ordering::SeqCst);
            let _ = ingest.await;
            return Err(e);
        }
    };
    Ok(Launched {
        services,
        processor,
        ingest,
        input_done,
        processed_before,
        started,
    })
}

/// A headless backtest: ingest `files` while processing, until everything
/// is processed (or a shutdown arrives). `out` receives the JSON lines; the
/// summary is returned (and not printed).
pub async fn backtest(
    cfg: &Config,
    files: &[String],
    start: Start,
    mut ctl: mpsc::Receiver<Control>,
    cancel: Arc<AtomicBool>,
    out: impl FnMut(Value),
) -> Result<Summary> {
    let Launched {
        services,
        processor: mut proc,
        ingest: ingest_task,
        input_done: done,
        processed_before,
        started,
    } = launch(cfg, files, start, &cancel).await?;
    let mut reporter = Reporter::new(out);
    let end = {
        let overflow = std::cell::Cell::new(0usize);
        let result = pipeline::run(
            &mut proc,
            &mut ctl,
            || done.load(Ordering::SeqCst),
            |p| {
                if let Progress::Batch(b) = p {
                    overflow.set(b.overflow);
                }
                reporter.progress(p, overflow.get());
            },
        )
        .await;
        match result {
            Ok(end) => end,
            Err(e) => {
                cancel.store(true, Ordering::SeqCst);
                let _ = ingest_task.await;
                return Err(e);
            }
        }
    };
    cancel.store(end == RunEnd::Shutdown, Ordering::SeqCst);
    // A broken input had its complete elements ingested, and the pipeline
    // has processed them by now: report them, and the break, together.
    let input_error = match ingest_task.await {
        Ok(Ok(())) => None,
        Ok(Err(e @ Error::BrokenInput(_))) => Some(e.to_string()),
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(Error::Config(format!("ingest task failed: {e}"))),
    };
    let mut summary = summarize(
        &services,
        started.elapsed(),
        processed_before,
        end == RunEnd::Shutdown,
    )
    .await?;
    summary.input_error = input_error;
    Ok(summary)
}

/// How long a shutdown waits for the relay tasks to flush and close.
pub const RELAY_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Starts live ingest from the configured relays, if any.
pub fn start_relays(cfg: &Config, queue: &Queue) -> Option<RelayIngest> {
    if cfg.relay.urls.is_empty() {
        return None;
    }
    Some(RelayIngest::start(queue, &cfg.relay, &cfg.validation))
}

/// `dvmtop ingest`: the files, then (with relays configured) the relays
/// until a shutdown arrives; no processing. Returns the final JSON object.
pub async fn collect(
    cfg: &Config,
    files: &[String],
    mut ctl: mpsc::Receiver<Control>,
    cancel: Arc<AtomicBool>,
    mut out: impl FnMut(Value),
) -> Result<Value> {
    if files.is_empty() && cfg.relay.urls.is_empty() {
        return Err(Error::Config(
            "nothing to ingest: pass files, --relay URL, or a relays list in the config file"
                .into(),
        ));
    }
    let services = Services::open(cfg, Start::Resume, false).await?;
    let relays = start_relays(cfg, &services.queue);
    if let Some(r) = &relays {
        out(
            json!({"event": "relays_started", "relays": r.urls().iter().map(|u| u.as_str()).collect::<Vec<_>>()}),
        );
    }
    let icfg = IngestConfig {
        validation: cfg.validation.clone(),
        ..Default::default()
    };
    let files_done = ingest_all(&services.queue, files, &icfg, &cancel).await;
    if let Some(r) = relays {
        if files_done.is_ok() && !cancel.load(Ordering::SeqCst) {
            // Until SIGINT/SIGTERM/SIGHUP (or the control channel closing).
            while let Some(c) = ctl.recv().await {
                if c == Control::Shutdown {
                    break;
                }
            }
        }
        r.shutdown(RELAY_SHUTDOWN_WAIT).await;
    }
    files_done?;
    Ok(json!({
        "event": "ingested",
        "ingest": services.queue.ingest_stats().await?,
        "queue_depth": services.queue.depth().await?,
        "relays": crate::relay::relay_status(&services.queue, chrono::Utc::now().timestamp()).await?,
    }))
}

/// Service mode: ingest `files` (if any) and the configured relays, and
/// process the queue until a shutdown arrives.
pub async fn serve(
    cfg: &Config,
    files: &[String],
    mut ctl: mpsc::Receiver<Control>,
    cancel: Arc<AtomicBool>,
    out: impl FnMut(Value),
) -> Result<Summary> {
    let Launched {
        services,
        processor: mut proc,
        ingest: ingest_task,
        processed_before,
        started,
        ..
    } = launch(cfg, files, Start::Resume, &cancel).await?;
    let relays = start_relays(cfg, &services.queue);
    let mut reporter = Reporter::new(out);
    if let Some(r) = &relays {
        reporter.emit(json!({"event": "relays_started", "relays": r.urls().iter().map(|u| u.as_str()).collect::<Vec<_>>()}));
    }
    let end = pipeline::run(&mut proc, &mut ctl, || false, |p| reporter.progress(p, 0)).await;
    cancel.store(true, Ordering::SeqCst);
    if let Some(r) = relays {
        r.shutdown(RELAY_SHUTDOWN_WAIT).await;
    }
    let _ = ingest_task.await;
    end?;
    summarize(&services, started.elapsed(), processed_before, false).await
}

/// `dvmtop status --json`: one object.
pub async fn status(cfg: &Config) -> Result<Value> {
    let services = Services::open(cfg, Start::Resume, false).await?;
    let snap = services.db.snapshot().await?;
    let windows = match snap.clock_unix {
        Some(t) => crate::store::windows(&services.db, t).await?,
        None => Vec::new(),
    };
    let ingest = services.queue.ingest_stats().await?;
    let mut v = serde_json::to_value(&snap).map_err(|e| Error::Config(e.to_string()))?;
    let o = v.as_object_mut().expect("snapshot serializes to an object");
    o.insert("namespace".into(), json!(cfg.namespace));
    o.insert("queue_key".into(), json!(services.queue.keys.queue));
    o.insert("queue_depth".into(), json!(services.queue.depth().await?));
    o.insert("ingest".into(), json!(ingest));
    o.insert(
        "relays".into(),
        json!(crate::relay::relay_status(&services.queue, chrono::Utc::now().timestamp()).await?),
    );
    o.insert(
        "dead_letters".into(),
        json!(snap.dead_letters as u64 + services.queue.dead_letters().await?),
    );
    o.insert("windows".into(), json!(windows));
    o.insert(
        "retention".into(),
        json!(services.db.retention_figures().await?),
    );
    o.insert(
        "cleanup_history".into(),
        json!(services.db.job_runs(None, 10, None).await?),
    );
    Ok(v)
}

/// `dvmtop confirm [MONTH]`: records the operator's confirmation; a running
/// pipeline picks it up while it waits.
pub async fn confirm(cfg: &Config, month: Option<&str>) -> Result<String> {
    let services = Services::open(cfg, Start::Resume, false).await?;
    let open = services.db.load_state().await?.clock.month;
    let m = match (month, open) {
        (Some(s), _) => s.parse().map_err(Error::Config)?,
        (None, Some(m)) => m,
        (None, None) => {
            return Err(Error::Namespace(format!(
                "namespace {} has no open month yet",
                cfg.namespace
            )));
        }
    };
    if services.db.confirm(m).await? {
        Ok(format!(
            "confirmed the rollover of {m}: it runs as soon as it is due (a waiting pipeline picks it up within a second)"
        ))
    } else {
        Err(Error::Namespace(format!(
            "{m} is not the open month of namespace {} (open: {}); nothing to confirm",
            cfg.namespace,
            open.map_or("none".into(), |m| m.to_string())
        )))
    }
}

/// What `dvmtop cleanup` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupOutcome {
    /// Nothing else held the namespace: the cleanup ran here.
    Ran(crate::retention::CleanupRun),
    /// A pipeline holds the namespace (its entity book is the truth): it
    /// runs the cleanup within a second or at its next pause.
    Requested,
}

/// `dvmtop cleanup`: the daily cleanup for the current processing day,
/// now — here when the namespace is free, else by the running pipeline.
pub async fn cleanup_now(cfg: &Config) -> Result<CleanupOutcome> {
    let services = match Services::open(cfg, Start::Resume, true).await {
        Ok(s) => s,
        Err(Error::InUse(_)) => {
            let services = Services::open(cfg, Start::Resume, false).await?;
            services.db.request_cleanup().await?;
            return Ok(CleanupOutcome::Requested);
        }
        Err(e) => return Err(e),
    };
    let mut p = Processor::open(
        services.db.clone(),
        services.queue.clone(),
        Services::settings(cfg),
    )
    .await?;
    Ok(CleanupOutcome::Ran(p.cleanup_now().await?))
}
