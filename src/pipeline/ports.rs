//! The two seams of the processing shell: what the processor needs of
//! PostgreSQL ([`Store`]) and of Redis ([`QueueOps`]), each a handful of
//! processor-level operations. The real clients ([`Db`], [`Queue`])
//! implement them here; `pipeline::fake` has in-memory versions that fail
//! on demand, so every failure branch of the shell runs in a unit test.

use crate::error::Result;
use crate::queue::{Acked, Queue, Read};
use crate::store::{Commit, Db, JobRun, PersistedState};
use chrono::{DateTime, NaiveDate, Utc};
use dvmtop_core::activity::Entry;
use dvmtop_core::entities::{Entities, Lifecycle};
use dvmtop_core::month::MonthAcc;
use dvmtop_core::retention::RetentionConfig;
use dvmtop_core::{EntityRole, YearMonth};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

/// Everything the processor rebuilds its memory from at start-up (and
/// after a failed write).
#[derive(Debug, Default)]
pub struct Loaded {
    pub(crate) state: PersistedState,
    /// Parked payloads in FIFO order.
    pub(crate) overflow: Vec<String>,
    /// Id keys applied in the open months, by day.
    pub(crate) seen: Vec<(NaiveDate, Vec<u128>)>,
    pub(crate) book: Entities,
    /// The running figures of the months not rolled up yet.
    pub(crate) months: BTreeMap<YearMonth, MonthAcc>,
    /// Job facts (requests, results; [`dvmtop_core::jobs`] encoding) of
    /// the days still matched, by day: the matcher is rebuilt from them.
    pub(crate) job_facts: Vec<(NaiveDate, Vec<u8>, Vec<u8>)>,
    /// The window-histogram rows from the open month's start on.
    pub(crate) job_hist: Vec<(
        NaiveDate,
        dvmtop_core::jobs::Scope,
        dvmtop_core::jobs::HistCells,
    )>,
    /// Job runs a crash left "running", now marked interrupted.
    pub(crate) interrupted_jobs: u64,
    /// The Redis queue generation the committed position refers to.
    pub(crate) epoch: Option<String>,
    /// The current alerts.
    pub(crate) alerts: Vec<dvmtop_core::Alert>,
}

/// A daily cleanup decided on the entity book but not written yet.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCleanup {
    /// Its reference day (R = the day's start).
    pub(crate) day: NaiveDate,
    /// The month not rolled up (as committed) when it was decided: its
    /// detail rows are kept.
    pub(crate) open: Option<YearMonth>,
    pub(crate) lifecycle: Lifecycle,
}

/// What other processes asked of the pipeline holding the namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// `dvmtop confirm`: the month whose rollover was confirmed.
    pub(crate) confirmed: Option<YearMonth>,
    /// `dvmtop cleanup`.
    pub(crate) cleanup: bool,
}

