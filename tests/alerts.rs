//! Alerts as `dvmtop status --json` reports them, against a running
//! `serve`: a rollover waiting for confirmation is an alert naming the
//! month and since when, and it goes once the month is confirmed.

mod common;
use common::process::{Dvmtop, generate};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `status --json`, or null while the serve has not created the
/// namespace yet (status refuses a namespace that does not exist).
fn status(d: &Dvmtop) -> Value {
    let out = d.output(["status", "--json"]);
    if !out.status.success() {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist"),
            "status: {out:?}"
        );
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn wait_status(d: &Dvmtop, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = status(d);
        if pred(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}; last status:\n{v:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn kinds(v: &Value) -> Vec<String> {
    v["alerts"]
        .as_array()
        .map_or(&[][..], |a| a.as_slice())
        .iter()
        .map(|a| a["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_waiting_rollover_is_an_alert_until_it_is_confirmed() {
    let ns = TestNs::new("alertwait");
    let d = Dvmtop::shared(&ns);
    let file = d.data_dir.join("in.jsonl");
    std::fs::create_dir_all(&d.data_dir).unwrap();
    generate(&["--months", "3", "--events-per-day", "200"], &file);
    let mut serve = d.spawn([
        "serve",
        "--no-relays",
        "--rollover",
        "manual",
        file.to_str().unwrap(),
    ]);
    // Both, in one status (its fields are read one after the other, so a
    // rollover that starts waiting meanwhile may show in only one).
    let v = wait_status(&d, "the rollover_waiting alert", |v| {
        kinds(v).contains(&"rollover_waiting".to_owned())
            && v["awaiting_confirmation"]["month"].is_string()
    });
    assert_eq!(v["awaiting_confirmation"]["month"], "2024-01", "{v:#}");
    assert!(v["awaiting_confirmation"]["since"].is_string(), "{v:#}");
    let a = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "rollover_waiting")
        .unwrap();
    assert_eq!(a["severity"], "warning");
    assert!(a["message"].as_str().unwrap().contains("2024-01"), "{a}");
    assert_eq!(a["since"], v["awaiting_confirmation"]["since"]);
    assert_eq!(v["holding"], true);
    assert_eq!(v["holder"]["command"], "serve");

    let out = d.output(["confirm", "2024-01"]);
    assert!(out.status.success(), "confirm: {out:?}");
    wait_status(&d, "the alert to go (or move on to February)", |v| {
        v["awaiting_confirmation"]["month"] != "2024-01"
            && !v["alerts"].as_array().into_iter().flatten().any(|a| {
                a["kind"] == "rollover_waiting"
                    && a["message"].as_str().unwrap().contains("2024-01")
            })
    });
    let done = serve.terminate(Duration::from_secs(60));
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}
