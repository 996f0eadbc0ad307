//! The processor: reads the queue, asks the pure clock what to do, folds
//! batches into the pending group in memory (the core's analysis), and
//! hands groups to the [`Committer`]. It owns the clock state and the
//! book; everything that writes goes through the committer.

use super::committer::Committer;
use super::group::{Group, Parked};
use super::ports::{DueCleanup, QueueOps, Store};
use super::{BatchReport, MAX_BATCH, Progress, Settings};
use crate::error::{Error, Result};
use crate::queue::{Queue, Refused};
use crate::store::jobs::HistRow;
use crate::store::{Commit, Db, JobRun};
use chrono::NaiveDate;
use dvmtop_core::activity::RowCache;
use dvmtop_core::clock::{self, Awaiting, ClockState, Plan};
use dvmtop_core::entities::Entities;
use dvmtop_core::jobs::{HistCells, Jobs, Scope, encode_cells};
use dvmtop_core::keys::FastSet;
use dvmtop_core::month::MonthAcc;
use dvmtop_core::{EntityRole, Item, MonthRow, YearMonth, day_of};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts of the entity book, by role and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntityCounts {
    pub(crate) dvms_active: u64,
    pub(crate) dvms_inactive: u64,
    pub(crate) users_active: u64,
    pub(crate) users_inactive: u64,
}

