//! The one published state of a running pipeline: a [`PipelineStatus`]
//! snapshot on a `tokio::sync::watch` channel, plus a stream of discrete
//! [`Progress`] events (a rollover's row, a backup, a cleanup) for logs
//! and notes. Every view — the TUI, the JSON lines, `status` — renders the
//! snapshot; none rebuilds the run state from events, so two views of one
//! run cannot disagree.

use super::processor::{EntityCounts, Processor};
use super::{BatchReport, Progress, QueueOps, Store, Until};
use chrono::{DateTime, NaiveDate, Utc};
use dvmtop_core::{MonthRow, YearMonth};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What the pipeline task is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Phase {
    /// Opening the namespace; nothing processed yet.
    #[default]
    Starting,
    /// Processing batches.
    Running,
    /// Nothing pending in the queue.
    Idle,
    /// A rollover waits for the operator's confirmation, and nothing else
    /// can move until it comes.
    Waiting,
    /// A transient error; the step is retried.
    Retrying {
        error: String,
        attempt: u32,
        next_in_ms: u64,
    },
    /// A backtest processed all its input; the pipeline stopped.
    Finished,
    /// The pipeline stopped on an error.
    Failed { error: String },
    /// Shutdown requested: committing what is pending.
    Stopping,
}

impl Phase {
    /// The task has ended (or is ending): no control can act any more.
    pub(crate) fn is_over(&self) -> bool {
        matches!(
            self,
            Phase::Finished | Phase::Failed { .. } | Phase::Stopping
        )
    }
}

/// A rollover waiting for confirmation, with the exact row confirming it
/// writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitingRollover {
    pub month: YearMonth,
    /// The next pending day lies beyond the next month: nothing moves
    /// until it is confirmed.
    pub(crate) blocked: bool,
    /// When this process first saw it waiting.
    pub(crate) since: DateTime<Utc>,
    /// What the rollover would write now — the same computation the
    /// rollover makes, so the dialog's figures are the row's.
    pub preview: MonthRow,
}

/// Batch latency over the recent batches (one window for all three, so
/// they cannot contradict each other).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct Latency {
    pub(crate) last_ms: f64,
    pub(crate) avg_ms: f64,
    pub(crate) max_ms: f64,
    /// Batches the window holds.
    pub(crate) batches: usize,
}

/// What this process's pipeline did since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Session {
    pub(crate) batches: u64,
    /// Queue elements consumed.
    pub(crate) consumed: u64,
    pub processed: u64,
    pub(crate) duplicates: u64,
    pub(crate) ignored_prior_month: u64,
    pub(crate) rejected: u64,
    pub rollovers: u64,
    pub(crate) commits: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PipelineStatus {
    pub phase: Phase,
    pub(crate) paused: bool,
    /// A stepping command in progress (it pauses again when reached).
    pub(crate) stepping: Option<Until>,
    /// Pause after each batch (backtest throttle).
    pub(crate) delay_ms: u64,
    /// The open month.
    pub month: Option<YearMonth>,
    /// The current day (the clock has advanced to it).
    pub(crate) day: Option<NaiveDate>,
    /// Processing clock: the largest `created_at` processed, unix seconds.
    pub clock: Option<i64>,
    pub(crate) overflow: usize,
    pub(crate) overflow_days: Vec<(NaiveDate, usize)>,
    pub awaiting: Option<AwaitingRollover>,
    /// A confirmation recorded and not carried out yet.
    pub(crate) confirmed: Option<YearMonth>,
    /// The last read found nothing waiting behind it (live).
    pub(crate) caught_up: bool,
    /// The last group committed (tables hold everything up to it).
    pub(crate) committed_seq: i64,
    pub(crate) last_batch: Option<BatchReport>,
    pub(crate) latency: Latency,
    pub session: Session,
    /// Events processed per second over the last few seconds.
    pub(crate) processed_per_s: f64,
    /// The entity book (refreshed at most once a second).
    pub(crate) entities: Option<EntityCounts>,
    /// Job matching (README "Job analytics"): requests held for the
    /// horizon, and requests waited for by results that came first.
    #[serde(default)]
    pub(crate) jobs_held: (usize, usize),
    /// What the operator must see: a lost queue, a Redis that persists
    /// nothing, … (most severe first).
    #[serde(default)]
    pub alerts: Vec<dvmtop_core::Alert>,
    /// Redis does not answer (since when, the last error); everything that
    /// needs it waits and retries.
    #[serde(default)]
    pub(crate) redis_unreachable: Option<crate::queue::Outage>,
}

/// How many recent batches the latency figures cover.
const LATENCY_WINDOW: usize = 64;
/// The throughput figure's window.
const RATE_WINDOW: Duration = Duration::from_secs(3);
/// While batches run, the snapshot is published at most this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The pipeline's side of the channels.
pub(crate) struct Publisher {
    tx: watch::Sender<PipelineStatus>,
    events: mpsc::UnboundedSender<Progress>,
    /// The snapshot being built.
    next: PipelineStatus,
    samples: VecDeque<(Instant, u64)>,
    latencies: VecDeque<f64>,
    published_at: Option<Instant>,
    entities_at: Option<Instant>,
    /// Something has happened since the entity counts were taken (they are
    /// taken again on the next forced publish, at most every second while
    /// batches run: counting walks every user and DVM).
    entities_stale: bool,
    /// The preview and the month's event count it was computed at.
    preview: Option<(YearMonth, u64)>,
}

/// The receiving side: the snapshot and the events.
pub(crate) struct Subscription {
    pub(crate) status: watch::Receiver<PipelineStatus>,
    pub(crate) events: mpsc::UnboundedReceiver<Progress>,
}

