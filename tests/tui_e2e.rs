//! End-to-end runs of the real binary's TUI inside tmux: poll the screen
//! for text (no blind sleeps), press keys, check PostgreSQL, check the
//! process exits cleanly and gives the terminal back.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{BIN, Dvmtop};
#[path = "common/tmux.rs"]
mod tmux;
use tmux::Tmux;

fn wait_file(path: &Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return s.trim().to_owned();
        }
        assert!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `dvmtop gen --months 3 --events-per-day 200` into the data dir; returns
/// the file and its number of events.
fn generate(dir: &Path) -> (PathBuf, u64) {
    let file = dir.join("g3.jsonl");
    let stats = common::process::generate(&["--months", "3", "--events-per-day", "200"], &file);
    (file, stats.events)
}

/// The services' URLs, passed explicitly into tmux's shell.
fn env_prefix() -> String {
    format!(
        "env DATABASE_URL='{}' REDIS_URL='{}' DVMTOP_LOG=info",
        database_url(),
        redis_url()
    )
}

async fn month_rows(ns: &str, month: &str) -> i64 {
    let db = dvmtop::store::Db::connect(&database_url(), ns)
        .await
        .expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM monthly_activity WHERE year_month = $1")
        .bind(month)
        .fetch_one(&db.pool)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn backtest_tui_confirm_help_quit() {
    let ns = TestNs::new("tuie2e");
    let dir = std::env::temp_dir().join(&ns.name);
    let (file, _) = generate(&dir);
    let exit_file = dir.join("exit");
    let cmd = format!(
        "{} '{BIN}' backtest '{}' --fresh --namespace {} --rollover manual --data-dir '{}'; echo EXIT=$? > '{}'; exec sleep 600",
        env_prefix(),
        file.display(),
        ns.name,
        dir.display(),
        exit_file.display()
    );
    let tmux = Tmux::start("bt", 100, 30, &cmd);

    // The manual policy stops at January's rollover; the dialog names the
    // month and, once the worker is back, its summary.
    let screen = tmux.wait_for("the rollover dialog", Duration::from_secs(120), |s| {
        s.contains("Month rollover due: 2024-01") && s.contains("completion")
    });
    assert!(screen.contains("Not yet (n)"), "{screen}");
    assert!(
        screen
            .lines()
            .nth(1)
            .unwrap_or("")
            .contains("waiting for confirmation"),
        "the state line says it waits:\n{screen}"
    );
    assert_eq!(month_rows(&ns.name, "2024-01").await, 0, "not before y");

    tmux.keys("y");
    let start = Instant::now();
    while month_rows(&ns.name, "2024-01").await != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no monthly_activity row for 2024-01 after y; screen:\n{}",
            tmux.screen()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Shrunk below 80×24 it says so; grown back it draws the panes again.
    let out = tmux.run(&["resize-window", "-t", &tmux.session, "-x", "70", "-y", "20"]);
    assert!(out.status.success(), "{out:?}");
    tmux.wait_for("the too-small screen", Duration::from_secs(10), |s| {
        s.contains("terminal too small") && s.contains("70×20, need 80×24")
    });
    tmux.run(&[
        "resize-window",
        "-t",
        &tmux.session,
        "-x",
        "100",
        "-y",
        "30",
    ]);
    tmux.wait_for("the panes again", Duration::from_secs(10), |s| {
        s.contains("Queue") && !s.contains("terminal too small")
    });

    tmux.keys("?");
    tmux.wait_for("the help overlay", Duration::from_secs(10), |s| {
        s.contains("Keys") && s.contains("show or hide this help")
    });

    tmux.keys("q");
    let exit = wait_file(&exit_file, Duration::from_secs(90));
    assert_eq!(exit, "EXIT=0", "screen:\n{}", tmux.screen());
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    let screen = tmux.screen();
    assert!(
        screen.contains("events processed this session"),
        "the shell shows the exit summary, not the TUI:\n{screen}"
    );
    assert!(!screen.contains("Queue"), "{screen}");
}

/// `dvmtop FILE` (the service with the TUI) loses nothing when its SSH
/// session drops: the pane closes (SIGHUP), dvmtop commits and exits, and a
/// headless resume ends with every event processed exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn hangup_loses_nothing() {
    let ns = TestNs::new("tuihup");
    let dir = std::env::temp_dir().join(&ns.name);
    let (file, events) = generate(&dir);
    let pid_file = dir.join("pid");
    let cmd = format!(
        "sh -c 'echo $$ > {}; exec {} {BIN} {} --namespace {} --rollover manual --data-dir {}'",
        pid_file.display(),
        env_prefix().replace('\'', ""),
        file.display(),
        ns.name,
        dir.display(),
    );
    let tmux = Tmux::start("hup", 100, 30, &cmd);
    tmux.wait_for("the service TUI", Duration::from_secs(120), |s| {
        s.contains("service · manual rollover") && s.contains("Month rollover due: 2024-01")
    });
    let pid = wait_file(&pid_file, Duration::from_secs(5));
    // The terminal goes away, as when an SSH connection drops.
    let _ = tmux.run(&["kill-server"]);
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "dvmtop (pid {pid}) still running 60 s after the hang-up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It shut down, not just died: the log says the pipeline ended cleanly.
    let log: String = std::fs::read_dir(dir.join("logs"))
        .expect("a log directory")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        log.contains("SIGHUP: shutting down") || log.contains("terminal closed: shutting down"),
        "{log}"
    );
    assert!(log.contains("the pipeline ended cleanly"), "{log}");
    // Resume headless (auto rollover): everything is processed once.
    let out = Dvmtop::shared(&ns)
        .command()
        .args(["backtest", "--headless", "--resume"])
        .arg(&file)
        .output()
        .expect("resume runs");
    assert!(out.status.success(), "resume failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    assert_eq!(summary["processed"], events, "{summary}");
    assert_eq!(summary["accepted"], events, "{summary}");
    assert_eq!(summary["rejected"]["duplicate"], 0, "{summary}");
    assert_eq!(summary["queue_depth"], 0, "{summary}");
    assert_eq!(month_rows(&ns.name, "2024-01").await, 1);
}

