//! A failed backup (issue 13) is never silent and leaves nothing behind:
//! it is audited as failed, named (month and cause) in the headless
//! summary, fails the run, and no `.tmp` file stays in the backup
//! directory — also when the write fails half-way (a full disk, a rename
//! that cannot happen).

mod common;
use common::*;

use common::process::{Dvmtop, generate};
use dvmtop::pipeline::{Processor, Progress};
use dvmtop::run::Services;
use std::path::Path;

fn req(seed: u8, ts: i64) -> String {
    event_line(seed, ts, 5300, vec![vec!["i", "x", "text"]], "")
}

fn tmp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Rolls January 2025 over with `prepare` applied to the backup dir first;
/// returns the backup's reported result.
async fn backup_with(tag: &str, prepare: impl FnOnce(&Path)) -> (Result<String, String>, TestNs) {
    let ns = TestNs::new(tag);
    let cfg = ns.config();
    std::fs::create_dir_all(&cfg.backup_dir).unwrap();
    prepare(&cfg.backup_dir);
    let s = ns.open(&cfg).await;
    let mut p = Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
        .await
        .unwrap();
    push_lines(
        &s.queue,
        &[req(1, at(2025, 1, 10, 0)), req(2, at(2025, 2, 10, 0))],
    )
    .await;
    let log = settle(&mut p).await;
    let result = log
        .into_iter()
        .find_map(|x| match x {
            Progress::Backup { result, .. } => Some(result),
            _ => None,
        })
        .expect("a backup after the rollover");
    let audit =
        s.db.job_runs(Some(dvmtop_core::Job::Backup), 1, None)
            .await
            .unwrap();
    assert_eq!(
        audit[0].outcome,
        if result.is_ok() {
            dvmtop_core::Outcome::Ok
        } else {
            dvmtop_core::Outcome::Failed
        }
    );
    assert!(
        tmp_files(&cfg.backup_dir).is_empty(),
        "left behind: {:?}",
        tmp_files(&cfg.backup_dir)
    );
    (result, ns)
}

#[tokio::test]
async fn a_backup_failing_on_a_full_disk_leaves_no_temp_file() {
    // The temp file is /dev/full: every write fails with ENOSPC.
    let (r, _ns) = backup_with("backupfull", |dir| {
        std::os::unix::fs::symlink("/dev/full", dir.join(".monthly_activity-2025-01.json.tmp"))
            .unwrap();
    })
    .await;
    let err = r.expect_err("written to a full disk");
    assert!(err.contains("no space left"), "{err}");
}

#[tokio::test]
async fn a_backup_failing_at_the_rename_leaves_no_temp_file() {
    // A non-empty directory where the backup file goes: the rename fails
    // after the temp file was written.
    let (r, _ns) = backup_with("backuprename", |dir| {
        let blocker = dir.join("monthly_activity-2025-01.json");
        std::fs::create_dir_all(&blocker).unwrap();
        std::fs::write(blocker.join("x"), "x").unwrap();
    })
    .await;
    let err = r.expect_err("renamed onto a directory");
    assert!(err.contains("monthly_activity-2025-01.json"), "{err}");
}

/// A headless backtest whose backup fails: the summary names the month
/// and the cause, and the run fails (it claimed success before).
#[test]
fn a_headless_run_with_a_failed_backup_says_so_and_fails() {
    let ns = TestNs::new("backupcli");
    let d = Dvmtop::shared(&ns);
    std::fs::create_dir_all(&d.data_dir).unwrap();
    let input = d.data_dir.join("in.jsonl");
    generate(&["--months", "2", "--events-per-day", "20"], &input);
    // A file where the backup directory should be.
    let blocker = d.data_dir.join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let out = d.output([
        "backtest",
        "--headless",
        "--fresh",
        "--backup-dir",
        blocker.join("backups").to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit 0 with a failed backup: {stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a summary");
    assert_eq!(summary["event"], "summary");
    let failures = summary["backup_failures"]
        .as_array()
        .expect("backup_failures");
    assert!(!failures.is_empty(), "{summary}");
    assert!(
        failures[0]["month"].as_str().is_some_and(|m| m.len() == 7),
        "{summary}"
    );
    assert!(
        failures[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("blocker")),
        "{summary}"
    );
    // One line about the backup (CI's Redis persists nothing, which is a
    // warning line of its own).
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("warning:"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(stderr.contains("backup"), "{stderr}");
    // Everything was processed all the same.
    assert_eq!(summary["queue_depth"], 0, "{summary}");
}
