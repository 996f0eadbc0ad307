//! SPEC §2: classification, every rejection reason, the real-events fixture.

mod common;
use common::*;
use dvmtop::event::{self, Event, KindPolicy, Reject, Role, Validation};

const FIXTURE: &str = "tests/fixtures/dvm-events-real.jsonl";

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(FIXTURE)
        .expect("fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn classify(kind: i64, tags: Vec<Vec<&str>>) -> Option<(Role, Option<u32>)> {
    let line = event_line(1, 1_700_000_000, kind, tags, "");
    let ev = Event::parse(&line).unwrap();
    KindPolicy::default()
        .classify(&ev)
        .map(|c| (c.role, c.credited_kind.map(|k| k.0)))
}

#[test]
fn classification_table() {
    assert_eq!(classify(5000, vec![]), Some((Role::Request, Some(5000))));
    assert_eq!(classify(5999, vec![]), Some((Role::Request, Some(5999))));
    assert_eq!(classify(6000, vec![]), Some((Role::Response, Some(5000))));
    // DVMDash dropped 6999 by an off-by-one; we count it.
    assert_eq!(classify(6999, vec![]), Some((Role::Response, Some(5999))));
    assert_eq!(
        classify(7000, vec![vec!["k", "5300"]]),
        Some((Role::Feedback, Some(5300)))
    );
    assert_eq!(classify(7000, vec![]), Some((Role::Feedback, None)));
    assert_eq!(
        classify(31990, vec![vec!["k", "5300"]]),
        Some((Role::Announcement, None))
    );
    for excluded in [5666, 6666, 5969, 6969] {
        assert_eq!(
            classify(excluded, vec![]),
            None,
            "kind {excluded} is excluded"
        );
    }
    for other in [0, 1, 4999, 7001, 30023] {
        assert_eq!(
            classify(other, vec![]),
            None,
            "kind {other} is not a DVM kind"
        );
    }
    let custom = KindPolicy {
        excluded: vec![5300],
    };
    let ev = Event::parse(&event_line(1, 1, 5300, vec![], "")).unwrap();
    assert!(
        custom.classify(&ev).is_none(),
        "the excluded list is configurable"
    );
    assert!(!KindPolicy::default().subscription_kinds().contains(&6666));
}

#[test]
fn fixture_is_accepted_with_and_without_signature_checks() {
    let lines = fixture_lines();
    assert_eq!(lines.len(), 118);
    for verify in [false, true] {
        let v = Validation {
            verify_signatures: verify,
            ..Validation::default()
        };
        for l in &lines {
            event::validate(l, &v, chrono::Utc::now().timestamp())
                .unwrap_or_else(|r| panic!("{r} ({verify}): {l}"));
        }
    }
}

/// Ingests `lines` into a fresh namespace and returns (reason counts, dead letters).
async fn ingest(
    lines: &[String],
    verify: bool,
) -> (
    std::collections::BTreeMap<String, u64>,
    Vec<serde_json::Value>,
) {
    let ns = TestNs::new("reject");
    let mut cfg = ns.config();
    cfg.validation.verify_signatures = verify;
    let services = ns.open(&cfg).await;
    let file = write_input(&cfg, "in.jsonl", lines);
    let icfg = dvmtop::ingest::IngestConfig {
        validation: cfg.validation.clone(),
        ..Default::default()
    };
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    dvmtop::ingest::ingest(
        &services.queue,
        Some(&services.db),
        &dvmtop::ingest::Source::parse(&file),
        &icfg,
        &cancel,
    )
    .await
    .unwrap();
    let stats = services.queue.ingest_stats().await.unwrap();
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let dead: Vec<String> = redis::cmd("LRANGE")
        .arg(services.queue.keys.dead())
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    (
        stats,
        dead.iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect(),
    )
}

fn one_valid() -> String {
    event_line(
        3,
        chrono::Utc::now().timestamp() - 3600,
        5300,
        vec![vec!["i", "x", "text"]],
        "",
    )
}

