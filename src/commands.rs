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
    Ran(JobRun),
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
