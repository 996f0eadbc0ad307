//! One runtime for every way dvmtop runs — the TUI, `backtest
//! --headless`, `serve`, `ingest`: opening the namespace, the ingest of
//! files, the relays, the pipeline task with its wake-up listeners, and
//! the one shutdown sequence (stop the pipeline after a commit, cancel
//! ingest, close the relays, join everything). Callers only render the
//! published [`PipelineStatus`] and send [`Control`]s.

mod monitor;
mod report;
mod summary;
mod watcher;

pub(crate) use monitor::current as current_alerts;
pub use report::report;
pub use summary::{BackupFailure, Summary, backup_failures, summarize};
pub(crate) use watcher::{Watch, persist_status};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ingest::{self, IngestConfig};
use crate::pipeline::{
    self, Control, Phase, PipelineStatus, Processor, Progress, Publisher, RunEnd, Settings, Signal,
    Wake,
};
use crate::queue::{Keys, Queue};
use crate::relay::RelayIngest;
use crate::store::{Db, NamespaceLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

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

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ingest the files and process everything, then stop.
    Backtest,
    /// Process the queue (and ingest files and relays) until stopped.
    Serve,
    /// Ingest only (files, relays): a collector, no processing.
    Collect,
}

impl Mode {
    /// How a watcher names what the holder runs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Backtest => "backtest",
            Mode::Serve => "serve",
            Mode::Collect => "ingest",
        }
    }
}

/// An opened namespace: database, queue and (optionally) its lock.
pub struct Services {
    pub db: Db,
    pub queue: Queue,
    lock: Option<NamespaceLock>,
}

impl Services {
    /// Connects, takes the namespace lock when `lock` (waiting up to
    /// `cfg.lock_wait` for a holder to let go, saying so on stderr: see
    /// `store::lock`), applies `start`, migrates.
    pub async fn open(cfg: &Config, start: Start, lock: bool) -> Result<Services> {
        Services::open_inner(cfg, start, lock, cfg.lock_wait, true).await
    }

    /// [`Self::open`] without waiting for the lock: another holder is an
    /// [`Error::InUse`] at once (`dvmtop cleanup` then asks the holder).
    pub(crate) async fn open_now(cfg: &Config, start: Start, lock: bool) -> Result<Services> {
        Services::open_inner(cfg, start, lock, Duration::ZERO, true).await
    }

    /// Opens a namespace that exists, without the lock, creating nothing:
    /// `status`, `confirm`, `cleanup`, `restore` on a mistyped namespace
    /// fail with one line instead of making an empty one.
    pub async fn open_existing(cfg: &Config) -> Result<Services> {
        Services::open_inner(cfg, Start::Resume, false, Duration::ZERO, false).await
    }

    async fn open_inner(
        cfg: &Config,
        start: Start,
        lock: bool,
        lock_wait: Duration,
        create: bool,
    ) -> Result<Services> {
        let mut db = if create {
            Db::connect(&cfg.database_url, &cfg.namespace).await?
        } else {
            Db::connect_existing(&cfg.database_url, &cfg.namespace).await?
        };
        let queue = Queue::connect_with(
            &cfg.redis_url,
            Keys::new(&cfg.namespace, cfg.queue_key.as_deref()),
            cfg.redis_ca.as_deref(),
        )
        .await?
        .with_dead_letter_caps(cfg.dead_letters);
        let lock = if lock {
            Some(
                db.lock_waiting(lock_wait, |text| {
                    use std::io::Write;
                    // Before any terminal UI starts: a plain line.
                    let _ = writeln!(std::io::stderr(), "dvmtop: {text}");
                })
                .await?,
            )
        } else {
            None
        };
        if let Some(l) = &lock {
            // Every write of the pipeline goes through this handle.
            db = db.locked_by(l);
        }
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
        Ok(Services { db, queue, lock })
    }

    /// The namespace lock's state, when this process holds it.
    pub(crate) fn lock_state(&self) -> Option<watch::Receiver<crate::store::LockState>> {
        self.lock.as_ref().map(NamespaceLock::state)
    }

    pub fn settings(cfg: &Config) -> Settings {
        Settings {
            batch_size: cfg.batch_size,
            params: cfg.params,
            validation: cfg.validation.clone(),
            retention: cfg.retention,
            backup_dir: Some(cfg.backup_dir.clone()),
            commit: cfg.commit,
            job_horizon: cfg.job_horizon,
        }
    }
}

