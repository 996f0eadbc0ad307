//! Issue 13, the input side: hostile or damaged input gets a clear error
//! and loses nothing — JSON arrays streamed element by element, truncated
//! arrays and gzip files keep every complete element, dead letters bounded.

mod common;
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dvmtop");

/// The real binary on this test's namespace (no config file, no relays).
fn dvmtop(ns: &TestNs) -> Command {
    let mut c = Command::new(BIN);
    c.env("DATABASE_URL", database_url())
        .env("REDIS_URL", redis_url())
        .env_remove("DVMTOP_NAMESPACE")
        .env_remove("DVMTOP_DATA_DIR")
        .env_remove("DVMTOP_CONFIG")
        .env_remove("DVMTOP_RELAYS")
        .arg("--namespace")
        .arg(&ns.name)
        .arg("--data-dir")
        .arg(data_dir(ns))
        .arg("--config")
        .arg("/dev/null");
    c
}

fn data_dir(ns: &TestNs) -> PathBuf {
    let d = std::env::temp_dir().join(&ns.name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` distinct valid requests spread over March 2024 (one month: no
/// rollover needed to process them all).
fn valid_events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            event_line(
                (i % 200) as u8 + 1,
                at(2024, 3, 1 + (i % 28) as u32, (i % 24) as u32),
                5300,
                vec![vec!["i", "x", "text"]],
                &format!("job {i}"),
            )
        })
        .collect()
}

/// The last stdout line of a headless run, parsed.
fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v: serde_json::Value = serde_json::from_str(last).expect("summary is JSON");
    assert_eq!(v["event"], "summary", "{last}");
    v
}

async fn redis_con() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn dead_letters(ns: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(format!("{ns}:dead"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis_con().await)
        .await
        .unwrap()
}

async fn ingest_stats(ns: &str) -> std::collections::BTreeMap<String, u64> {
    redis::cmd("HGETALL")
        .arg(format!("{ns}:ingest"))
        .query_async(&mut redis_con().await)
        .await
        .unwrap()
}

/// Ingests one file in-process with the namespace's configuration.
async fn ingest_file(
    ns: &TestNs,
    path: &Path,
) -> dvmtop::error::Result<dvmtop::ingest::IngestTotals> {
    let cfg = ns.config();
    let services = ns.open(&cfg).await;
    let icfg = dvmtop::ingest::IngestConfig {
        validation: cfg.validation.clone(),
        ..Default::default()
    };
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    dvmtop::ingest::ingest(
        &services.queue,
        Some(&services.db),
        &dvmtop::ingest::Source::parse(path.to_str().unwrap()),
        &icfg,
        &cancel,
    )
    .await
}

#[test]
fn a_truncated_array_keeps_every_complete_element_and_fails_naming_the_offset() {
    let ns = TestNs::new("arraycut");
    let events = valid_events(1000);
    let mut text = String::from("[\n");
    let mut last_start = 0;
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            text.push_str(",\n");
        }
        last_start = text.len();
        text.push_str(e);
    }
    // Cut in the middle of element 1,000.
    let cut = last_start + events[999].len() / 2;
    let file = data_dir(&ns).join("cut.json");
    std::fs::write(&file, &text.as_bytes()[..cut]).unwrap();
    let out = dvmtop(&ns)
        .arg("backtest")
        .arg(&file)
        .args(["--headless", "--fresh"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let s = summary(&out);
    assert_eq!(s["events_read"], 999, "{s}");
    assert_eq!(s["accepted"], 999, "{s}");
    assert_eq!(s["processed"], 999, "{s}");
    assert_eq!(s["queue_depth"], 0, "{s}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| !l.starts_with("warning:"))
            .count(),
        1,
        "one line besides a warning that the test Redis persists nothing: {stderr}"
    );
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains(&format!("byte {cut}")),
        "the offset where the input ends ({cut}): {stderr}"
    );
    assert!(stderr.contains("999 complete"), "{stderr}");

    // --resume re-reads nothing it handled: the same 999, the same error.
    let again = dvmtop(&ns)
        .arg("backtest")
        .arg(&file)
        .args(["--headless", "--resume"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let s = summary(&again);
    assert_eq!(s["events_read"], 999, "{s}");
    assert_eq!(s["processed"], 999, "{s}");
    assert_eq!(s["rejected"]["duplicate"], 0, "{s}");
}

#[tokio::test]
async fn a_garbage_element_in_an_array_is_one_dead_letter() {
    let ns = TestNs::new("arraygarbage");
    let mut elements = valid_events(1000);
    let garbage = r#"{"this is": not json, "nested": [1, 2]}"#;
    elements[500] = garbage.to_owned();
    let file = data_dir(&ns).join("dump.json");
    std::fs::write(&file, format!("[{}]", elements.join(" ,\n\t"))).unwrap();
    let totals = ingest_file(&ns, &file).await.expect("ingest");
    assert_eq!(totals.read, 1000);
    let stats = ingest_stats(&ns.name).await;
    assert_eq!(stats.get("accepted"), Some(&999), "{stats:?}");
    assert_eq!(stats.get("rejected:malformed"), Some(&1), "{stats:?}");
    let dead = dead_letters(&ns.name).await;
    assert_eq!(dead.len(), 1);
    let d: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(d["reason"], "malformed");
    assert_eq!(d["raw"], garbage, "the element's raw text, verbatim");
}

#[tokio::test]
async fn array_elements_with_brackets_commas_and_quotes_inside() {
    let ns = TestNs::new("arraynested");
    let tricky = [
        event_line(
            7,
            at(2024, 3, 2, 1),
            5300,
            vec![vec!["i", "a],[b", "text"], vec!["param", "x\",{y}", "\\"]],
            "], [ \"quoted\" , {not: an object}\\",
        ),
        event_line(8, at(2024, 3, 2, 2), 5300, vec![], "\\\"],"),
        event_line(9, at(2024, 3, 2, 3), 5300, vec![], "{[(\"\")]}"),
    ];
    let odd = [
        r#"[[1, 2], [3, ["]", ","]]]"#,
        r#""a string with ] and , and \" inside""#,
        r#"{"id": {"nested": [{"deeper": "]}"}]}}"#,
    ];
    let elements = [
        tricky[0].as_str(),
        odd[0],
        tricky[1].as_str(),
        odd[1],
        odd[2],
        tricky[2].as_str(),
    ];
    let file = data_dir(&ns).join("tricky.json");
    std::fs::write(&file, format!("  [ {} ]  \n", elements.join(",\n"))).unwrap();
    let totals = ingest_file(&ns, &file).await.expect("ingest");
    assert_eq!(totals.read, 6);
    let stats = ingest_stats(&ns.name).await;
    assert_eq!(stats.get("accepted"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("rejected:malformed"), Some(&3), "{stats:?}");
    let raws: Vec<String> = dead_letters(&ns.name)
        .await
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["raw"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(raws, odd);
}

/// Gzips `data`; returns the compressed bytes.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// What a decoder yields from damaged gzip bytes before its error.
fn decompressible_prefix(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let r = flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut out);
    assert!(r.is_err(), "the cut file must not decompress cleanly");
    out
}

#[test]
fn a_truncated_gzip_keeps_every_complete_line_and_fails_naming_the_offset() {
    let ns = TestNs::new("gzcut");
    let lines = valid_events(30_000);
    let gz = gzip((lines.join("\n") + "\n").as_bytes());
    let cut = &gz[..gz.len() * 6 / 10];
    let prefix = decompressible_prefix(cut);
    let complete = prefix.iter().filter(|&&b| b == b'\n').count();
    assert!(complete > 10_000 && complete < 30_000, "{complete}");
    let file = data_dir(&ns).join("cut.jsonl.gz");
    std::fs::write(&file, cut).unwrap();
    let out = dvmtop(&ns)
        .arg("backtest")
        .arg(&file)
        .args(["--headless", "--fresh"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let s = summary(&out);
    assert_eq!(s["events_read"], complete, "{s}");
    assert_eq!(s["accepted"], complete, "{s}");
    assert_eq!(s["processed"], complete, "{s}");
    assert_eq!(
        s["rejected"]["malformed"], 0,
        "the cut line is not processed: {s}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| !l.starts_with("warning:"))
            .count(),
        1,
        "one line besides a warning that the test Redis persists nothing: {stderr}"
    );
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains(&format!("byte {}", prefix.len())),
        "the decompressed offset ({}): {stderr}",
        prefix.len()
    );
}

#[tokio::test]
async fn a_json_array_in_a_truncated_gzip_keeps_every_complete_element() {
    let ns = TestNs::new("gzarray");
    let events = valid_events(20_000);
    let mut text = String::from("[\n");
    let mut terminators = Vec::new();
    for (i, e) in events.iter().enumerate() {
        text.push_str(e);
        terminators.push(text.len());
        text.push_str(if i + 1 < events.len() { ",\n" } else { "]\n" });
    }
    let gz = gzip(text.as_bytes());
    let cut = &gz[..gz.len() / 2];
    let prefix = decompressible_prefix(cut);
    let complete = terminators.iter().filter(|&&t| t < prefix.len()).count();
    let file = data_dir(&ns).join("dump.json.gz");
    std::fs::write(&file, cut).unwrap();
    let err = ingest_file(&ns, &file)
        .await
        .expect_err("a damaged gzip is an error");
    let msg = err.to_string();
    assert!(msg.contains(file.to_str().unwrap()), "{msg}");
    assert!(msg.contains(&format!("byte {}", prefix.len())), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    let stats = ingest_stats(&ns.name).await;
    assert_eq!(stats.get("accepted"), Some(&(complete as u64)), "{stats:?}");
    assert_eq!(stats.get("rejected:malformed"), None, "{stats:?}");
}

#[tokio::test]
async fn a_50_mb_line_is_dead_lettered_truncated_with_its_size() {
    let ns = TestNs::new("hugeline");
    // Two-byte characters, so 64 KiB falls inside one of them.
    let mut huge = String::from("{\"id\":\"");
    while huge.len() < 50 << 20 {
        huge.push_str("é漢x");
    }
    let size = huge.len();
    let file = data_dir(&ns).join("huge.jsonl");
    std::fs::write(&file, format!("{}\n{huge}\n", valid_events(1)[0])).unwrap();
    ingest_file(&ns, &file).await.expect("ingest");
    let stats = ingest_stats(&ns.name).await;
    assert_eq!(stats.get("accepted"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("rejected:malformed"), Some(&1), "{stats:?}");
    let dead = dead_letters(&ns.name).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].len() <= (64 << 10) + 1024,
        "the entry is bounded: {} bytes",
        dead[0].len()
    );
    let d: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(d["reason"], "malformed");
    assert_eq!(d["size"], size as u64);
    assert_eq!(d["truncated"], true);
    let raw = d["raw"].as_str().unwrap();
    assert!(raw.len() <= 64 << 10 && raw.len() > (64 << 10) - 4);
    assert!(huge.starts_with(raw), "the head of the line, cut on a char");
}

#[test]
fn the_dead_letter_list_is_capped_and_drops_are_counted() {
    let ns = TestNs::new("deadcap");
    let mut lines = valid_events(2);
    lines.extend((0..10).map(|i| format!("{{bad line {i}")));
    let file = data_dir(&ns).join("bad.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = dvmtop(&ns)
        .arg("ingest")
        .arg(&file)
        .args(["--dead-letter-max", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stats, dead) =
        rt.block_on(async { (ingest_stats(&ns.name).await, dead_letters(&ns.name).await) });
    assert_eq!(stats.get("rejected:malformed"), Some(&10), "{stats:?}");
    assert_eq!(stats.get("dead_letters_dropped"), Some(&7), "{stats:?}");
    assert_eq!(stats.get("accepted"), Some(&2), "{stats:?}");
    assert_eq!(dead.len(), 3);
    let bytes: usize = dead.iter().map(String::len).sum();
    assert_eq!(stats.get("dead_letter_bytes"), Some(&(bytes as u64)));
    let first: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(first["raw"], "{bad line 0", "the first ones are kept");
}

#[tokio::test]
async fn the_dead_letter_list_is_capped_by_bytes_and_an_emptied_list_starts_over() {
    let ns = TestNs::new("deadbytes");
    let args = dvmtop::cli::GlobalArgs {
        namespace: Some(ns.name.clone()),
        dead_letter_max_bytes: Some(1000),
        ..Default::default()
    };
    let cfg = dvmtop::config::Config::resolve(&args, dvmtop_core::clock::Policy::Auto).unwrap();
    assert_eq!(cfg.dead_letters.max_bytes, 1000);
    assert_eq!(cfg.dead_letters.max_entries, 100_000, "the default");
    let mut test_cfg = ns.config();
    test_cfg.dead_letters = cfg.dead_letters;
    let services = ns.open(&test_cfg).await;
    // Each entry is ~150 bytes of JSON: six fit in 1,000 bytes.
    let bad: Vec<String> = (0..10)
        .map(|i| format!("{{bad {i} {}", "x".repeat(100)))
        .collect();
    push_lines(&services.queue, &bad).await;
    let stats = ingest_stats(&ns.name).await;
    let dead = dead_letters(&ns.name).await;
    let bytes: u64 = dead.iter().map(|d| d.len() as u64).sum();
    assert!(
        bytes <= 1000 && bytes + dead[0].len() as u64 > 1000,
        "{bytes}"
    );
    assert_eq!(stats.get("dead_letter_bytes"), Some(&bytes));
    assert_eq!(
        stats.get("dead_letters_dropped"),
        Some(&(10 - dead.len() as u64))
    );
    assert_eq!(stats.get("rejected:malformed"), Some(&10));
    // An operator empties the list: it fills again from zero.
    let _: () = redis::cmd("DEL")
        .arg(services.queue.keys.dead())
        .query_async(&mut redis_con().await)
        .await
        .unwrap();
    push_lines(&services.queue, &bad[..2]).await;
    let dead = dead_letters(&ns.name).await;
    assert_eq!(dead.len(), 2);
    let stats = ingest_stats(&ns.name).await;
    let bytes: u64 = dead.iter().map(|d| d.len() as u64).sum();
    assert_eq!(stats.get("dead_letter_bytes"), Some(&bytes));
}

#[tokio::test]
async fn the_processor_keeps_a_huge_refused_element_truncated_with_its_size() {
    use dvmtop::pipeline::Processor;
    use dvmtop::run::Services;
    let ns = TestNs::new("deadpg");
    let mut cfg = ns.config();
    let key = format!("{}_dvmdash_events", ns.name);
    cfg.queue_key = Some(key.clone());
    let s = ns.open(&cfg).await;
    let huge = format!("{{\"id\":\"{}", "é".repeat(1 << 20));
    let payloads = [
        valid_events(1)[0].clone(),
        huge.clone(),
        "{small".to_owned(),
    ];
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&payloads)
        .query_async(&mut redis_con().await)
        .await
        .unwrap();
    let mut p = Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
        .await
        .unwrap();
    settle(&mut p).await;
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT reason, payload, size FROM dead_letters ORDER BY pos")
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "malformed");
    assert!(rows[0].1.len() <= 64 << 10 && rows[0].1.len() > (64 << 10) - 4);
    assert!(huge.starts_with(&rows[0].1));
    assert_eq!(rows[0].2, huge.len() as i64);
    assert_eq!((rows[1].1.as_str(), rows[1].2), ("{small", 6));
    let snap = s.db.snapshot().await.unwrap();
    assert_eq!(snap.counters.get("processed"), Some(&1));
    assert_eq!(snap.counters.get("rejected:malformed"), Some(&2));
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis_con().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_namespace_from_before_dead_letter_sizes_upgrades_in_place() {
    let ns = TestNs::new("deadupgrade");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    // Back to the schema before dead-letter sizes, with a dead letter in it.
    for sql in [
        "ALTER TABLE dead_letters DROP COLUMN size",
        "DELETE FROM _sqlx_migrations WHERE version = 3",
        "INSERT INTO dead_letters (reason, payload) VALUES ('malformed', 'héllo')",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&s.db.pool)
            .await
            .unwrap();
    }
    drop(s);
    let s = ns.open(&cfg).await;
    let (payload, size): (String, i64) = sqlx::query_as("SELECT payload, size FROM dead_letters")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!((payload.as_str(), size), ("héllo", 6));
}
