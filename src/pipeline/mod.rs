//! The processing shell around the pure clock: peek the queue, plan, carry
//! out the plan's action in PostgreSQL, acknowledge, publish progress.
//!
//! The TUI and headless mode drive it through the same [`Control`]
//! messages and read the same [`Progress`] stream.

mod commit;
mod processor;

pub use processor::Processor;

use crate::error::Result;
use crate::event::Validation;
use crate::store::MonthRow;
use chrono::NaiveDate;
use dvmtop_core::YearMonth;
use dvmtop_core::clock::{Awaiting, Params};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Largest batch (a sanity bound: a batch and its overflow live in memory).
pub const MAX_BATCH: usize = 1 << 20;

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
    DailyCleanup(crate::retention::CleanupRun),
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
    Cleanup(crate::retention::CleanupRun),
    /// The loop paused (after a stepping command) or resumed.
    Paused(bool),
    /// A transient error; the step is retried after `millis`.
    Retrying {
        error: String,
        millis: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchReport {
    pub seq: i64,
    pub day: Option<NaiveDate>,
    pub consumed: usize,
    pub processed: usize,
    pub duplicates: u64,
    pub ignored: usize,
    pub parked: usize,
    pub rejected: usize,
    pub overflow: usize,
    pub awaiting: Option<Awaiting>,
    pub millis: f64,
    /// The read found the queue shorter than asked: nothing is waiting
    /// behind this batch (live, or the end of a backfill).
    pub caught_up: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitReport {
    pub seq: i64,
    /// Queue elements the group consumed, and events it applied.
    pub consumed: i64,
    pub processed: u64,
    pub millis: f64,
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
    pub max_age: Duration,
    /// ... or, when caught up with the queue (live), once the group is
    /// this old. A group that closed a month commits as soon as it can.
    pub live_age: Duration,
}

impl CommitPolicy {
    /// The memory bound as a multiple of the target. Two groups can be in
    /// memory at once (the one being committed and the one growing), so
    /// peak RSS follows the group size when PostgreSQL is slower than
    /// processing. Measured (`dvmtop bench --months 4 --commit-events N`):
    /// groups near 250 k → 166 MiB, near 500 k → 218 MiB, near 1 M → 287
    /// MiB. At 2× the default target a group never passes 500 k events,
    /// which keeps the worst case under the 256 MiB budget.
    pub const BOUND_FACTOR: u64 = 2;

    /// The policy for a target group size (a larger target also raises
    /// the memory bound).
    pub fn with_target(target_events: u64) -> CommitPolicy {
        CommitPolicy {
            target_events,
            max_events: target_events.saturating_mul(Self::BOUND_FACTOR),
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
    pub batch_size: usize,
    pub params: Params,
    pub validation: Validation,
    pub retention: crate::retention::RetentionConfig,
    /// Where a backup of `monthly_activity` goes after each rollover.
    pub backup_dir: Option<std::path::PathBuf>,
    pub commit: CommitPolicy,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Input finished and everything pending is processed.
    Drained,
    Shutdown,
}

/// Where a stepping command stops again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Batch,
    Day,
    Rollover,
}

impl Until {
    /// Whether progress `p` completes a step of this kind (the run loop
    /// pauses again; the TUI shows the same).
    pub fn reached_by(self, p: &Progress) -> bool {
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

/// Drives a processor until shutdown or, when `input_done` says the input
/// is finished, until queue and overflow are empty. Transient errors are
/// retried with backoff and reported; others end the run. Whatever is
/// pending is committed before it returns, pauses, or waits.
pub async fn run(
    p: &mut Processor,
    ctl: &mut mpsc::Receiver<Control>,
    input_done: impl Fn() -> bool,
    mut report: impl FnMut(&Progress),
) -> Result<RunEnd> {
    let mut d = Driver {
        paused: false,
        until: None,
        delay: Duration::ZERO,
    };
    let mut backoff = Duration::from_millis(100);
    let mut requests_checked = Instant::now();
    loop {
        while let Ok(c) = ctl.try_recv() {
            if apply_control(p, c, &mut d, &mut report).await? {
                return Ok(RunEnd::Shutdown);
            }
        }
        if !d.may_step() {
            if wait_for(ctl, p, &mut d, &mut report, Duration::from_millis(500)).await? {
                return Ok(RunEnd::Shutdown);
            }
            continue;
        }
        let progress = match p.step().await {
            Ok(x) => {
                backoff = Duration::from_millis(100);
                x
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "transient error; retrying in {backoff:?}");
                report(&Progress::Retrying {
                    error: e.to_string(),
                    millis: backoff.as_millis() as u64,
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(e) => return Err(e),
        };
        report(&progress);
        if d.reached(&progress) {
            commit(p, &mut report).await?;
            report(&Progress::Paused(true));
        }
        let quiet = matches!(progress, Progress::Idle | Progress::Blocked(_));
        if quiet || requests_checked.elapsed() >= Duration::from_secs(1) {
            requests_checked = Instant::now();
            if let Some(run) = p.refresh_requests().await? {
                report(&Progress::Cleanup(run));
            }
        }
        report_commits(p, &mut report);
        let pause = match progress {
            Progress::Batch(_) => d.delay,
            Progress::Idle => {
                if input_done() && p.drained().await? {
                    p.catch_up().await?;
                    p.snapshot_windows().await?;
                    report_commits(p, &mut report);
                    return Ok(RunEnd::Drained);
                }
                Duration::from_millis(50)
            }
            Progress::Blocked(_) => Duration::from_millis(250),
            _ => Duration::ZERO,
        };
        if !pause.is_zero() && wait_for(ctl, p, &mut d, &mut report, pause).await? {
            return Ok(RunEnd::Shutdown);
        }
    }
}

fn report_commits(p: &mut Processor, report: &mut impl FnMut(&Progress)) {
    for r in std::mem::take(&mut p.reports) {
        report(&r);
    }
}

async fn commit(p: &mut Processor, report: &mut impl FnMut(&Progress)) -> Result<()> {
    p.commit().await?;
    report_commits(p, report);
    Ok(())
}

/// Applies one control message; true means shut down (after a commit).
async fn apply_control(
    p: &mut Processor,
    c: Control,
    d: &mut Driver,
    report: &mut impl FnMut(&Progress),
) -> Result<bool> {
    let was_paused = d.paused;
    match c {
        Control::Pause => {
            d.paused = true;
            d.until = None;
        }
        Control::Resume => {
            d.paused = false;
            d.until = None;
        }
        Control::StepBatch => d.until = Some(Until::Batch),
        Control::StepDay => d.until = Some(Until::Day),
        Control::RunToRollover => d.until = Some(Until::Rollover),
        Control::SetDelay(delay) => d.delay = delay,
        Control::Confirm(m) => {
            let ok = p.confirm(m).await?;
            report(&Progress::Confirmed {
                month: m,
                accepted: ok,
            });
        }
        Control::CleanupNow => {
            let run = p.cleanup_now().await?;
            report_commits(p, report);
            report(&Progress::Cleanup(run));
        }
        Control::Shutdown => {
            commit(p, report).await?;
            return Ok(true);
        }
    }
    // A stepping command runs from a paused state and pauses again.
    if d.until.is_some() {
        d.paused = true;
    }
    if d.paused != was_paused {
        if d.paused {
            commit(p, report).await?;
        }
        report(&Progress::Paused(d.paused));
    }
    Ok(false)
}

/// Sleeps up to `wait`, waking early on a control message. Returns true on
/// shutdown.
async fn wait_for(
    ctl: &mut mpsc::Receiver<Control>,
    p: &mut Processor,
    d: &mut Driver,
    report: &mut impl FnMut(&Progress),
    wait: Duration,
) -> Result<bool> {
    match tokio::time::timeout(wait, ctl.recv()).await {
        Ok(Some(c)) => apply_control(p, c, d, report).await,
        // Nobody can send controls any more: just wait.
        Ok(None) => {
            tokio::time::sleep(wait).await;
            Ok(false)
        }
        Err(_) => Ok(false),
    }
}
