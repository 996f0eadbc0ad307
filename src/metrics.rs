//! Prometheus metrics (`--metrics-addr`): the `metrics` facade with
//! `metrics-exporter-prometheus` serving `/metrics` in the text format.
//!
//! Two sources: the pipeline records what happens as it happens (batch
//! durations, rollovers, cleanups — see [`record`]), and an exporter task
//! sets the gauges and namespace-wide counters from the published
//! snapshot and, every [`POLL_EVERY`], from the stores (queue depth,
//! counters by reason, relays). Without `--metrics-addr` no recorder is
//! installed and the facade's calls cost next to nothing.

use crate::error::{Error, Result};
use crate::pipeline::PipelineStatus;
use crate::queue::Queue;
use crate::store::Db;
use dvmtop_core::alerts::Alert;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// The stores are read this often for the metrics.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(5);

/// Batch durations, seconds.
const BATCH_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Cleanup durations, seconds.
const CLEANUP_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0];

/// Starts serving `/metrics` on `addr` (inside a tokio runtime).
pub(crate) fn install(addr: SocketAddr) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::Config(format!(
            "cannot serve metrics on {addr}: {e} (choose another --metrics-addr)"
        ))
    };
    // Bind first, so a taken port is one clear line (the exporter's
    // listener would only log it).
    std::net::TcpListener::bind(addr).map_err(|e| fail(&e))?;
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("dvmtop_batch_duration_seconds".into()),
            &BATCH_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("dvmtop_cleanup_duration_seconds".into()),
                &CLEANUP_BUCKETS,
            )
        })
        .map_err(|e| fail(&e))?
        .install()
        .map_err(|e| fail(&e))?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("dvmtop_queue_depth", "Events waiting in the Redis queue");
    describe_gauge!(
        "dvmtop_overflow_events",
        "Events parked in the overflow buffer for a later day"
    );
    describe_gauge!(
        "dvmtop_processing_clock_seconds",
        Unit::Seconds,
        "Processing clock: the newest created_at processed (unix seconds)"
    );
    describe_gauge!(
        "dvmtop_processing_lag_seconds",
        Unit::Seconds,
        "Wall clock minus the processing clock"
    );
    describe_counter!(
        "dvmtop_events_processed_total",
        "Events processed in this namespace"
    );
    describe_counter!(
        "dvmtop_events_rejected_total",
        "Events refused, by stage (ingest, pipeline) and reason"
    );
    describe_counter!(
        "dvmtop_events_duplicate_total",
        "Duplicate events skipped by the pipeline"
    );
    describe_counter!(
        "dvmtop_events_ignored_prior_month_total",
        "Events for a month already rolled over"
    );
    describe_histogram!(
        "dvmtop_batch_duration_seconds",
        Unit::Seconds,
        "Time to process one batch"
    );
    describe_counter!("dvmtop_rollovers_total", "Monthly rollovers carried out");
    describe_counter!(
        "dvmtop_cleanup_runs_total",
        "Cleanup runs, by outcome (ok, failed, interrupted)"
    );
    describe_histogram!(
        "dvmtop_cleanup_duration_seconds",
        Unit::Seconds,
        "Duration of a cleanup run"
    );
    describe_gauge!(
        "dvmtop_relay_up",
        "1 while a relay is connected, 0 otherwise"
    );
    describe_gauge!(
        "dvmtop_entities",
        "DVMs and users by role and lifecycle state"
    );
    describe_gauge!(
        "dvmtop_rollover_waiting",
        "1 while a rollover waits for confirmation"
    );
    describe_gauge!("dvmtop_alerts", "Alerts that hold now, by severity");
}

/// What the pipeline records as it happens.
pub(crate) mod record {
    use metrics::{counter, histogram};

    pub(crate) fn batch(millis: f64) {
        histogram!("dvmtop_batch_duration_seconds").record(millis / 1000.0);
    }

    pub(crate) fn rolled() {
        counter!("dvmtop_rollovers_total").increment(1);
    }

