//! The processing shell around the pure core: read the queue, plan with
//! the clock, fold batches in memory, commit groups, acknowledge — and
//! publish one [`PipelineStatus`] snapshot.
//!
//! The TUI and headless mode drive it through the same [`Control`]
//! messages and render the same snapshot. It is generic over its two
//! seams ([`Store`], [`QueueOps`]), so every failure branch runs in a test
//! against in-memory fakes. It never polls while idle: it waits for a
//! control, a [`Signal`] (new queue work, another process's request) or a
//! long fallback timer.

mod committer;
#[cfg(test)]
mod fake;
mod group;
mod ports;
mod processor;
pub(crate) mod status;
#[cfg(test)]
mod tests;

pub(crate) use ports::{QueueOps, Requests, Store};
pub use processor::{EntityCounts, Processor};
pub use status::Phase;
pub(crate) use status::{PipelineStatus, Publisher};

use crate::error::Result;
use crate::event::Validation;
use crate::store::{JobRun, MonthRow};
use chrono::NaiveDate;
use dvmtop_core::YearMonth;
use dvmtop_core::clock::{Awaiting, Params};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Largest batch (a sanity bound: a batch and its overflow live in memory).
pub(crate) const MAX_BATCH: usize = 1 << 20;

/// Operator commands (TUI keys, headless signals, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    /// Run exactly one batch, then pause.
    StepBatch,
    /// Run until the clock reaches the next day (its cleanup done, none of
    /// its events processed yet), then pause.
    StepDay,
    /// Run until the next rollover happens or waits for confirmation, then
    /// pause.
    RunToRollover,
    /// Pause this long after each batch (backtest throttle; zero = full speed).
    SetDelay(Duration),
    /// Run the daily cleanup now, for the current day.
    CleanupNow,
    /// Confirm the due rollover of this month (manual policy).
    Confirm(YearMonth),
    /// Finish the in-flight step, commit, and stop.
    Shutdown,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Nothing pending.
    Idle,
    /// Waiting for the operator to confirm a rollover; nothing can move.
    Blocked(Awaiting),
    Init(YearMonth),
    /// The month is closed and its row final; both commit with the group
    /// (a crash before that replays to the same row).
    Rolled {
        row: MonthRow,
        millis: f64,
    },
    /// The backup after a committed rollover: where it went, or why it
    /// failed (it is retried at the next rollover).
    Backup {
        month: YearMonth,
        result: std::result::Result<String, String>,
    },
    /// The clock moved to a new day; its daily cleanup is decided and
    /// runs (see `DailyCleanup`) as soon as no commit is under way.
    DayAdvanced {
        day: NaiveDate,
    },
    /// A day's cleanup ran and was audited.
    DailyCleanup(JobRun),
    /// A batch was processed (in memory; see `Committed`).
    Batch(BatchReport),
    /// A commit group reached PostgreSQL and left the queue.
    Committed(CommitReport),
    /// The operator's confirmation was recorded (`accepted`: it named the
    /// open month).
    Confirmed {
        month: YearMonth,
        accepted: bool,
    },
    /// A cleanup run finished (daily, or on request).
    Cleanup(JobRun),
    /// The loop paused (after a stepping command) or resumed.
    Paused(bool),
    /// Something the operator must see (see [`dvmtop_core::alert`]); also
    /// recorded in PostgreSQL.
    Alert(dvmtop_core::Alert),
    /// A transient error; the step is retried after `millis`.
    Retrying {
        error: String,
        millis: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchReport {
    pub(crate) seq: i64,
    pub(crate) day: Option<NaiveDate>,
    pub(crate) consumed: usize,
    pub(crate) processed: usize,
    pub(crate) duplicates: u64,
    pub(crate) ignored: usize,
    pub(crate) parked: usize,
    pub(crate) rejected: usize,
    pub(crate) overflow: usize,
    pub awaiting: Option<Awaiting>,
    pub(crate) millis: f64,
    /// The read found the queue shorter than asked: nothing is waiting
    /// behind this batch (live, or the end of a backfill).
    pub(crate) caught_up: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitReport {
    pub(crate) seq: i64,
    /// Queue elements the group consumed, and events it applied.
    pub(crate) consumed: i64,
    pub(crate) processed: u64,
    pub(crate) millis: f64,
}

/// When the processor commits what it has aggregated in memory. Fewer,
/// larger commits write each active user once per group instead of once
/// per batch; the queue keeps every uncommitted element, so a crash only
/// costs the redo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPolicy {
    /// Commit once this many events are pending ...
    pub target_events: u64,
    /// (past this many, even if the commit under way must be waited for:
    /// bounds memory and the redo after a crash) ...
    pub max_events: u64,
    /// ... or once the oldest pending change is this old ...
    pub(crate) max_age: Duration,
    /// ... or, when caught up with the queue (live), once the group is
    /// this old. A group that closed a month commits as soon as it can.
    pub(crate) live_age: Duration,
}

impl CommitPolicy {
    /// The memory bound: a group may grow to 1.5× the target while the
    /// one before it commits, then the processor waits. Two groups can be
    /// in memory at once (the one being committed and the one growing), so
    /// peak RSS follows the group size when PostgreSQL is slower than
    /// processing. Measured with the matching on and the allocator's free
    /// pages released after each commit (`dvmtop bench --months 3
    /// --commit-events N`, groups held near N): 375 k → 210 MiB, 500 k →
    /// 231–236 MiB (without the release 243–257 MiB). 2× (500 k) left too
    /// little margin under 256 MiB once PostgreSQL lags on a loaded machine.
    pub(crate) fn bound(target_events: u64) -> u64 {
        target_events.saturating_add(target_events / 2)
    }

    /// The policy for a target group size (a larger target also raises
    /// the memory bound).
    pub(crate) fn with_target(target_events: u64) -> CommitPolicy {
        CommitPolicy {
            target_events,
            max_events: Self::bound(target_events),
            max_age: Duration::from_secs(5),
            live_age: Duration::from_millis(250),
        }
    }
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy::with_target(250_000)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) batch_size: usize,
    pub(crate) params: Params,
    pub(crate) validation: Validation,
    pub(crate) retention: crate::retention::RetentionConfig,
    /// Where a backup of `monthly_activity` goes after each rollover.
    pub(crate) backup_dir: Option<std::path::PathBuf>,
    pub(crate) commit: CommitPolicy,
    /// Job analytics' matching horizon, seconds.
    pub(crate) job_horizon: i64,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Input finished and everything pending is processed.
    Drained,
    Shutdown,
}

