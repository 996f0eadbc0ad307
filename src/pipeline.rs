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
use crate::store::{BatchWrite, Db, MonthRow, Parked};
use chrono::NaiveDate;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Largest batch: overflow positions are `seq << 20 | index`.
pub const MAX_BATCH: usize = 1 << 20;

/// Operator commands (TUI keys, headless signals, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    /// While paused: run exactly one batch.
    StepBatch,
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
    },
    DayAdvanced(NaiveDate),
    Batch(BatchReport),
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
}

struct Pending {
    /// Overflow position, when it came from the overflow.
    pos: Option<i64>,
    record: Record,
}

pub struct Processor {
    pub db: Db,
    pub queue: Queue,
    settings: Settings,
    state: ClockState,
    last_seq: i64,
    overflow: Vec<Pending>,
    seen: HashSet<u128>,
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
        let mut overflow = Vec::new();
        for Parked { pos, payload } in db.load_overflow().await? {
            // Parked payloads were valid when parked; a policy change since
            // (e.g. a newly excluded kind) is dropped at the next batch.
            if let Ok(record) = Record::decode(&payload, v, i64::MAX / 2) {
                overflow.push(Pending {
                    pos: Some(pos),
                    record,
                });
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
            seen,
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
        let now = now_unix();
        let mut fresh = Vec::with_capacity(raw.len());
        let mut rejected: Vec<(usize, &'static str)> = Vec::new();
        for (i, payload) in raw.iter().enumerate() {
            match Record::decode(payload, &self.settings.validation, now) {
                Ok(record) => fresh.push((i, record)),
                Err(reason) => rejected.push((i, reason.as_str())),
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
            Plan::Rollover(m) => {
                let out = self.db.rollover(m).await?;
                self.state = clock::after_rollover(&self.state, m);
                if let Err(e) = self.queue.forget_seen_before(m.end()).await {
                    tracing::warn!(error = %e, "could not drop the ingest dedup sets of {m}");
                }
                return Ok(Progress::Rolled {
                    row: out.row,
                    performed: out.performed,
                    millis: out.duration.as_millis() as u64,
                });
            }
            Plan::AdvanceDay(d) => {
                self.advance_day(d).await?;
                return Ok(Progress::DayAdvanced(d));
            }
            Plan::Batch(b) => b,
        };
        if raw.is_empty() && batch.take.is_empty() && batch.ignore.is_empty() {
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
        let mut unpark = Vec::new();
        for &i in batch.take.iter().chain(&batch.ignore) {
            if i < n_over {
                unpark.push(
                    self.overflow[i]
                        .pos
                        .expect("overflow elements have a position"),
                );
            }
        }
        let mut park = Vec::new();
        for &i in &batch.park {
            if i >= n_over {
                let (qi, r) = &fresh[i - n_over];
                park.push((
                    (seq << 20) | *qi as i64,
                    clock::day_of(r.created_at),
                    raw[*qi].as_str(),
                ));
            }
        }
        let write = BatchWrite {
            seq,
            consumed: raw.len() as i32,
            day: batch.day,
            delta: delta.as_ref(),
            unpark,
            park,
            ignored_prior_month: batch.ignore.len() as i64,
            rejected: rejected
                .iter()
                .map(|(i, why)| (*why, raw[*i].as_str()))
                .collect(),
        };
        let applied = self.db.apply_batch(&write).await?;
        if !applied {
            return Err(Error::Namespace(format!(
                "batch {seq} was already applied by another process: is a second dvmtop running on namespace {}?",
                self.db.namespace
            )));
        }
        self.queue.ack(seq, raw.len() as i64).await?;
        self.last_seq = seq;

        // Mirror the commit in memory.
        let report = BatchReport {
            seq,
            day: batch.day,
            consumed: raw.len(),
            processed: delta.as_ref().map_or(0, |d| d.new_ids.len()),
            duplicates: delta.as_ref().map_or(0, |d| d.duplicates),
            ignored: batch.ignore.len(),
            parked: write.park.len(),
            rejected: rejected.len(),
            overflow: 0,
            awaiting: batch.awaiting,
            millis: 0.0,
        };
        let parked_pos: Vec<i64> = write.park.iter().map(|p| p.0).collect();
        drop(write);
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
        let mut parked_iter = parked_pos.into_iter();
        for (i, (_, record)) in fresh.into_iter().enumerate() {
            if keep.contains(&(i + n_over)) {
                let pos = parked_iter.next();
                next.push(Pending { pos, record });
            }
        }
        self.overflow = next;
        Ok(Progress::Batch(BatchReport {
            overflow: self.overflow.len(),
            millis: started.elapsed().as_secs_f64() * 1000.0,
            ..report
        }))
    }

    /// The clock moves to a new day: daily jobs with reference time = the
    /// day's start, then the day becomes current (SPEC §4).
    async fn advance_day(&mut self, d: NaiveDate) -> Result<()> {
        if let Some(t) = self.state.clock {
            self.db.snapshot_windows(t).await?;
        }
        self.db.set_day(d).await?;
        self.state.day = Some(d);
        Ok(())
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

/// Drives a processor until shutdown or, when `input_done` says the input
/// is finished, until queue and overflow are empty. Transient errors are
/// retried with backoff and reported; others end the run.
pub async fn run(
    p: &mut Processor,
    ctl: &mut mpsc::Receiver<Control>,
    input_done: impl Fn() -> bool,
    mut report: impl FnMut(&Progress),
) -> Result<RunEnd> {
    let mut paused = false;
    let mut steps_allowed = 0u32;
    let mut backoff = Duration::from_millis(100);
    loop {
        while let Ok(c) = ctl.try_recv() {
            if apply_control(p, c, &mut paused, &mut steps_allowed).await? {
                return Ok(RunEnd::Shutdown);
            }
        }
        if paused && steps_allowed == 0 {
            if wait_for(
                ctl,
                p,
                &mut paused,
                &mut steps_allowed,
                Duration::from_millis(500),
            )
            .await?
            {
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
                report(&Progress::Idle);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(e) => return Err(e),
        };
        report(&progress);
        match progress {
            Progress::Batch(_) => steps_allowed = steps_allowed.saturating_sub(1),
            Progress::Idle => {
                if input_done() && p.drained().await? {
                    return Ok(RunEnd::Drained);
                }
                if wait_for(
                    ctl,
                    p,
                    &mut paused,
                    &mut steps_allowed,
                    Duration::from_millis(50),
                )
                .await?
                {
                    return Ok(RunEnd::Shutdown);
                }
            }
            Progress::Blocked(_) => {
                p.refresh_confirmation().await?;
                if wait_for(
                    ctl,
                    p,
                    &mut paused,
                    &mut steps_allowed,
                    Duration::from_millis(250),
                )
                .await?
                {
                    return Ok(RunEnd::Shutdown);
                }
            }
            _ => {}
        }
    }
}

/// Applies one control message; true means shut down.
async fn apply_control(
    p: &mut Processor,
    c: Control,
    paused: &mut bool,
    steps: &mut u32,
) -> Result<bool> {
    match c {
        Control::Pause => *paused = true,
        Control::Resume => *paused = false,
        Control::StepBatch => *steps += 1,
        Control::Confirm(m) => {
            p.confirm(m).await?;
        }
        Control::Shutdown => return Ok(true),
    }
    Ok(false)
}

/// Sleeps up to `d`, waking early on a control message. Returns true on
/// shutdown.
async fn wait_for(
    ctl: &mut mpsc::Receiver<Control>,
    p: &mut Processor,
    paused: &mut bool,
    steps: &mut u32,
    d: Duration,
) -> Result<bool> {
    match tokio::time::timeout(d, ctl.recv()).await {
        Ok(Some(c)) => apply_control(p, c, paused, steps).await,
        // Nobody can send controls any more: just wait.
        Ok(None) => {
            tokio::time::sleep(d).await;
            Ok(false)
        }
        Err(_) => Ok(false),
    }
}