    pub(crate) fn cleanup(run: &crate::store::JobRun) {
        counter!("dvmtop_cleanup_runs_total", "outcome" => run.outcome.as_str()).increment(1);
        if let Some(ms) = run.millis() {
            histogram!("dvmtop_cleanup_duration_seconds").record(ms as f64 / 1000.0);
        }
    }
}

/// Sets what the snapshot says.
fn from_status(s: &PipelineStatus, now: i64) {
    gauge!("dvmtop_overflow_events").set(s.overflow as f64);
    if let Some(c) = s.clock {
        gauge!("dvmtop_processing_clock_seconds").set(c as f64);
        gauge!("dvmtop_processing_lag_seconds").set((now - c).max(0) as f64);
    }
    let waiting = s
        .awaiting
        .as_ref()
        .is_some_and(|a| s.confirmed != Some(a.month));
    gauge!("dvmtop_rollover_waiting").set(if waiting { 1.0 } else { 0.0 });
    if let Some(e) = &s.entities {
        for (role, state, n) in [
            ("dvm", "active", e.dvms_active),
            ("dvm", "inactive", e.dvms_inactive),
            ("user", "active", e.users_active),
            ("user", "inactive", e.users_inactive),
        ] {
            gauge!("dvmtop_entities", "role" => role, "state" => state).set(n as f64);
        }
    }
}

fn from_alerts(a: &[Alert]) {
    use dvmtop_core::alerts::Severity;
    for (sev, name) in [
        (Severity::Warning, "warning"),
        (Severity::Critical, "critical"),
    ] {
        let n = a.iter().filter(|a| a.severity == sev).count();
        gauge!("dvmtop_alerts", "severity" => name).set(n as f64);
    }
}

/// Reads the stores' side.
async fn poll(db: &Db, queue: &Queue) -> Result<()> {
    gauge!("dvmtop_queue_depth").set(queue.depth().await? as f64);
    // The counters alone (a snapshot also counts every user and DVM).
    let counters = db.counters().await?;
    for (name, v) in &counters {
        let v = (*v).max(0) as u64;
        match name.as_str() {
            "processed" => counter!("dvmtop_events_processed_total").absolute(v),
            "duplicate" => counter!("dvmtop_events_duplicate_total").absolute(v),
            "ignored_prior_month" => {
                counter!("dvmtop_events_ignored_prior_month_total").absolute(v)
            }
            n => {
                if let Some(reason) = n.strip_prefix("rejected:") {
                    counter!("dvmtop_events_rejected_total", "stage" => "pipeline", "reason" => reason.to_owned())
                        .absolute(v);
                }
            }
        }
    }
    for (name, v) in queue.ingest_stats().await? {
        if let Some(reason) = name.strip_prefix("rejected:") {
            counter!("dvmtop_events_rejected_total", "stage" => "ingest", "reason" => reason.to_owned())
                .absolute(v);
        }
    }
    let now = chrono::Utc::now().timestamp();
    for r in crate::relay::relay_status(queue, now).await? {
        gauge!("dvmtop_relay_up", "relay" => r.url).set(if r.connected { 1.0 } else { 0.0 });
    }
    Ok(())
}

/// Keeps the metrics current until the pipeline is gone.
pub(crate) async fn export(
    db: Db,
    queue: Queue,
    mut status: watch::Receiver<PipelineStatus>,
    mut alerts: watch::Receiver<Vec<Alert>>,
) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut alerts_open = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = poll(&db, &queue).await {
                    tracing::debug!(error = %e, "metrics: cannot read the stores");
                }
            }
            r = status.changed() => {
                if r.is_err() {
                    return;
                }
            }
            r = alerts.changed(), if alerts_open => {
                match r {
                    Ok(()) => from_alerts(&alerts.borrow_and_update()),
                    Err(_) => alerts_open = false,
                }
                continue;
            }
        }
        from_status(&status.borrow_and_update(), chrono::Utc::now().timestamp());
    }
}
