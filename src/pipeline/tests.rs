//! The shell's failure branches, each driven through the in-memory fakes:
//! whatever fails on the way, the tables end exactly as after a run
//! without failures — nothing lost, nothing counted twice.

use super::fake::{Fault, Mem, MemQueue, MemStore, Op};
use super::status::Subscription;
use super::{Control, Phase, Processor, Progress, Publisher, RunEnd, Settings, Wake};
use crate::event::Role;
use crate::record::Record;
use dvmtop_core::clock::{Params, Policy};
use dvmtop_core::{JobKind, Kind};
use std::time::Duration;
use tokio::sync::mpsc;

/// Unix seconds of 2024-`m`-`d` at `h`:00 UTC.
fn at(m: u32, d: u32, h: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(2024, m, d)
        .unwrap()
        .and_hms_opt(h, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

/// A queue element (the compact form ingest enqueues).
fn payload(n: u32, who: u8, ts: i64, kind: i64) -> String {
    let role = Kind(kind).role().expect("a DVM kind");
    Record {
        id: format!("{n:032x}{n:032x}"),
        pubkey: format!("{who:02x}").repeat(32),
        created_at: ts,
        kind,
        role,
        credited_kind: match role {
            Role::Feedback => Some(JobKind(5300)),
            _ => Kind(kind).job_kind(),
        },
        profile: None,
        // Results and feedback name a neighbouring request, so the fakes'
        // runs exercise the matching state too.
        refers: (role != Role::Request).then(|| format!("{:032x}{:032x}", n ^ 1, n ^ 1)),
        status: (role == Role::Feedback).then_some(dvmtop_core::jobs::FeedbackStatus::Error),
    }
    .encode()
}

/// Three months of requests, results and feedback, a few duplicates and
/// late events: enough for day advances, cleanups and two rollovers. Each
/// element carries its position in source "f", as a file's do.
fn input() -> Vec<String> {
    let mut v = elements();
    for (i, p) in v.iter_mut().enumerate() {
        dvmtop_core::source::tag(p, "f", i as u64 + 1);
    }
    v
}

fn elements() -> Vec<String> {
    let mut v = Vec::new();
    let mut n = 0;
    for m in 1..=3 {
        for d in 1..=28 {
            for h in [1, 9, 17] {
                n += 1;
                v.push(payload(n, (n % 7) as u8, at(m, d, h), 5300));
                n += 1;
                v.push(payload(n, 100 + (n % 3) as u8, at(m, d, h) + 60, 6300));
                if h == 9 {
                    n += 1;
                    v.push(payload(n, 100, at(m, d, h) + 30, 7000));
                    // A duplicate, and a late event of the day before.
                    v.push(payload(n, 100, at(m, d, h) + 30, 7000));
                    if d > 1 {
                        n += 1;
                        v.push(payload(n, 9, at(m, d - 1, 23), 5300));
                    }
                }
            }
        }
    }
    v
}

fn settings(batch: usize, commit_every: u64) -> Settings {
    Settings {
        batch_size: batch,
        params: Params {
            buffer_days: 3,
            policy: Policy::Auto,
        },
        validation: crate::event::Validation::default(),
        retention: Default::default(),
        backup_dir: None,
        commit: super::CommitPolicy::with_target(commit_every),
        job_horizon: dvmtop_core::jobs::DEFAULT_HORIZON,
    }
}

/// Runs the whole input through the pipeline loop; returns how it ended.
async fn run(store: &MemStore, queue: &MemQueue, s: Settings) -> crate::error::Result<RunEnd> {
    let mut p = Processor::open(store.clone(), queue.clone(), s).await?;
    run_opened(&mut p).await.0
}

/// Runs an opened processor through the pipeline loop until its input is
/// drained; returns how it ended and what it published.
async fn run_opened(
    p: &mut Processor<MemStore, MemQueue>,
) -> (crate::error::Result<RunEnd>, Subscription) {
    let (_ctl, mut rx) = mpsc::channel(4);
    let mut wake = Wake::new(Duration::from_millis(10));
    let (mut out, sub) = Publisher::new();
    let end = super::run(p, &mut rx, &mut wake, || true, &mut out).await;
    (end, sub)
}

/// The tables after a run without faults.
async fn reference() -> Mem {
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    assert_eq!(
        run(&store, &queue, settings(50, 400)).await.unwrap(),
        RunEnd::Drained
    );
    assert_eq!(queue.len(), 0);
    let m = store.mem().tables();
    assert_eq!(m.monthly.len(), 2, "January and February rolled over");
    let end = input().len() as u64;
    assert_eq!(
        m.positions.0,
        [("f".to_owned(), end)].into(),
        "every element committed"
    );
    assert!(
        m.counters["processed"] > 600 && m.counters["duplicate"] > 0,
        "{:?}",
        m.counters
    );
    m
}

#[tokio::test]
async fn transient_errors_are_retried_and_change_nothing() {
    let want = reference().await;
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    // A read fails, then a commit (the processor reloads from the tables
    // and redoes the group from the queue), then a cleanup.
    queue.inject(super::fake::Op::Range, Fault::Transient);
    store.inject(Op::Commit, Fault::Transient);
    store.inject(Op::Cleanup, Fault::Transient);
    assert_eq!(
        run(&store, &queue, settings(50, 400)).await.unwrap(),
        RunEnd::Drained
    );
    assert_eq!(queue.len(), 0);
    assert_eq!(store.mem().tables(), want);
}

/// Issue 13: `serve` exited when PostgreSQL dropped the connection under
/// anything but a step — reading other processes' requests (every 30 s,
/// and on each `dvmtop confirm`/`cleanup`), the end-of-run checks.
/// Those are retried like a step now.
#[tokio::test]
async fn transient_errors_outside_a_step_are_retried_too() {
    let want = reference().await;
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    for _ in 0..3 {
        store.inject(Op::Requests, Fault::Transient);
    }
    queue.inject(Op::Depth, Fault::Transient);
    let mut p = Processor::open(store.clone(), queue.clone(), settings(50, 400))
        .await
        .unwrap();
    let (_ctl, mut rx) = mpsc::channel(4);
    let mut wake = Wake::new(Duration::from_millis(10));
    // Requests are read on every turn.
    wake.requests_fallback = Duration::ZERO;
    let (mut out, mut sub) = Publisher::new();
    let end = super::run(&mut p, &mut rx, &mut wake, || true, &mut out).await;
    assert_eq!(end.unwrap(), RunEnd::Drained);
    assert_eq!(queue.len(), 0);
    assert_eq!(store.mem().tables(), want);
    let mut retries = 0;
    while let Ok(e) = sub.events.try_recv() {
        retries += usize::from(matches!(e, Progress::Retrying { .. }));
    }
    assert_eq!(retries, 4, "each failure is published as a retry");
}

/// A shutdown whose last commit fails on a dropped connection still stops
/// (nothing uncommitted was acknowledged), instead of failing the run.
#[tokio::test]
async fn a_shutdown_whose_commit_fails_transiently_still_stops() {
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    let mut p = Processor::open(store.clone(), queue.clone(), settings(50, 1_000_000))
        .await
        .unwrap();
    for _ in 0..5 {
        p.step().await.unwrap();
    }
    store.inject(Op::Commit, Fault::Transient);
    let (ctl, mut rx) = mpsc::channel(4);
    ctl.send(Control::Shutdown).await.unwrap();
    let mut wake = Wake::new(Duration::from_millis(10));
    let (mut out, _sub) = Publisher::new();
    let end = super::run(&mut p, &mut rx, &mut wake, || false, &mut out).await;
    assert_eq!(end.unwrap(), RunEnd::Shutdown);
    assert_eq!(queue.len(), input().len(), "nothing was acknowledged");
}

#[tokio::test]
async fn a_failed_commit_reloads_and_is_applied_exactly_once() {
    let want = reference().await;
    for nth in [0usize, 3, 7] {
        let (store, queue) = (MemStore::default(), MemQueue::default());
        queue.push(input());
        let mut p = Processor::open(store.clone(), queue.clone(), settings(50, 400))
            .await
            .unwrap();
        // Step until the nth commit is under way, then make it fail.
        let mut commits = 0;
        loop {
            match p.step().await {
                Ok(Progress::Idle) => break,
                Ok(_) => {}
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    continue;
                }
            }
            let r = p.take_reports();
            commits += r
                .iter()
                .filter(|r| matches!(r, Progress::Committed(_)))
                .count();
            if commits == nth {
                store.inject(Op::Commit, Fault::Transient);
                commits += 1_000;
            }
        }
        p.catch_up().await.unwrap();
        assert_eq!(store.mem().tables(), want, "commit {nth} failed");
    }
}

#[tokio::test]
async fn a_group_another_process_committed_stops_the_run() {
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    store.inject(Op::Commit, Fault::AlreadyCommitted);
    let err = run(&store, &queue, settings(50, 400)).await.unwrap_err();
    assert!(
        matches!(err, crate::error::Error::InUse(_)) && err.to_string().contains("second dvmtop"),
        "{err}"
    );
    // Nothing of the refused group was acknowledged.
    assert_eq!(queue.len(), input().len());
}

#[tokio::test]
async fn a_failed_queue_trim_is_retried_before_the_next_read() {
    let want = reference().await;
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    for _ in 0..3 {
        queue.inject(Op::Ack, Fault::Transient);
    }
    assert_eq!(
        run(&store, &queue, settings(50, 400)).await.unwrap(),
        RunEnd::Drained
    );
    assert_eq!(queue.len(), 0, "every trim happened in the end");
    assert_eq!(store.mem().tables(), want);
}

#[tokio::test]
async fn a_restart_after_a_committed_but_untrimmed_group_finishes_the_trim() {
    let want = reference().await;
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    let mut p = Processor::open(store.clone(), queue.clone(), settings(50, 400))
        .await
        .unwrap();
    // Commit a few groups, then fail the trim of the last and "crash".
    for _ in 0..40 {
        p.step().await.unwrap();
    }
    queue.inject(Op::Ack, Fault::Transient);
    assert!(p.commit().await.is_err());
    drop(p);
    let before = queue.len();
    assert_eq!(
        run(&store, &queue, settings(50, 400)).await.unwrap(),
        RunEnd::Drained
    );
    assert!(before > 0);
    assert_eq!(queue.len(), 0);
    assert_eq!(store.mem().tables(), want);
}

#[tokio::test]
async fn the_snapshot_follows_pause_step_and_the_end() {
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    let mut p = Processor::open(store.clone(), queue.clone(), settings(50, 400))
        .await
        .unwrap();
    let (ctl, mut rx) = mpsc::channel(8);
    let mut wake = Wake::new(Duration::from_millis(10));
    let (mut out, sub) = Publisher::new();
    let mut status = sub.status;
    ctl.send(Control::Pause).await.unwrap();
    ctl.send(Control::StepBatch).await.unwrap();
    let task =
        tokio::spawn(
            async move { super::run(&mut p, &mut rx, &mut wake, || true, &mut out).await },
        );
    // Paused after one batch.
    let s = status
        .wait_for(|s| s.paused && s.stepping.is_none() && s.session.batches == 1)
        .await
        .unwrap()
        .clone();
    assert_eq!(
        s.session.processed,
        s.last_batch.as_ref().unwrap().processed as u64
    );
    ctl.send(Control::Resume).await.unwrap();
    let s = status
        .wait_for(|s| s.phase == Phase::Finished)
        .await
        .unwrap()
        .clone();
    assert_eq!(task.await.unwrap().unwrap(), RunEnd::Drained);
    let m = store.mem();
    assert_eq!(s.session.processed as i64, m.counters["processed"]);
    assert_eq!(s.month, m.state.clock.month);
    assert_eq!(s.committed_seq, m.state.last_seq);
    assert!(s.latency.max_ms >= s.latency.avg_ms && s.latency.avg_ms > 0.0);
}

#[tokio::test]
async fn a_waiting_rollover_shows_the_row_it_writes_and_the_run_ends_after_it() {
    let (store, queue) = (MemStore::default(), MemQueue::default());
    // January, then February up to the 10th: January is due (Feb 4 +),
    // nothing else is pending, so it waits for confirmation at the end.
    queue.push(input().into_iter().take_while(|p| {
        let ts: i64 = p.split('\t').nth(3).unwrap().parse().unwrap();
        ts < at(2, 10, 0)
    }));
    let mut s = settings(50, 400);
    s.params.policy = Policy::Manual;
    let mut p = Processor::open(store.clone(), queue.clone(), s)
        .await
        .unwrap();
    let (ctl, mut rx) = mpsc::channel(8);
    let mut wake = Wake::new(Duration::from_millis(10));
    let (mut out, sub) = Publisher::new();
    let mut status = sub.status;
    let task =
        tokio::spawn(
            async move { super::run(&mut p, &mut rx, &mut wake, || true, &mut out).await },
        );
    let waiting = status
        .wait_for(|s| s.phase == Phase::Waiting)
        .await
        .unwrap()
        .clone();
    let a = waiting.awaiting.expect("January waits");
    assert_eq!(a.month.to_string(), "2024-01");
    assert!(a.preview.total_requests > 0);
    ctl.send(Control::Confirm(a.month)).await.unwrap();
    assert_eq!(task.await.unwrap().unwrap(), RunEnd::Drained);
    let m = store.mem();
    let row = &m.monthly[&a.month];
    assert_eq!(
        MonthRowFigures::of(row),
        MonthRowFigures::of(&a.preview),
        "the dialog's figures are the row written"
    );
}

/// Issue 12, the lost first `y`: the operator confirms a month the
/// processor has opened in memory while the commit of the previous month's
/// rollover is still under way (so the tables still name the previous
/// month as open). The confirmation is taken, survives that commit and the
/// requests read that follows it, and the month rolls over without a
/// second confirmation — ending with the rows of the automatic run.
#[tokio::test]
async fn a_confirmation_while_the_previous_rollover_commits_is_not_lost() {
    let want = reference().await;
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    let mut s = settings(50, 1_000_000);
    s.params.policy = Policy::Manual;
    let mut p = Processor::open(store.clone(), queue.clone(), s)
        .await
        .unwrap();
    let (jan, feb) = ("2024-01".parse().unwrap(), "2024-02".parse().unwrap());
    while p.awaiting().map(|a| a.month) != Some(jan) {
        p.step().await.unwrap();
    }
    p.commit().await.unwrap();
    assert!(p.confirm(jan).await.unwrap());
    // From here the commit of January's rollover stays under way.
    let held = store.commits_held.write().await;
    while !matches!(p.step().await.unwrap(), Progress::Rolled { .. }) {}
    while p.awaiting().map(|a| a.month) != Some(feb) {
        p.step().await.unwrap();
    }
    assert_eq!(
        store.mem().state.clock.month,
        Some(jan),
        "January's rollover is not committed yet"
    );
    assert!(
        p.confirm(feb).await.unwrap(),
        "February is the processor's open month: its confirmation is taken"
    );
    drop(held);
    p.commit().await.unwrap();
    // The NOTIFY of the confirmation makes the run loop read the requests.
    p.refresh_requests().await.unwrap();
    let (_ctl, mut rx) = mpsc::channel(4);
    let mut wake = Wake::new(Duration::from_millis(10));
    let (mut out, _sub) = Publisher::new();
    // Without a confirmation February would wait for ever: the run would
    // not end.
    let end = tokio::time::timeout(
        Duration::from_secs(30),
        super::run(&mut p, &mut rx, &mut wake, || true, &mut out),
    )
    .await
    .expect("February rolls over on its one confirmation and the run ends");
    assert_eq!(end.unwrap(), RunEnd::Drained);
    let got = store.mem().tables();
    assert_eq!(got.monthly.keys().collect::<Vec<_>>(), [&jan, &feb]);
    assert_eq!(
        got.monthly
            .values()
            .map(MonthRowFigures::of)
            .collect::<Vec<_>>(),
        want.monthly
            .values()
            .map(MonthRowFigures::of)
            .collect::<Vec<_>>()
    );
}

/// A row without its write time.
#[derive(Debug, PartialEq)]
struct MonthRowFigures(dvmtop_core::MonthRow);

impl MonthRowFigures {
    fn of(r: &dvmtop_core::MonthRow) -> Self {
        MonthRowFigures(dvmtop_core::MonthRow {
            created_at: None,
            ..r.clone()
        })
    }
}

/// Redis restarts without its data under a running pipeline (issue 13):
/// what was read is committed, nothing of the new list is trimmed by the
/// old groups' acknowledges, everything queued afterwards is processed,
/// and the loss is an alert with what it cost — the tables are those of
/// a run over exactly the elements that survived.
#[tokio::test]
async fn a_lost_queue_is_an_alert_and_nothing_read_or_queued_after_is_lost() {
    let all = input();
    let (first, rest) = all.split_at(300);
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(first.to_vec());
    // A large group: what is read stays uncommitted until the loss.
    let mut p = Processor::open(store.clone(), queue.clone(), settings(50, 1_000_000))
        .await
        .unwrap();
    let mut read = 0;
    let mut batches = 0;
    while batches < 2 {
        if let Progress::Batch(b) = p.step().await.unwrap() {
            read += b.consumed;
            batches += 1;
        }
    }
    assert_eq!(store.mem().state.last_seq, 0, "nothing committed yet");
    queue.lose_everything();
    queue.push(rest.to_vec());
    let (end, _) = run_opened(&mut p).await;
    assert_eq!(end.unwrap(), RunEnd::Drained);
    assert_eq!(queue.len(), 0);
    let alerts = store.mem().alerts.clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, dvmtop_core::alert::QUEUE_LOST);
    let lost = 300 - read;
    assert!(
        alerts[0]
            .message
            .contains(&format!("at least {lost} queued events")),
        "{}",
        alerts[0].message
    );
    assert_eq!(p.alerts(), &alerts[..], "the published status carries it");
    assert_eq!(store.mem().epoch, *queue.epoch.lock().unwrap());

    let (ref_store, ref_queue) = (MemStore::default(), MemQueue::default());
    ref_queue.push(first[..read].iter().chain(rest).cloned());
    assert_eq!(
        run(&ref_store, &ref_queue, settings(50, 400))
            .await
            .unwrap(),
        RunEnd::Drained
    );
    let (a, b) = (ref_store.mem().tables(), store.mem().tables());
    assert_eq!(a.counters, b.counters);
    assert_eq!(a.monthly, b.monthly);
    assert!(
        a == b,
        "tables differ from a run over the surviving elements"
    );
}