/// How long a shutdown waits for the relay tasks to flush and close.
pub(crate) const RELAY_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for ingest to stop.
const INGEST_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Without a signal, an idle pipeline reads its own queue again after
/// this long (ingest notifies it; this covers a lost notification).
const IDLE_FALLBACK: Duration = Duration::from_secs(30);
/// A DVMDash collector's list is filled without a notification: read it
/// this often while idle.
const IDLE_FALLBACK_EXTERNAL: Duration = Duration::from_secs(1);

/// A running dvmtop: see the module doc.
pub struct Runtime {
    pub(crate) services: Services,
    cancel: Arc<AtomicBool>,
    ctl: mpsc::Sender<Control>,
    status: watch::Receiver<PipelineStatus>,
    events: Option<mpsc::UnboundedReceiver<Progress>>,
    pipeline: Option<JoinHandle<Result<RunEnd>>>,
    end: Option<std::result::Result<RunEnd, String>>,
    ingest: Option<JoinHandle<Result<()>>>,
    /// Ingest's end, once [`Self::ingest_finished`] saw it.
    ingest_end: Option<std::result::Result<(), String>>,
    relays: Option<RelayIngest>,
    listeners: Vec<JoinHandle<()>>,
    /// Publishes the snapshot for watchers (joined at shutdown, so the
    /// last state is published).
    persister: Option<JoinHandle<()>>,
    /// The alert monitor and what it found last.
    monitor: Option<JoinHandle<()>>,
    alerts: watch::Receiver<Vec<dvmtop_core::alerts::Alert>>,
    pub(crate) started: Instant,
    /// The namespace's `processed` counter when the run started.
    pub(crate) processed_before: u64,
    /// Redis persists nothing (also in the pipeline's status and in
    /// PostgreSQL's alerts).
    pub(crate) persistence_alert: Option<dvmtop_core::Alert>,
}

/// One of the run's tasks ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ended {
    Pipeline(std::result::Result<RunEnd, String>),
    Ingest(std::result::Result<(), String>),
}

/// How a run ended.
pub struct Stopped {
    pub services: Services,
    /// `None`: the pipeline did not stop within the wait (nothing
    /// uncommitted was acknowledged, so a restart continues where it was).
    pub(crate) end: Option<std::result::Result<RunEnd, String>>,
    /// Ingest's own end (a truncated file, an unreadable one, …).
    pub(crate) ingest: Result<()>,
    pub(crate) elapsed: Duration,
    pub(crate) processed_before: u64,
}

impl Runtime {
    /// Opens the namespace (`start` applied, migrated, locked unless
    /// collecting), starts ingesting `files` and — for a backtest or the
    /// service — the pipeline task; the service and the collector also
    /// ingest from the configured relays.
    pub async fn launch(
        cfg: &Config,
        mode: Mode,
        files: &[String],
        start: Start,
    ) -> Result<Runtime> {
        Runtime::launch_with(cfg, mode, files, start, false).await
    }