impl Publisher {
    pub(crate) fn new() -> (Publisher, Subscription) {
        let (tx, status) = watch::channel(PipelineStatus::default());
        let (etx, events) = mpsc::unbounded_channel();
        (
            Publisher {
                tx,
                events: etx,
                next: PipelineStatus::default(),
                samples: VecDeque::new(),
                latencies: VecDeque::new(),
                published_at: None,
                entities_at: None,
                entities_stale: true,
                preview: None,
            },
            Subscription { status, events },
        )
    }

    /// Counts what a step or a commit did, and passes the event on.
    pub(crate) fn event(&mut self, p: Progress) {
        if !matches!(p, Progress::Idle | Progress::Blocked(_)) {
            self.entities_stale = true;
        }
        let s = &mut self.next.session;
        match &p {
            Progress::Batch(b) => {
                s.batches += 1;
                s.consumed += b.consumed as u64;
                s.processed += b.processed as u64;
                s.duplicates += b.duplicates;
                s.ignored_prior_month += b.ignored as u64;
                s.rejected += b.rejected as u64;
                if self.latencies.len() == LATENCY_WINDOW {
                    self.latencies.pop_front();
                }
                self.latencies.push_back(b.millis);
                crate::metrics::record::batch(b.millis);
                self.samples.push_back((Instant::now(), s.processed));
                self.next.last_batch = Some(b.clone());
            }
            Progress::Rolled { .. } => {
                s.rollovers += 1;
                crate::metrics::record::rolled();
            }
            Progress::DailyCleanup(run) | Progress::Cleanup(run) => {
                crate::metrics::record::cleanup(run);
            }
            Progress::Committed(_) => s.commits += 1,
            _ => {}
        }
        // Nobody listening is fine (a headless run without a reporter).
        let _ = self.events.send(p);
    }

    /// Sets the phase (published with the next snapshot).
    pub(crate) fn phase(&mut self, phase: Phase) {
        self.next.phase = phase;
    }

    /// Builds the snapshot from the processor and the operator state and
    /// publishes it — at once when `force` (state changes), else at most
    /// every [`PUBLISH_EVERY`] (batches).
    pub(crate) fn publish<S: Store, Q: QueueOps>(
        &mut self,
        p: &Processor<S, Q>,
        paused: bool,
        stepping: Option<Until>,
        delay: Duration,
        force: bool,
    ) {
        if !force
            && self
                .published_at
                .is_some_and(|t| t.elapsed() < PUBLISH_EVERY)
        {
            return;
        }
        let now = Instant::now();
        let st = p.clock_state();
        let n = &mut self.next;
        n.paused = paused;
        n.stepping = stepping;
        n.delay_ms = delay.as_millis() as u64;
        n.month = st.month;
        n.day = st.day;
        n.clock = st.clock;
        n.confirmed = st.confirmed;
        n.overflow = p.overflow_len();
        n.overflow_days = p.overflow_days();
        n.jobs_held = p.jobs_held();
        n.caught_up = p.caught_up();
        n.committed_seq = p.committed_seq();
        if n.alerts != p.alerts() {
            n.alerts = p.alerts().to_vec();
        }
        n.redis_unreachable = p.redis_outage();
        // Latency: one window for last, average and maximum.
        n.latency = Latency {
            last_ms: self.latencies.back().copied().unwrap_or(0.0),
            avg_ms: if self.latencies.is_empty() {
                0.0
            } else {
                self.latencies.iter().sum::<f64>() / self.latencies.len() as f64
            },
            max_ms: self.latencies.iter().copied().fold(0.0, f64::max),
            batches: self.latencies.len(),
        };
        // Throughput over the last few seconds (0 once batches stop).
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        n.processed_per_s = match (self.samples.front(), self.samples.back()) {
            (Some((t0, c0)), Some((_, c1))) if self.samples.len() > 1 => {
                let secs = now.duration_since(*t0).as_secs_f64().max(1e-3);
                ((c1 - c0) as f64 / secs).round()
            }
            _ => 0.0,
        };
        // The snapshot published when the pipeline goes idle (forced) counts
        // every event processed before it; while batches run, once a second.
        if self.entities_stale
            && (force
                || self
                    .entities_at
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1)))
        {
            n.entities = Some(p.entity_counts());
            self.entities_at = Some(now);
            self.entities_stale = false;
        }
        n.awaiting = match p.awaiting() {
            None => {
                self.preview = None;
                None
            }
            Some(a) => {
                let events = p.month_events(a.month);
                let since = n
                    .awaiting
                    .as_ref()
                    .filter(|w| w.month == a.month)
                    .map_or_else(Utc::now, |w| w.since);
                let fresh = self.preview == Some((a.month, events));
                let preview = match (&n.awaiting, fresh) {
                    (Some(w), true) if w.month == a.month => w.preview.clone(),
                    _ => p.preview(a.month),
                };
                self.preview = Some((a.month, events));
                Some(AwaitingRollover {
                    month: a.month,
                    blocked: a.blocked,
                    since,
                    preview,
                })
            }
        };
        self.published_at = Some(now);
        let next = self.next.clone();
        self.tx.send_if_modified(|cur| {
            if *cur == next {
                false
            } else {
                *cur = next;
                true
            }
        });
    }

    /// Publishes only a phase change (the processor may be gone).
    pub(crate) fn publish_phase(&mut self, phase: Phase) {
        self.next.phase = phase;
        let next = self.next.clone();
        self.tx.send_replace(next);
    }
}
