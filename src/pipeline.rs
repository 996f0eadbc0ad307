//! The processing shell around the pure clock: peek the queue, plan, carry
//! out the plan's action in PostgreSQL, acknowledge, publish progress.
//!
//! The TUI and headless mode drive it through the same [`Control`]
//! messages and read the same [`Progress`] stream.

use crate::analyze::{self, Delta};
use crate::clock::{self, Awaiting, ClockState, Params, Plan, YearMonth};
use crate::error::{Error, Result};
use crate::event::Validation;
use crate::queue::Queue;
use crate::record::Record;
use crate::store::{BatchWrite, Db, MonthRow};
use chrono::NaiveDate;
use std::collections::HashSet;
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
    /// Finish the in-flight step and stop.
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
    Rolled {
        row: MonthRow,
        performed: bool,
        millis: u64,
        /// Where the backup went, or why it failed (retried next rollover).
        backup: Option<std::result::Result<String, String>>,
    },
    /// The clock moved to a new day and its daily cleanup ran.
    DayAdvanced {
        day: NaiveDate,
        cleanup: crate::retention::CleanupRun,
    },
    Batch(BatchReport),
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
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_size: usize,
    pub params: Params,
    pub validation: Validation,
    pub retention: crate::retention::RetentionConfig,
    /// Where a backup of `monthly_activity` goes after each rollover.
    pub backup_dir: Option<std::path::PathBuf>,
}

struct Pending {
    /// The queue element as it arrived (what the overflow stores).
    payload: String,
    record: Record,
}

pub struct Processor {
    pub db: Db,
    pub queue: Queue,
    settings: Settings,
    state: ClockState,
    last_seq: i64,
    overflow: Vec<Pending>,
    /// Overflow elements that no longer decode under the current policy
    /// (e.g. a newly excluded kind): refused, counted and dead-lettered by
    /// the next batch, never dropped silently.
    stale: Vec<(&'static str, String)>,
    seen: HashSet<u128>,
    /// The last peek found the queue shorter than asked: we are live, not
    /// working through a backlog.
    caught_up: bool,
    /// When windows were last snapshotted (wall clock; rate limit).
    last_snapshot: Option<Instant>,
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Processor {
    /// Loads the committed state and finishes an interrupted acknowledge.
    pub async fn open(db: Db, queue: Queue, settings: Settings) -> Result<Processor> {
        if settings.batch_size == 0 || settings.batch_size > MAX_BATCH {
            return Err(Error::Config(format!(
                "--batch-size must be between 1 and {MAX_BATCH}"
            )));
        }
        let st = db.load_state().await?;
        let interrupted = db.mark_interrupted_jobs().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "job runs interrupted by an earlier stop are marked so"
            );
        }
        match queue.acked().await? {
            None if st.last_seq == 0 => queue.set_acked(0).await?,
            None => {
                tracing::warn!(
                    seq = st.last_seq,
                    "Redis has no queue position for this namespace (restarted?); continuing after the last committed batch"
                );
                queue.set_acked(st.last_seq).await?;
            }
            Some(a) if a < st.last_seq => {
                tracing::info!(
                    seq = st.last_seq,
                    count = st.last_count,
                    "completing the acknowledge of the last committed batch"
                );
                queue.ack(st.last_seq, st.last_count.into()).await?;
            }
            Some(a) if a > st.last_seq => {
                return Err(Error::Namespace(format!(
                    "namespace {}: Redis has acknowledged batch {a} but PostgreSQL only holds {}; the two were reset separately: start over with --fresh",
                    db.namespace, st.last_seq
                )));
            }
            Some(_) => {}
        }
        let v = &settings.validation;
        let (mut overflow, mut stale) = (Vec::new(), Vec::new());
        for payload in db.load_overflow().await? {
            // Parked payloads were valid when parked (no future check: the
            // wall clock has only moved on since).
            match Record::decode(&payload, v, i64::MAX / 2) {
                Ok(record) => overflow.push(Pending { payload, record }),
                Err(why) => stale.push((why.as_str(), payload)),
            }
        }
        let seen = db.load_seen().await?;
        Ok(Processor {
            db,
            queue,
            settings,
            state: st.clock,
            last_seq: st.last_seq,
            overflow,
            stale,
            seen,
            caught_up: false,
            last_snapshot: None,
        })
    }

    pub fn clock_state(&self) -> &ClockState {
        &self.state
    }

