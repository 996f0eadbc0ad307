//! `dvmtop restore` (issue 13): only a backup that belongs here is put
//! back — the namespace's own (another's with `--from-namespace`), of a
//! known format, with possible values — never beside a running pipeline,
//! and a damaged file writes nothing.

mod common;
use common::*;

use common::process::{Dvmtop, Running};
use dvmtop::retention::{Backup, restore};
use dvmtop::store::MonthRow;
use dvmtop_core::YearMonth;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn row(m: &str, requests: i64) -> MonthRow {
    MonthRow {
        year_month: m.parse::<YearMonth>().unwrap(),
        total_requests: requests,
        total_responses: 3,
        total_feedback: 1,
        unique_dvms: 1,
        unique_users: 2,
        unique_kinds: 1,
        most_popular_dvm: Some("ab".repeat(32)),
        most_popular_kind: Some(dvmtop_core::JobKind(5300)),
        dvm_activity: json!({"ab".repeat(32): {"responses": 3, "feedback": 1}}),
        kind_activity: json!({"5300": {"requests": requests, "responses": 3}}),
        created_at: Some("2025-02-04T00:00:00Z".parse().unwrap()),
        jobs_answered: 0,
        median_response_s: None,
        p90_response_s: None,
    }
}

fn write(dir: &Path, name: &str, b: &serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(b).unwrap()).unwrap();
    p
}

fn backup(ns: &str, rows: Vec<MonthRow>) -> serde_json::Value {
    serde_json::to_value(Backup {
        format: dvmtop::retention::backup::FORMAT.into(),
        namespace: ns.into(),
        rolled_up: "2025-02".into(),
        written_at: chrono::Utc::now(),
        rows,
    })
    .unwrap()
}

#[tokio::test]
async fn a_foreign_namespaces_backup_is_refused_unless_named() {
    let ns = TestNs::new("restforeign");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let file = write(
        &cfg.data_dir,
        "b.json",
        &backup("elsewhere", vec![row("2025-01", 5), row("2025-02", 7)]),
    );
    let err = restore(&s.db, &file, None).await.unwrap_err().to_string();
    assert!(
        err.contains("namespace elsewhere")
            && err.contains(&ns.name)
            && err.contains("--from-namespace elsewhere"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(s.db.monthly_rows().await.unwrap().is_empty());
    // Named on purpose, it is restored; the wrong name is refused.
    let err = restore(&s.db, &file, Some("third")).await.unwrap_err();
    assert!(err.to_string().contains("not of third"), "{err}");
    let r = restore(&s.db, &file, Some("elsewhere")).await.unwrap();
    assert_eq!((r.inserted, r.updated, r.unchanged), (2, 0, 0));
    assert_eq!(
        s.db.monthly_rows().await.unwrap(),
        vec![row("2025-01", 5), row("2025-02", 7)]
    );
}

#[tokio::test]
async fn an_unknown_format_and_impossible_values_are_refused_and_nothing_is_written() {
    let ns = TestNs::new("restchecks");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let good = write(
        &cfg.data_dir,
        "good.json",
        &backup(&ns.name, vec![row("2025-01", 5)]),
    );
    restore(&s.db, &good, None).await.unwrap();
    let before = s.db.monthly_rows().await.unwrap();

    let mut v = backup(&ns.name, vec![row("2025-01", 9)]);
    v["format"] = json!("dvmtop-monthly-activity-v9");
    let f = write(&cfg.data_dir, "v9.json", &v);
    let err = restore(&s.db, &f, None).await.unwrap_err().to_string();
    assert!(
        err.contains("dvmtop-monthly-activity-v9") && err.contains("does not know"),
        "{err}"
    );

    // A good row first, then a negative total: the whole file is refused.
    let f = write(
        &cfg.data_dir,
        "negative.json",
        &backup(&ns.name, vec![row("2025-02", 4), row("2025-03", -4)]),
    );
    let err = restore(&s.db, &f, None).await.unwrap_err().to_string();
    assert!(
        err.contains("2025-03") && err.contains("total_requests is negative"),
        "{err}"
    );
    assert_no_locks(&ns.name);
    let mut bad = row("2025-04", 4);
    bad.kind_activity = json!({"5300": {"requests": -1, "responses": 0}});
    let f = write(&cfg.data_dir, "badkind.json", &backup(&ns.name, vec![bad]));
    let err = restore(&s.db, &f, None).await.unwrap_err().to_string();
    assert!(
        err.contains("kind_activity[5300].requests is negative"),
        "{err}"
    );
    assert_no_locks(&ns.name);

    // A file cut off in the middle of its rows.
    let text = std::fs::read_to_string(write(
        &cfg.data_dir,
        "full.json",
        &backup(&ns.name, vec![row("2025-05", 1), row("2025-06", 2)]),
    ))
    .unwrap();
    let cut = cfg.data_dir.join("cut.json");
    std::fs::write(&cut, &text[..text.len() * 3 / 4]).unwrap();
    let err = restore(&s.db, &cut, None).await.unwrap_err().to_string();
    assert!(
        err.contains("damaged") && err.contains("nothing was restored"),
        "{err}"
    );
    assert_no_locks(&ns.name);

    let f = write(&cfg.data_dir, "notabackup.json", &json!({"hello": 1}));
    let err = restore(&s.db, &f, None).await.unwrap_err().to_string();
    assert!(err.contains("not a dvmtop backup"), "{err}");

    assert_eq!(
        s.db.monthly_rows().await.unwrap(),
        before,
        "nothing written"
    );
}

/// No lock on the namespace's tables is held once a refused restore has
/// returned: its transaction is rolled back, not left for the pool to end
/// later. Asked from another process without yielding to this test's
/// runtime (which would let the pool finish a pending rollback); clients
/// only (an autovacuum worker may lock a table for a moment).
fn assert_no_locks(schema: &str) {
    let q = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE n.nspname = '{schema}' AND a.backend_type = 'client backend'"
    );
    let out = std::process::Command::new("psql")
        .args([&database_url(), "-XAtc", &q])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "a refused restore left its transaction open"
    );
}

/// `restore` takes the namespace lock: refused while `serve` runs.
#[test]
fn restore_is_refused_beside_a_running_serve() {
    let ns = TestNs::new("restlock");
    let d = Dvmtop::shared(&ns);
    let file = write(
        &d.data_dir,
        "b.json",
        &backup(&ns.name, vec![row("2025-01", 5)]),
    );
    let mut serve: Running = d.spawn(["serve", "--no-relays"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = d.output(["status", "--json"]);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if st["pipeline"]["holding"] == true {
            break;
        }
        assert!(
            serve.try_wait().is_none(),
            "{:?}",
            serve.finish(Duration::ZERO)
        );
        assert!(
            Instant::now() < deadline,
            "serve never took the namespace: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = d.output(["restore", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restored beside serve: {stderr}");
    assert!(
        stderr.contains("in use by another dvmtop process"),
        "{stderr}"
    );
    let done = serve.terminate(Duration::from_secs(60));
    assert!(done.status.success(), "{done:?}");
    // Alone, it restores.
    let out = d.output(["restore", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"inserted\":1"));
}
