//! The alert monitor: the namespace's holder samples the queue and the
//! refusals every [`SAMPLE_EVERY_S`] seconds (and re-evaluates at once
//! when a rollover starts or stops waiting), evaluates the rules of
//! [`dvmtop_core::alerts`], hands the result to its own screen and
//! stores it, with the trend history, for `dvmtop status` and watchers.

use super::{Mode, Services};
use crate::error::Result;
use crate::pipeline::PipelineStatus;
use crate::queue::Queue;
use crate::store::{Db, StoredAlerts};
use chrono::{DateTime, Utc};
use dvmtop_core::alerts::{self, Alert, Facts, RelayFact, SAMPLE_EVERY_S, Thresholds, Trends};
use std::time::Duration;
use tokio::sync::watch;

/// Everything the rules need, read now. `live`: the reader runs (or
/// watches) a live service, whose clock should follow the wall clock.
pub(crate) async fn facts(db: &Db, queue: &Queue, live: bool, clock: Option<i64>) -> Result<Facts> {
    let mut f = db.alert_facts().await?;
    f.relays = crate::relay::relay_status(queue, Utc::now().timestamp())
        .await?
        .into_iter()
        .map(|r| RelayFact {
            stopped: r.state == "stopped",
            down_since: (!r.connected)
                .then_some(r.last_error_at)
                .flatten()
                .and_then(|t| DateTime::from_timestamp(t, 0)),
            connected: r.connected,
            url: r.url,
        })
        .collect();
    // Lag matters only while there is a backlog: a quiet live network
    // leaves the clock behind without anything being late.
    f.live_clock = clock.filter(|_| live);
    if f.live_clock.is_some() && queue.depth().await? == 0 {
        f.live_clock = None;
    }
    Ok(f)
}

/// Events dead-lettered so far, at ingest and in the pipeline: the
/// monotonic count behind "dead letters rising" (the dead-letter list
/// itself is capped, so its length stops growing).
async fn rejected(db: &Db, queue: &Queue) -> Result<u64> {
    let ingest = queue.ingest_stats().await?;
    let pipeline = db.counters().await?;
    Ok(alerts::dead_lettered(
        ingest
            .iter()
            .map(|(k, v)| (k.as_str(), i64::try_from(*v).unwrap_or(i64::MAX)))
            .chain(pipeline.iter().map(|(k, v)| (k.as_str(), *v))),
    ))
}

/// The alerts `dvmtop status` reports: fresh facts, and the trend history
/// of a holder that is still there.
pub(crate) async fn current(services: &Services, t: &Thresholds) -> Result<Vec<Alert>> {
    let p = services.db.published().await?;
    let trends = match services.db.stored_alerts().await? {
        Some(s) if p.holding => s.trends,
        _ => Trends::default(),
    };
    let live = p.holding
        && p.holder
            .as_ref()
            .is_some_and(|h| h.command == Mode::Serve.name());
    let clock = p.status.as_ref().and_then(|s| s.clock);
    let f = facts(&services.db, &services.queue, live, clock).await?;
    Ok(alerts::evaluate(Utc::now(), &f, &trends, t))
}

/// Runs until the status channel closes (the pipeline is gone).
pub(crate) async fn run(
    db: Db,
    queue: Queue,
    mode: Mode,
    t: Thresholds,
    mut status: watch::Receiver<PipelineStatus>,
    out: watch::Sender<Vec<Alert>>,
) {
    let mut trends = Trends::default();
    let every = Duration::from_secs(SAMPLE_EVERY_S as u64);
    let mut next_sample = tokio::time::Instant::now();
    let mut awaiting = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_sample) => {
                next_sample += every;
                let sample = async {
                    Ok::<_, crate::error::Error>((queue.depth().await?, rejected(&db, &queue).await?))
                };
                match sample.await {
                    Ok((depth, rejected)) => trends.sample(Utc::now(), depth, rejected, &t),
                    Err(e) => tracing::debug!(error = %e, "alerts: cannot sample"),
                }
            }
            r = status.changed() => {
                if r.is_err() {
                    return;
                }
                let now = status.borrow_and_update().awaiting.as_ref().map(|a| a.month);
                if now == awaiting {
                    continue;
                }
                awaiting = now;
            }
        }
        let (clock, waiting) = {
            let s = status.borrow();
            let w = s
                .awaiting
                .as_ref()
                .map(|a| a.month)
                .filter(|m| s.confirmed != Some(*m));
            (s.clock, w)
        };
        let evaluated = async {
            let mut f = facts(&db, &queue, mode == Mode::Serve, clock).await?;
            // The snapshot is the authority on what waits (the stored
            // state may lag it by a commit); the store knows since when.
            let since = f
                .awaiting
                .filter(|(m, _)| Some(*m) == waiting)
                .and_then(|(_, s)| s);
            f.awaiting = waiting.map(|m| (m, since.or(Some(Utc::now()))));
            let a = alerts::evaluate(Utc::now(), &f, &trends, &t);
            db.store_alerts(&StoredAlerts {
                alerts: a.clone(),
                trends: trends.clone(),
            })
            .await?;
            Ok::<_, crate::error::Error>(a)
        };
        match evaluated.await {
            Ok(a) => {
                out.send_if_modified(|cur| {
                    let changed = *cur != a;
                    *cur = a;
                    changed
                });
            }
            Err(e) => tracing::debug!(error = %e, "alerts: cannot evaluate"),
        }
    }
}
