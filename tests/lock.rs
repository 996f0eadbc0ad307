//! The namespace lock's keeper (issue 13): a lost lock session is taken
//! again, and when another process got the namespace in the gap, this
//! one stops writing and says why. The lost session is simulated by
//! ending the keeper's backend (`pg_terminate_backend`), as a PostgreSQL
//! restart ends it; the PostgreSQL restarts themselves are in
//! tests/faults_pg.rs.

mod common;
use common::*;

use dvmtop::error::Error;
use dvmtop::store::{Db, LockState, NamespaceLock};
use sqlx::Connection;
use std::time::{Duration, Instant};

async fn held_pid(lock: &NamespaceLock) -> i32 {
    match &*lock.state().borrow() {
        LockState::Held { pid } => *pid,
        other => panic!("lock not held: {other:?}"),
    }
}

/// Ends the keeper's session, as a PostgreSQL restart would.
async fn end_session(pid: i32) {
    let mut admin = sqlx::PgConnection::connect(&database_url())
        .await
        .expect("connect");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(ended);
}

async fn wait_for(lock: &NamespaceLock, what: &str, pred: impl Fn(&LockState) -> bool) {
    let mut state = lock.state();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred(&state.borrow_and_update()) {
        assert!(
            Instant::now() < deadline,
            "{what}: lock state {:?}",
            *state.borrow()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), state.changed()).await;
    }
}

#[tokio::test]
async fn a_lost_lock_session_is_taken_again_and_still_excludes_others() {
    let ns = TestNs::new("lockagain");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let lock = s.db.lock().await.expect("lock");
    let db = s.db.clone().locked_by(&lock);
    let first = held_pid(&lock).await;
    end_session(first).await;
    wait_for(
        &lock,
        "taken again",
        |s| matches!(s, LockState::Held { pid } if *pid != first),
    )
    .await;
    assert!(db.lock_held().expect("held").is_some());
    // A second process is still refused.
    let other = Db::connect(&database_url(), &ns.name).await.unwrap();
    let err = other.lock().await.err().expect("a second lock was granted");
    assert!(matches!(err, Error::InUse(_)), "{err}");
}

#[tokio::test]
async fn a_namespace_taken_over_while_the_lock_was_lost_stops_this_process() {
    let ns = TestNs::new("locktaken");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let lock = s.db.lock().await.expect("lock");
    let db = s.db.clone().locked_by(&lock);
    // Another process is ready to take the namespace the moment it is free.
    let mut rival = sqlx::PgConnection::connect(&database_url()).await.unwrap();
    end_session(held_pid(&lock).await).await;
    let key = format!("dvmtop:{}", ns.name);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut rival)
            .await
            .unwrap();
        if got {
            break;
        }
        assert!(Instant::now() < deadline, "the ended session kept the lock");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_for(&lock, "taken over", |s| *s == LockState::TakenOver).await;
    let err = db.lock_held().expect_err("writes still allowed");
    assert!(
        matches!(err, Error::InUse(_)) && err.to_string().contains("taken over"),
        "{err}"
    );
    assert!(!err.is_transient());
    // Its processor refuses to step (and so to write).
    let mut p = dvmtop::pipeline::Processor::open(
        db.clone(),
        s.queue.clone(),
        dvmtop::run::Services::settings(&cfg),
    )
    .await
    .unwrap();
    let err = p.step().await.expect_err("stepped without the lock");
    assert!(err.to_string().contains("taken over"), "{err}");
}