/// PostgreSQL as the processor uses it.
pub trait Store: Clone + Send + Sync + 'static {
    fn namespace(&self) -> &str;
    /// Whether this process may write the namespace now: a transient
    /// error while its lock is being taken again after a lost session, a
    /// fatal one once another process took it (see `store::lock`).
    fn may_write(&self) -> Result<()> {
        Ok(())
    }
    /// The committed state; marks runs a crash interrupted.
    fn load(&self) -> impl Future<Output = Result<Loaded>> + Send;
    /// One `entity_activity` row's cells (empty when there is none).
    fn load_day_row(
        &self,
        day: NaiveDate,
        role: EntityRole,
    ) -> impl Future<Output = Result<Vec<Entry>>> + Send;
    /// Opens the first month.
    fn open_month(&self, m: YearMonth) -> impl Future<Output = Result<()>> + Send;
    /// One group, atomically; false (nothing changed) when its sequence
    /// was already applied.
    fn commit(&self, c: Commit) -> impl Future<Output = Result<bool>> + Send;
    /// Writes a decided cleanup (audited) and makes its day the current one.
    fn cleanup(
        &self,
        c: &DueCleanup,
        cfg: &RetentionConfig,
    ) -> impl Future<Output = Result<JobRun>> + Send;
    /// Audits a committed rollover of `m` (made durable by the commit that
    /// started at `since`).
    fn audit_rollover(
        &self,
        m: YearMonth,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Writes the backup after the rollover of `m` into `dir` and audits it.
    /// The outer error is the audit's; the inner one the backup's (which
    /// never stops processing).
    fn backup(
        &self,
        m: YearMonth,
        dir: &Path,
    ) -> impl Future<Output = Result<std::result::Result<PathBuf, String>>> + Send;
    /// Reclaims the dead rows the commits leave behind.
    fn vacuum(&self) -> impl Future<Output = Result<()>> + Send;
    /// Stores the window stats at processing clock `t`.
    fn snapshot_windows(&self, t: i64) -> impl Future<Output = Result<()>> + Send;
    /// Records the confirmation of `m`'s rollover: the processor's open
    /// month, which may be ahead of the committed one (the commit that
    /// rolls the previous month over keeps it).
    fn confirm(&self, m: YearMonth) -> impl Future<Output = Result<()>> + Send;
    fn requests(&self) -> impl Future<Output = Result<Requests>> + Send;
    fn cleanup_done(&self) -> impl Future<Output = Result<()>> + Send;
    /// Publishes the rollover waiting for confirmation (or none), for
    /// other processes.
    fn set_awaiting(&self, a: Option<(YearMonth, bool)>)
    -> impl Future<Output = Result<()>> + Send;
    /// Records the Redis queue generation the committed position refers to.
    fn set_epoch(&self, epoch: &str) -> impl Future<Output = Result<()>> + Send;
    /// Records an alert for every view (and later `status` runs).
    fn raise_alert(&self, a: &dvmtop_core::Alert) -> impl Future<Output = Result<()>> + Send;
}

/// Redis as the processor uses it.
pub trait QueueOps: Clone + Send + Sync + 'static {
    /// The last acknowledged group sequence.
    fn acked(&self) -> impl Future<Output = Result<Option<i64>>> + Send;
    fn set_acked(&self, seq: i64) -> impl Future<Output = Result<()>> + Send;
    /// Trims the `count` head elements of group `seq` (once per sequence),
    /// only while the queue is of generation `epoch`.
    fn ack(&self, seq: i64, count: i64, epoch: &str) -> impl Future<Output = Result<Acked>> + Send;
    /// `n` elements from `start`, without removing them, with the
    /// generation's token and the list's length (one transaction).
    fn read(&self, start: i64, n: usize) -> impl Future<Output = Result<Read>> + Send;
    /// The generation's token, if any.
    fn epoch(&self) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Starts a new generation positioned at group `acked`; its token.
    fn new_epoch(&self, acked: i64) -> impl Future<Output = Result<String>> + Send;
    /// Since when Redis has not answered, if it does not.
    fn outage(&self) -> Option<crate::queue::Outage> {
        None
    }
    fn depth(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Drops the ingest dedup sets of days before `day` (closed months).
    fn forget_seen_before(&self, day: NaiveDate) -> impl Future<Output = Result<u64>> + Send;
}

impl Store for Db {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn may_write(&self) -> Result<()> {
        self.lock_held().map(|_| ())
    }

    async fn load(&self) -> Result<Loaded> {
        let state = self.load_state().await?;
        let interrupted_jobs = self.mark_interrupted_jobs().await?;
        let months = match state.clock.month {
            Some(m) => self.load_open_months(m).await?,
            None => BTreeMap::new(),
        };
        let job_hist = match state.clock.month {
            Some(m) => self.load_job_hist(m.start(), NaiveDate::MAX).await?,
            None => Vec::new(),
        };
        Ok(Loaded {
            overflow: self.load_overflow().await?,
            seen: self.load_seen().await?,
            job_facts: self.load_job_facts().await?,
            job_hist,
            book: self.load_entities().await?,
            months,
            state,
            interrupted_jobs,
            epoch: self.redis_epoch().await?,
            alerts: self.alerts().await?,
        })
    }

