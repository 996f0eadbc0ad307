//! The processing shell around the pure clock: peek the queue, plan, carry
//! out the plan's action in PostgreSQL, acknowledge, publish progress.
//!
//! The TUI and headless mode drive it through the same [`Control`]
//! messages and read the same [`Progress`] stream.

use crate::activity::{self, Entry, RowCache};
use crate::analyze::{EntityRole, Pending};
use crate::clock::{self, Awaiting, ClockState, Params, Plan, YearMonth, day_of};
use crate::entities::Entities;
use crate::error::{Error, Result};
use crate::event::Validation;
use crate::month::MonthAcc;
use crate::queue::Queue;
use crate::record::Item;
use crate::store::{Commit, Db, MonthRow};
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
    /// The clock moved to a new day and its daily cleanup ran.
    DayAdvanced {
        day: NaiveDate,
        cleanup: crate::retention::CleanupRun,
    },
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
    /// Commit once this many events are pending (bounds memory).
    pub max_events: u64,
    /// ... or once the oldest pending change is this old.
    pub max_age: Duration,
    /// When caught up with the queue (live), commit once the group is this
    /// old.
    pub live_age: Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            max_events: 500_000,
            max_age: Duration::from_secs(5),
            live_age: Duration::from_millis(250),
        }
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

/// A read-ahead element of a later day (SPEC §4).
struct Parked {
    /// The queue element as it arrived (what the overflow stores).
    payload: String,
    day: NaiveDate,
    item: Item,
}

/// What the processor has done since its last commit.
#[derive(Default)]
struct Group {
    pending: Pending,
    /// Queue head elements consumed (they leave the queue at the commit).
    consumed: i64,
    ignored: i64,
    rejected: Vec<(&'static str, String)>,
    overflow_changed: bool,
    /// Months rolled over, with their rows.
    rollovers: Vec<MonthRow>,
    /// When the first change happened.
    since: Option<Instant>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.consumed == 0
            && !self.overflow_changed
            && self.rejected.is_empty()
            && self.rollovers.is_empty()
    }

