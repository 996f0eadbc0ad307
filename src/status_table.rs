//! `dvmtop status` for a person: a short table rendered from the very
//! object `status --json` prints, so the two can never disagree. Pure (no
//! I/O): tested on a fixed object.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::fmt::Write;

/// `1234567` → `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| u as i64))
        .unwrap_or(0)
}

/// An RFC 3339 time as `2024-03-05 12:00:00 UTC`.
fn time(v: &Value) -> String {
    match v.as_str() {
        Some(s) => DateTime::parse_from_rfc3339(s).map_or_else(
            |_| s.to_owned(),
            |t| {
                t.with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()
            },
        ),
        None => "?".into(),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("—")
}

/// The table, one fact per line, ending in a newline.
pub fn status_table(v: &Value, now: DateTime<Utc>) -> String {
    let mut t = String::new();
    let mut row = |label: &str, value: String| {
        let _ = writeln!(t, "{label:<14}{value}");
    };
    row(
        "namespace",
        format!(
            "{}   (at {})",
            text(&v["namespace"]),
            now.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    );
    row(
        "queue",
        format!(
            "{} waiting in {} · overflow {}",
            thousands(int(&v["queue_depth"])),
            text(&v["queue_key"]),
            thousands(int(&v["overflow_size"]))
        ),
    );
    let clock = if v["clock"].is_string() {
        time(&v["clock"])
    } else {
        "— (nothing processed yet)".into()
    };
    row(
        "clock",
        format!(
            "{clock} · open month {} · day {}",
            text(&v["current_month"]),
            text(&v["current_day"])
        ),
    );
    let rollover = match v["awaiting_confirmation"].as_object() {
        Some(a) => format!(
            "{} WAITS FOR CONFIRMATION since {} — dvmtop confirm",
            a.get("month").map_or("?", text),
            a.get("since").map_or("?".into(), time)
        ),
        None => match v["confirmed_month"].as_str() {
            Some(m) => format!("none waiting ({m} confirmed ahead)"),
            None => "none waiting".into(),
        },
    };
    row("rollover", rollover);
    row(
        "months",
        format!("{} rolled up", thousands(int(&v["monthly_rows"]))),
    );
    row(
        "DVMs",
        format!(
            "{} active · {} inactive",
            thousands(int(&v["dvms_active"])),
            thousands(int(&v["dvms_inactive"]))
        ),
    );
    row(
        "users",
        format!(
            "{} active · {} inactive",
            thousands(int(&v["users_active"])),
            thousands(int(&v["users_inactive"]))
        ),
    );
    let c = &v["counters"];
    row(
        "processed",
        format!(
            "{} · duplicates {} · prior month ignored {}",
            thousands(int(&c["processed"])),
            thousands(int(&c["duplicate"])),
            thousands(int(&c["ignored_prior_month"]))
        ),
    );
    let ingest = &v["ingest"];
    let mut rejected: Vec<(String, i64)> = ingest
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, n)| Some((k.strip_prefix("rejected:")?.to_owned(), int(n))))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .unwrap_or_default();
    rejected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: i64 = rejected.iter().map(|(_, n)| n).sum();
    let why = if rejected.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = rejected
            .iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect();
        format!(" ({})", parts.join(", "))
    };
    row(
        "ingest",
        format!(
            "accepted {} · rejected {}{why} · dead letters {}",
            thousands(int(&ingest["accepted"])),
            thousands(total),
            thousands(int(&v["dead_letters"]))
        ),
    );
    if let Some(relays) = v["relays"].as_array().filter(|r| !r.is_empty()) {
        let up = relays.iter().filter(|r| r["connected"] == true).count();
        let down: Vec<String> = relays
            .iter()
            .filter(|r| r["connected"] != true)
            .map(|r| format!("{} {}", text(&r["url"]), text(&r["state"])))
            .collect();
        let rest = if down.is_empty() {
            String::new()
        } else {
            format!(" · {}", down.join(", "))
        };
        row("relays", format!("{up} of {} up{rest}", relays.len()));
    }
    if let Some(w) = v["windows"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["window"] == "24h"))
    {
        let completion = w["completion"]
            .as_f64()
            .map_or("—".into(), |c| format!("{:.1} %", c * 100.0));
        row(
            "last 24 h",
            format!(
                "requests {} · responses {} · completion {completion} · users {} · DVMs {}",
                thousands(int(&w["requests"])),
                thousands(int(&w["responses"])),
                thousands(int(&w["unique_users"])),
                thousands(int(&w["unique_dvms"]))
            ),
        );
    }
    if let Some(run) = v["cleanup_history"].as_array().and_then(|h| h.first()) {
        row(
            "last job",
            format!(
                "{} {} at {}",
                text(&run["job"]),
                text(&run["outcome"]),
                time(&run["started_at"])
            ),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_facts_an_operator_looks_for() {
        let v = json!({
            "namespace": "live", "queue_key": "live:queue", "queue_depth": 1234567,
            "overflow_size": 3, "clock": "2024-03-05T12:00:00+00:00",
            "current_month": "2024-03", "current_day": "2024-03-05",
            "awaiting_confirmation": {"month": "2024-02", "since": "2024-03-05T11:00:00Z"},
            "monthly_rows": 2, "dvms_active": 5, "dvms_inactive": 1,
            "users_active": 40, "users_inactive": 2,
            "counters": {"processed": 9000, "duplicate": 2},
            "ingest": {"accepted": 9002, "rejected:malformed": 4, "rejected:future": 1},
            "dead_letters": 5, "relays": [],
            "windows": [{"window": "24h", "requests": 10, "responses": 8, "completion": 0.8,
                          "unique_users": 4, "unique_dvms": 2}],
        });
        let now = DateTime::from_timestamp(1_709_640_000, 0).unwrap();
        let t = status_table(&v, now);
        assert!(
            t.contains("1,234,567 waiting in live:queue · overflow 3"),
            "{t}"
        );
        assert!(
            t.contains("2024-02 WAITS FOR CONFIRMATION since 2024-03-05 11:00:00 UTC"),
            "{t}"
        );
        assert!(t.contains("clock         2024-03-05 12:00:00 UTC"), "{t}");
        assert!(t.contains("rejected 5 (malformed 4, future 1)"), "{t}");
        assert!(t.contains("completion 80.0 %"), "{t}");
        assert!(!t.contains('{'), "not JSON: {t}");
        assert!(t.lines().count() < 16, "short: {t}");
    }
}
