//! Background tasks that feed the UI over a bounded channel: the
//! pipeline's snapshot and events (forwarded), and the poller of what
//! only the stores know — window stats, the monthly history, the job
//! audit, ingest counters — each store under a timeout, so the UI never
//! waits on them.

use super::app::{DbPoll, DbView, Msg, Poll, RedisView};
use crate::error::Result;
use crate::pipeline::{PipelineStatus, Progress};
use crate::queue::Queue;
use crate::store::{self, Db, Published};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Forwards the pipeline's snapshots (the watch channel keeps only the
/// latest, so a slow UI never falls behind) until either side is gone.
pub(crate) fn spawn_status(
    mut status: watch::Receiver<PipelineStatus>,
    ui: mpsc::Sender<Msg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let s = status.borrow_and_update().clone();
            if ui.send(Msg::Status(Box::new(s))).await.is_err() {
                return;
            }
        }
    })
}

/// Watching: forwards what the namespace's holder publishes, and feeds its
/// snapshot to `status` (which the poller follows, as it follows a
/// pipeline of its own).
pub(crate) fn spawn_watched(
    mut published: watch::Receiver<Published>,
    ui: mpsc::Sender<Msg>,
    status: watch::Sender<PipelineStatus>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let p = published.borrow_and_update().clone();
            if let Some(s) = &p.status {
                status.send_replace(s.clone());
            }
            if ui.send(Msg::Watched(Box::new(p))).await.is_err() {
                return;
            }
            if published.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Forwards the alert monitor's evaluations.
pub(crate) fn spawn_alerts(
    mut alerts: watch::Receiver<Vec<dvmtop_core::alerts::Alert>>,
    ui: mpsc::Sender<Msg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while alerts.changed().await.is_ok() {
            let a = alerts.borrow_and_update().clone();
            if ui.send(Msg::Alerts(a)).await.is_err() {
                return;
            }
        }
    })
}

/// Forwards the pipeline's events that the screen notes (rollovers,
/// backups, cleanups, confirmations); batches and commits are in the
/// snapshot already.
pub(crate) fn spawn_events(
    mut events: mpsc::UnboundedReceiver<Progress>,
    ui: mpsc::Sender<Msg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let noted = matches!(
                e,
                Progress::Init(_)
                    | Progress::Rolled { .. }
                    | Progress::Backup { .. }
                    | Progress::DailyCleanup(_)
                    | Progress::Cleanup(_)
                    | Progress::Confirmed { .. }
            );
            if noted && ui.send(Msg::Event(e)).await.is_err() {
                return;
            }
        }
    })
}

/// Poller timing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollTiming {
    /// Poll at least this often (other processes change the stores too).
    pub(crate) period: Duration,
    /// After a change the pipeline published (a commit, a phase), poll
    /// again, but not more often than this.
    pub(crate) min_gap: Duration,
    /// Per source and round; past it the source is marked stale.
    pub(crate) timeout: Duration,
    /// Window stats (four aggregate queries) at most this often.
    pub(crate) windows_every: Duration,
}

impl Default for PollTiming {
    fn default() -> Self {
        PollTiming {
            period: Duration::from_secs(5),
            min_gap: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            windows_every: Duration::from_secs(5),
        }
    }
}

/// What a fetch of the stores' figures depended on: the committed clock
/// (or the month-row count) and the namespace state's version
/// (`pipeline_state.updated_at`). The clock alone is not enough: a
/// `--fresh` rerun of the same input ends at the same clock, and a fetch
/// that straddled the wipe (the old tables' snapshot, the new run's first
/// rows) was then kept for good — the windows pane showed February's
/// figures after the run had FINISHED.
type StateKey<T> = (T, DateTime<Utc>);

/// What the poller remembers between rounds, to skip refetching what
/// cannot have changed.
#[derive(Default)]
struct PollMemo {
    windows: Option<StateKey<Option<i64>>>,
    windows_at: Option<Instant>,
    months: Option<StateKey<i64>>,
}

impl PollMemo {
    /// The window figures are fetched again when the state they were read
    /// at changed, at most once per `every`.
    fn windows_due(&self, key: &StateKey<Option<i64>>, every: Duration) -> bool {
        self.windows.as_ref() != Some(key) && self.windows_at.is_none_or(|t| t.elapsed() >= every)
    }

    fn months_due(&self, key: &StateKey<i64>) -> bool {
        self.months.as_ref() != Some(key)
    }
}