/// Where a stepping command stops again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Until {
    Batch,
    Day,
    Rollover,
}

impl Until {
    /// Whether progress `p` completes a step of this kind (the run loop
    /// pauses again; the TUI shows the same).
    pub(crate) fn reached_by(self, p: &Progress) -> bool {
        match (self, p) {
            (Until::Batch, Progress::Batch(_)) => true,
            (Until::Day, Progress::DayAdvanced { .. }) => true,
            (Until::Rollover, Progress::Rolled { .. } | Progress::Blocked(_)) => true,
            (Until::Rollover, Progress::Batch(b)) => b.awaiting.is_some(),
            (_, Progress::Idle) => true,
            _ => false,
        }
    }
}

/// The run loop's operator state.
#[derive(Debug, Default)]
struct Driver {
    paused: bool,
    until: Option<Until>,
    /// Pause between batches (backtest throttle).
    delay: Duration,
}

impl Driver {
    /// Whether the loop may take a step now.
    fn may_step(&self) -> bool {
        !self.paused || self.until.is_some()
    }

    /// After a step: does it complete the stepping command?
    fn reached(&mut self, p: &Progress) -> bool {
        let done = self.until.is_some_and(|u| u.reached_by(p));
        if done {
            self.until = None;
            self.paused = true;
        }
        done
    }
}