pub struct Processor<S = Db, Q = Queue> {
    c: Committer<S, Q>,
    settings: Settings,
    state: ClockState,
    /// The open months' figures (see [`dvmtop_core::month`]).
    months: BTreeMap<YearMonth, MonthAcc>,
    /// Request → result matching and the open months' exact job figures
    /// (see [`dvmtop_core::jobs`]).
    jobs: Jobs,
    /// Histogram rows before this day are deleted by retention: dropped
    /// from [`Jobs::hist`] at the next commit.
    hist_cut: Option<NaiveDate>,
    overflow: Vec<Parked>,
    /// Ids applied in each open month, pending ones included (duplicates
    /// share their `created_at`, so their month).
    seen: BTreeMap<YearMonth, FastSet<u128>>,
    book: Entities,
    rows: RowCache,
    group: Group,
    /// The last read found the queue shorter than asked: we are live, not
    /// working through a backlog.
    caught_up: bool,
    /// When windows were last snapshotted (wall clock; rate limit).
    last_snapshot: Option<Instant>,
    /// The rollover waiting for confirmation, as the last plan said.
    awaiting: Option<Awaiting>,
    /// What [`Store::set_awaiting`] last recorded.
    awaiting_stored: Option<Option<Awaiting>>,
    /// The queue's length at the last read (of the current generation),
    /// and the committer's trim count then.
    last_len: Option<(u64, u64)>,
    /// The current alerts (loaded, and raised by this processor).
    alerts: Vec<dvmtop_core::Alert>,
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl<S: Store, Q: QueueOps> Processor<S, Q> {
    /// Loads the committed state and finishes an interrupted acknowledge.
    pub async fn open(store: S, queue: Q, settings: Settings) -> Result<Self> {
        if settings.batch_size == 0 || settings.batch_size > MAX_BATCH {
            return Err(Error::Config(format!(
                "--batch-size must be between 1 and {MAX_BATCH}"
            )));
        }
        let loaded = store.load().await?;
        let st = loaded.state;
        if loaded.interrupted_jobs > 0 {
            tracing::warn!(
                interrupted = loaded.interrupted_jobs,
                "job runs interrupted by an earlier stop are marked so"
            );
        }
        let mut alerts = loaded.alerts;
        let epoch = match open_queue(&store, &queue, &st, loaded.epoch).await? {
            (epoch, None) => epoch,
            (epoch, Some(lost)) => {
                tracing::error!(alert = %lost.message, "queue lost");
                store.raise_alert(&lost).await?;
                dvmtop_core::alert::upsert(&mut alerts, lost);
                epoch
            }
        };
        let v = &settings.validation;
        let mut group = Group::default();
        let mut overflow = Vec::new();
        for payload in loaded.overflow {
            // Parked payloads were valid when parked (no future check: the
            // wall clock has only moved on since). One that no longer
            // decodes (e.g. a newly excluded kind) is refused, counted and
            // dead-lettered by the next commit, never dropped silently.
            match crate::record::decode(&payload, v, i64::MAX / 2) {
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
        for (day, keys) in loaded.seen {
            seen.entry(YearMonth::of(day)).or_default().extend(keys);
        }
        let jobs = rebuild_jobs(
            settings.job_horizon,
            st.clock.month,
            &loaded.job_facts,
            loaded.job_hist,
        )?;
        let c = Committer::new(
            store,
            queue,
            epoch,
            settings.retention,
            settings.backup_dir.clone(),
            st.last_seq,
            st.clock.month,
        );
        Ok(Processor {
            c,
            settings,
            months: loaded.months,
            jobs,
            hist_cut: None,
            state: st.clock,
            overflow,
            seen,
            book: loaded.book,
            rows: RowCache::default(),
            group,
            caught_up: false,
            last_snapshot: None,
            awaiting: None,
            awaiting_stored: None,
            last_len: None,
            alerts,
        })
    }

    /// After a failed write: everything in memory is rebuilt from the
    /// tables and the queue, which still holds every uncommitted element.
    async fn reload_if_needed(&mut self) -> Result<()> {
        if !self.c.failed {
            return Ok(());
        }
        let reports = std::mem::take(&mut self.c.reports);
        let fresh = Processor::open(
            self.c.store.clone(),
            self.c.queue.clone(),
            self.settings.clone(),
        )
        .await?;
        *self = fresh;
        self.c.reports = reports;
        tracing::warn!("reloaded the processor's state after a failed write");
        Ok(())
    }

    pub fn clock_state(&self) -> &ClockState {
        &self.state
    }

    pub fn overflow_len(&self) -> usize {
        self.overflow.len()
    }

    /// The overflow by UTC day.
    pub(crate) fn overflow_days(&self) -> Vec<(NaiveDate, usize)> {
        let mut days: BTreeMap<NaiveDate, usize> = BTreeMap::new();
        for p in &self.overflow {
            *days.entry(p.day).or_default() += 1;
        }
        days.into_iter().collect()
    }

    /// The rollover waiting for the operator's confirmation, if any.
    pub(crate) fn awaiting(&self) -> Option<Awaiting> {
        self.awaiting
    }

    /// Whether the last read found nothing waiting behind it.
    pub(crate) fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// The sequence of the last group known committed.
    pub(crate) fn committed_seq(&self) -> i64 {
        self.c.committed_seq()
    }

    /// The entity book's counts (a pass over the book: call it sparingly).
    pub(crate) fn entity_counts(&self) -> EntityCounts {
        let (da, di) = self.book.activity(EntityRole::Dvm);
        let (ua, ui) = self.book.activity(EntityRole::User);
        EntityCounts {
            dvms_active: da as u64,
            dvms_inactive: di as u64,
            users_active: ua as u64,
            users_inactive: ui as u64,
        }
    }

    /// The row `m`'s rollover would write now: the very computation the
    /// rollover makes (the rollover dialog shows exactly this).
    pub(crate) fn preview(&self, m: YearMonth) -> MonthRow {
        self.months
            .get(&m)
            .cloned()
            .unwrap_or_default()
            .row(m, self.jobs.month(m))
    }

    /// (requests held for matching, requests waited for by early results).
    pub(crate) fn jobs_held(&self) -> (usize, usize) {
        self.jobs.matcher.held()
    }

    /// Events applied to month `m` so far (a change marker for previews).
    pub(crate) fn month_events(&self, m: YearMonth) -> u64 {
        self.months.get(&m).map_or(0, MonthAcc::events)
    }

    /// How long until the pending group is old enough to commit while
    /// live (`None`: nothing pending). An idle loop waits no longer.
    pub(crate) fn commit_due_in(&self) -> Option<Duration> {
        self.group
            .since
            .map(|t| self.settings.commit.live_age.saturating_sub(t.elapsed()))
    }

    /// What commits and cleanups did since the last call.
    pub fn take_reports(&mut self) -> Vec<Progress> {
        std::mem::take(&mut self.c.reports)
    }

    /// Records a confirmation of the open month — the processor's, which
    /// runs ahead of the committed one while the previous rollover's
    /// commit is under way — in memory and durably (so an external
    /// `dvmtop confirm` and the TUI's dialog do the same thing). Any other
    /// month is refused.
    pub async fn confirm(&mut self, m: YearMonth) -> Result<bool> {
        if self.state.month != Some(m) {
            return Ok(false);
        }
        self.c.store.confirm(m).await?;
        self.state.confirmed = Some(m);
        Ok(true)
    }

    /// Picks up a confirmation or cleanup request written by another
    /// process (`dvmtop confirm`, `dvmtop cleanup`).
    pub async fn refresh_requests(&mut self) -> Result<Option<JobRun>> {
        let r = self.c.store.requests().await?;
        // Only a confirmation of the open month counts: one of a month the
        // processor has already closed (in memory, not committed yet) is
        // moot. Nothing read here withdraws a confirmation already taken —
        // the stored one may not show it yet, or no longer (a rollover's
        // commit spends the months it closes); a rollover spends it in
        // memory.
        if let Some(m) = r.confirmed
            && self.state.month == Some(m)
        {
            self.state.confirmed = Some(m);
        }
        if !r.cleanup || self.state.day.is_none() {
            return Ok(None);
        }
        let run = self.cleanup_now().await?;
        self.c.store.cleanup_done().await?;
        Ok(Some(run))
    }

    /// Where the next read starts: the queue head holds every element of
    /// the groups not acknowledged yet.
    fn head_offset(&self) -> i64 {
        self.c.uncommitted_head() + self.group.consumed
    }

    /// Records the awaited rollover for other processes when it changes.
    async fn note_awaiting(&mut self, a: Option<Awaiting>) -> Result<()> {
        self.awaiting = a;
        if self.awaiting_stored != Some(a) {
            self.c
                .store
                .set_awaiting(a.map(|a| (a.month, a.blocked)))
                .await?;
            self.awaiting_stored = Some(a);
        }
        Ok(())
    }

    /// One action: a batch, a rollover, a day advance, or nothing. Batches
    /// aggregate in memory; a commit starts when the [`super::CommitPolicy`]
    /// says so and runs while the next batches are processed.
    pub async fn step(&mut self) -> Result<Progress> {
        self.c.store.may_write()?;
        self.reload_if_needed().await?;
        self.c.retry_ack().await?;
        if self.c.inflight_finished() {
            self.c.join().await?;
        }
        let started = Instant::now();
        let room = self.settings.batch_size.saturating_sub(self.overflow.len());
        let read = self.c.queue.read(self.head_offset(), room).await?;
        if read.epoch.as_deref() != Some(self.c.epoch.as_str())
            || (read.len as i64) < self.head_offset()
        {
            return self.queue_lost(read).await;
        }
        self.last_len = Some((read.len, self.c.trimmed));
        let mut raw = read.items;
        self.caught_up = raw.len() < room;
        // Where each input source stands once this batch is consumed; the
        // tags go (a parked element or a dead letter is stored without).
        let mut positions = dvmtop_core::source::Positions::default();
        for payload in &mut raw {
            positions.take(payload);
        }
        let now = now_unix();
        let mut fresh: Vec<(usize, Item)> = Vec::with_capacity(raw.len());
        // Refused elements are recorded once the batch consumes them (a
        // plan that is not a batch leaves the elements in the queue).
        let mut refused: Vec<(&'static str, usize)> = Vec::new();
        for (i, payload) in raw.iter().enumerate() {
            match crate::record::decode(payload, &self.settings.validation, now) {
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
                self.c.store.open_month(m).await?;
                self.state.month = Some(m);
                self.c.set_committed_month(Some(m));
                return Ok(Progress::Init(m));
            }
            Plan::Rollover(m) => {
                self.note_awaiting(None).await?;
                return Ok(self.rollover(m));
            }
            Plan::AdvanceDay(d) => {
                self.advance_day(d).await?;
                return Ok(Progress::DayAdvanced { day: d });
            }
            Plan::Batch(b) => b,
        };
        self.note_awaiting(batch.awaiting).await?;
        if raw.is_empty() && batch.take.is_empty() && batch.ignore.is_empty() {
            // Nothing moved: commit what is pending when live (or waiting).
            let blocked = batch.awaiting.filter(|a| a.blocked);
            if blocked.is_some() || self.group.age() >= self.settings.commit.live_age {
                self.commit().await?;
            } else if self.c.busy() {
                self.c.join().await?;
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
                &mut self.jobs,
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
        self.group.positions.merge(positions);
        self.group.ignored += batch.ignore.len() as i64;
        let report = BatchReport {
            seq: self.c.next_seq(),
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
        if self.commit_due() && (!self.c.busy() || self.commit_forced()) {
            self.start_commit().await?;
        }
        Ok(Progress::Batch(report))
    }

    /// Whether the [`super::CommitPolicy`] wants the pending group
    /// committed now.
    fn commit_due(&self) -> bool {
        let (policy, g) = (self.settings.commit, &self.group);
        g.events() >= policy.target_events
            || g.age() >= policy.max_age
            || !g.rollovers.is_empty()
            || (self.caught_up && g.age() >= policy.live_age)
    }

    /// Past the memory bound, a commit starts even if it has to wait for
    /// the one under way; otherwise a due commit starts once that one is
    /// done, so processing never waits for PostgreSQL.
    fn commit_forced(&self) -> bool {
        self.group.events() >= self.settings.commit.max_events
    }

    /// Commits the pending group and waits for it (and for any commit
    /// under way): afterwards the tables hold everything processed.
    pub(crate) async fn commit(&mut self) -> Result<()> {
        self.start_commit().await?;
        self.c.join().await
    }

    /// Hands the pending group to the committer (after the commit under
    /// way has finished) and starts a new group.
    async fn start_commit(&mut self) -> Result<()> {
        self.reload_if_needed().await?;
        if self.group.is_empty() && !self.book.is_dirty() {
            return Ok(());
        }
        // The rows below are merged with what is stored, which no commit
        // may be writing meanwhile.
        self.c.join().await?;
        // Whole activity rows: what is stored merged with the pending cells
        // (stored: the copy kept from the last write, else the table's).
        let mut rows = Vec::new();
        for (&day, act) in &self.group.pending.activity {
            for role in EntityRole::BOTH {
                let cells = &act.cells[role as usize];
                if cells.is_empty() {
                    continue;
                }
                let merged = match self.rows.get(day, role) {
                    Some(base) => dvmtop_core::activity::merge(base, cells),
                    None => dvmtop_core::activity::merge(
                        &self.c.store.load_day_row(day, role).await?,
                        cells,
                    ),
                };
                rows.push((day, role, Arc::new(merged)));
            }
        }
        for (day, role, entries) in &rows {
            self.rows.put(*day, *role, entries.clone());
        }
        // Whole window-histogram rows (the processor holds every row a
        // result can still land on), then the rows no result can change
        // any more are dropped.
        let hist_rows: Vec<HistRow> = self
            .jobs
            .hist
            .take_dirty()
            .into_iter()
            .map(|(day, scope, cells)| (day, scope, encode_cells(&cells)))
            .collect();
        let keep = self
            .jobs
            .open_start()
            .into_iter()
            .chain(self.hist_cut)
            .max();
        if let Some(keep) = keep {
            self.jobs.hist.forget_before(keep);
        }
        let g = std::mem::take(&mut self.group);
        // A rollover forgets the job facts nothing can match any more.
        let jobs_cut = match (g.rollovers.is_empty(), self.state.month) {
            (false, Some(open)) => Some(day_of(dvmtop_core::jobs::prune_cut(
                open,
                self.settings.job_horizon,
            ))),
            _ => None,
        };
        let commit = Commit {
            jobs_cut,
            hist_rows,
            seq: self.c.next_seq(),
            consumed: g.consumed,
            pending: g.pending,
            rows,
            entities: self.book.changes(),
            overflow: g.overflow_changed.then(|| {
                self.overflow
                    .iter()
                    .map(|p| (p.payload.clone(), p.day))
                    .unzip()
            }),
            ignored_prior_month: g.ignored,
            rejected: g.rejected,
            rollovers: g.rollovers,
            month: self.state.month,
            positions: g.positions,
        };
        self.book.committed();
        self.c.submit(commit).await
    }

    /// The clock moves to a new day: window snapshot and daily cleanup
    /// with reference time = the day's start, before any of the day's
    /// events (SPEC §4). The cleanup is decided now, on the entity book;
    /// the committer writes it once no commit is under way.
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
        let due = self.decide_cleanup(d).await?;
        self.c.cleanup(due).await?;
        self.state.day = Some(d);
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
        let open = self.c.protected_month();
        let cut = dvmtop_core::retention::cutoffs(r, open, &cfg);
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
        self.book.apply(&lifecycle, dvmtop_core::day_start(r));
        self.rows.forget_before(cut.detail);
        // The cleanup deletes these days' histogram rows (after the group's
        // commit, which still writes any of them it changed).
        self.hist_cut = self.hist_cut.max(Some(cut.detail));
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
        let (Some(r), Some(used)) = (self.state.day, self.c.last_detail_cut()) else {
            return Ok(());
        };
        let now =
            dvmtop_core::retention::cutoffs(r, self.c.committed_month(), &self.settings.retention);
        if now.detail > used {
            let due = self.decide_cleanup(r).await?;
            let run = self.c.write_cleanup(&due).await?;
            self.c.reports.push(Progress::DailyCleanup(run));
        }
        Ok(())
    }

    /// Stores the window stats at the processing clock in `time_window_stats`.
    pub(crate) async fn snapshot_windows(&mut self) -> Result<()> {
        self.commit().await?;
        match self.state.clock {
            Some(t) => self.c.store.snapshot_windows(t).await,
            None => Ok(()),
        }
    }

    /// The operator's "cleanup now": the daily cleanup for the current day,
    /// run at once (everything pending is committed first).
    pub async fn cleanup_now(&mut self) -> Result<JobRun> {
        let day = self.state.day.ok_or_else(|| {
            Error::Namespace(
                "nothing has been processed yet: there is no current day to clean up for".into(),
            )
        })?;
        self.commit().await?;
        let due = self.decide_cleanup(day).await?;
        self.c.write_cleanup(&due).await
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
            .row(m, self.jobs.month(m));
        self.jobs.close(m);
        self.seen.remove(&m);
        self.state = clock::after_rollover(&self.state, m);
        self.group.rollovers.push(row.clone());
        self.group.since.get_or_insert_with(Instant::now);
        Progress::Rolled {
            row,
            millis: t.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// The current alerts (loaded at start, and raised since).
    pub(crate) fn alerts(&self) -> &[dvmtop_core::Alert] {
        &self.alerts
    }

    /// Since when Redis has not answered, if it does not.
    pub(crate) fn redis_outage(&self) -> Option<crate::queue::Outage> {
        self.c.queue.outage()
    }

    /// The queue was lost under a running pipeline: Redis came back
    /// without its data (or was flushed), or the list is shorter than what
    /// was read from it. What was read is in memory and is committed; what
    /// was queued behind it is gone, and said so. The new generation
    /// starts before that commit, so the commit's acknowledge cannot trim
    /// anything of the new list; reading goes on from its head.
    async fn queue_lost(&mut self, read: crate::queue::Read) -> Result<Progress> {
        let head = self.head_offset() as u64;
        // Elements behind the read position at the last read; trims since
        // (and acknowledges refused because the queue was gone) moved the
        // position and, for trims, shortened the list alike.
        let unread = self.last_len.take().map(|(len, trimmed)| {
            len.saturating_sub(self.c.trimmed - trimmed)
                .saturating_sub(head)
        });
        let old_epoch = self.c.epoch.clone();
        let new = self.c.queue.new_epoch(self.c.next_seq() - 1).await?;
        self.commit().await?;
        self.c.queue.set_acked(self.c.committed_seq()).await?;
        self.c.epoch = new.clone();
        self.c.store.set_epoch(&new).await?;
        let why = if read.epoch.as_deref() == Some(old_epoch.as_str()) {
            format!(
                "the queue list is shorter ({}) than the {head} elements already read from it (something else trimmed or popped it)",
                read.len
            )
        } else {
            "Redis restarted without its data (or was flushed)".to_owned()
        };
        let what = match unread {
            Some(n) => format!("at least {n} queued events not yet processed are gone"),
            None => "queued events not yet processed are gone".to_owned(),
        };
        let alert = lost_alert(self.c.store.namespace(), &why, &what);
        tracing::error!(alert = %alert.message, "queue lost");
        self.c.store.raise_alert(&alert).await?;
        dvmtop_core::alert::upsert(&mut self.alerts, alert.clone());
        Ok(Progress::Alert(alert))
    }

    /// Whether queue and overflow are both empty (once committed).
    pub(crate) async fn drained(&self) -> Result<bool> {
        Ok(self.overflow.is_empty() && self.c.queue.depth().await? as i64 <= self.head_offset())
    }
}

/// Checks the queue against the committed position at start-up and
/// finishes an interrupted acknowledge. Returns the generation to read,
/// and an alert when the queue was lost (a new generation then starts at
/// the committed position; nothing is trimmed).
async fn open_queue<S: Store, Q: QueueOps>(
    store: &S,
    queue: &Q,
    st: &crate::store::PersistedState,
    stored: Option<String>,
) -> Result<(String, Option<dvmtop_core::Alert>)> {
    let ns = store.namespace();
    let redis = queue.epoch().await?;
    let acked = queue.acked().await?;
    let lost = |why: &str| {
        lost_alert(
            ns,
            why,
            "queued events that were not processed are gone (how many is not known)",
        )
    };
    let why = match (&stored, &redis) {
        (Some(p), Some(r)) if p == r => None,
        (Some(_), _) => Some("Redis restarted without its data (or was flushed)"),
        // Before the generation existed (or a new namespace): a committed
        // position without Redis's is a loss too.
        (None, _) if acked.is_none() && st.last_seq > 0 => Some(
            "Redis has no queue position for this namespace (it restarted without its data, or was flushed)",
        ),
        (None, Some(r)) => {
            store.set_epoch(r).await?;
            None
        }
        (None, None) => {
            let e = queue.new_epoch(st.last_seq).await?;
            store.set_epoch(&e).await?;
            return Ok((e, None));
        }
    };
    if let Some(why) = why {
        let e = queue.new_epoch(st.last_seq).await?;
        store.set_epoch(&e).await?;
        return Ok((e, Some(lost(why))));
    }
    let epoch = redis.unwrap_or_default();
    match acked {
        None => queue.set_acked(st.last_seq).await?,
        Some(a) if a < st.last_seq => {
            let len = queue.read(0, 0).await?.len;
            if a < st.last_seq - 1 || (len as i64) < st.last_count {
                // Redis went back to an older snapshot (RDB): its list and
                // position are from before groups that are committed.
                let e = queue.new_epoch(st.last_seq).await?;
                store.set_epoch(&e).await?;
                return Ok((
                    e,
                    Some(lost_alert(
                        ns,
                        &format!(
                            "Redis went back to an older state (its queue position is group {a}, PostgreSQL committed group {}; {len} elements queued)",
                            st.last_seq
                        ),
                        "events queued after that state are gone, and elements already processed may be read again (counted as duplicates)",
                    )),
                ));
            }
            tracing::info!(
                seq = st.last_seq,
                count = st.last_count,
                "completing the acknowledge of the last committed group"
            );
            queue.ack(st.last_seq, st.last_count, &epoch).await?;
        }
        Some(a) if a > st.last_seq => {
            return Err(Error::Namespace(format!(
                "namespace {ns}: Redis has acknowledged group {a} but PostgreSQL only holds {}; the two were reset separately: start over with --fresh",
                st.last_seq
            )));
        }
        Some(_) => {}
    }
    Ok((epoch, None))
}

/// The `queue_lost` alert: why, and what it cost.
fn lost_alert(ns: &str, why: &str, what: &str) -> dvmtop_core::Alert {
    dvmtop_core::Alert::new(
        dvmtop_core::alert::QUEUE_LOST,
        dvmtop_core::Severity::Critical,
        format!(
            "queue of namespace {ns} lost: {why}; {what}. Processing goes on with what Redis holds now; ingest the same files again with --resume to recover (they are queued again from the last element PostgreSQL committed, nothing twice; events from relays or stdin cannot be) and turn on Redis persistence (appendonly yes)"
        ),
        chrono::Utc::now(),
    )
}

/// The matcher and the open months' job figures, rebuilt by replaying the
/// committed job facts (requests first, then results; the result does
/// not depend on the order, so this is the state the live run had).
fn rebuild_jobs(
    horizon: i64,
    open: Option<YearMonth>,
    facts: &[(NaiveDate, Vec<u8>, Vec<u8>)],
    hist: Vec<(NaiveDate, Scope, HistCells)>,
) -> Result<Jobs> {
    let corrupt = |day: &NaiveDate| Error::Namespace(format!("job_facts of {day} are corrupt"));
    let mut jobs = Jobs::new(horizon, open);
    for (day, requests, _) in facts {
        for (key, t, kind) in
            dvmtop_core::jobs::decode_requests(requests).ok_or_else(|| corrupt(day))?
        {
            jobs.request(key, t, kind);
        }
    }
    for (day, _, results) in facts {
        for (of, dvm, t) in
            dvmtop_core::jobs::decode_results(results).ok_or_else(|| corrupt(day))?
        {
            jobs.result(of, &dvm, t);
        }
    }
    if let Some(o) = open {
        jobs.matcher.prune(dvmtop_core::jobs::prune_cut(o, horizon));
    }
    // The replay above rebuilt the matcher; the histogram rows are the
    // committed ones (replaying would count the samples twice).
    jobs.hist = Default::default();
    for (day, scope, cells) in hist {
        jobs.hist.insert(day, scope, cells);
    }
    Ok(jobs)
}