    pub fn overflow_len(&self) -> usize {
        self.overflow.len()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Records a confirmation (durably, so an external `dvmtop confirm`
    /// and the TUI's dialog do the same thing).
    pub async fn confirm(&mut self, m: YearMonth) -> Result<bool> {
        let ok = self.db.confirm(m).await?;
        if ok {
            self.state.confirmed = Some(m);
        }
        Ok(ok)
    }

    /// Picks up a confirmation written by another process.
    pub async fn refresh_confirmation(&mut self) -> Result<()> {
        self.state.confirmed = self.db.confirmed().await?;
        Ok(())
    }

    /// One action: a batch, a rollover, a day advance, or nothing.
    pub async fn step(&mut self) -> Result<Progress> {
        let started = Instant::now();
        let room = self.settings.batch_size.saturating_sub(self.overflow.len());
        let raw = self.queue.peek(room).await?;
        self.caught_up = raw.len() < room;
        let now = now_unix();
        let mut fresh: Vec<(usize, Record)> = Vec::with_capacity(raw.len());
        let mut rejected: Vec<(&'static str, &str)> = self
            .stale
            .iter()
            .map(|(why, p)| (*why, p.as_str()))
            .collect();
        for (i, payload) in raw.iter().enumerate() {
            match Record::decode(payload, &self.settings.validation, now) {
                Ok(record) => fresh.push((i, record)),
                Err(reason) => rejected.push((reason.as_str(), payload.as_str())),
            }
        }
        let ts: Vec<i64> = self
            .overflow
            .iter()
            .map(|p| p.record.created_at)
            .chain(fresh.iter().map(|(_, r)| r.created_at))
            .collect();
        let batch = match clock::plan(&self.state, &self.settings.params, &ts) {
            Plan::Idle => clock::Batch::default(),
            Plan::Init(m) => {
                self.db.set_month(m).await?;
                self.state.month = Some(m);
                return Ok(Progress::Init(m));
            }
            Plan::Rollover(m) => return self.rollover(m).await,
            Plan::AdvanceDay(d) => {
                let cleanup = self.advance_day(d).await?;
                return Ok(Progress::DayAdvanced { day: d, cleanup });
            }
            Plan::Batch(b) => b,
        };
        if raw.is_empty() && rejected.is_empty() && batch.take.is_empty() && batch.ignore.is_empty()
        {
            return Ok(match batch.awaiting {
                Some(a) if a.blocked => Progress::Blocked(a),
                _ => Progress::Idle,
            });
        }
        // Pending index i < overflow.len() is an overflow element; the rest
        // are fresh[i - overflow.len()].
        let n_over = self.overflow.len();
        let record_at = |i: usize| -> &Record {
            if i < n_over {
                &self.overflow[i].record
            } else {
                &fresh[i - n_over].1
            }
        };
        let delta: Option<Delta> = batch
            .day
            .map(|_| analyze::analyze(batch.take.iter().map(|&i| record_at(i)), &self.seen));
        let seq = self.last_seq + 1;
        // The new overflow: parked elements in pending (FIFO) order.
        let parked_fresh = batch.park.iter().filter(|&&i| i >= n_over).count();
        let overflow_changed =
            parked_fresh > 0 || batch.park.len() != n_over || !self.stale.is_empty();
        let payload_at = |i: usize| -> &str {
            if i < n_over {
                &self.overflow[i].payload
            } else {
                &raw[fresh[i - n_over].0]
            }
        };
        let write = BatchWrite {
            seq,
            consumed: raw.len() as i32,
            day: batch.day,
            delta: delta.as_ref(),
            overflow: overflow_changed.then(|| batch.park.iter().map(|&i| payload_at(i)).collect()),
            ignored_prior_month: batch.ignore.len() as i64,
            rejected,
        };
        let t_apply = Instant::now();
        let applied = self.db.apply_batch(&write).await?;
        let apply_ms = t_apply.elapsed().as_secs_f64() * 1000.0;
        if !applied {
            return Err(Error::Namespace(format!(
                "batch {seq} was already applied by another process: is a second dvmtop running on namespace {}?",
                self.db.namespace
            )));
        }
        let n_rejected = write.rejected.len();
        drop(write);
        self.queue.ack(seq, raw.len() as i64).await?;
        self.last_seq = seq;
        self.stale.clear();

        // Mirror the commit in memory.
        if let Some(d) = &delta {
            self.seen.extend(d.new_ids.iter().copied());
            self.state = clock::after_batch(&self.state, d.max_ts);
        }
        let keep: HashSet<usize> = batch.park.iter().copied().collect();
        let mut next: Vec<Pending> = Vec::with_capacity(batch.park.len());
        for (i, p) in std::mem::take(&mut self.overflow).into_iter().enumerate() {
            if keep.contains(&i) {
                next.push(p);
            }
        }
        for (i, (qi, record)) in fresh.into_iter().enumerate() {
            if keep.contains(&(i + n_over)) {
                next.push(Pending {
                    payload: raw[qi].clone(),
                    record,
                });
            }
        }
        self.overflow = next;
        let report = BatchReport {
            seq,
            day: batch.day,
            consumed: raw.len(),
            processed: delta.as_ref().map_or(0, |d| d.new_ids.len()),
            duplicates: delta.as_ref().map_or(0, |d| d.duplicates),
            ignored: batch.ignore.len(),
            parked: parked_fresh,
            rejected: n_rejected,
            overflow: self.overflow.len(),
            awaiting: batch.awaiting,
            millis: started.elapsed().as_secs_f64() * 1000.0,
        };
        tracing::debug!(
            seq,
            consumed = report.consumed,
            processed = report.processed,
            parked = report.parked,
            apply_ms,
            total_ms = report.millis,
            "batch"
        );
        Ok(Progress::Batch(report))
    }

    /// The clock moves to a new day: window snapshot and daily cleanup
    /// with reference time = the day's start, then the day becomes current
    /// (SPEC §4). A crash in between repeats the (idempotent) cleanup.
    async fn advance_day(&mut self, d: NaiveDate) -> Result<crate::retention::CleanupRun> {
        let t0 = Instant::now();
        // Window snapshots scan up to 30 days of detail: worth it once a day
        // when live, pointless (and the main cost) while working through a
        // backfill — so only when caught up, and at most once a minute.
        // Status and the TUI compute windows live either way.
        if self.caught_up
            && self
                .last_snapshot
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.snapshot_windows().await?;
            self.last_snapshot = Some(Instant::now());
        }
        let t1 = Instant::now();
        let run = crate::retention::daily_cleanup(
            &self.db,
            d,
            self.state.month,
            &self.settings.retention,
        )
        .await?;
        tracing::debug!(
            day = %d,
            windows_ms = (t1 - t0).as_millis() as u64,
            cleanup_ms = t1.elapsed().as_millis() as u64,
            "day advanced"
        );
        self.db.set_day(d).await?;
        self.state.day = Some(d);
        Ok(run)
    }

    /// Stores the window stats at the processing clock in `time_window_stats`.
    pub async fn snapshot_windows(&self) -> Result<()> {
        match self.state.clock {
            Some(t) => self.db.snapshot_windows(t).await,
            None => Ok(()),
        }
    }

    /// The operator's "cleanup now": the daily cleanup for the current day.
    pub async fn cleanup_now(&mut self) -> Result<crate::retention::CleanupRun> {
        let day = self.state.day.ok_or_else(|| {
            Error::Namespace(
                "nothing has been processed yet: there is no current day to clean up for".into(),
            )
        })?;
        crate::retention::daily_cleanup(&self.db, day, self.state.month, &self.settings.retention)
            .await
    }

    /// Rolls `m` over, audits it, then writes the backup. A failed backup
    /// is reported and logged loudly but never stops processing; the next
    /// rollover's backup contains every row again.
    async fn rollover(&mut self, m: YearMonth) -> Result<Progress> {
        let out = self.db.rollover(m).await?;
        let millis = out.duration.as_millis() as u64;
        self.state = clock::after_rollover(&self.state, m);
        // The closed month's ids left `seen_ids` with the rollover: reload
        // the (small) rest so memory stays bounded by the open window.
        self.seen = self.db.load_seen().await?;
        self.db.audit_rollover(m, millis, out.performed).await?;
        if let Err(e) = self.queue.forget_seen_before(m.end()).await {
            tracing::warn!(error = %e, "could not drop the ingest dedup sets of {m}");
        }
        let backup = match &self.settings.backup_dir {
            None => None,
            Some(dir) => {
                let id = self.db.job_started("backup", None).await?;
                let result = crate::retention::write_backup(&self.db, dir, m).await;
                let (outcome, detail) = match &result {
                    Ok(p) => ("ok", p.display().to_string()),
                    Err(e) => {
                        tracing::error!(error = %e, "BACKUP FAILED after the rollover of {m}; retried at the next rollover");
                        ("failed", e.to_string())
                    }
                };
                let rows = std::collections::BTreeMap::from([(
                    "monthly_activity".to_owned(),
                    i64::from(result.is_ok()),
                )]);
                self.db
                    .job_finished(id, &rows, outcome, 1, Some(&detail))
                    .await?;
                Some(
                    result
                        .map(|p| p.display().to_string())
                        .map_err(|e| e.to_string()),
                )
            }
        };
        Ok(Progress::Rolled {
            row: out.row,
            performed: out.performed,
            millis,
            backup,
        })
    }

    /// Whether queue and overflow are both empty.
    pub async fn drained(&self) -> Result<bool> {
        Ok(self.overflow.is_empty() && self.queue.depth().await? == 0)
    }
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
            (
                Until::Rollover,
                Progress::Rolled {
                    performed: true, ..
                }
                | Progress::Blocked(_),
            ) => true,
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
/// retried with backoff and reported; others end the run.
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
            report(&Progress::Paused(true));
        }
        let pause = match progress {
            Progress::Batch(_) => d.delay,
            Progress::Idle => {
                if input_done() && p.drained().await? {
                    p.snapshot_windows().await?;
                    return Ok(RunEnd::Drained);
                }
                Duration::from_millis(50)
            }
            Progress::Blocked(_) => {
                p.refresh_confirmation().await?;
                Duration::from_millis(250)
            }
            _ => Duration::ZERO,
        };
        if !pause.is_zero() && wait_for(ctl, p, &mut d, &mut report, pause).await? {
            return Ok(RunEnd::Shutdown);
        }
    }
}

/// Applies one control message; true means shut down.
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
            report(&Progress::Cleanup(run));
        }
        Control::Shutdown => return Ok(true),
    }
    // A stepping command runs from a paused state and pauses again.
    if d.until.is_some() {
        d.paused = true;
    }
    if d.paused != was_paused {
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