/// Why an idle pipeline should look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// New elements in the queue (ingest's Redis notification, or the
    /// input ended).
    Work,
    /// Another process asked for something (`dvmtop confirm`, `dvmtop
    /// cleanup`: PostgreSQL `NOTIFY`).
    Requests,
}

/// Where an idle pipeline waits for [`Signal`]s, with fallback timers for
/// when a signal source is down (or absent: a DVMDash collector does not
/// notify).
pub(crate) struct Wake {
    tx: mpsc::Sender<Signal>,
    rx: mpsc::Receiver<Signal>,
    /// Longest idle wait without a signal before the queue is read again.
    pub(crate) idle_fallback: Duration,
    /// Longest wait before other processes' requests are read again.
    pub(crate) requests_fallback: Duration,
    /// A request signal arrived while the loop was busy.
    requests_pending: bool,
}

impl Wake {
    pub(crate) fn new(idle_fallback: Duration) -> Wake {
        let (tx, rx) = mpsc::channel(16);
        Wake {
            tx,
            rx,
            idle_fallback,
            requests_fallback: Duration::from_secs(30),
            requests_pending: false,
        }
    }

    /// A handle for signal sources (listeners, the ingest task).
    pub(crate) fn sender(&self) -> mpsc::Sender<Signal> {
        self.tx.clone()
    }

    /// Takes the signals that arrived meanwhile; true if one was a request.
    fn drain(&mut self) -> bool {
        while let Ok(s) = self.rx.try_recv() {
            self.requests_pending |= s == Signal::Requests;
        }
        std::mem::take(&mut self.requests_pending)
    }
}

/// What ended a wait.
enum Woke {
    Control(Control),
    Signal(Signal),
    Timeout,
}

async fn wait(ctl: &mut mpsc::Receiver<Control>, wake: &mut Wake, limit: Duration) -> Woke {
    let open = !ctl.is_closed();
    tokio::select! {
        c = ctl.recv(), if open => match c {
            Some(c) => Woke::Control(c),
            None => Woke::Timeout,
        },
        s = wake.rx.recv() => s.map_or(Woke::Timeout, Woke::Signal),
        _ = tokio::time::sleep(limit) => Woke::Timeout,
    }
}

/// The loop's state besides the processor.
struct Run<'a> {
    ctl: &'a mut mpsc::Receiver<Control>,
    wake: &'a mut Wake,
    out: &'a mut Publisher,
    d: Driver,
    phase: Phase,
    requests_read: Instant,
    /// A request signal was taken but the read failed: read again.
    requests_owed: bool,
}

impl<'a> Run<'a> {
    fn publish<S: Store, Q: QueueOps>(&mut self, p: &Processor<S, Q>, force: bool) {
        self.out.phase(self.phase.clone());
        self.out
            .publish(p, self.d.paused, self.d.until, self.d.delay, force);
    }

    fn report<S: Store, Q: QueueOps>(&mut self, p: &mut Processor<S, Q>) {
        for r in p.take_reports() {
            self.out.event(r);
        }
    }

    async fn commit<S: Store, Q: QueueOps>(&mut self, p: &mut Processor<S, Q>) -> Result<()> {
        let r = p.commit().await;
        self.report(p);
        r
    }

    /// Reads other processes' requests (and runs a requested cleanup).
    async fn requests<S: Store, Q: QueueOps>(&mut self, p: &mut Processor<S, Q>) -> Result<()> {
        let run = p.refresh_requests().await;
        self.report(p);
        let run = run?;
        self.requests_read = Instant::now();
        self.requests_owed = false;
        if let Some(run) = run {
            self.out.event(Progress::Cleanup(run));
        }
        Ok(())
    }