    /// [`Self::launch`], the pipeline paused from the start when `paused`
    /// (the TUI's `--paused`): its first control is the pause, taken
    /// before any step, so nothing is processed until a resume or a step.
    pub(crate) async fn launch_with(
        cfg: &Config,
        mode: Mode,
        files: &[String],
        start: Start,
        paused: bool,
    ) -> Result<Runtime> {
        let started = Instant::now();
        if let Some(addr) = cfg.metrics_addr.filter(|_| mode != Mode::Collect) {
            crate::metrics::install(addr)?;
        }
        let services = Services::open(cfg, start, mode != Mode::Collect).await?;
        if mode != Mode::Collect {
            services
                .db
                .set_holder(&crate::store::Holder::me(mode.name()))
                .await?;
        }
        let persistence_alert = check_persistence(&services, cfg).await?;
        let processed_before = services
            .db
            .snapshot()
            .await?
            .counters
            .get("processed")
            .copied()
            .unwrap_or(0) as u64;
        let cancel = Arc::new(AtomicBool::new(false));
        let input_done = Arc::new(AtomicBool::new(false));
        let mut wake = Wake::new(if cfg.queue_key.is_some() {
            IDLE_FALLBACK_EXTERNAL
        } else {
            IDLE_FALLBACK
        });
        let ingest = {
            let icfg = IngestConfig {
                validation: cfg.validation.clone(),
                ..IngestConfig::default()
            };
            let (queue, db, files, done, cancel, signal) = (
                services.queue.clone(),
                services.db.clone(),
                files.to_vec(),
                input_done.clone(),
                cancel.clone(),
                wake.sender(),
            );
            tokio::spawn(async move {
                let r = ingest_all(&queue, &db, &files, &icfg, &cancel).await;
                done.store(true, Ordering::SeqCst);
                // The pipeline may be idle, waiting for exactly this.
                let _ = signal.try_send(Signal::Work);
                r
            })
        };
        let (ctl, ctl_rx) = mpsc::channel(32);
        if paused {
            ctl.try_send(Control::Pause)
                .expect("a new channel has room for one control");
        }
        let (mut publisher, sub) = Publisher::new();
        let mut listeners = Vec::new();
        let pipeline = if mode == Mode::Collect {
            None
        } else {
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
            if let Some(mut lock) = services.lock_state() {
                // A lost, retaken or taken-over lock wakes an idle
                // pipeline: its next step says what it means.
                let to = wake.sender();
                listeners.push(tokio::spawn(async move {
                    while lock.changed().await.is_ok() {
                        let _ = to.try_send(Signal::Work);
                    }
                }));
            }
            for source in [
                WakeSource::Requests(services.db.clone()),
                WakeSource::Work(services.queue.clone()),
            ] {
                let to = wake.sender();
                listeners.push(tokio::spawn(async move {
                    match source {
                        WakeSource::Requests(db) => db.forward_requests(to).await,
                        WakeSource::Work(q) => q.forward_wakes(to).await,
                    }
                }));
            }
            let done = input_done.clone();
            let drains = mode == Mode::Backtest;
            Some(tokio::spawn(async move {
                let mut processor = processor;
                let mut ctl_rx = ctl_rx;
                let r = pipeline::run(
                    &mut processor,
                    &mut ctl_rx,
                    &mut wake,
                    || drains && done.load(Ordering::SeqCst),
                    &mut publisher,
                )
                .await;
                match &r {
                    Ok(RunEnd::Drained) => publisher.publish_phase(Phase::Finished),
                    Ok(RunEnd::Shutdown) => publisher.publish_phase(Phase::Stopping),
                    Err(e) => {
                        tracing::error!(error = %e, "pipeline stopped");
                        publisher.publish_phase(Phase::Failed {
                            error: e.to_string(),
                        });
                    }
                }
                r
            }))
        };
        let persister = (mode != Mode::Collect)
            .then(|| tokio::spawn(persist_status(services.db.clone(), sub.status.clone())));
        let (alerts_tx, alerts) = watch::channel(Vec::new());
        if cfg.metrics_addr.is_some() && mode != Mode::Collect {
            listeners.push(tokio::spawn(crate::metrics::export(
                services.db.clone(),
                services.queue.clone(),
                sub.status.clone(),
                alerts.clone(),
            )));
        }
        let monitor = (mode != Mode::Collect).then(|| {
            tokio::spawn(monitor::run(
                services.db.clone(),
                services.queue.clone(),
                mode,
                cfg.alerts,
                sub.status.clone(),
                alerts_tx,
            ))
        });
        let relays =
            match mode {
                Mode::Serve | Mode::Collect if !cfg.relay.urls.is_empty() => Some(
                    RelayIngest::start(&services.queue, &cfg.relay, &cfg.validation),
                ),
                _ => None,
            };
        Ok(Runtime {
            services,
            cancel,
            ctl,
            status: sub.status,
            events: Some(sub.events),
            pipeline,
            end: None,
            ingest: Some(ingest),
            ingest_end: None,
            relays,
            listeners,
            persister,
            monitor,
            alerts,
            started,
            processed_before,
            persistence_alert,
        })
    }

    /// Where operator commands go.
    pub(crate) fn controls(&self) -> mpsc::Sender<Control> {
        self.ctl.clone()
    }

    /// The published snapshot (any number of receivers).
    pub fn status(&self) -> watch::Receiver<PipelineStatus> {
        self.status.clone()
    }

    /// The alerts that hold now (the TUI's banner).
    pub(crate) fn alerts(&self) -> watch::Receiver<Vec<dvmtop_core::alerts::Alert>> {
        self.alerts.clone()
    }

