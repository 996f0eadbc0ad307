//! The views' worker: reads what the current view needs from PostgreSQL
//! in the background — when the view asks for something else, after each
//! commit the pipeline publishes (at most every `min_gap`), and at least
//! every `period` — each read under a timeout, and sends the answer (or
//! the error, which the view shows as "stale since …") to the UI. The UI
//! never waits on it.

use super::super::app::Msg;
use super::{LoadResult, Loaded, Period, Query};
use crate::error::{Error, Result};
use crate::pipeline::PipelineStatus;
use crate::store::{Db, Range, month_summary};
use chrono::Utc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoaderTiming {
    pub(crate) period: Duration,
    pub(crate) min_gap: Duration,
    pub(crate) timeout: Duration,
}

impl Default for LoaderTiming {
    fn default() -> Self {
        LoaderTiming {
            period: Duration::from_secs(10),
            min_gap: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        }
    }
}

fn range(p: Period, clock: Option<i64>) -> Option<Range> {
    let (start, end) = p.bounds(clock)?;
    let (first_day, last_day) = p.days(clock)?;
    Some(Range {
        start,
        end,
        first_day,
        last_day,
    })
}

fn month_of(p: Period) -> Option<String> {
    match p {
        Period::Month(m) => Some(m.to_string()),
        _ => None,
    }
}

/// Runs one query against the committed state.
pub async fn load(db: &Db, q: &Query) -> Result<Loaded> {
    let clock = db.committed_clock().await?;
    let nothing = || Error::Config("nothing processed yet".into());
    Ok(match q {
        Query::Dvms(p) => match range(*p, clock) {
            Some(r) => Loaded::Dvms(db.view_dvms(r, month_of(*p).as_deref()).await?),
            None => Loaded::Dvms(Vec::new()),
        },
        Query::Kinds(p) => match range(*p, clock) {
            Some(r) => Loaded::Kinds(db.view_kinds(r, month_of(*p).as_deref()).await?),
            None => Loaded::Kinds(Vec::new()),
        },
        Query::Dvm(id, p) => {
            let r = range(*p, clock).ok_or_else(nothing)?;
            Loaded::Dvm(Box::new(db.view_dvm(id, r, month_of(*p).as_deref()).await?))
        }
        Query::Kind(k, p) => {
            let r = range(*p, clock).ok_or_else(nothing)?;
            Loaded::Kind(Box::new(
                db.view_kind(*k, r, month_of(*p).as_deref()).await?,
            ))
        }
        Query::OpenMonth(m) => Loaded::OpenMonth(Box::new(month_summary(&db.pool, *m).await?)),
    })
}

async fn timed(db: &Db, q: &Query, limit: Duration) -> std::result::Result<Loaded, String> {
    match tokio::time::timeout(limit, load(db, q)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "PostgreSQL did not answer within {} s",
            limit.as_secs_f64()
        )),
    }
}

pub(crate) fn spawn(
    db: Db,
    mut wanted: watch::Receiver<Option<Query>>,
    ui: mpsc::Sender<Msg>,
    timing: LoaderTiming,
    mut status: watch::Receiver<PipelineStatus>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = status.borrow().committed_seq;
        let mut live = true;
        loop {
            let q = wanted.borrow_and_update().clone();
            let started = Instant::now();
            if let Some(q) = q {
                let at = Utc::now();
                let t = Instant::now();
                let result = timed(&db, &q, timing.timeout).await;
                match &result {
                    Ok(_) => {
                        tracing::debug!(query = ?q, micros = t.elapsed().as_micros() as u64, "view read")
                    }
                    Err(e) => tracing::warn!(query = ?q, error = %e, "view read failed"),
                }
                let msg = Msg::Loaded(Box::new(LoadResult {
                    query: q,
                    at,
                    result,
                }));
                if ui.send(msg).await.is_err() {
                    return;
                }
            }
            let next = tokio::time::Instant::from_std(started + timing.period);
            loop {
                let committed = async {
                    if live {
                        status.changed().await.is_ok()
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    r = wanted.changed() => {
                        if r.is_err() {
                            return;
                        }
                        break;
                    }
                    _ = tokio::time::sleep_until(next) => break,
                    ok = committed => {
                        if !ok {
                            live = false;
                            continue;
                        }
                        let now = status.borrow_and_update().committed_seq;
                        if now != seen {
                            seen = now;
                            let wait = timing.min_gap.saturating_sub(started.elapsed());
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => break,
                                r = wanted.changed() => {
                                    if r.is_err() {
                                        return;
                                    }
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}