async fn poll_db(db: &Db, memo: &mut PollMemo, every: Duration) -> Result<DbPoll> {
    let snap = db.snapshot().await?;
    let jobs = db.job_runs(None, 20, None).await?;
    let overflow_days = if snap.overflow_size > 0 {
        db.overflow_by_day().await?
    } else {
        Vec::new()
    };
    let windows_key = (snap.clock_unix, snap.state_version);
    let windows = if !memo.windows_due(&windows_key, every) {
        None
    } else if let Some(t) = snap.clock_unix {
        Some(store::windows(db, t).await?)
    } else {
        Some(Vec::new())
    };
    let months_key = (snap.monthly_rows, snap.state_version);
    let months = if memo.months_due(&months_key) {
        Some(db.monthly_rows().await?)
    } else {
        None
    };
    // Remembered only once every fetch of the round succeeded.
    if windows.is_some() {
        memo.windows = Some(windows_key);
        // Only real fetches count against the rate limit.
        memo.windows_at = snap.clock_unix.map(|_| Instant::now());
    }
    memo.months = Some(months_key);
    Ok(DbPoll {
        view: DbView {
            current_month: snap.current_month,
            current_day: snap.current_day,
            clock: snap.clock_unix,
            overflow_size: snap.overflow_size,
            overflow_days,
            dvms_active: snap.dvms_active,
            dvms_inactive: snap.dvms_inactive,
            users_active: snap.users_active,
            users_inactive: snap.users_inactive,
            monthly_rows: snap.monthly_rows,
            confirmed_month: snap.confirmed_month,
            counters: snap.counters,
            dead_letters: snap.dead_letters,
            jobs,
        },
        windows,
        months,
    })
}

async fn poll_redis(q: &Queue) -> Result<RedisView> {
    Ok(RedisView {
        depth: q.depth().await?,
        ingest: q.ingest_stats().await?,
        dead_letters: q.dead_letters().await?,
        relays: crate::relay::relay_status(q, Utc::now().timestamp()).await?,
    })
}

async fn timed<T>(
    limit: Duration,
    what: &str,
    f: impl Future<Output = Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{what} did not answer within {} s",
            limit.as_secs_f64()
        )),
    }
}

/// What in a snapshot means the stores changed: a commit, or a phase.
fn store_marker(s: &PipelineStatus) -> (i64, std::mem::Discriminant<crate::pipeline::Phase>) {
    (s.committed_seq, std::mem::discriminant(&s.phase))
}

/// Polls both stores when the pipeline committed something (at most every
/// `min_gap`) and at least every `period`, until the UI goes away. Idle,
/// it wakes once a period.
pub(crate) fn spawn_poller(
    db: Db,
    queue: Queue,
    ui: mpsc::Sender<Msg>,
    timing: PollTiming,
    mut status: watch::Receiver<PipelineStatus>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut memo = PollMemo::default();
        let mut seen = store_marker(&status.borrow());
        let mut live = true;
        loop {
            let at = Utc::now();
            let (d, r) = tokio::join!(
                timed(
                    timing.timeout,
                    "PostgreSQL",
                    poll_db(&db, &mut memo, timing.windows_every)
                ),
                timed(timing.timeout, "Redis", poll_redis(&queue)),
            );
            if let Err(e) = &d {
                tracing::warn!(error = %e, "poll: PostgreSQL");
            }
            if let Err(e) = &r {
                tracing::warn!(error = %e, "poll: Redis");
            }
            let poll = Poll {
                at,
                db: d,
                redis: r,
            };
            if ui.send(Msg::Polled(Box::new(poll))).await.is_err() {
                return;
            }
            let polled = Instant::now();
            // Until the next period, or the next commit (after the gap).
            let next = tokio::time::Instant::from_std(polled + timing.period);
            loop {
                let changed = async {
                    if live {
                        status.changed().await.is_ok()
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    ok = changed => {
                        if !ok {
                            live = false;
                            continue;
                        }
                        let now = store_marker(&status.borrow_and_update());
                        if now != seen {
                            seen = now;
                            tokio::time::sleep(timing.min_gap.saturating_sub(polled.elapsed())).await;
                            break;
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn figures_read_at_the_same_clock_are_fetched_again_when_the_state_changed() {
        let every = Duration::ZERO;
        let mut memo = PollMemo::default();
        let clock = Some(1_700_000_000);
        assert!(memo.windows_due(&(clock, version(1)), every));
        memo.windows = Some((clock, version(1)));
        memo.months = Some((3, version(1)));
        // Nothing changed: nothing to fetch.
        assert!(!memo.windows_due(&(clock, version(1)), every));
        assert!(!memo.months_due(&(3, version(1))));
        // A --fresh rerun of the same input ends at the same clock and
        // month count, in a state written after the memo's fetch.
        assert!(memo.windows_due(&(clock, version(2)), every));
        assert!(memo.months_due(&(3, version(2))));
    }

    #[test]
    fn window_fetches_stay_rate_limited() {
        let mut memo = PollMemo {
            windows: Some((Some(10), version(1))),
            windows_at: Some(Instant::now()),
            months: None,
        };
        assert!(!memo.windows_due(&(Some(20), version(2)), Duration::from_secs(60)));
        memo.windows_at = None;
        assert!(memo.windows_due(&(Some(20), version(2)), Duration::from_secs(60)));
    }
}
