//! The processor: reads the queue, asks the pure clock what to do, folds
//! batches into the pending group in memory, and hands groups to the
//! committer ([`super::commit`]).

use super::commit::{Group, Inflight};
use super::{BatchReport, MAX_BATCH, Progress, Settings};
use crate::activity::RowCache;
use crate::clock::{self, ClockState, Plan, YearMonth, day_of};
use crate::entities::Entities;
use crate::error::{Error, Result};
use crate::keys::FastSet;
use crate::month::MonthAcc;
use crate::queue::{Queue, Refused};
use crate::record::Item;
use crate::store::Db;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A daily cleanup decided but not written yet.
pub(super) struct DueCleanup {
    day: NaiveDate,
    /// The month not rolled up when it was decided.
    open: Option<YearMonth>,
    lifecycle: crate::entities::Lifecycle,
}

/// A read-ahead element of a later day (SPEC §4).
pub(super) struct Parked {
    /// The queue element as it arrived (what the overflow stores).
    pub(super) payload: String,
    pub(super) day: NaiveDate,
    pub(super) item: Item,
}

pub struct Processor {
    pub db: Db,
    pub queue: Queue,
    pub(super) settings: Settings,
    pub(super) state: ClockState,
    /// The open month as committed: retention protects it (and anything
    /// later) even after an in-memory rollover, until that commits.
    pub(super) committed_month: Option<YearMonth>,
    /// The open months' figures (see [`crate::month`]).
    pub(super) months: BTreeMap<YearMonth, MonthAcc>,
    /// Sequence of the last group handed to the committer.
    pub(super) last_seq: i64,
    /// A committed group whose queue trim has not succeeded yet.
    pub(super) unacked: Option<(i64, i64)>,
    /// The group being committed while the next one is processed.
    pub(super) inflight: Option<Inflight>,
    /// The vacuum of the hot tables under way, and commits since the last.
    pub(super) vacuum: Option<tokio::task::JoinHandle<Result<()>>>,
    pub(super) commits_since_vacuum: u32,
    /// A commit failed: the in-memory state is ahead of the tables and is
    /// reloaded from them before anything else.
    pub(super) needs_reload: bool,
    /// Cleanups decided while a commit was under way, oldest first.
    pub(super) cleanups: std::collections::VecDeque<DueCleanup>,
    /// The detail cut-off the last written cleanup used.
    last_detail_cut: Option<NaiveDate>,
    pub(super) overflow: Vec<Parked>,
    /// Ids applied in each open month, pending ones included (duplicates
    /// share their `created_at`, so their month).
    pub(super) seen: BTreeMap<YearMonth, FastSet<u128>>,
    pub(super) book: Entities,
    pub(super) rows: RowCache,
    pub(super) group: Group,
    /// The last peek found the queue shorter than asked: we are live, not
    /// working through a backlog.
    pub(super) caught_up: bool,
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
                    group
                        .rejected
                        .push(Refused::from_owned(why.as_str(), payload));
                    group.overflow_changed = true;
                }
            }
        }
        let mut seen: BTreeMap<YearMonth, FastSet<u128>> = BTreeMap::new();
        for (day, keys) in db.load_seen().await? {
            seen.entry(YearMonth::of(day)).or_default().extend(keys);
        }
        let book = db.load_entities().await?;
        let months = match st.clock.month {
            Some(m) => db.load_open_months(m).await?,
            None => BTreeMap::new(),
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
            inflight: None,
            needs_reload: false,
            vacuum: None,
            commits_since_vacuum: 0,
            cleanups: Default::default(),
            last_detail_cut: None,
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

    /// After a failed commit: everything in memory is rebuilt from the
    /// tables and the queue, which still holds every uncommitted element.
    pub(super) async fn reload_if_needed(&mut self) -> Result<()> {
        if !self.needs_reload {
            return Ok(());
        }
        let fresh =
            Processor::open(self.db.clone(), self.queue.clone(), self.settings.clone()).await?;
        let reports = std::mem::take(&mut self.reports);
        *self = Processor { reports, ..fresh };
        tracing::warn!("reloaded the processor's state after a failed commit");
        Ok(())
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

    /// Picks up a confirmation or cleanup request written by another
    /// process (`dvmtop confirm`, `dvmtop cleanup`).
    pub async fn refresh_requests(&mut self) -> Result<Option<crate::retention::CleanupRun>> {
        let (confirmed, cleanup) = self.db.requests().await?;
        // A confirmation of a month the processor has already closed (in
        // memory, not committed yet) is moot.
        if confirmed.is_none() || confirmed == self.state.month {
            self.state.confirmed = confirmed;
        }
        if !cleanup || self.state.day.is_none() {
            return Ok(None);
        }
        let run = self.cleanup_now().await?;
        self.db.cleanup_done().await?;
        Ok(Some(run))
    }

    /// Where the next read starts: the queue head holds every element of
    /// the groups not acknowledged yet.
    pub(super) fn head_offset(&self) -> i64 {
        self.unacked.map_or(0, |(_, n)| n)
            + self.inflight.as_ref().map_or(0, |f| f.consumed)
            + self.group.consumed
    }

    /// One action: a batch, a rollover, a day advance, or nothing. Batches
    /// aggregate in memory; a commit starts when the [`super::CommitPolicy`]
    /// says so and runs while the next batches are processed.
    pub async fn step(&mut self) -> Result<Progress> {
        self.reload_if_needed().await?;
        if let Some((seq, count)) = self.unacked {
            self.queue.ack(seq, count).await?;
            self.unacked = None;
        }
        if self.inflight.as_ref().is_some_and(Inflight::is_finished) {
            self.join_inflight().await?;
        }
        let started = Instant::now();
        let room = self.settings.batch_size.saturating_sub(self.overflow.len());
        let mut raw = if room == 0 {
            Vec::new()
        } else {
            self.queue.range(self.head_offset(), room).await?
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
                self.committed_month = Some(m);
                return Ok(Progress::Init(m));
            }
            Plan::Rollover(m) => return Ok(self.rollover(m)),
            Plan::AdvanceDay(d) => {
                self.advance_day(d).await?;
                return Ok(Progress::DayAdvanced { day: d });
            }
            Plan::Batch(b) => b,
        };
        if raw.is_empty() && batch.take.is_empty() && batch.ignore.is_empty() {
            // Nothing moved: commit what is pending when live (or waiting).
            let blocked = batch.awaiting.filter(|a| a.blocked);
            if blocked.is_some() || self.group.age() >= self.settings.commit.live_age {
                self.commit().await?;
            } else if self.inflight.is_some() {
                self.join_inflight().await?;
            }
            return Ok(match blocked {
                Some(a) => Progress::Blocked(a),
                None => Progress::Idle,
            });
        }
        self.group.since.get_or_insert_with(Instant::now);
        let rejected = refused.len();
        self.group.rejected.extend(
            refused
                .into_iter()
                .map(|(why, i)| Refused::from_owned(why, std::mem::take(&mut raw[i]))),
        );
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
            let m = YearMonth::of(day);
            self.group.pending.absorb(
                day,
                items,
                self.seen.entry(m).or_default(),
                &mut self.book,
                self.months.entry(m).or_default(),
            )
        });
        if let Some(s) = stats {
            self.state = clock::after_batch(&self.state, s.max_ts);
        }
        // The new overflow: parked elements in pending (FIFO) order.
        let parked_fresh = batch.park.iter().filter(|&&i| i >= n_over).count();
        if parked_fresh > 0 || batch.park.len() != n_over {
            self.group.overflow_changed = true;
            let mut keep = vec![false; n_over + fresh.len()];
            for &i in &batch.park {
                keep[i] = true;
            }
            let mut next: Vec<Parked> = Vec::with_capacity(batch.park.len());
            for (i, p) in std::mem::take(&mut self.overflow).into_iter().enumerate() {
                if keep[i] {
                    next.push(p);
                }
            }
            for (i, (qi, item)) in fresh.into_iter().enumerate() {
                if keep[i + n_over] {
                    next.push(Parked {
                        payload: std::mem::take(&mut raw[qi]),
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
            caught_up: self.caught_up,
        };
        tracing::trace!(
            day = ?report.day,
            consumed = report.consumed,
            processed = report.processed,
            parked = report.parked,
            overflow = report.overflow,
            millis = report.millis,
            "batch"
        );
        if self.commit_due() && (self.inflight.is_none() || self.commit_forced()) {
            self.start_commit().await?;
        }
        Ok(Progress::Batch(report))
    }

    /// The clock moves to a new day: window snapshot and daily cleanup
    /// with reference time = the day's start, before any of the day's
    /// events (SPEC §4). The cleanup is decided now, on the entity book;
    /// it is written once no commit is under way (see [`Self::cleanup`]).
    async fn advance_day(&mut self, d: NaiveDate) -> Result<()> {
        // Window snapshots scan up to 30 days of detail: worth it once a day
        // when live, pointless (and the main cost) while working through a
        // backfill — so only when caught up, and at most once a minute.
        // Status and the TUI compute windows live either way.
        if self.caught_up
            && self
                .last_snapshot
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            let t = Instant::now();
            self.snapshot_windows().await?;
            self.last_snapshot = Some(Instant::now());
            tracing::debug!(day = %d, windows_ms = t.elapsed().as_millis() as u64, "windows");
        }
        self.cleanup(d).await?;
        self.state.day = Some(d);
        Ok(())
    }

    /// The daily cleanup for reference day `r`, decided now: the entity
    /// book names who is deactivated and deleted (and mirrors it at once),
    /// the open month bounds the detail rows that may go. It is written —
    /// in its own bounded transactions, with the new current day — right
    /// away when no commit is under way, else as soon as that commit is
    /// done and before the next one starts: cleanups and commits never
    /// write at the same time, and always in the order they were decided.
    /// A crash before it is written repeats it (it is idempotent).
    async fn cleanup(&mut self, r: NaiveDate) -> Result<()> {
        let due = self.decide_cleanup(r).await?;
        self.cleanups.push_back(due);
        if self.inflight.is_none() {
            self.run_cleanups().await?;
        }
        Ok(())
    }

    /// Decides the cleanup for `r` and mirrors it in the book.
    ///
    /// Detail rows are kept from the month not rolled up *as committed*
    /// (or as being committed: the cleanup is written after that commit)
    /// — a rollover still pending in memory could be replayed from them.
    /// So right after a rollover the cut-off may lag for a day or two;
    /// [`Self::catch_up`] makes the end state the same whatever the
    /// commit timing.
    async fn decide_cleanup(&mut self, r: NaiveDate) -> Result<DueCleanup> {
        let cfg = self.settings.retention;
        let open = self
            .inflight
            .as_ref()
            .map_or(self.committed_month, |f| f.month);
        let cut = crate::retention::cutoffs(r, open, &cfg);
        let lifecycle = self
            .book
            .lifecycle(cut.inactive.timestamp(), cut.delete.timestamp());
        // An entity is deleted only once the group that changed it is
        // committed (starting that commit is enough: the cleanup is
        // written after it).
        if self.book.deletes_dirty(&lifecycle) {
            tracing::debug!(day = %r, "cleanup waits for the pending group's commit");
            self.start_commit().await?;
        }
        self.book.apply(&lifecycle, clock::day_start(r));
        self.rows.forget_before(cut.detail);
        Ok(DueCleanup {
            day: r,
            open,
            lifecycle,
        })
    }

    /// When everything is processed and committed: if the last cleanup had
    /// to keep detail of a month whose rollover was not committed yet, it
    /// runs again now, so the tables end the same whatever the commit
    /// timing (it is idempotent; nothing else changes).
    pub async fn catch_up(&mut self) -> Result<()> {
        self.commit().await?;
        let (Some(r), Some(used)) = (self.state.day, self.last_detail_cut) else {
            return Ok(());
        };
        let now = crate::retention::cutoffs(r, self.committed_month, &self.settings.retention);
        if now.detail > used {
            let due = self.decide_cleanup(r).await?;
            let run = self.write_cleanup(&due).await?;
            self.reports.push(Progress::DailyCleanup(run));
        }
        Ok(())
    }

    /// Writes one decided cleanup, and makes its day the current one. A
    /// failure leaves the book ahead of the tables: the processor reloads
    /// before going on.
    async fn write_cleanup(&mut self, c: &DueCleanup) -> Result<crate::retention::CleanupRun> {
        let t = Instant::now();
        let written = async {
            let run = crate::retention::daily_cleanup(
                &self.db,
                c.day,
                c.open,
                &self.settings.retention,
                &c.lifecycle,
            )
            .await?;
            self.db.set_day(c.day).await?;
            Ok::<_, Error>(run)
        }
        .await;
        match &written {
            Ok(_) => {
                self.last_detail_cut =
                    Some(crate::retention::cutoffs(c.day, c.open, &self.settings.retention).detail);
            }
            Err(_) => self.needs_reload = true,
        }
        tracing::debug!(day = %c.day, cleanup_ms = t.elapsed().as_millis() as u64, "day advanced");
        written
    }

    /// Writes the decided cleanups, oldest first (nothing is being
    /// committed), and reports them.
    pub(super) async fn run_cleanups(&mut self) -> Result<()> {
        while let Some(c) = self.cleanups.pop_front() {
            let run = self.write_cleanup(&c).await?;
            self.reports.push(Progress::DailyCleanup(run));
        }
        Ok(())
    }

    /// Stores the window stats at the processing clock in `time_window_stats`.
    pub async fn snapshot_windows(&mut self) -> Result<()> {
        self.commit().await?;
        match self.state.clock {
            Some(t) => self.db.snapshot_windows(t).await,
            None => Ok(()),
        }
    }

    /// The operator's "cleanup now": the daily cleanup for the current day,
    /// run at once (everything pending is committed first).
    pub async fn cleanup_now(&mut self) -> Result<crate::retention::CleanupRun> {
        let day = self.state.day.ok_or_else(|| {
            Error::Namespace(
                "nothing has been processed yet: there is no current day to clean up for".into(),
            )
        })?;
        self.commit().await?;
        let due = self.decide_cleanup(day).await?;
        self.write_cleanup(&due).await
    }

    /// Rolls `m` over in memory: its row comes from the accumulator, the
    /// clock moves to the next month, its ids need no deduplication any
    /// more (its events are ignored from now on), and the row and the new
    /// month commit with the group.
    fn rollover(&mut self, m: YearMonth) -> Progress {
        let t = Instant::now();
        let row = self
            .months
            .remove(&m)
            .unwrap_or_default()
            .row(m.to_string());
        self.seen.remove(&m);
        self.state = clock::after_rollover(&self.state, m);
        self.group.rollovers.push(row.clone());
        self.group.since.get_or_insert_with(Instant::now);
        Progress::Rolled {
            row,
            millis: t.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// Whether queue and overflow are both empty (once committed).
    pub async fn drained(&self) -> Result<bool> {
        Ok(self.overflow.is_empty() && self.queue.depth().await? as i64 <= self.head_offset())
    }
}