    fn age(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

pub struct Processor {
    pub db: Db,
    pub queue: Queue,
    settings: Settings,
    state: ClockState,
    /// The open month as committed: retention protects it (and anything
    /// later) even after an in-memory rollover, until that commits.
    committed_month: Option<YearMonth>,
    /// The open months' figures (see [`crate::month`]).
    months: std::collections::BTreeMap<YearMonth, MonthAcc>,
    last_seq: i64,
    /// A committed group whose queue trim has not succeeded yet.
    unacked: Option<(i64, i64)>,
    overflow: Vec<Parked>,
    /// Ids applied in the open window, pending ones included.
    seen: crate::keys::FastSet<u128>,
    book: Entities,
    rows: RowCache,
    group: Group,
    /// The last peek found the queue shorter than asked: we are live, not
    /// working through a backlog.
    caught_up: bool,
    /// When windows were last snapshotted (wall clock; rate limit).
    last_snapshot: Option<Instant>,
    /// What commits did that is not reported yet (commits, backups); the
    /// run loop reports them.
    pub reports: Vec<Progress>,
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
                    "Redis has no queue position for this namespace (restarted?); continuing after the last committed group"
                );
                queue.set_acked(st.last_seq).await?;
            }
            Some(a) if a < st.last_seq => {
                tracing::info!(
                    seq = st.last_seq,
                    count = st.last_count,
                    "completing the acknowledge of the last committed group"
                );
                queue.ack(st.last_seq, st.last_count).await?;
            }
            Some(a) if a > st.last_seq => {
                return Err(Error::Namespace(format!(
                    "namespace {}: Redis has acknowledged group {a} but PostgreSQL only holds {}; the two were reset separately: start over with --fresh",
                    db.namespace, st.last_seq
                )));
            }
            Some(_) => {}
        }
        let v = &settings.validation;
        let mut group = Group::default();
        let mut overflow = Vec::new();
        for payload in db.load_overflow().await? {
            // Parked payloads were valid when parked (no future check: the
            // wall clock has only moved on since). One that no longer
            // decodes (e.g. a newly excluded kind) is refused, counted and
            // dead-lettered by the next commit, never dropped silently.
            match Item::decode(&payload, v, i64::MAX / 2) {
                Ok(item) => overflow.push(Parked {
                    day: day_of(item.created_at),
                    payload,
                    item,
                }),
                Err(why) => {
                    group.rejected.push((why.as_str(), payload));
                    group.overflow_changed = true;
                }
            }
        }
        let seen = db.load_seen().await?;
        let book = db.load_entities().await?;
        let months = match st.clock.month {
            Some(m) => db.load_open_months(m).await?,
            None => Default::default(),
        };
        Ok(Processor {
            db,
            queue,
            settings,
            committed_month: st.clock.month,
            months,
            state: st.clock,
            last_seq: st.last_seq,
            unacked: None,
            overflow,
            seen,
            book,
            rows: RowCache::default(),
            group,
            caught_up: false,
            last_snapshot: None,
            reports: Vec::new(),
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

    /// Active and inactive entities of a role, as the processor sees them
    /// (uncommitted changes included).
    pub fn entity_activity(&self, role: EntityRole) -> (usize, usize) {
        self.book.activity(role)
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

    /// Picks up a confirmation or cleanup request written by another
    /// process (`dvmtop confirm`, `dvmtop cleanup`).
    pub async fn refresh_requests(&mut self) -> Result<Option<crate::retention::CleanupRun>> {
        let (confirmed, cleanup) = self.db.requests().await?;
        self.state.confirmed = confirmed;
        if !cleanup || self.state.day.is_none() {
            return Ok(None);
        }
        let run = self.cleanup_now().await?;
        self.db.cleanup_done().await?;
        Ok(Some(run))
    }

    /// One action: a batch, a rollover, a day advance, or nothing. Batches
    /// aggregate in memory; a commit follows when the [`CommitPolicy`]
    /// says so (or before anything that reads the tables).
    pub async fn step(&mut self) -> Result<Progress> {
        if let Some((seq, count)) = self.unacked {
            self.queue.ack(seq, count).await?;
            self.unacked = None;
        }
        let started = Instant::now();
        let room = self.settings.batch_size.saturating_sub(self.overflow.len());
        let raw = if room == 0 {
            Vec::new()
        } else {
            self.queue.range(self.group.consumed, room).await?
        };
        self.caught_up = raw.len() < room;
        let now = now_unix();
        let mut fresh: Vec<(usize, Item)> = Vec::with_capacity(raw.len());
        // Refused elements are recorded once the batch consumes them (a
        // plan that is not a batch leaves the elements in the queue).
        let mut refused: Vec<(&'static str, usize)> = Vec::new();
        for (i, payload) in raw.iter().enumerate() {
            match Item::decode(payload, &self.settings.validation, now) {
                Ok(item) => fresh.push((i, item)),
                Err(reason) => refused.push((reason.as_str(), i)),
            }
        }
        let ts: Vec<i64> = self
            .overflow
            .iter()
            .map(|p| p.item.created_at)
            .chain(fresh.iter().map(|(_, it)| it.created_at))
            .collect();
        let batch = match clock::plan(&self.state, &self.settings.params, &ts) {
            Plan::Idle => clock::Batch::default(),
            Plan::Init(m) => {
                self.db.set_month(m).await?;
                self.state.month = Some(m);
                return Ok(Progress::Init(m));
            }
            Plan::Rollover(m) => return Ok(self.rollover(m)),
            Plan::AdvanceDay(d) => {
                let cleanup = self.advance_day(d).await?;
                return Ok(Progress::DayAdvanced { day: d, cleanup });
            }
            Plan::Batch(b) => b,
        };
        if raw.is_empty() && batch.take.is_empty() && batch.ignore.is_empty() {
            // Nothing moved: commit what is pending when live (or waiting).
            let blocked = batch.awaiting.filter(|a| a.blocked);
            if blocked.is_some() || self.group.age() >= self.settings.commit.live_age {
                self.commit().await?;
            }
            return Ok(match blocked {
                Some(a) => Progress::Blocked(a),
                None => Progress::Idle,
            });
        }
        self.group.since.get_or_insert_with(Instant::now);
        let rejected = refused.len();
        self.group
            .rejected
            .extend(refused.into_iter().map(|(why, i)| (why, raw[i].clone())));
        // Pending index i < overflow.len() is an overflow element; the rest
        // are fresh[i - overflow.len()].
        let n_over = self.overflow.len();
        let stats = batch.day.map(|day| {
            let (overflow, fresh) = (&self.overflow, &fresh);
            let items = batch.take.iter().map(|&i| {
                if i < n_over {
                    &overflow[i].item
                } else {
                    &fresh[i - n_over].1
                }
            });
            let month = self.months.entry(YearMonth::of(day)).or_default();
            self.group
                .pending
                .absorb(day, items, &mut self.seen, &mut self.book, month)
        });
        if let Some(s) = stats {
            self.state = clock::after_batch(&self.state, s.max_ts);
        }
        // The new overflow: parked elements in pending (FIFO) order.
        let parked_fresh = batch.park.iter().filter(|&&i| i >= n_over).count();
        if parked_fresh > 0 || batch.park.len() != n_over {
            self.group.overflow_changed = true;
            let keep: HashSet<usize> = batch.park.iter().copied().collect();
            let mut next: Vec<Parked> = Vec::with_capacity(batch.park.len());
            for (i, p) in std::mem::take(&mut self.overflow).into_iter().enumerate() {
                if keep.contains(&i) {
                    next.push(p);
                }
            }
            for (i, (qi, item)) in fresh.into_iter().enumerate() {
                if keep.contains(&(i + n_over)) {
                    next.push(Parked {
                        payload: raw[qi].clone(),
                        day: day_of(item.created_at),
                        item,
                    });
                }
            }
            self.overflow = next;
        }
        self.group.consumed += raw.len() as i64;
        self.group.ignored += batch.ignore.len() as i64;
        let report = BatchReport {
            seq: self.last_seq + 1,
            day: batch.day,
            consumed: raw.len(),
            processed: stats.map_or(0, |s| s.processed as usize),
            duplicates: stats.map_or(0, |s| s.duplicates),
            ignored: batch.ignore.len(),
            parked: parked_fresh,
            rejected,
            overflow: self.overflow.len(),
            awaiting: batch.awaiting,
            millis: started.elapsed().as_secs_f64() * 1000.0,
        };
        let policy = self.settings.commit;
        let g = &self.group;
        if g.pending.processed + g.pending.duplicates >= policy.max_events
            || g.age() >= policy.max_age
            || (self.caught_up && g.age() >= policy.live_age)
        {
            self.commit().await?;
        }
        Ok(Progress::Batch(report))
    }

    /// Commits the pending group in one transaction, then trims the queue
    /// head. Returns what it committed (`None`: nothing was pending).
    pub async fn commit(&mut self) -> Result<Option<CommitReport>> {
        if self.group.is_empty() && !self.book.is_dirty() {
            return Ok(None);
        }
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let seq = self.last_seq + 1;
        // Whole activity rows: what is stored merged with the pending cells.
        let mut merged: Vec<(NaiveDate, EntityRole, Vec<Entry>)> = Vec::new();
        for (&day, act) in &self.group.pending.activity {
            for role in EntityRole::BOTH {
                let cells = &act.cells[role as usize];
                if cells.is_empty() {
                    continue;
                }
                let loaded;
                let base = match self.rows.get(day, role) {
                    Some(b) => b,
                    None => {
                        loaded = self.db.load_day_row(day, role).await?;
                        &loaded
                    }
                };
                merged.push((day, role, activity::merge(base, cells)));
            }
        }
        let g = &self.group;
        let c = Commit {
            seq,
            consumed: g.consumed,
            pending: &g.pending,
            rows: merged
                .iter()
                .map(|(d, r, e)| (*d, *r, e.as_slice()))
                .collect(),
            entities: self.book.changes(),
            overflow: g.overflow_changed.then(|| {
                self.overflow
                    .iter()
                    .map(|p| (p.payload.as_str(), p.day))
                    .unzip()
            }),
            ignored_prior_month: g.ignored,
            rejected: &g.rejected,
            rollovers: &g.rollovers,
            month: self.state.month,
        };
        if !self.db.commit(&c).await? {
            return Err(Error::Namespace(format!(
                "group {seq} was already committed by another process: is a second dvmtop running on namespace {}?",
                self.db.namespace
            )));
        }
        drop(c);
        // Mirror the commit in memory before trimming the queue: a failed
        // trim is retried before the next read (never skipped).
        let consumed = self.group.consumed;
        let processed = self.group.pending.processed;
        self.last_seq = seq;
        self.unacked = Some((seq, consumed));
        self.book.committed();
        self.committed_month = self.state.month;
        let rolled = std::mem::take(&mut self.group).rollovers;
        for (day, role, entries) in merged {
            self.rows.put(day, role, entries);
        }
        self.queue.ack(seq, consumed).await?;
        self.unacked = None;
        let report = CommitReport {
            seq,
            consumed,
            processed,
            millis: started.elapsed().as_secs_f64() * 1000.0,
        };
        tracing::debug!(seq, consumed, processed, millis = report.millis, "commit");
        self.reports.push(Progress::Committed(report.clone()));
        if !rolled.is_empty() {
            self.after_rollovers(&rolled, started_at).await?;
        }
        Ok(Some(report))
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
        let run = self.cleanup(d).await?;
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

    /// The daily cleanup for reference day `r`. The entity book decides
    /// the lifecycle; the entities it names are not pending (or the group
    /// is committed first), so the cleanup's own transactions and the next
    /// commit never write the same rows.
    async fn cleanup(&mut self, r: NaiveDate) -> Result<crate::retention::CleanupRun> {
        let cfg = self.settings.retention;
        let open = self.committed_month;
        let cut = crate::retention::cutoffs(r, open, &cfg);
        let lifecycle = self
            .book
            .lifecycle(cut.inactive.timestamp(), cut.delete.timestamp());
        if self.book.touches_dirty(&lifecycle) {
            self.commit().await?;
        }
        let run = crate::retention::daily_cleanup(&self.db, r, self.state.month, &cfg, &lifecycle)
            .await?;
        self.book.apply(&lifecycle, clock::day_start(r));
        self.rows.forget_before(cut.detail);
        Ok(run)
    }

    /// Stores the window stats at the processing clock in `time_window_stats`.
    pub async fn snapshot_windows(&mut self) -> Result<()> {
        self.commit().await?;
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
        self.commit().await?;
        self.cleanup(day).await
    }

    /// Rolls `m` over in memory: its row comes from the accumulator, the
    /// clock moves to the next month, and both commit with the group.
    fn rollover(&mut self, m: YearMonth) -> Progress {
        let t = Instant::now();
        let row = self
            .months
            .remove(&m)
            .unwrap_or_default()
            .row(m.to_string());
        self.state = clock::after_rollover(&self.state, m);
        self.group.rollovers.push(row.clone());
        self.group.since.get_or_insert_with(Instant::now);
        Progress::Rolled {
            row,
            millis: t.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// After a commit that closed months: the closed months' ids left
    /// `seen_ids` (reload the small rest, so memory stays bounded by the
    /// open window), their ingest dedup sets go, each is audited, and the
    /// backup is written. A failed backup is reported and logged loudly
    /// but never stops processing; the next rollover's backup contains
    /// every row again.
    /// A rollover's audited duration is that of the commit that made it
    /// durable (`since`: when that commit started).
    async fn after_rollovers(
        &mut self,
        rolled: &[MonthRow],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        self.seen = self.db.load_seen().await?;
        for row in rolled {
            let m: YearMonth = row.year_month.parse().map_err(Error::Namespace)?;
            self.db.audit_rollover(m, since).await?;
            if let Err(e) = self.queue.forget_seen_before(m.end()).await {
                tracing::warn!(error = %e, "could not drop the ingest dedup sets of {m}");
            }
            let Some(dir) = &self.settings.backup_dir else {
                continue;
            };
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
            self.reports.push(Progress::Backup {
                month: m,
                result: result
                    .map(|p| p.display().to_string())
                    .map_err(|e| e.to_string()),
            });
        }
        Ok(())
    }

    /// Whether queue and overflow are both empty (once committed).
    pub async fn drained(&self) -> Result<bool> {
        Ok(self.overflow.is_empty() && self.queue.depth().await? as i64 <= self.group.consumed)
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
