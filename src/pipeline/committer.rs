//! The committer: sequencing, the commit under way, the queue trims, the
//! vacuums and the decided cleanups — everything that writes, in order.
//!
//! A group — every batch processed since the last commit, aggregated in
//! memory — is written in one transaction together with its queue
//! sequence, then the queue head it consumed is trimmed. The commit runs
//! in a task of its own while the processor goes on with the next group
//! (PostgreSQL gets a core while the processor uses the other); at most
//! one commit is under way. Cleanups decided meanwhile wait for it, so
//! cleanups and commits never write at the same time, and always in the
//! order they were decided. Any failed write marks the committer
//! `failed`: the processor's memory is then ahead of the tables and is
//! rebuilt from them (the queue still holds every uncommitted element).

use super::ports::{DueCleanup, QueueOps, Store};
use super::{CommitReport, Progress};
use crate::error::{Error, Result};
use crate::store::{Commit, JobRun};
use chrono::NaiveDate;
use dvmtop_core::YearMonth;
use dvmtop_core::retention::RetentionConfig;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;
use tokio::task::JoinHandle;

/// A commit under way.
struct Inflight {
    seq: i64,
    consumed: i64,
    processed: u64,
    /// The months it closes.
    rollovers: Vec<YearMonth>,
    /// The open month once it is committed.
    month: Option<YearMonth>,
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    task: JoinHandle<Result<bool>>,
}

/// Vacuum the hot tables every this many commits.
const VACUUM_EVERY: u32 = 4;

pub(super) struct Committer<S, Q> {
    pub(super) store: S,
    pub(super) queue: Q,
    /// The queue generation the groups are read from: a trim happens only
    /// while Redis still has it (see `queue`).
    pub(super) epoch: String,
    retention: RetentionConfig,
    backup_dir: Option<PathBuf>,
    /// Sequence of the last group handed over.
    last_seq: i64,
    /// Sequence of the last group known committed.
    committed_seq: i64,
    /// A committed group whose queue trim has not succeeded yet.
    unacked: Option<(i64, i64)>,
    inflight: Option<Inflight>,
    vacuum: Option<JoinHandle<Result<()>>>,
    commits_since_vacuum: u32,
    /// Cleanups decided while a commit was under way, oldest first.
    cleanups: VecDeque<DueCleanup>,
    /// The open month as committed: retention protects it (and anything
    /// later) even after an in-memory rollover, until that commits.
    committed_month: Option<YearMonth>,
    /// The detail cut-off the last written cleanup used.
    last_detail_cut: Option<NaiveDate>,
    /// A write failed: the tables are behind the processor's memory.
    pub(super) failed: bool,
    /// Queue elements released from the read position so far: trimmed
    /// (which shortens the list by as much), or acknowledged after the
    /// queue was lost (see `Processor::queue_lost`).
    pub(super) trimmed: u64,
    /// What commits and cleanups did that is not reported yet.
    pub(super) reports: Vec<Progress>,
}

impl<S: Store, Q: QueueOps> Committer<S, Q> {
    pub(super) fn new(
        store: S,
        queue: Q,
        epoch: String,
        retention: RetentionConfig,
        backup_dir: Option<PathBuf>,
        last_seq: i64,
        committed_month: Option<YearMonth>,
    ) -> Self {
        Committer {
            store,
            queue,
            epoch,
            retention,
            backup_dir,
            last_seq,
            committed_seq: last_seq,
            unacked: None,
            inflight: None,
            vacuum: None,
            commits_since_vacuum: 0,
            cleanups: VecDeque::new(),
            committed_month,
            last_detail_cut: None,
            failed: false,
            trimmed: 0,
            reports: Vec::new(),
        }
    }

    /// Queue elements consumed by groups handed over but not trimmed yet:
    /// the next read starts behind them.
    pub(super) fn uncommitted_head(&self) -> i64 {
        self.unacked.map_or(0, |(_, n)| n) + self.inflight.as_ref().map_or(0, |f| f.consumed)
    }

    pub(super) fn next_seq(&self) -> i64 {
        self.last_seq + 1
    }

    pub(super) fn committed_seq(&self) -> i64 {
        self.committed_seq
    }

    pub(super) fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    pub(super) fn inflight_finished(&self) -> bool {
        self.inflight.as_ref().is_some_and(|f| f.task.is_finished())
    }

    /// The month retention must protect when a cleanup is decided now: the
    /// open month as of the commit under way (the cleanup is written after
    /// it), else as committed.
    pub(super) fn protected_month(&self) -> Option<YearMonth> {
        self.inflight
            .as_ref()
            .map_or(self.committed_month, |f| f.month)
    }

    pub(super) fn committed_month(&self) -> Option<YearMonth> {
        self.committed_month
    }

    pub(super) fn set_committed_month(&mut self, m: Option<YearMonth>) {
        self.committed_month = m;
    }

    pub(super) fn last_detail_cut(&self) -> Option<NaiveDate> {
        self.last_detail_cut
    }

    /// Trims what the last committed group consumed, if a trim failed
    /// before (never skipped: the next read depends on it).
    pub(super) async fn retry_ack(&mut self) -> Result<()> {
        if let Some((seq, count)) = self.unacked {
            match self.queue.ack(seq, count, &self.epoch).await? {
                crate::queue::Acked::Trimmed => self.trimmed += count.max(0) as u64,
                crate::queue::Acked::Already => {}
                // The queue was lost: there is nothing of this group to
                // trim (the next read finds out and says so); its elements
                // leave the read position all the same.
                crate::queue::Acked::EpochChanged => {
                    self.trimmed += count.max(0) as u64;
                    tracing::warn!(
                        seq,
                        "not trimming group {seq}: the queue it was read from is gone"
                    );
                }
            }
            self.unacked = None;
        }
        Ok(())
    }

