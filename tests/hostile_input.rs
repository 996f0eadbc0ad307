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
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
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
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
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