/// The figures a dialog shows on its first rendering: requests.
fn dialog_requests(screen: &str) -> Option<i64> {
    let at = screen.find("requests ")?;
    let digits: String = screen[at + "requests ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `monthly_activity` as comparable text (without the write time).
async fn monthly(ns: &str) -> Vec<String> {
    let db = dvmtop::store::Db::connect(&database_url(), ns)
        .await
        .expect("connect");
    table_dump(&db, "monthly_activity", "year_month", &["created_at"]).await
}

/// A manual TUI backtest confirmed month by month: every dialog shows, on
/// its first rendering, the month's real request count (the row the
/// headless run wrote), and the TUI run ends with the same
/// `monthly_activity` as the headless run of the same file.
#[tokio::test(flavor = "multi_thread")]
async fn a_tui_backtest_confirmed_month_by_month_equals_the_headless_run() {
    let headless = TestNs::new("tuimbmh");
    let ns = TestNs::new("tuimbm");
    let dir = std::env::temp_dir().join(&ns.name);
    let (file, _) = generate(&dir);
    let out = Dvmtop::shared(&headless)
        .command()
        .args(["backtest", "--headless", "--fresh"])
        .arg(&file)
        .output()
        .expect("headless runs");
    assert!(out.status.success(), "{out:?}");
    let want = monthly(&headless.name).await;
    assert_eq!(want.len(), 2, "January and February: {want:?}");
    let db = dvmtop::store::Db::connect(&database_url(), &headless.name)
        .await
        .unwrap();
    let rows = db.monthly_rows().await.unwrap();

    let cmd = format!(
        "{} '{BIN}' backtest '{}' --fresh --namespace {} --rollover manual --data-dir '{}'; exec sleep 600",
        env_prefix(),
        file.display(),
        ns.name,
        dir.display(),
    );
    let tmux = Tmux::start("mbm", 100, 30, &cmd);
    for row in &rows {
        let m = row.year_month.to_string();
        let title = format!("Month rollover due: {m}");
        // The whole dialog, down to its buttons (a capture may land in the
        // middle of a redraw): its figures, or the "loading" line.
        let s = tmux.wait_for(&title, Duration::from_secs(120), |s| {
            s.contains(&title)
                && s.contains("Roll over (y)")
                && (dialog_requests(s).is_some() || s.contains("loading the month's figures"))
        });
        assert_eq!(
            dialog_requests(&s),
            Some(row.total_requests),
            "the dialog's first rendering shows {m}'s real request count:\n{s}"
        );
        // One `y` per month. (Issue 12: the last month's first `y` was
        // refused about one run in two — confirmed while the previous
        // rollover's commit was still under way, so the tables named the
        // previous month as open. The pipeline test
        // `a_confirmation_while_the_previous_rollover_commits_is_not_lost`
        // pins the race down.)
        // Pressed as soon as the dialog shows (not after the previous
        // month's row is in the table): that is when the race was.
        tmux.keys("y");
        tmux.wait_for("the dialog to close", Duration::from_secs(60), |s| {
            s.contains(&format!("rolled over {m}")) || !s.contains(&title)
        });
    }
    // A refused `y` brings the dialog back and the run never finishes.
    tmux.wait_for(
        "FINISHED after one y per month",
        Duration::from_secs(120),
        |s| s.contains("FINISHED"),
    );
    assert_eq!(monthly(&ns.name).await, want);
    tmux.keys("q");
}

/// Two watchers (`dvmtop watch`, `--readonly`) and a `serve` on one
/// namespace at once: the watchers follow the serve's progress (the title
/// names it, the state reaches the rollover it waits for), neither can
/// confirm it (the month stays open), and when the serve stops they say
/// that no process holds the namespace.
#[tokio::test(flavor = "multi_thread")]
async fn two_watchers_follow_a_serve_and_neither_can_confirm() {
    let ns = TestNs::new("watch2");
    let dir = std::env::temp_dir().join(&ns.name);
    let (file, _) = generate(&dir);
    let mut serve = Dvmtop::shared(&ns).spawn([
        "serve",
        "--no-relays",
        "--rollover",
        "manual",
        file.to_str().unwrap(),
    ]);
    // Watchers attach to a namespace that exists (they create nothing).
    serve.wait_for_json("its first line", Duration::from_secs(120), |_| true);
    let watch = |tag: &str, w: u16, h: u16, how: &str| {
        let cmd = format!(
            "{} '{BIN}' {how} --namespace {} --data-dir '{}'; exec sleep 600",
            env_prefix(),
            ns.name,
            dir.join(tag).display(),
        );
        Tmux::start(tag, w, h, &cmd)
    };
    let a = watch("watcha", 80, 24, "watch");
    let b = watch("watchb", 120, 40, "--readonly");
    let long = Duration::from_secs(120);
    for t in [&a, &b] {
        t.wait_for("the holder in the title", long, |s| {
            s.contains(&format!("WATCHING serve on {}", dvmtop::store::hostname()))
        });
        // The serve processes January and waits for its rollover: the
        // watchers see it get there.
        t.wait_for("the waiting rollover", long, |s| {
            s.contains("WAITING") && s.contains("rollover of 2024-01 due")
        });
        // The holder's alert, on the watchers' banner.
        t.wait_for("the alert banner", long, |s| {
            s.contains("rollover_waiting: the rollover of 2024-01 waits")
        });
    }
    // Neither may confirm: `c` reviews, `y` is refused with who can.
    for t in [&a, &b] {
        t.keys("c");
        t.wait_for("the dialog", long, |s| {
            s.contains("Month rollover due: 2024-01")
        });
        t.keys("y");
        t.wait_for("the refusal", long, |s| {
            s.contains("watching only: only the serve on")
        });
        t.keys("Escape");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        month_rows(&ns.name, "2024-01").await,
        0,
        "a watcher's `y` must not roll the month over"
    );
    assert!(serve.try_wait().is_none(), "the serve still runs");
    let out = serve.terminate(Duration::from_secs(60));
    assert!(!out.stderr.contains("panicked"), "serve: {}", out.stderr);
    for t in [&a, &b] {
        t.wait_for("no holder", long, |s| s.contains("NO HOLDER"));
        t.keys("q");
    }
}

/// `dvmtop backtest FILE --paused`: the TUI comes up PAUSED and nothing is
/// processed — no month opened, no event counted — however long it waits
/// (ingest still fills the queue); space resumes, and the run goes on to
/// January's rollover dialog.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_backtest_processes_nothing_until_resumed() {
    let ns = TestNs::new("tuipaused");
    let dir = std::env::temp_dir().join(&ns.name);
    let (file, events) = generate(&dir);
    let cmd = format!(
        "{} '{BIN}' backtest '{}' --fresh --paused --namespace {} --rollover manual --data-dir '{}'; exec sleep 600",
        env_prefix(),
        file.display(),
        ns.name,
        dir.display(),
    );
    let tmux = Tmux::start("paused", 100, 30, &cmd);
    let depth = format!("depth {}", group(events));
    // Paused, with the whole input queued behind it.
    tmux.wait_for(
        "PAUSED with the input queued",
        Duration::from_secs(120),
        |s| s.lines().nth(1).is_some_and(|l| l.contains("PAUSED")) && s.contains(&depth),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let db = dvmtop::store::Db::connect(&database_url(), &ns.name)
        .await
        .expect("connect");
    let snap = db.snapshot().await.unwrap();
    assert_eq!(snap.current_month, None, "no month opened while paused");
    assert_eq!(snap.counters.get("processed").copied().unwrap_or(0), 0);
    let screen = tmux.screen();
    assert!(
        screen.contains(&depth),
        "nothing taken off the queue:\n{screen}"
    );

    tmux.keys("Space");
    tmux.wait_for(
        "the rollover dialog after resuming",
        Duration::from_secs(120),
        |s| s.contains("Month rollover due: 2024-01"),
    );
    tmux.keys("q");
}

fn group(n: u64) -> String {
    dvmtop::tui::app::group(n)
}

/// The overview at 80×24, 100×30 and 120×40 (one backtest, the window
/// resized): the five card panes at once — the queue's depth with its
/// history on a time axis and a scale, the ground-truth month, day and
/// clock, the overflow buffer, active/inactive DVMs and users, and the
/// cleanup history with its runs.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_the_five_card_panes_at_every_size() {
    let ns = TestNs::new("tuisizes");
    let dir = std::env::temp_dir().join(&ns.name);
    let (file, _) = generate(&dir);
    let cmd = format!(
        "{} '{BIN}' backtest '{}' --fresh --namespace {} --rollover auto --data-dir '{}'; exec sleep 600",
        env_prefix(),
        file.display(),
        ns.name,
        dir.display(),
    );
    let tmux = Tmux::start("sizes", 80, 24, &cmd);
    tmux.wait_for("FINISHED", Duration::from_secs(180), |s| {
        s.contains("FINISHED")
    });
    let panes: [(&str, &[&str]); 5] = [
        ("queue", &["┌ Queue ", "depth ", "┤", "└", "now"]),
        (
            "clock",
            &[
                "Clock (from the queue's events)",
                "month ",
                "day ",
                "clock ",
            ],
        ),
        ("overflow", &["Overflow", "overflow "]),
        ("entities", &["DVMs ", "users ", " active ", " inactive "]),
        ("cleanup history", &["Cleanup history", "cleanup"]),
    ];
    for (w, h) in [(80u16, 24u16), (100, 30), (120, 40)] {
        let out = tmux.run(&[
            "resize-window",
            "-t",
            &tmux.session,
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
        ]);
        assert!(out.status.success(), "{out:?}");
        let s = tmux.wait_for(
            &format!("the overview at {w}×{h}"),
            Duration::from_secs(20),
            |s| {
                // Redrawn at the new size: the borders span the whole width.
                s.lines().map(|l| l.chars().count()).max() == Some(w as usize)
                    && panes
                        .iter()
                        .all(|(_, words)| words.iter().all(|x| s.contains(x)))
            },
        );
        for (pane, words) in panes {
            for x in words {
                assert!(s.contains(x), "{w}×{h}: the {pane} pane lacks {x:?}:\n{s}");
            }
        }
        assert!(!s.contains("terminal too small"), "{w}×{h}:\n{s}");
    }
    tmux.keys("q");
}
