//! The one-shot commands: `status`, `confirm`, `cleanup`, and `ingest`
//! (the collector). Long runs go through [`crate::run::Runtime`].

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pipeline::{Control, Processor};
use crate::run::{Mode, Runtime, Services, Start};
use crate::store::JobRun;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use crate::status_table::status_table;

/// `dvmtop ingest`: the files, then (with relays configured) the relays
/// until a shutdown arrives; no processing. Returns the final JSON object.
pub async fn collect(
    cfg: &Config,
    files: &[String],
    mut stop: mpsc::Receiver<Control>,
    mut out: impl FnMut(Value),
) -> Result<Value> {
    if files.is_empty() && cfg.relay.urls.is_empty() {
        return Err(Error::Config(
            "nothing to ingest: pass files, --relay URL, or a relays list in the config file"
                .into(),
        ));
    }
    let mut rt = Runtime::launch(cfg, Mode::Collect, files, Start::Resume).await?;
    if let Some(a) = &rt.persistence_alert {
        eprintln!("{}", a.line());
    }
    let relays = rt.relay_urls();
    if !relays.is_empty() {
        out(json!({"event": "relays_started", "relays": relays}));
    }
    let files_done = tokio::select! {
        r = rt.ingest_finished() => r.map_err(Error::Config),
        _ = stop.recv() => Ok(()),
    };
    if !relays.is_empty() && files_done.is_ok() {
        // Until SIGINT/SIGTERM/SIGHUP (or the control channel closing).
        while let Some(c) = stop.recv().await {
            if c == Control::Shutdown {
                break;
            }
        }
    }
    let stopped = rt.shutdown(crate::run::RELAY_SHUTDOWN_WAIT).await;
    files_done?;
    stopped.ingest?;
    let q = &stopped.services.queue;
    Ok(json!({
        "event": "ingested",
        "ingest": q.ingest_stats().await?,
        "queue_depth": q.depth().await?,
        "relays": crate::relay::relay_status(q, chrono::Utc::now().timestamp()).await?,
    }))
}

/// How often `dvmtop status --watch` refreshes.
pub const STATUS_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// `dvmtop status --json`: one object, for a namespace that exists (a
/// missing one is an error, and nothing is created).
pub async fn status(cfg: &Config) -> Result<Value> {
    let services = Services::open_existing(cfg).await?;
    status_of(&services, cfg).await
}

/// The status object of an opened namespace (`status --watch` reuses the
/// connections).
pub async fn status_of(services: &Services, cfg: &Config) -> Result<Value> {
    let snap = services.db.snapshot().await?;
    let windows = match snap.clock_unix {
        Some(t) => crate::store::windows(&services.db, t).await?,
        None => Vec::new(),
    };
    let ingest = services.queue.ingest_stats().await?;
    let mut v = serde_json::to_value(&snap).map_err(|e| Error::Config(e.to_string()))?;
    let Some(o) = v.as_object_mut() else {
        return Err(Error::Config(
            "the status snapshot is not a JSON object".into(),
        ));
    };
    o.insert("namespace".into(), json!(cfg.namespace));
    // The one state an operator must act on: a rollover that waits for
    // `dvmtop confirm` (or the TUI), and since when.
    o.insert(
        "awaiting_confirmation".into(),
        match services.db.awaiting().await? {
            Some((m, since)) => json!({"month": m.to_string(), "since": since}),
            None => Value::Null,
        },
    );
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
    // What the process holding the namespace is doing (published by it
    // about once a second): running, idle, retrying after an error (with
    // the error and the next attempt), failed.
    let published = services.db.published().await?;
    o.insert(
        "pipeline".into(),
        json!({
            "holding": published.holding,
            "holder": published.holder,
            "phase": published.status.as_ref().map(|s| &s.phase),
            "published_at": published.at,
        }),
    );
    o.insert(
        "cleanup_history".into(),
        json!(services.db.job_runs(None, 10, None).await?),
    );
    // Who runs the namespace, its live snapshot (≤ 1 s old while it
    // runs), and the alerts.
    let p = services.db.published().await?;
    o.insert("holder".into(), json!(p.holder));
    o.insert("holding".into(), json!(p.holding));
    o.insert("live".into(), json!(p.status));
    o.insert("live_at".into(), json!(p.at));
    // The stored and Redis-side alerts (a lost queue, no persistence, an
    // outage) and the evaluated rules, one per kind.
    let mut all = alerts(services, cfg).await?;
    for a in crate::run::current_alerts(services, &cfg.alerts).await? {
        dvmtop_core::alert::upsert(&mut all, a);
    }
    all.sort_by_key(|a| std::cmp::Reverse(a.severity));
    o.insert("alerts".into(), json!(all));
    Ok(v)
}

