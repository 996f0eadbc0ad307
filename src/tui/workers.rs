//! Background tasks that feed the UI over a bounded channel: the pipeline
//! task (the same [`pipeline::run`] headless mode drives), the poller
//! (PostgreSQL and Redis, each under a timeout, so the UI never waits on
//! them), and the month-preview worker of the rollover dialog.

use super::app::{DbPoll, DbView, Msg, Poll, RedisView};
use crate::error::Result;
use crate::pipeline::{self, BatchReport, Control, Processor, Progress, RunEnd};
use crate::queue::Queue;
use crate::store::{self, Db};
use chrono::Utc;
use dvmtop_core::YearMonth;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Turns a burst of pipeline reports into UI messages: consecutive batch
/// reports merge into one, and a repeated Idle or Blocked (the loop sends
/// them several times a second while nothing moves) is dropped.
pub fn coalesce(reports: Vec<Progress>, last_quiet: &mut Option<Progress>) -> Vec<Msg> {
    struct Merge {
        report: BatchReport,
        count: u32,
        max_ms: f64,
        total_ms: f64,
    }
    fn flush(m: &mut Option<Merge>, out: &mut Vec<Msg>) {
        if let Some(m) = m.take() {
            out.push(Msg::Batches {
                report: m.report,
                count: m.count,
                max_ms: m.max_ms,
                total_ms: m.total_ms,
            });
        }
    }
    let mut out = Vec::new();
    let mut merge: Option<Merge> = None;
    for p in reports {
        match p {
            Progress::Batch(b) => {
                *last_quiet = None;
                merge = Some(match merge.take() {
                    None => Merge {
                        count: 1,
                        max_ms: b.millis,
                        total_ms: b.millis,
                        report: b,
                    },
                    Some(m) => Merge {
                        count: m.count + 1,
                        max_ms: m.max_ms.max(b.millis),
                        total_ms: m.total_ms + b.millis,
                        report: BatchReport {
                            consumed: m.report.consumed + b.consumed,
                            processed: m.report.processed + b.processed,
                            duplicates: m.report.duplicates + b.duplicates,
                            ignored: m.report.ignored + b.ignored,
                            parked: m.report.parked + b.parked,
                            rejected: m.report.rejected + b.rejected,
                            ..b
                        },
                    },
                });
            }
            p => {
                flush(&mut merge, &mut out);
                let quiet = matches!(p, Progress::Idle | Progress::Blocked(_));
                if quiet && last_quiet.as_ref() == Some(&p) {
                    continue;
                }
                *last_quiet = quiet.then(|| p.clone());
                out.push(Msg::Progress(p));
            }
        }
    }
    flush(&mut merge, &mut out);
    out
}

/// Runs the pipeline until it drains (when `input_done` says so) or shuts
/// down. Reports reach the UI through an unbounded hop (the pipeline never
/// waits on the UI) and a coalescing forwarder into the bounded UI channel.
pub fn spawn_pipeline(
    mut processor: Processor,
    mut ctl: mpsc::Receiver<Control>,
    input_done: impl Fn() -> bool + Send + 'static,
    ui: mpsc::Sender<Msg>,
) -> JoinHandle<Result<RunEnd>> {
    tokio::spawn(async move {
        let (utx, mut urx) = mpsc::unbounded_channel::<Progress>();
        let fwd_ui = ui.clone();
        let forwarder = tokio::spawn(async move {
            let mut last_quiet = None;
            while let Some(first) = urx.recv().await {
                let mut burst = vec![first];
                while burst.len() < 4096 {
                    match urx.try_recv() {
                        Ok(p) => burst.push(p),
                        Err(_) => break,
                    }
                }
                for m in coalesce(burst, &mut last_quiet) {
                    if fwd_ui.send(m).await.is_err() {
                        return;
                    }
                }
            }
        });
        let result = pipeline::run(&mut processor, &mut ctl, input_done, |p| {
            let _ = utx.send(p.clone());
        })
        .await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "pipeline stopped");
        }
        drop(utx);
        let _ = forwarder.await;
        let _ = ui
            .send(Msg::PipelineEnded(
                result.as_ref().map(|e| *e).map_err(|e| e.to_string()),
            ))
            .await;
        result
    })
}

/// Poller timing.
#[derive(Debug, Clone, Copy)]
pub struct PollTiming {
    pub period: Duration,
    /// Per source and round; past it the source is marked stale.
    pub timeout: Duration,
    /// Window stats (four aggregate queries) at most this often.
    pub windows_every: Duration,
}