    /// Applies one control message; true means shut down (after a commit).
    async fn control<S: Store, Q: QueueOps>(
        &mut self,
        p: &mut Processor<S, Q>,
        c: Control,
    ) -> Result<bool> {
        let was_paused = self.d.paused;
        match c {
            Control::Pause => {
                self.d.paused = true;
                self.d.until = None;
            }
            Control::Resume => {
                self.d.paused = false;
                self.d.until = None;
            }
            Control::StepBatch => self.d.until = Some(Until::Batch),
            Control::StepDay => self.d.until = Some(Until::Day),
            Control::RunToRollover => self.d.until = Some(Until::Rollover),
            Control::SetDelay(delay) => self.d.delay = delay,
            Control::Confirm(m) => {
                let ok = p.confirm(m).await?;
                self.out.event(Progress::Confirmed {
                    month: m,
                    accepted: ok,
                });
            }
            Control::CleanupNow => {
                let run = p.cleanup_now().await;
                self.report(p);
                self.out.event(Progress::Cleanup(run?));
            }
            Control::Shutdown => {
                self.phase = Phase::Stopping;
                self.publish(p, true);
                match self.commit(p).await {
                    // Nothing uncommitted is acknowledged: stopping
                    // without the commit loses nothing.
                    Err(e) if e.is_transient() => tracing::warn!(
                        error = %e,
                        "stopping without the last commit; the queue still holds what it had"
                    ),
                    r => r?,
                }
                return Ok(true);
            }
        }
        // A stepping command runs from a paused state and pauses again.
        if self.d.until.is_some() {
            self.d.paused = true;
        }
        if self.d.paused != was_paused {
            if self.d.paused {
                self.commit(p).await?;
            }
            self.out.event(Progress::Paused(self.d.paused));
        }
        self.publish(p, true);
        Ok(false)
    }

    /// Waits up to `limit` for a control or a signal and handles it.
    /// Returns true on shutdown.
    async fn idle<S: Store, Q: QueueOps>(
        &mut self,
        p: &mut Processor<S, Q>,
        limit: Duration,
    ) -> Result<bool> {
        match wait(self.ctl, self.wake, limit).await {
            Woke::Control(c) => self.control(p, c).await,
            Woke::Signal(Signal::Requests) => self.requests(p).await.map(|_| false),
            Woke::Signal(Signal::Work) => Ok(false),
            Woke::Timeout => {
                if self.requests_read.elapsed() >= self.wake.requests_fallback {
                    self.requests(p).await?;
                }
                Ok(false)
            }
        }
    }
}

/// The backoff of the retries after transient errors.
struct Backoff {
    next: Duration,
    attempt: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
            attempt: 0,
        }
    }

    /// The delay before the next attempt (doubling up to [`Self::MAX`]).
    fn bump(&mut self) -> Duration {
        let d = self.next;
        self.attempt += 1;
        self.next = (self.next * 2).min(Backoff::MAX);
        d
    }
}