/// The namespace's alerts: those PostgreSQL keeps (a lost queue, Redis
/// not persisting, as the last run found it), what this look at Redis
/// finds now, and Redis unreachable for the live holder.
async fn alerts(services: &Services, cfg: &Config) -> Result<Vec<dvmtop_core::Alert>> {
    use dvmtop_core::alert::{self, QUEUE_LOST, REDIS_NOT_PERSISTENT, REDIS_UNREACHABLE};
    use dvmtop_core::{Alert, Severity};
    let now = chrono::Utc::now();
    let mut out = services.db.alerts().await?;
    if let Some(p) = services.queue.persistence().await {
        out.retain(|a| a.kind != REDIS_NOT_PERSISTENT);
        if let Some(a) = p.alert(&crate::run::redacted(&cfg.redis_url), now) {
            alert::upsert(&mut out, a);
        }
    }
    // A generation recorded in PostgreSQL that Redis no longer has: the
    // queue was lost since the last run (it says so again when it starts).
    let stored = services.db.redis_epoch().await?;
    let live = services.queue.epoch().await?;
    if stored.is_some() && live != stored && !out.iter().any(|a| a.kind == QUEUE_LOST) {
        alert::upsert(
            &mut out,
            Alert::new(
                QUEUE_LOST,
                Severity::Critical,
                format!(
                    "queue of namespace {} lost: Redis no longer has the queue generation the committed position refers to (it restarted without its data, or was flushed); queued events not processed are gone",
                    cfg.namespace
                ),
                now,
            ),
        );
    }
    let published = services.db.published().await?;
    if published.holding
        && let Some(o) = published.status.and_then(|s| s.redis_unreachable)
    {
        alert::upsert(
            &mut out,
            Alert::new(
                REDIS_UNREACHABLE,
                Severity::Critical,
                format!(
                    "Redis unreachable since {}, retrying: {}",
                    o.since.to_rfc3339(),
                    o.error
                ),
                o.since,
            ),
        );
    }
    Ok(out)
}

/// `dvmtop confirm [MONTH]`: confirms the rollover waiting for
/// confirmation; see [`confirm_with`].
pub async fn confirm(cfg: &Config, month: Option<&str>) -> Result<String> {
    confirm_with(cfg, month, false).await
}

/// Records the operator's confirmation of the open month's rollover; a
/// running pipeline picks it up while it waits. Unless `ahead`, only a
/// rollover that waits for confirmation now (recorded by the pipeline that
/// reached it) is confirmed: with nothing due, confirming would silently
/// pre-approve a month the operator has not seen yet.
pub async fn confirm_with(cfg: &Config, month: Option<&str>, ahead: bool) -> Result<String> {
    let services = Services::open_existing(cfg).await?;
    let open = services.db.load_state().await?.clock.month;
    let waiting = services.db.awaiting().await?;
    // Without a month: the one whose rollover waits (the pipeline's open
    // month may be ahead of the committed one), else the open month.
    let m = match (month, waiting.map(|(w, _)| w).or(open)) {
        (Some(s), _) => s.parse().map_err(Error::Config)?,
        (None, Some(m)) => m,
        (None, None) => {
            return Err(Error::Namespace(format!(
                "namespace {} has no open month yet",
                cfg.namespace
            )));
        }
    };
    if !ahead && waiting.map(|(w, _)| w) != Some(m) {
        return Err(Error::Namespace(match waiting {
            Some((w, since)) => format!(
                "the rollover waiting for confirmation in namespace {} is {w}'s (since {}), not {m}'s: confirm {w}, or pass --ahead to confirm {m} before it is due",
                cfg.namespace,
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => format!(
                "nothing to confirm: no rollover waits for confirmation in namespace {} (open month: {}); pass --ahead to confirm {m} before it is due",
                cfg.namespace,
                open.map_or("none".into(), |m| m.to_string())
            ),
        }));
    }
    if services.db.confirm(m).await? {
        if ahead && waiting.map(|(w, _)| w) != Some(m) {
            return Ok(format!(
                "confirmed {m} ahead of time: its rollover runs without asking as soon as it is due"
            ));
        }
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
    Ran(JobRun),
    /// A pipeline holds the namespace (its entity book is the truth): it
    /// runs the cleanup within a second or at its next pause.
    Requested,
}

/// `dvmtop cleanup`: the daily cleanup for the current processing day,
/// now — here when the namespace is free, else by the running pipeline.
pub async fn cleanup_now(cfg: &Config) -> Result<CleanupOutcome> {
    // Refused before anything is created: a typo must not make a schema.
    drop(Services::open_existing(cfg).await?);
    let services = match Services::open_now(cfg, Start::Resume, true).await {
        Ok(s) => s,
        Err(Error::InUse(_)) => {
            let services = Services::open_existing(cfg).await?;
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