async fn assert_rejected(bad: &str, reason: Reject, verify: bool) {
    // With signature checks on, the companion must carry a real signature.
    let valid = if verify {
        fixture_lines().remove(1)
    } else {
        one_valid()
    };
    let (stats, dead) = ingest(&[valid, bad.to_owned()], verify).await;
    assert_eq!(stats.get("events_read"), Some(&2));
    assert_eq!(stats.get("accepted"), Some(&1));
    assert_eq!(
        stats.get(&format!("rejected:{reason}")),
        Some(&1),
        "{stats:?}"
    );
    if reason != Reject::Duplicate {
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["reason"], reason.as_str());
        assert_eq!(dead[0]["raw"], bad, "the raw line is kept verbatim");
    } else {
        assert!(
            dead.is_empty(),
            "a duplicate's original is in the queue already"
        );
    }
}

#[tokio::test]
async fn rejects_malformed() {
    assert_rejected("{\"id\": 12", Reject::Malformed, false).await;
    let missing_sig = one_valid().replace(",\"sig\":", ",\"nosig\":");
    assert_rejected(&missing_sig, Reject::Malformed, false).await;
    let typed = event_line(3, 1_700_000_000, 5300, vec![], "")
        .replace("\"kind\":5300", "\"kind\":\"5300\"");
    assert_rejected(&typed, Reject::Malformed, false).await;
}

#[tokio::test]
async fn rejects_irrelevant_kind() {
    assert_rejected(
        &event_line(4, 1_700_000_000, 1, vec![], "hello"),
        Reject::IrrelevantKind,
        false,
    )
    .await;
    assert_rejected(
        &event_line(4, 1_700_000_000, 5666, vec![], "poll"),
        Reject::IrrelevantKind,
        false,
    )
    .await;
}

#[tokio::test]
async fn rejects_bad_id() {
    let line =
        event_line(5, 1_700_000_000, 5300, vec![], "original").replace("original", "tampered");
    assert_rejected(&line, Reject::BadId, false).await;
}

#[tokio::test]
async fn rejects_bad_sig_only_when_verifying() {
    let good = fixture_lines().remove(0);
    let ev: serde_json::Value = serde_json::from_str(&good).unwrap();
    let sig = ev["sig"].as_str().unwrap();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    let bad = good.replace(sig, &flipped);
    assert_rejected(&bad, Reject::BadSig, true).await;
    let (stats, _) = ingest(&[bad], false).await;
    assert_eq!(
        stats.get("accepted"),
        Some(&1),
        "without --verify-signatures the signature is not checked"
    );
}

#[tokio::test]
async fn rejects_future() {
    let now = chrono::Utc::now().timestamp();
    assert_rejected(
        &event_line(6, now + 16 * 60, 5300, vec![], ""),
        Reject::Future,
        false,
    )
    .await;
    // 14 minutes ahead is within the allowance.
    let (stats, _) = ingest(&[event_line(6, now + 14 * 60, 5300, vec![], "")], false).await;
    assert_eq!(stats.get("accepted"), Some(&1));
}

#[tokio::test]
async fn rejects_duplicate() {
    let v = one_valid();
    assert_rejected(&v, Reject::Duplicate, false).await;
}