/// A restart finds the queue lost (Redis came back empty while dvmtop was
/// stopped): an alert, a new generation at the committed position, and
/// nothing trimmed from what is queued now.
#[tokio::test]
async fn a_queue_lost_while_stopped_is_found_at_start() {
    let all = input();
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(all[..200].to_vec());
    assert_eq!(
        run(&store, &queue, settings(50, 400)).await.unwrap(),
        RunEnd::Drained
    );
    assert!(store.mem().state.last_seq > 0);
    assert!(store.mem().alerts.is_empty());
    queue.lose_everything();
    queue.push(all[200..].to_vec());
    let n = queue.len();
    let p = Processor::open(store.clone(), queue.clone(), settings(50, 400))
        .await
        .unwrap();
    assert_eq!(queue.len(), n, "nothing trimmed");
    assert_eq!(p.alerts().len(), 1);
    assert_eq!(store.mem().alerts[0].kind, dvmtop_core::alert::QUEUE_LOST);
    drop(p);
    assert_eq!(
        run(&store, &queue, settings(50, 400)).await.unwrap(),
        RunEnd::Drained
    );
    assert_eq!(queue.len(), 0);
    let mut reference = reference().await;
    let got = store.mem().tables();
    reference.alerts = got.alerts.clone();
    assert!(reference == got, "every element processed once");
}

/// The snapshot published when a run ends counts every entity its events
/// made, however fast they went (the counts are throttled to one a second
/// while batches run; a metrics scrape once read the start's zeros).
#[tokio::test]
async fn the_last_snapshot_counts_the_entities_of_a_fast_run() {
    let (store, queue) = (MemStore::default(), MemQueue::default());
    queue.push(input());
    let mut p = Processor::open(store.clone(), queue.clone(), settings(50, 400))
        .await
        .unwrap();
    let (end, sub) = run_opened(&mut p).await;
    assert_eq!(end.unwrap(), RunEnd::Drained);
    let want = p.entity_counts();
    assert!(want.dvms_active > 0 && want.users_active > 0, "{want:?}");
    let got = sub.status.borrow().entities;
    assert_eq!(got, Some(want));
}