    /// Hands a group over: waits for the commit under way (a group
    /// commits after the one before it), then starts this one.
    pub(super) async fn submit(&mut self, commit: Commit) -> Result<()> {
        self.join().await?;
        debug_assert_eq!(commit.seq, self.last_seq + 1);
        self.last_seq = commit.seq;
        let store = self.store.clone();
        self.inflight = Some(Inflight {
            seq: commit.seq,
            consumed: commit.consumed,
            processed: commit.pending.processed,
            rollovers: commit.rollovers.iter().map(|r| r.year_month).collect(),
            month: commit.month,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            task: tokio::spawn(async move {
                let done = store.commit(commit).await;
                crate::memory::release_free_memory();
                done
            }),
        });
        Ok(())
    }

    /// Waits for the commit under way (if any), then trims the queue head
    /// it consumed, audits and backs up the months it closed, and writes
    /// the cleanups decided meanwhile.
    pub(super) async fn join(&mut self) -> Result<()> {
        let Some(f) = self.inflight.take() else {
            return self.run_cleanups().await;
        };
        let waited = Instant::now();
        let was_running = !f.task.is_finished();
        let outcome = match f.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Config(format!("the commit task failed: {e}"))),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                self.failed = true;
                return Err(Error::InUse(format!(
                    "group {} was already committed by another process: is a second dvmtop running on namespace {}?",
                    f.seq,
                    self.store.namespace()
                )));
            }
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        }
        self.committed_seq = f.seq;
        self.committed_month = f.month;
        // Trimmed before the next read; a failed trim is retried then.
        self.unacked = Some((f.seq, f.consumed));
        let report = CommitReport {
            seq: f.seq,
            consumed: f.consumed,
            processed: f.processed,
            millis: f.started.elapsed().as_secs_f64() * 1000.0,
        };
        tracing::debug!(
            seq = f.seq,
            consumed = f.consumed,
            processed = f.processed,
            millis = report.millis,
            waited_ms = if was_running {
                waited.elapsed().as_millis()
            } else {
                0
            },
            "commit"
        );
        self.reports.push(Progress::Committed(report));
        self.retry_ack().await?;
        self.vacuum_now_and_then();
        if !f.rollovers.is_empty() {
            self.after_rollovers(&f.rollovers, f.started_at).await?;
        }
        self.run_cleanups().await
    }

    /// Every few commits, vacuums the hot tables in the background (one
    /// vacuum at a time; a failed one is logged and tried again later).
    fn vacuum_now_and_then(&mut self) {
        self.commits_since_vacuum += 1;
        if self.commits_since_vacuum < VACUUM_EVERY
            || self.vacuum.as_ref().is_some_and(|v| !v.is_finished())
        {
            return;
        }
        self.commits_since_vacuum = 0;
        let store = self.store.clone();
        self.vacuum = Some(tokio::spawn(async move {
            let t = Instant::now();
            let r = store.vacuum().await;
            match &r {
                Ok(()) => tracing::debug!(
                    millis = t.elapsed().as_millis() as u64,
                    "vacuumed the hot tables"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "vacuum of the hot tables failed; tried again later")
                }
            }
            r
        }));
    }

    /// After a commit that closed months: each is audited (its duration is
    /// that of the commit that made it durable), its ingest dedup sets go,
    /// and the backup is written. A failed backup is reported and logged
    /// loudly but never stops processing; the next rollover's backup
    /// contains every row again.
    async fn after_rollovers(
        &mut self,
        rolled: &[YearMonth],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        for &m in rolled {
            self.store.audit_rollover(m, since).await?;
            if let Err(e) = self.queue.forget_seen_before(m.end()).await {
                tracing::warn!(error = %e, "could not drop the ingest dedup sets of {m}");
            }
            let Some(dir) = &self.backup_dir else {
                continue;
            };
            let result = self.store.backup(m, dir).await?;
            if let Err(e) = &result {
                tracing::error!(error = %e, "BACKUP FAILED after the rollover of {m}; retried at the next rollover");
            }
            self.reports.push(Progress::Backup {
                month: m,
                result: result.map(|p| p.display().to_string()),
            });
        }
        Ok(())
    }

    /// Queues a decided cleanup and writes it at once unless a commit is
    /// under way (then [`Self::join`] writes it).
    pub(super) async fn cleanup(&mut self, due: DueCleanup) -> Result<()> {
        self.cleanups.push_back(due);
        if self.inflight.is_none() {
            self.run_cleanups().await?;
        }
        Ok(())
    }

    /// Writes the queued cleanups, oldest first (nothing is being
    /// committed), and reports them.
    async fn run_cleanups(&mut self) -> Result<()> {
        while let Some(c) = self.cleanups.pop_front() {
            let run = self.write_cleanup(&c).await?;
            self.reports.push(Progress::DailyCleanup(run));
        }
        Ok(())
    }

    /// Writes one decided cleanup now (nothing may be under way).
    pub(super) async fn write_cleanup(&mut self, c: &DueCleanup) -> Result<JobRun> {
        debug_assert!(self.inflight.is_none());
        let t = Instant::now();
        let written = self.store.cleanup(c, &self.retention).await;
        match &written {
            Ok(_) => {
                self.last_detail_cut =
                    Some(dvmtop_core::retention::cutoffs(c.day, c.open, &self.retention).detail);
            }
            Err(_) => self.failed = true,
        }
        tracing::debug!(day = %c.day, cleanup_ms = t.elapsed().as_millis() as u64, "day advanced");
        written
    }
}