    /// The discrete events (one consumer).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<Progress>> {
        self.events.take()
    }

    /// The relays this run ingests from.
    pub(crate) fn relay_urls(&self) -> Vec<String> {
        self.relays.as_ref().map_or_else(Vec::new, |r| {
            r.urls().iter().map(|u| u.as_str().to_owned()).collect()
        })
    }

    /// Waits until the pipeline task returns (a backtest drained, a
    /// shutdown, an error); at once when there is none (collecting).
    /// Cancel-safe: it can sit in a `select!`.
    pub async fn ended(&mut self) -> std::result::Result<RunEnd, String> {
        if let Some(end) = &self.end {
            return end.clone();
        }
        let Some(task) = self.pipeline.as_mut() else {
            return Ok(RunEnd::Drained);
        };
        let end = match task.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the pipeline task failed: {e}")),
        };
        self.pipeline = None;
        self.end = Some(end.clone());
        end
    }

    /// The next of the run's tasks to end — the pipeline, or ingest of the
    /// input files — each reported once; then pending for ever. For a
    /// `select!` loop that must learn of both (the TUI).
    pub(crate) async fn next_end(&mut self) -> Ended {
        let pipeline_open = self.end.is_none() && self.pipeline.is_some();
        let ingest_open = self.ingest_end.is_none() && self.ingest.is_some();
        let pipeline = async {
            match self.pipeline.as_mut() {
                Some(task) if pipeline_open => task.await,
                _ => std::future::pending().await,
            }
        };
        let ingest = async {
            match self.ingest.as_mut() {
                Some(task) if ingest_open => task.await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = pipeline => {
                let end = match r {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("the pipeline task failed: {e}")),
                };
                self.pipeline = None;
                self.end = Some(end.clone());
                Ended::Pipeline(end)
            }
            r = ingest => {
                let end = match r {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("ingest task failed: {e}")),
                };
                self.ingest = None;
                self.ingest_end = Some(end.clone());
                Ended::Ingest(end)
            }
        }
    }

    /// Waits until ingest of the input files has finished; its error in
    /// words. Cancel-safe; [`Self::shutdown`] still reports the error.
    pub(crate) async fn ingest_finished(&mut self) -> std::result::Result<(), String> {
        if let Some(end) = &self.ingest_end {
            return end.clone();
        }
        let Some(task) = self.ingest.as_mut() else {
            return Ok(());
        };
        let end = match task.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("ingest task failed: {e}")),
        };
        self.ingest = None;
        self.ingest_end = Some(end.clone());
        end
    }

    /// SIGINT, SIGTERM and SIGHUP (an SSH session dropping) all mean:
    /// finish the step in flight, commit, stop. For headless runs; the TUI
    /// handles signals in its own loop.
    pub(crate) fn stop_on_signals(&self) {
        let (ctl, cancel) = (self.ctl.clone(), self.cancel.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::warn!("cannot install signal handlers");
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            tracing::info!("signal received: shutting down");
            cancel.store(true, Ordering::SeqCst);
            let _ = ctl.send(Control::Shutdown).await;
        });
    }

    /// The one shutdown sequence: the pipeline commits and stops (waiting
    /// up to `wait`), ingest is cancelled and joined, relays flush and
    /// close, listeners end.
    pub async fn shutdown(mut self, wait: Duration) -> Stopped {
        self.cancel.store(true, Ordering::SeqCst);
        if self.end.is_none() && self.pipeline.is_some() {
            let _ = self.ctl.send(Control::Shutdown).await;
            if tokio::time::timeout(wait, self.ended()).await.is_err() {
                tracing::warn!(
                    "the pipeline did not stop within {wait:?}; leaving anyway (nothing uncommitted is acknowledged)"
                );
            }
        }
        if let Some(r) = self.relays.take() {
            r.shutdown(RELAY_SHUTDOWN_WAIT).await;
        }
        let ingest = match self.ingest.take() {
            None => self
                .ingest_end
                .take()
                .unwrap_or(Ok(()))
                .map_err(Error::Config),
            Some(task) => match tokio::time::timeout(INGEST_SHUTDOWN_WAIT, task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(Error::Config(format!("ingest task failed: {e}"))),
                Err(_) => {
                    tracing::warn!("ingest did not stop within {INGEST_SHUTDOWN_WAIT:?}");
                    Ok(())
                }
            },
        };
        for l in &self.listeners {
            l.abort();
        }
        if let Some(m) = self.monitor.take() {
            m.abort();
        }
        if let Some(p) = self.persister.take()
            && tokio::time::timeout(Duration::from_secs(3), p)
                .await
                .is_err()
        {
            tracing::debug!("the last status was not published in time");
        }
        Stopped {
            end: self.end.take(),
            ingest,
            elapsed: self.started.elapsed(),
            processed_before: self.processed_before,
            services: self.services,
        }
    }
}

