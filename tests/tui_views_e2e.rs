//! End-to-end runs of the DVMs, kinds and monthly history views in tmux at
//! 80×24 and 120×40, over a namespace a headless backtest filled: the DVMs
//! view lists every DVM of the 30-day window with the responses
//! PostgreSQL holds, sorts and filters; the kinds view lists every request
//! kind; the history view lists every closed month.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use common::process::{BIN, Dvmtop};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tmux::Tmux;

const WAIT: Duration = Duration::from_secs(60);

/// A NIP-89 announcement for `pubkey` (placeholder signature; signatures
/// are not checked by default).
fn profile_line(pubkey: &str, created_at: i64, name: &str) -> String {
    let mut ev = dvmtop::event::Event {
        id: String::new(),
        pubkey: pubkey.to_owned(),
        created_at,
        kind: 31990,
        tags: vec![vec!["k".into(), "5300".into()]],
        content: serde_json::json!({ "name": name }).to_string(),
        sig: "0".repeat(128),
    };
    ev.id = dvmtop::event::compute_id(&ev);
    serde_json::json!({"id": ev.id, "pubkey": ev.pubkey, "created_at": ev.created_at, "kind": ev.kind,
        "tags": ev.tags, "content": ev.content, "sig": ev.sig})
    .to_string()
}

/// Generated traffic (3 months) plus announcements naming two of its DVMs.
fn input(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("views.jsonl");
    common::process::generate(&["--months", "3", "--events-per-day", "200"], &file);
    let text = std::fs::read_to_string(&file).expect("generated file");
    let mut dvms: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["kind"]
                .as_i64()
                .is_some_and(|k| (6000..7000).contains(&k))
        })
        .filter_map(|e| e["pubkey"].as_str().map(str::to_owned))
        .collect();
    dvms.sort();
    dvms.dedup();
    assert!(dvms.len() >= 3, "the generator makes several DVMs");
    let t = at(2024, 1, 2, 0);
    let extra = [
        profile_line(&dvms[0], t, "Alpha Translator"),
        profile_line(&dvms[1], t, "Beta Search"),
    ];
    // First in the file: announcements of a month already rolled over
    // would be ignored.
    std::fs::write(&file, format!("{}\n{text}", extra.join("\n"))).unwrap();
    file
}

/// What the DVMs view must list, from PostgreSQL's daily rollups (the
/// 30-day window starts at midnight, so whole days are exact): label →
/// responses.
async fn expected_dvms(db: &dvmtop::store::Db) -> BTreeMap<String, i64> {
    let clock = db.committed_clock().await.unwrap();
    let (first, last) = dvmtop::tui::views::Period::Last30d.days(clock).unwrap();
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT r.dvm, p.name, sum(r.responses)::int8 FROM dvm_stats_rollups r
         LEFT JOIN dvm_profiles p ON p.id = r.dvm
         WHERE r.day >= $1 AND r.day <= $2 GROUP BY r.dvm, p.name
         HAVING sum(r.responses + r.feedback) > 0",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, name, n)| {
            let label = name.unwrap_or_else(|| format!("{}…{}", &id[..6], &id[id.len() - 4..]));
            (label, n)
        })
        .collect()
}

/// The DVMs table as (label, responses), read at the header's columns.
fn dvm_table(screen: &str) -> BTreeMap<String, i64> {
    dvm_rows(screen).into_iter().collect()
}

/// The DVMs table's rows in screen order.
fn dvm_rows(screen: &str) -> Vec<(String, i64)> {
    let lines: Vec<&str> = screen.lines().collect();
    let Some(h) = lines
        .iter()
        .position(|l| l.contains("DVM") && l.contains("responses"))
    else {
        return Vec::new();
    };
    let header: Vec<char> = lines[h].chars().collect();
    let col = (0..header.len())
        .find(|&i| header[i..].starts_with(&"responses".chars().collect::<Vec<_>>()))
        .unwrap();
    let mut out = Vec::new();
    for l in &lines[h + 1..] {
        let c: Vec<char> = l.chars().collect();
        if c.len() <= col || c[0] == '└' {
            break;
        }
        let label: String = c[1..col].iter().collect::<String>().trim().to_owned();
        let n: String = c[col..]
            .iter()
            .take_while(|c| !c.is_whitespace())
            .filter(|c| c.is_ascii_digit())
            .collect();
        if let Ok(n) = n.parse::<i64>() {
            out.push((label, n));
        }
    }
    out
}