impl Default for PollTiming {
    fn default() -> Self {
        PollTiming {
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            windows_every: Duration::from_secs(5),
        }
    }
}

/// What the poller remembers between rounds, to skip refetching what
/// cannot have changed.
#[derive(Default)]
struct PollMemo {
    windows_clock: Option<Option<i64>>,
    windows_at: Option<Instant>,
    monthly_rows: Option<i64>,
}

async fn poll_db(db: &Db, memo: &PollMemo, every: Duration) -> Result<DbPoll> {
    let snap = db.snapshot().await?;
    let jobs = db.job_runs(None, 20, None).await?;
    let overflow_days = if snap.overflow_size > 0 {
        db.overflow_by_day().await?
    } else {
        Vec::new()
    };
    let windows = match snap.clock_unix {
        _ if memo.windows_clock == Some(snap.clock_unix) => None,
        _ if memo.windows_at.is_some_and(|t| t.elapsed() < every) => None,
        Some(t) => Some(store::windows(db, t).await?),
        None => Some(Vec::new()),
    };
    let months = if memo.monthly_rows == Some(snap.monthly_rows) {
        None
    } else {
        Some(db.monthly_rows().await?)
    };
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

/// Polls both stores every period until the UI goes away.
pub fn spawn_poller(
    db: Db,
    queue: Queue,
    ui: mpsc::Sender<Msg>,
    timing: PollTiming,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut memo = PollMemo::default();
        loop {
            let at = Utc::now();
            let (d, r) = tokio::join!(
                timed(
                    timing.timeout,
                    "PostgreSQL",
                    poll_db(&db, &memo, timing.windows_every)
                ),
                timed(timing.timeout, "Redis", poll_redis(&queue)),
            );
            if let Ok(p) = &d {
                if p.windows.is_some() {
                    memo.windows_clock = Some(p.view.clock);
                    // Only real fetches count against the rate limit.
                    memo.windows_at = p.view.clock.map(|_| Instant::now());
                }
                memo.monthly_rows = Some(p.view.monthly_rows);
            }
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
            tokio::time::sleep(timing.period).await;
        }
    })
}

/// Computes what `month`'s rollover row would be, for the dialog.
pub fn spawn_preview(db: Db, month: YearMonth, ui: mpsc::Sender<Msg>) {
    tokio::spawn(async move {
        let result = timed(
            Duration::from_secs(10),
            "PostgreSQL",
            store::month_summary(&db.pool, month),
        )
        .await;
        let _ = ui.send(Msg::Preview { month, result }).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvmtop_core::clock::Awaiting;

    fn batch(seq: i64, processed: usize, millis: f64) -> Progress {
        Progress::Batch(BatchReport {
            seq,
            processed,
            consumed: processed,
            overflow: seq as usize,
            millis,
            ..Default::default()
        })
    }

    #[test]
    fn batches_merge_and_quiet_repeats_drop() {
        let a = Awaiting {
            month: YearMonth::new(2024, 1).unwrap(),
            blocked: true,
        };
        let mut last = None;
        let out = coalesce(
            vec![
                batch(1, 10, 5.0),
                batch(2, 20, 9.0),
                Progress::Idle,
                Progress::Idle,
                Progress::Blocked(a),
                Progress::Blocked(a),
                batch(3, 1, 1.0),
                Progress::Idle,
            ],
            &mut last,
        );
        assert_eq!(out.len(), 5, "{out:#?}");
        let Msg::Batches {
            report,
            count,
            max_ms,
            total_ms,
        } = &out[0]
        else {
            panic!("{:?}", out[0])
        };
        assert_eq!(
            (
                report.seq,
                report.processed,
                report.consumed,
                report.overflow
            ),
            (2, 30, 30, 2)
        );
        assert_eq!((*count, *max_ms, *total_ms), (2, 9.0, 14.0));
        assert_eq!(out[1], Msg::Progress(Progress::Idle));
        assert_eq!(out[2], Msg::Progress(Progress::Blocked(a)));
        assert!(matches!(out[3], Msg::Batches { count: 1, .. }));
        assert_eq!(out[4], Msg::Progress(Progress::Idle));
        // The next burst's Idle repeats the last one: dropped.
        assert!(coalesce(vec![Progress::Idle], &mut last).is_empty());
        assert_eq!(
            coalesce(vec![Progress::Paused(true)], &mut last),
            vec![Msg::Progress(Progress::Paused(true))]
        );
        assert_eq!(coalesce(vec![Progress::Idle], &mut last).len(), 1);
    }
}
