//! Committing groups. A group — every batch processed since the last
//! commit, aggregated in memory — is written in one transaction together
//! with the queue position, then the queue head is trimmed. The commit
//! runs in a task of its own while the processor goes on with the next
//! group (PostgreSQL gets a core while the processor uses the other); at
//! most one commit is under way, and anything that reads the tables or
//! must see its rows waits for it first.

use super::processor::Processor;
use super::{CommitReport, Progress};
use crate::activity;
use crate::analyze::{EntityRole, Pending};
use crate::clock::YearMonth;
use crate::error::{Error, Result};
use crate::store::{Commit, MonthRow};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What the processor has done since its last commit.
#[derive(Default)]
pub(super) struct Group {
    pub(super) pending: Pending,
    /// Queue head elements consumed (they leave the queue at the commit).
    pub(super) consumed: i64,
    pub(super) ignored: i64,
    pub(super) rejected: Vec<crate::queue::Refused>,
    pub(super) overflow_changed: bool,
    /// Months rolled over, with their rows.
    pub(super) rollovers: Vec<MonthRow>,
    /// When the first change happened.
    pub(super) since: Option<Instant>,
}

impl Group {
    pub(super) fn is_empty(&self) -> bool {
        self.consumed == 0
            && !self.overflow_changed
            && self.rejected.is_empty()
            && self.rollovers.is_empty()
    }

    pub(super) fn age(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// A commit under way.
pub(super) struct Inflight {
    seq: i64,
    pub(super) consumed: i64,
    processed: u64,
    /// The months it closes.
    rollovers: Vec<YearMonth>,
    /// The open month once it is committed.
    pub(super) month: Option<YearMonth>,
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    task: JoinHandle<Result<bool>>,
}

impl Inflight {
    pub(super) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Processor {
    /// Whether the [`super::CommitPolicy`] wants the pending group
    /// committed now.
    pub(super) fn commit_due(&self) -> bool {
        let (policy, g) = (self.settings.commit, &self.group);
        g.pending.processed + g.pending.duplicates >= policy.target_events
            || g.age() >= policy.max_age
            || !g.rollovers.is_empty()
            || (self.caught_up && g.age() >= policy.live_age)
    }

    /// Past the memory bound, a commit starts even if it has to wait for
    /// the one under way; otherwise a due commit starts once that one is
    /// done, so processing never waits for PostgreSQL.
    pub(super) fn commit_forced(&self) -> bool {
        let g = &self.group;
        g.pending.processed + g.pending.duplicates >= self.settings.commit.max_events
    }

    /// Commits the pending group and waits for it (and for any commit
    /// under way): afterwards the tables hold everything processed.
    pub async fn commit(&mut self) -> Result<()> {
        self.start_commit().await?;
        self.join_inflight().await
    }

    /// Hands the pending group to a commit task (after the previous one
    /// has finished) and starts a new group.
    pub(super) async fn start_commit(&mut self) -> Result<()> {
        self.reload_if_needed().await?;
        if self.group.is_empty() && !self.book.is_dirty() {
            return Ok(());
        }
        self.join_inflight().await?;
        let started = Instant::now();
        let seq = self.last_seq + 1;
        // Whole activity rows: what is stored merged with the pending cells
        // (stored: the copy kept from the last write, else the table's,
        // which no commit is writing now).
        let mut rows = Vec::new();
        for (&day, act) in &self.group.pending.activity {
            for role in EntityRole::BOTH {
                let cells = &act.cells[role as usize];
                if cells.is_empty() {
                    continue;
                }
                let merged = match self.rows.get(day, role) {
                    Some(base) => activity::merge(base, cells),
                    None => activity::merge(&self.db.load_day_row(day, role).await?, cells),
                };
                rows.push((day, role, Arc::new(merged)));
            }
        }
        for (day, role, entries) in &rows {
            self.rows.put(*day, *role, entries.clone());
        }
        let g = std::mem::take(&mut self.group);
        let commit = Commit {
            seq,
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
        };
        self.book.committed();
        self.last_seq = seq;
        let processed = commit.pending.processed;

        let rollovers = commit
            .rollovers
            .iter()
            .filter_map(|r| r.year_month.parse().ok())
            .collect();
        let db = self.db.clone();
        self.inflight = Some(Inflight {
            seq,
            consumed: commit.consumed,
            processed,
            rollovers,
            month: commit.month,
            started,
            started_at: chrono::Utc::now(),
            task: tokio::spawn(async move { db.commit(&commit).await }),
        });
        Ok(())
    }

    /// Waits for the commit under way (if any), then trims the queue head
    /// it consumed. A failed commit leaves the tables as they were: the
    /// processor reloads from them (and the queue) before going on.
    pub(super) async fn join_inflight(&mut self) -> Result<()> {
        let Some(f) = self.inflight.take() else {
            return Ok(());
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
                self.needs_reload = true;
                return Err(Error::InUse(format!(
                    "group {} was already committed by another process: is a second dvmtop running on namespace {}?",
                    f.seq, self.db.namespace
                )));
            }
            Err(e) => {
                self.needs_reload = true;
                return Err(e);
            }
        }
        // A failed trim is retried before the next read (never skipped).
        self.unacked = Some((f.seq, f.consumed));
        self.committed_month = f.month;
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
        self.queue.ack(f.seq, f.consumed).await?;
        self.unacked = None;
        self.vacuum_now_and_then();
        if !f.rollovers.is_empty() {
            self.after_rollovers(&f.rollovers, f.started_at).await?;
        }
        self.run_cleanups().await
    }

    /// Every few commits, vacuums the hot tables in the background (one
    /// vacuum at a time; a failed one is logged and tried again later).
    fn vacuum_now_and_then(&mut self) {
        const EVERY: u32 = 4;
        self.commits_since_vacuum += 1;
        if self.commits_since_vacuum < EVERY
            || self.vacuum.as_ref().is_some_and(|v| !v.is_finished())
        {
            return;
        }
        self.commits_since_vacuum = 0;
        let db = self.db.clone();
        self.vacuum = Some(tokio::spawn(async move {
            let t = Instant::now();
            let r = db.vacuum_hot_tables().await;
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

    /// After a commit that closed months: their ingest dedup sets go, each
    /// is audited (its duration is that of the commit that made it
    /// durable), and the backup is written. A failed backup is reported
    /// and logged loudly but never stops processing; the next rollover's
    /// backup contains every row again.
    async fn after_rollovers(
        &mut self,
        rolled: &[YearMonth],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        for &m in rolled {
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
}