async fn views_at(width: u16, height: u16) {
    let ns = TestNs::new(&format!("tuiviews{width}"));
    let dir = std::env::temp_dir().join(&ns.name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = input(&dir);
    let out = Dvmtop::shared(&ns)
        .command()
        .args(["backtest", "--headless", "--fresh"])
        .arg(&file)
        .output()
        .expect("headless runs");
    assert!(out.status.success(), "{out:?}");
    let db = dvmtop::store::Db::connect(&database_url(), &ns.name)
        .await
        .unwrap();
    let want = expected_dvms(&db).await;
    assert!(want.len() >= 3, "{want:?}");
    assert!(want.contains_key("Alpha Translator"), "{want:?}");
    let kinds: Vec<i32> = {
        let clock = db.committed_clock().await.unwrap();
        let (first, last) = dvmtop::tui::views::Period::Last30d.days(clock).unwrap();
        sqlx::query_scalar(
            "SELECT kind FROM kind_stats_rollups WHERE day >= $1 AND day <= $2
             AND kind BETWEEN 5000 AND 5999 GROUP BY kind HAVING sum(requests + responses) > 0 ORDER BY kind",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    let months: Vec<String> =
        sqlx::query_scalar("SELECT year_month FROM monthly_activity ORDER BY year_month")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(months.len(), 2, "January and February are closed");

    // The TUI over the filled namespace (service mode, nothing to ingest).
    let cmd = format!(
        "env DATABASE_URL='{}' REDIS_URL='{}' '{BIN}' --namespace {} --data-dir '{}'; exec sleep 600",
        database_url(),
        redis_url(),
        ns.name,
        dir.display()
    );
    let tmux = Tmux::start(&format!("views{width}"), width, height, &cmd);
    tmux.wait_for("the overview", WAIT, |s| s.contains("Queue"));

    // 2: DVMs — all of them, with PostgreSQL's responses.
    tmux.keys("2");
    let n = want.len();
    let s = tmux.wait_for("the DVMs list", WAIT, |s| s.contains(&format!("{n} DVMs")));
    let shown = dvm_table(&s);
    assert_eq!(
        shown, want,
        "every DVM of the window, exact responses:\n{s}"
    );
    // Sorted by responses, largest first.
    let first_row = s
        .lines()
        .find(|l| want.keys().any(|k| l.contains(k.as_str())))
        .unwrap();
    let top = want
        .iter()
        .max_by_key(|(k, v)| (**v, std::cmp::Reverse((*k).clone())))
        .unwrap();
    assert!(first_row.contains(top.0.as_str()), "{first_row}\n{s}");
    let by_responses: Vec<i64> = dvm_rows(&s).into_iter().map(|r| r.1).collect();
    assert!(by_responses.windows(2).all(|w| w[0] >= w[1]), "{s}");
    // ← sorts by name (A→Z, ignoring case), i reverses.
    tmux.keys("Left");
    let s = tmux.wait_for("sorted by name", WAIT, |s| s.contains("DVM↑"));
    let names: Vec<String> = dvm_rows(&s)
        .into_iter()
        .map(|r| r.0.to_lowercase())
        .collect();
    assert_eq!(names.len(), n, "{s}");
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{s}");
    tmux.keys("i");
    let s = tmux.wait_for("reversed", WAIT, |s| s.contains("DVM↓"));
    let names: Vec<String> = dvm_rows(&s)
        .into_iter()
        .map(|r| r.0.to_lowercase())
        .collect();
    assert!(names.windows(2).all(|w| w[0] >= w[1]), "{s}");
    // / filters by name.
    tmux.keys("/");
    tmux.type_text("beta");
    tmux.keys("Enter");
    let s = tmux.wait_for("the filtered list", WAIT, |s| {
        s.contains(&format!("1 of {n} DVMs"))
    });
    assert_eq!(
        dvm_table(&s).into_keys().collect::<Vec<_>>(),
        vec!["Beta Search".to_owned()],
        "{s}"
    );
    // Enter opens its detail; Esc goes back to the list.
    tmux.keys("Enter");
    tmux.wait_for("the DVM detail", WAIT, |s| {
        s.contains("DVM detail") && s.contains("Beta Search") && s.contains("responses per day")
    });
    tmux.keys("Escape");
    tmux.wait_for("back to the list", WAIT, |s| {
        s.contains(&format!("1 of {n} DVMs"))
    });
    tmux.keys("Escape");
    tmux.wait_for("the filter cleared", WAIT, |s| {
        s.contains(&format!("· {n} DVMs"))
    });

    // 3: kinds — every request kind of the window.
    tmux.keys("3");
    let s = tmux.wait_for("the kinds list", WAIT, |s| {
        s.contains(&format!("{} request kinds", kinds.len()))
    });
    let mut seen = s.clone();
    // At 80×24 a long list scrolls: page down to see the rest.
    for _ in 0..3 {
        tmux.keys("NPage");
        std::thread::sleep(Duration::from_millis(300));
        seen.push_str(&tmux.screen());
    }
    for k in &kinds {
        assert!(
            seen.contains(&format!("│{k} ")),
            "kind {k} is listed:\n{seen}"
        );
    }

    // 4: monthly history — every closed month.
    tmux.keys("4");
    let s = tmux.wait_for("the monthly history", WAIT, |s| {
        s.contains("Monthly history") && s.contains("so far")
    });
    for m in &months {
        assert!(
            s.lines().any(|l| l.starts_with(&format!("│{m} "))),
            "{m} is listed:\n{s}"
        );
    }
    tmux.keys("Enter");
    tmux.wait_for("the month breakdown", WAIT, |s| {
        s.contains("Month breakdown") && s.contains("by DVM") && s.contains("by kind")
    });
    tmux.keys("q");
}

#[tokio::test(flavor = "multi_thread")]
async fn views_at_80x24() {
    views_at(80, 24).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn views_at_120x40() {
    views_at(120, 40).await;
}