/// Drives a processor until shutdown or, when `input_done` says the input
/// is finished, until queue and overflow are empty (and no rollover waits
/// for confirmation). A transient error anywhere — a step, a commit,
/// reading other processes' requests, an operator command, the end of a
/// backtest — is retried with backoff and published as
/// [`Phase::Retrying`]; only other errors end the run. Whatever is pending
/// is committed before it returns, pauses, or waits.
pub(crate) async fn run<S: Store, Q: QueueOps>(
    p: &mut Processor<S, Q>,
    ctl: &mut mpsc::Receiver<Control>,
    wake: &mut Wake,
    input_done: impl Fn() -> bool,
    out: &mut Publisher,
) -> Result<RunEnd> {
    let mut r = Run {
        ctl,
        wake,
        out,
        d: Driver::default(),
        phase: Phase::Running,
        requests_read: Instant::now(),
        requests_owed: false,
    };
    r.publish(p, true);
    let mut backoff = Backoff::new();
    loop {
        match r.turn(p, &input_done).await {
            Ok(Some(end)) => return Ok(end),
            Ok(None) => backoff = Backoff::new(),
            Err(e) if e.is_transient() => {
                if let Some(end) = r.retry_later(p, &e, &mut backoff).await? {
                    return Ok(end);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

impl<'a> Run<'a> {
    /// After a transient error: publishes the retry, waits out the backoff
    /// (a shutdown or other control still acts meanwhile).
    async fn retry_later<S: Store, Q: QueueOps>(
        &mut self,
        p: &mut Processor<S, Q>,
        e: &crate::error::Error,
        backoff: &mut Backoff,
    ) -> Result<Option<RunEnd>> {
        let delay = backoff.bump();
        tracing::warn!(error = %e, attempt = backoff.attempt, "transient error; retrying in {delay:?}");
        self.report(p);
        self.phase = Phase::Retrying {
            error: e.to_string(),
            attempt: backoff.attempt,
            next_in_ms: delay.as_millis() as u64,
        };
        self.out.event(Progress::Retrying {
            error: e.to_string(),
            millis: delay.as_millis() as u64,
        });
        self.publish(p, true);
        if let Woke::Control(c) = wait(self.ctl, self.wake, delay).await {
            match self.control(p, c).await {
                Ok(true) => return Ok(Some(RunEnd::Shutdown)),
                Ok(false) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "an operator command failed on a transient error");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// One turn of the loop: pending controls and requests, then a step
    /// and what follows it. `Some` ends the run.
    async fn turn<S: Store, Q: QueueOps>(
        &mut self,
        p: &mut Processor<S, Q>,
        input_done: &impl Fn() -> bool,
    ) -> Result<Option<RunEnd>> {
        let r = self;
        while let Ok(c) = r.ctl.try_recv() {
            if r.control(p, c).await? {
                return Ok(Some(RunEnd::Shutdown));
            }
        }
        r.requests_owed |= r.wake.drain();
        if r.requests_owed || r.requests_read.elapsed() >= r.wake.requests_fallback {
            r.requests(p).await?;
        }
        if !r.d.may_step() {
            r.publish(p, true);
            if r.idle(p, r.wake.requests_fallback).await? {
                return Ok(Some(RunEnd::Shutdown));
            }
            return Ok(None);
        }
        let progress = p.step().await?;
        r.phase = match &progress {
            Progress::Idle => Phase::Idle,
            Progress::Blocked(_) => Phase::Waiting,
            _ => Phase::Running,
        };
        let batch = matches!(progress, Progress::Batch(_));
        let reached = r.d.reached(&progress);
        r.out.event(progress.clone());
        r.report(p);
        if reached {
            r.commit(p).await?;
            r.out.event(Progress::Paused(true));
        }
        match progress {
            Progress::Batch(_) => {
                r.publish(p, reached);
                if !r.d.delay.is_zero() && r.idle(p, r.d.delay).await? {
                    return Ok(Some(RunEnd::Shutdown));
                }
            }
            Progress::Idle => {
                if input_done() && p.drained().await? {
                    if p.awaiting().is_none() {
                        p.catch_up().await?;
                        p.snapshot_windows().await?;
                        r.report(p);
                        r.phase = Phase::Finished;
                        r.publish(p, true);
                        return Ok(Some(RunEnd::Drained));
                    }
                    // Everything is processed but a rollover is due: it
                    // waits for its confirmation, then the run finishes.
                    r.phase = Phase::Waiting;
                }
                r.publish(p, true);
                // A pending group commits once it is old enough (live).
                let limit = p
                    .commit_due_in()
                    .map_or(r.wake.idle_fallback, |d| d.min(r.wake.idle_fallback));
                if r.idle(p, limit).await? {
                    return Ok(Some(RunEnd::Shutdown));
                }
            }
            Progress::Blocked(_) => {
                r.publish(p, true);
                if r.idle(p, r.wake.requests_fallback).await? {
                    return Ok(Some(RunEnd::Shutdown));
                }
            }
            _ => r.publish(p, !batch),
        }
        Ok(None)
    }
}