/// Reads Redis's persistence settings and records (or clears) the
/// `redis_not_persistent` alert: the queue is the ground truth, and a
/// Redis that keeps nothing loses it on a restart.
async fn check_persistence(
    services: &Services,
    cfg: &Config,
) -> Result<Option<dvmtop_core::Alert>> {
    use dvmtop_core::alert::REDIS_NOT_PERSISTENT;
    let Some(p) = services.queue.persistence().await else {
        tracing::info!(
            "cannot read Redis's persistence settings (CONFIG is not allowed); not checked"
        );
        return Ok(None);
    };
    match p.alert(&redacted(&cfg.redis_url), chrono::Utc::now()) {
        Some(a) => {
            tracing::warn!(alert = %a.message, "Redis persists nothing");
            services.db.raise_alert(&a).await?;
            Ok(Some(a))
        }
        None => {
            services.db.clear_alert(REDIS_NOT_PERSISTENT).await?;
            Ok(None)
        }
    }
}

/// A service URL without its password, for messages.
pub(crate) fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://{host}"),
        _ => url.to_owned(),
    }
}

/// A wake-up source of the pipeline.
enum WakeSource {
    Requests(Db),
    Work(Queue),
}

/// Ingests every file in order (from the positions `db` committed, when
/// Redis lost its own); stops early on `cancel`.
pub(crate) async fn ingest_all(
    queue: &Queue,
    db: &Db,
    files: &[String],
    cfg: &IngestConfig,
    cancel: &Arc<AtomicBool>,
) -> Result<()> {
    for f in files {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let totals =
            ingest::ingest(queue, Some(db), &ingest::Source::parse(f), cfg, cancel).await?;
        tracing::info!(source = %f, ?totals, "ingested");
    }
    Ok(())
}

/// How long `serve` keeps retrying a start-up that a transient error
/// broke (PostgreSQL restarting while the namespace was being opened).
const START_RETRY_FOR: Duration = Duration::from_secs(120);

/// [`Runtime::launch`]; for `serve`, a start-up broken by a transient error
/// (a restart of PostgreSQL while it opened the namespace) is tried again
/// with backoff. Unreachable services at the first connect still fail at
/// once, with the line that says what to do.
async fn launch_retrying(
    cfg: &Config,
    mode: Mode,
    files: &[String],
    start: Start,
) -> Result<Runtime> {
    let t = Instant::now();
    let mut delay = Duration::from_millis(100);
    // Once the server was reached, "unreachable" means it is restarting.
    let mut reached = false;
    loop {
        match Runtime::launch(cfg, mode, files, start).await {
            Err(e)
                if mode == Mode::Serve
                    && (e.is_transient() || (reached && matches!(e, Error::Unreachable(_))))
                    && t.elapsed() < START_RETRY_FOR =>
            {
                reached = true;
                tracing::warn!(error = %e, "start-up failed on a transient error; trying again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

/// What a headless run ended with.
pub struct Headless {
    pub summary: Summary,
    /// Ingest's own failure (e.g. a truncated file), reported after the
    /// summary: what was read before it is processed.
    pub ingest: Result<()>,
}

/// A headless backtest or service, to its end: JSON lines go to `out`,
/// SIGINT/SIGTERM/SIGHUP stop it (when `signals`), and the summary is
/// returned, not printed.
pub async fn headless(
    cfg: &Config,
    mode: Mode,
    files: &[String],
    start: Start,
    signals: bool,
    mut out: impl FnMut(serde_json::Value),
) -> Result<Headless> {
    let since = chrono::Utc::now();
    let mut rt = launch_retrying(cfg, mode, files, start).await?;
    if signals {
        rt.stop_on_signals();
    }
    let relays = rt.relay_urls();
    if !relays.is_empty() {
        out(serde_json::json!({"event": "relays_started", "relays": relays}));
    }
    let events = rt
        .take_events()
        .ok_or_else(|| Error::Config("the run's events were taken twice".into()))?;
    let status = rt.status();
    // The reporter ends when the pipeline task (the publisher) is gone.
    let (end, _) = tokio::join!(rt.ended(), report(status, events, out));
    let stopped = rt.shutdown(Duration::from_secs(60)).await;
    let end = end.map_err(Error::Config)?;
    let summary = summarize(
        &stopped.services,
        stopped.elapsed,
        stopped.processed_before,
        mode == Mode::Backtest && end == RunEnd::Shutdown,
    )
    .await?;
    // A broken input (truncated array, damaged gzip): what it held is
    // processed and in the summary; the run still fails.
    let summary = Summary {
        input_error: stopped.ingest.as_ref().err().map(ToString::to_string),
        backup_failures: backup_failures(&stopped.services, since).await?,
        queue_lost: summary::queue_lost(&stopped.services, since).await?,
        ..summary
    };
    Ok(Headless {
        summary,
        ingest: stopped.ingest,
    })
}