#[tokio::test]
async fn json_array_gzip_and_fixture_ingest() {
    let ns = TestNs::new("formats");
    let cfg = ns.config();
    let services = ns.open(&cfg).await;
    let lines = fixture_lines();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    // DVMDash's historical format: one JSON array.
    let array = cfg.data_dir.join("dump.json");
    std::fs::write(&array, format!("[{}]", lines[..60].join(",\n"))).unwrap();
    // The rest gzipped JSONL.
    let gz = cfg.data_dir.join("rest.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut enc, lines[60..].join("\n").as_bytes()).unwrap();
    enc.finish().unwrap();
    let icfg = dvmtop::ingest::IngestConfig {
        validation: Validation {
            verify_signatures: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for f in [&array, &gz] {
        let src = dvmtop::ingest::Source::parse(f.to_str().unwrap());
        dvmtop::ingest::ingest(&services.queue, Some(&services.db), &src, &icfg, &cancel)
            .await
            .unwrap();
    }
    let stats = services.queue.ingest_stats().await.unwrap();
    assert_eq!(stats.get("accepted"), Some(&118), "{stats:?}");
    assert_eq!(services.queue.depth().await.unwrap(), 118);
    // Re-reading the same files resumes at their end: nothing is read twice.
    for f in [&array, &gz] {
        let src = dvmtop::ingest::Source::parse(f.to_str().unwrap());
        let t = dvmtop::ingest::ingest(&services.queue, Some(&services.db), &src, &icfg, &cancel)
            .await
            .unwrap();
        assert_eq!(t.read, 0);
    }
}

/// A MongoDB export's `_id` first, relays' `seen_on`/`relays` last.
fn with_extra_fields(line: &str, i: usize) -> String {
    let body = line.trim().strip_prefix('{').expect("an object");
    let body = body.strip_suffix('}').expect("an object");
    format!(
        r#"{{"_id":{{"$oid":"65f0c0ffee{i:014x}"}},{body},"seen_on":["wss://relay.damus.io","wss://nos.lol"],"relays":[{{"url":"wss://x","n":[1,2]}}]}}"#
    )
}

#[tokio::test]
async fn unknown_top_level_fields_are_ignored_and_the_event_processed() {
    let ns = TestNs::new("extrafields");
    let cfg = ns.config();
    let plain = event_line(11, at(2024, 3, 5, 12), 5300, vec![vec!["i", "x"]], "hi");
    let extra = with_extra_fields(&plain, 1);
    assert!(extra.contains("\"_id\"") && extra.contains("\"seen_on\""));
    let file = write_input(&cfg, "extra.jsonl", &[extra]);
    let s = backtest(&cfg, &[file], dvmtop::run::Start::Resume).await;
    assert_eq!(s.accepted, 1, "{s:?}");
    assert_eq!(s.processed, 1, "{s:?}");
    assert_eq!(s.rejected.get("malformed"), Some(&0), "{s:?}");
}

#[tokio::test]
async fn the_fixture_with_extra_fields_is_accepted_with_signature_checks() {
    let lines: Vec<String> = fixture_lines()
        .iter()
        .enumerate()
        .map(|(i, l)| with_extra_fields(l, i))
        .collect();
    let (stats, dead) = ingest(&lines, true).await;
    assert_eq!(stats.get("accepted"), Some(&118), "{stats:?}");
    assert!(dead.is_empty(), "{} dead letters", dead.len());
}

#[tokio::test]
async fn an_event_at_epoch_zero_is_too_old_and_opens_no_month_1970() {
    let ns = TestNs::new("tooold");
    let cfg = ns.config();
    let mut lines: Vec<String> = (0..10)
        .map(|i| event_line(12, at(2024, 3, 1 + i, 8), 5300, vec![], &format!("{i}")))
        .collect();
    let ancient = event_line(12, 0, 5300, vec![], "1970");
    lines.insert(4, ancient.clone());
    let file = write_input(&cfg, "old.jsonl", &lines);
    let s = backtest(&cfg, &[file], dvmtop::run::Start::Resume).await;
    assert_eq!(s.rejected.get("too_old"), Some(&1), "{s:?}");
    assert_eq!(s.processed, 10, "{s:?}");
    assert_eq!(s.rollovers, 0, "no month before 2024-03 was opened: {s:?}");
    assert_eq!(s.current_month.as_deref(), Some("2024-03"));
    let services = ns.open(&cfg).await;
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let dead: Vec<String> = redis::cmd("LRANGE")
        .arg(services.queue.keys.dead())
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let d: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(d["reason"], "too_old");
    assert_eq!(d["raw"], ancient);
}

#[tokio::test]
async fn rejects_too_old() {
    // One second before the default epoch, 2023-01-01.
    let line = event_line(13, at(2022, 12, 31, 23) + 3599, 5300, vec![], "");
    assert_rejected(&line, Reject::TooOld, false).await;
    let (stats, _) = ingest(
        &[event_line(13, at(2023, 1, 1, 0), 5300, vec![], "")],
        false,
    )
    .await;
    assert_eq!(stats.get("accepted"), Some(&1), "the epoch itself is fine");
}

#[test]
fn too_old_comes_after_malformed_and_before_every_other_check() {
    let v = Validation::default();
    let now = chrono::Utc::now().timestamp();
    // Old and of an irrelevant kind: too_old (dated before kind-checked).
    let old_note = event_line(14, 5, 1, vec![], "note");
    assert_eq!(
        event::validate(&old_note, &v, now).err(),
        Some(Reject::TooOld)
    );
    // Old with a tampered id: still too_old.
    let old_bad_id = event_line(14, 5, 5300, vec![], "a").replace("\"a\"", "\"b\"");
    assert_eq!(
        event::validate(&old_bad_id, &v, now).err(),
        Some(Reject::TooOld)
    );
    // Old but malformed: malformed (parsed first).
    let old_malformed = old_note.replace("\"kind\":1", "\"kind\":\"1\"");
    assert_eq!(
        event::validate(&old_malformed, &v, now).err(),
        Some(Reject::Malformed)
    );
    let lenient = Validation {
        min_created_at: 0,
        ..Validation::default()
    };
    assert_eq!(
        event::validate(&old_note, &lenient, now).err(),
        Some(Reject::IrrelevantKind)
    );
    assert_eq!(Reject::ALL[1], Reject::TooOld, "summaries list it");
    assert_eq!(Reject::TooOld.as_str(), "too_old");
}

#[test]
fn min_created_at_from_the_flag_and_the_config_file() {
    use dvmtop::cli::GlobalArgs;
    use dvmtop::config::Config;
    use dvmtop_core::clock::Policy;
    let dir = std::env::temp_dir().join(format!("dvmtop_minca_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let resolve = |flag: Option<&str>, file: &str| {
        let path = dir.join("c.toml");
        std::fs::write(&path, file).unwrap();
        let args = GlobalArgs {
            min_created_at: flag.map(str::to_owned),
            config: Some(path),
            namespace: Some("t_minca".into()),
            ..Default::default()
        };
        Config::resolve(&args, Policy::Auto).map(|c| c.validation.min_created_at)
    };
    assert_eq!(resolve(None, "").unwrap(), 1_672_531_200, "2023-01-01");
    assert_eq!(resolve(Some("2024-05-01"), "").unwrap(), 1_714_521_600);
    assert_eq!(resolve(Some("1700000000"), "").unwrap(), 1_700_000_000);
    assert_eq!(resolve(Some("0"), "").unwrap(), 0);
    assert_eq!(
        resolve(None, "min_created_at = \"2024-05-01\"").unwrap(),
        1_714_521_600
    );
    assert_eq!(
        resolve(None, "min_created_at = 2024-05-01").unwrap(),
        1_714_521_600,
        "a bare TOML date"
    );
    assert_eq!(
        resolve(None, "min_created_at = 1700000000").unwrap(),
        1_700_000_000
    );
    assert_eq!(
        resolve(Some("2024-01-01"), "min_created_at = 1700000000").unwrap(),
        1_704_067_200,
        "the flag wins over the file"
    );
    for bad in ["yesterday", "2023-13-01", "2023-01-01T00:00:00Z", "-5", ""] {
        let e = resolve(Some(bad), "").unwrap_err().to_string();
        assert!(e.starts_with("--min-created-at: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    for bad in [
        "min_created_at = true",
        "min_created_at = -1",
        "min_created_at = \"soon\"",
    ] {
        let e = resolve(None, bad).unwrap_err().to_string();
        assert!(e.contains("min_created_at"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_raw_event_too_old_in_a_dvmdash_list_is_refused_by_the_processor() {
    use dvmtop::pipeline::Processor;
    use dvmtop::run::Services;
    let ns = TestNs::new("toooldlist");
    let mut cfg = ns.config();
    let key = format!("{}_dvmdash_events", ns.name);
    cfg.queue_key = Some(key.clone());
    let s = ns.open(&cfg).await;
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let lines = [
        event_line(15, at(2024, 3, 1, 1), 5300, vec![], ""),
        event_line(15, 0, 5300, vec![], ""),
    ];
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg(&lines)
        .query_async(&mut con)
        .await
        .unwrap();
    let mut p = Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
        .await
        .unwrap();
    settle(&mut p).await;
    let snap = s.db.snapshot().await.unwrap();
    assert_eq!(snap.counters.get("processed"), Some(&1));
    assert_eq!(snap.counters.get("rejected:too_old"), Some(&1));
    assert_eq!(snap.current_month.as_deref(), Some("2024-03"));
    assert_eq!(snap.dead_letters, 1);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
}

/// Issue 13, in-process: a gzipped file ingested in several chunks (a
/// malformed line and a duplicate among them) and processed; then Redis
/// loses the namespace's keys, as a restart without persistence would.
/// Ingesting the file again finds Redis behind what PostgreSQL committed:
/// it counts every element again — the same ingest counters and dead
/// letters as before — and queues none. A chunk that does not start where
/// Redis's position of its source stands is refused.
#[tokio::test]
async fn after_a_lost_queue_a_processed_file_is_counted_again_not_queued() {
    use dvmtop::queue::{ChunkSpan, PositionLost};
    let ns = TestNs::new("positions");
    let cfg = ns.config();
    let services = ns.open(&cfg).await;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let mut lines = fixture_lines();
    lines.insert(10, "{not json".into());
    lines.insert(20, lines[5].clone());
    let gz = cfg.data_dir.join("all.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut enc, lines.join("\n").as_bytes()).unwrap();
    enc.finish().unwrap();
    let icfg = dvmtop::ingest::IngestConfig {
        validation: cfg.validation.clone(),
        chunk: 7,
        ..Default::default()
    };
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let src = dvmtop::ingest::Source::parse(gz.to_str().unwrap());
    let first = dvmtop::ingest::ingest(&services.queue, Some(&services.db), &src, &icfg, &cancel)
        .await
        .unwrap();
    assert_eq!(first.read, lines.len() as u64);
    assert_eq!(
        (first.duplicates, first.refused, first.recounted),
        (1, 1, 0)
    );
    let counted = services.queue.ingest_stats().await.unwrap();
    let dead = services.queue.dead_letters().await.unwrap();
    let mut p = dvmtop::pipeline::Processor::open(
        services.db.clone(),
        services.queue.clone(),
        dvmtop::run::Services::settings(&cfg),
    )
    .await
    .unwrap();
    settle(&mut p).await;
    drop(p);
    let committed: Vec<i64> = sqlx::query_scalar("SELECT elements FROM source_positions")
        .fetch_all(&services.db.pool)
        .await
        .unwrap();
    assert_eq!(
        committed,
        vec![lines.len() as i64],
        "the last element is a valid one"
    );
    services.queue.wipe().await.unwrap();
    let again = dvmtop::ingest::ingest(&services.queue, Some(&services.db), &src, &icfg, &cancel)
        .await
        .unwrap();
    assert_eq!(again.read, first.read);
    assert_eq!(again.recounted, first.read);
    assert_eq!(again.accepted, first.accepted);
    assert_eq!(
        services.queue.depth().await.unwrap(),
        0,
        "nothing queued twice"
    );
    assert_eq!(services.queue.ingest_stats().await.unwrap(), counted);
    assert_eq!(services.queue.dead_letters().await.unwrap(), dead);
    // Redis has no position for this key: a chunk starting later is a hole.
    let span = ChunkSpan {
        field: "elsewhere:1",
        start: 5,
        end: 10,
        read: 5,
        enqueue: true,
    };
    assert_eq!(
        services.queue.ingest_chunk(span, &[], &[]).await.unwrap(),
        Err(PositionLost { redis: 0 })
    );
    let read = |q: &dvmtop::queue::Queue| {
        let q = q.clone();
        async move { q.ingest_stats().await.unwrap()["events_read"] }
    };
    let base = read(&services.queue).await;
    let from_start = ChunkSpan {
        start: 0,
        end: 5,
        ..span
    };
    for _ in 0..2 {
        // The second time is a retry (a lost reply): skipped, not counted.
        let out = services.queue.ingest_chunk(from_start, &[], &[]).await;
        assert_eq!(out.unwrap(), Ok(Default::default()));
        assert_eq!(read(&services.queue).await, base + 5);
    }
    // The chunk after it goes on from there.
    assert!(
        services
            .queue
            .ingest_chunk(span, &[], &[])
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(read(&services.queue).await, base + 10);
}