    async fn load_day_row(&self, day: NaiveDate, role: EntityRole) -> Result<Vec<Entry>> {
        Db::load_day_row(self, day, role).await
    }

    async fn open_month(&self, m: YearMonth) -> Result<()> {
        self.set_month(m).await
    }

    async fn commit(&self, c: Commit) -> Result<bool> {
        Db::commit(self, &c).await
    }

    async fn cleanup(&self, c: &DueCleanup, cfg: &RetentionConfig) -> Result<JobRun> {
        self.lock_held()?;
        let run = crate::retention::daily_cleanup(self, c.day, c.open, cfg, &c.lifecycle).await?;
        self.set_day(c.day).await?;
        Ok(run)
    }

    async fn audit_rollover(&self, m: YearMonth, since: DateTime<Utc>) -> Result<()> {
        Db::audit_rollover(self, m, since).await
    }

    async fn backup(
        &self,
        m: YearMonth,
        dir: &Path,
    ) -> Result<std::result::Result<PathBuf, String>> {
        use dvmtop_core::{Job, Outcome};
        let id = self.job_started(Job::Backup, None, Some(m)).await?;
        let result = crate::retention::write_backup(self, dir, m)
            .await
            .map_err(|e| e.to_string());
        let (outcome, detail) = match &result {
            Ok(p) => (Outcome::Ok, p.display().to_string()),
            Err(e) => (Outcome::Failed, e.clone()),
        };
        let rows = BTreeMap::from([("monthly_activity".to_owned(), i64::from(result.is_ok()))]);
        self.job_finished(id, &rows, outcome, 1, Some(&detail))
            .await?;
        Ok(result)
    }

    async fn vacuum(&self) -> Result<()> {
        self.vacuum_hot_tables().await
    }

    async fn snapshot_windows(&self, t: i64) -> Result<()> {
        Db::snapshot_windows(self, t).await
    }

    async fn confirm(&self, m: YearMonth) -> Result<()> {
        Db::record_confirmation(self, m).await
    }

    async fn requests(&self) -> Result<Requests> {
        Db::requests(self).await
    }

    async fn cleanup_done(&self) -> Result<()> {
        Db::cleanup_done(self).await
    }

    async fn set_awaiting(&self, a: Option<(YearMonth, bool)>) -> Result<()> {
        Db::set_awaiting(self, a).await
    }

    async fn set_epoch(&self, epoch: &str) -> Result<()> {
        self.set_redis_epoch(epoch).await
    }

    async fn raise_alert(&self, a: &dvmtop_core::Alert) -> Result<()> {
        Db::raise_alert(self, a).await
    }
}

impl QueueOps for Queue {
    async fn acked(&self) -> Result<Option<i64>> {
        Queue::acked(self).await
    }
    async fn set_acked(&self, seq: i64) -> Result<()> {
        Queue::set_acked(self, seq).await
    }
    async fn ack(&self, seq: i64, count: i64, epoch: &str) -> Result<Acked> {
        Queue::ack(self, seq, count, epoch).await
    }
    async fn read(&self, start: i64, n: usize) -> Result<Read> {
        if n == 0 {
            return Ok(Read {
                epoch: Queue::epoch(self).await?,
                len: Queue::depth(self).await?,
                items: Vec::new(),
            });
        }
        Queue::read(self, start, n).await
    }
    async fn epoch(&self) -> Result<Option<String>> {
        Queue::epoch(self).await
    }
    async fn new_epoch(&self, acked: i64) -> Result<String> {
        Queue::new_epoch(self, acked).await
    }
    fn outage(&self) -> Option<crate::queue::Outage> {
        Queue::outage(self)
    }
    async fn depth(&self) -> Result<u64> {
        Queue::depth(self).await
    }
    async fn forget_seen_before(&self, day: NaiveDate) -> Result<u64> {
        Queue::forget_seen_before(self, day).await
    }
}
