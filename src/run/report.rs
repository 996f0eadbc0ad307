//! Headless output: the published snapshot and the pipeline's events as
//! JSON lines — progress at most once a second, state changes and events
//! as they happen. It renders the same [`PipelineStatus`] the TUI renders.

use crate::pipeline::{Phase, PipelineStatus, Progress};
use dvmtop_core::{Outcome, YearMonth};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Turns snapshots and events into JSON lines for `out`.
pub struct Reporter<F: FnMut(Value)> {
    out: F,
    last_progress: Option<Instant>,
    reported_processed: u64,
    /// The month whose wait was announced.
    waiting: Option<YearMonth>,
    /// Alerts already said (kind, since, message).
    alerted: Vec<(String, String)>,
    /// Redis unreachable since (already said).
    unreachable: Option<chrono::DateTime<chrono::Utc>>,
}

impl<F: FnMut(Value)> Reporter<F> {
    pub(crate) fn new(out: F) -> Self {
        Reporter {
            out,
            last_progress: None,
            reported_processed: 0,
            waiting: None,
            alerted: Vec::new(),
            unreachable: None,
        }
    }

    /// A new snapshot: a progress line when batches ran (at most once a
    /// second, or at once when `last`), and the wait for a confirmation
    /// when it starts.
    /// Says each new alert once: a JSON line, and a line on stderr (the
    /// operator of a headless run may not read the JSON).
    fn alerts(&mut self, s: &PipelineStatus) {
        for a in &s.alerts {
            let key = (a.kind.clone(), a.message.clone());
            if self.alerted.contains(&key) {
                continue;
            }
            self.alerted.push(key);
            eprintln!("{}", a.line());
            (self.out)(json!({"event": "alert", "alert": a}));
        }
        match &s.redis_unreachable {
            Some(o) if self.unreachable != Some(o.since) => {
                self.unreachable = Some(o.since);
                (self.out)(json!({
                    "event": "redis_unreachable", "since": o.since, "error": o.error,
                    "message": format!("Redis unreachable since {}, retrying: {}", o.since.format("%H:%M:%S UTC"), o.error),
                }));
            }
            None if self.unreachable.is_some() => {
                self.unreachable = None;
                (self.out)(json!({"event": "redis_reachable"}));
            }
            _ => {}
        }
    }

    pub(crate) fn status(&mut self, s: &PipelineStatus, last: bool) {
        self.alerts(s);
        let moved = s.session.processed != self.reported_processed;
        let due = self
            .last_progress
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if moved && (due || last) {
            self.last_progress = Some(Instant::now());
            self.reported_processed = s.session.processed;
            (self.out)(json!({
                "event": "progress",
                "day": s.day,
                "clock": s.clock,
                "processed": s.session.processed,
                "overflow_size": s.overflow,
                "batch_ms": (s.latency.last_ms * 10.0).round() / 10.0,
                "events_per_s": s.processed_per_s,
                "awaiting_confirmation": s.awaiting.as_ref().map(|a| a.month.to_string()),
            }));
        }
        let waiting = s
            .awaiting
            .as_ref()
            .filter(|a| a.blocked || s.phase == Phase::Waiting);
        match waiting {
            Some(a) if self.waiting != Some(a.month) => {
                self.waiting = Some(a.month);
                let why = if a.blocked {
                    format!("the next pending day is beyond {}", a.month.next())
                } else {
                    "everything else is processed".to_owned()
                };
                (self.out)(json!({
                    "event": "awaiting_confirmation", "month": a.month.to_string(),
                    "since": a.since,
                    "row": a.preview,
                    "why": format!("the rollover of {} is due and {why}; confirm with `dvmtop confirm {}`", a.month, a.month),
                }));
            }
            None => self.waiting = None,
            _ => {}
        }
    }

    /// One pipeline event.
    pub(crate) fn event(&mut self, p: &Progress) {
        match p {
            Progress::Rolled { row, millis } => (self.out)(json!({
                "event": "rollover", "month": row.year_month, "millis": (millis * 10.0).round() / 10.0, "row": row,
            })),
            Progress::Backup { month, result } => (self.out)(match result {
                Ok(path) => json!({"event": "backup", "month": month.to_string(), "path": path}),
                Err(e) => json!({"event": "backup", "month": month.to_string(), "error": e}),
            }),
            Progress::Cleanup(run) => (self.out)(json!({"event": "cleanup", "run": run})),
            Progress::DailyCleanup(run) => {
                // Lifecycle changes and failures are news; routine trimming
                // is not.
                let lifecycle = [
                    "users_deactivated",
                    "users_deleted",
                    "dvms_deactivated",
                    "dvms_deleted",
                ];
                if run.outcome != Outcome::Ok
                    || lifecycle
                        .iter()
                        .any(|k| run.rows.get(*k).is_some_and(|n| *n > 0))
                {
                    (self.out)(json!({"event": "cleanup", "run": run}));
                }
            }
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
            // Said from the status snapshot, which carries every alert.
            Progress::Alert(_)
            | Progress::Batch(_)
            | Progress::Committed(_)
            | Progress::DayAdvanced { .. }
            | Progress::Idle
            | Progress::Blocked(_) => {}
        }
    }
}

/// Reports a run until its pipeline is gone (both channels closed);
/// returns the last snapshot it rendered.
pub async fn report(
    mut status: watch::Receiver<PipelineStatus>,
    mut events: mpsc::UnboundedReceiver<Progress>,
    out: impl FnMut(Value),
) -> PipelineStatus {
    let mut r = Reporter::new(out);
    let mut events_open = true;
    let mut status_open = true;
    while events_open || status_open {
        tokio::select! {
            e = events.recv(), if events_open => match e {
                Some(e) => r.event(&e),
                None => events_open = false,
            },
            c = status.changed(), if status_open => match c {
                Ok(()) => {
                    let s = status.borrow_and_update().clone();
                    r.status(&s, false);
                }
                Err(_) => status_open = false,
            },
        }
    }
    let last = status.borrow().clone();
    r.status(&last, true);
    last
}
