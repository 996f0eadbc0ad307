//! Shared test scaffolding: every test gets its own namespace (PostgreSQL
//! schema + Redis key prefix) against the real services, removed again
//! when the test ends — pass or fail.
#![allow(dead_code)]

pub mod fault;
pub mod process;

use dvmtop::cli::GlobalArgs;
use dvmtop::config::Config;
use dvmtop::queue::{Keys, Queue};
use dvmtop::run::{Services, Start};
use dvmtop::store::Db;
use dvmtop_core::clock::Policy;
use std::sync::atomic::{AtomicU32, Ordering};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| dvmtop::config::DEFAULT_DATABASE_URL.into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| dvmtop::config::DEFAULT_REDIS_URL.into())
}

/// A namespace unique to this test process and call.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub fn new(tag: &str) -> TestNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect::<String>()
            .to_lowercase();
        TestNs {
            name: format!("t_{tag}_{}_{n}", std::process::id()),
        }
    }

    /// A config for this namespace (auto rollover, batch size 5000).
    pub fn config(&self) -> Config {
        let args = GlobalArgs {
            namespace: Some(self.name.clone()),
            ..Default::default()
        };
        let mut cfg = Config::resolve(&args, Policy::Auto).expect("config");
        cfg.database_url = database_url();
        cfg.redis_url = redis_url();
        cfg.data_dir = std::env::temp_dir().join(&self.name);
        cfg
    }

    pub async fn open(&self, cfg: &Config) -> Services {
        Services::open(cfg, Start::Resume, false)
            .await
            .expect("open namespace")
    }

    async fn cleanup(name: String) {
        if let Ok(db) = Db::connect(&database_url(), &name).await {
            let _ = db.drop_namespace().await;
        }
        if let Ok(q) = Queue::connect(&redis_url(), Keys::new(&name, None)).await {
            let _ = q.wipe().await;
        }
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&name));
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot be async, and may run inside a runtime: clean up on
        // a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(TestNs::cleanup(name));
            }
        })
        .join();
    }
}

/// A table's rows as sorted text, for exact comparisons across namespaces.
pub async fn table_dump(db: &Db, table: &str, order: &str, exclude: &[&str]) -> Vec<String> {
    let cols: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(&db.namespace)
    .bind(table)
    .fetch_all(&db.pool)
    .await
    .expect("columns");
    let cols: Vec<String> = cols
        .into_iter()
        .filter(|c| !exclude.contains(&c.as_str()))
        .collect();
    assert!(
        !cols.is_empty(),
        "table {table} has no columns in {}",
        db.namespace
    );
    let expr = cols
        .iter()
        .map(|c| format!("coalesce({c}::text, '∅')"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    let sql = format!("SELECT {expr} FROM {table} ORDER BY {order}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(&db.pool)
        .await
        .expect("dump")
}

/// One event line (valid id, placeholder signature).
pub fn event_line(
    secret_seed: u8,
    created_at: i64,
    kind: i64,
    tags: Vec<Vec<&str>>,
    content: &str,
) -> String {
    let mut ev = dvmtop::event::Event {
        id: String::new(),
        pubkey: format!("{secret_seed:02x}").repeat(32),
        created_at,
        kind,
        tags: tags
            .into_iter()
            .map(|t| t.into_iter().map(str::to_owned).collect())
            .collect(),
        content: content.to_owned(),
        sig: "0".repeat(128),
    };
    ev.id = dvmtop::event::compute_id(&ev);
    serde_json::json!({"id": ev.id, "pubkey": ev.pubkey, "created_at": ev.created_at, "kind": ev.kind,
        "tags": ev.tags, "content": ev.content, "sig": ev.sig})
    .to_string()
}

/// Unix seconds of a UTC date and hour.
pub fn at(y: i32, m: u32, d: u32, h: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

/// Validates and enqueues lines as ingest does (no resume offset).
pub async fn push_lines(queue: &Queue, lines: &[String]) -> dvmtop::queue::ChunkOutcome {
    let v = dvmtop::event::Validation::default();
    let now = chrono::Utc::now().timestamp();
    let (mut acc, mut refused) = (Vec::new(), Vec::new());
    for l in lines {
        match dvmtop::ingest::classify_line(l, &v, now) {
            Ok(a) => acc.push(a),
            Err(r) => refused.push(r),
        }
    }
    let span = dvmtop::queue::ChunkSpan {
        field: "",
        start: 0,
        end: 0,
        read: lines.len() as u64,
        enqueue: true,
    };
    queue
        .ingest_chunk(span, &acc, &refused)
        .await
        .expect("enqueue")
        .expect("no resume position: never refused")
}

/// Steps until nothing moves (Idle or Blocked), then commits what is
/// pending; panics if it never settles.
pub async fn settle(p: &mut dvmtop::pipeline::Processor) -> Vec<dvmtop::pipeline::Progress> {
    use dvmtop::pipeline::Progress;
    let mut log = Vec::new();
    for _ in 0..1_000_000 {
        let step = p.step().await.expect("step");
        let stop = matches!(step, Progress::Idle | Progress::Blocked(_));
        // What commits did (commits, backups) comes first; the step that
        // settled stays last.
        log.append(&mut p.take_reports());
        if stop {
            p.catch_up().await.expect("commit");
            log.append(&mut p.take_reports());
            log.push(step);
            return log;
        }
        log.push(step);
    }
    panic!("pipeline never settled (deadlock?)");
}

/// Writes lines to a temp file in the namespace's data dir.
pub fn write_input(cfg: &Config, name: &str, lines: &[String]) -> String {
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let p = cfg.data_dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p.display().to_string()
}

/// Runs a headless backtest in-process to the end.
pub async fn backtest(cfg: &Config, files: &[String], start: Start) -> dvmtop::run::Summary {
    let run = dvmtop::run::headless(
        cfg,
        dvmtop::run::Mode::Backtest,
        files,
        start,
        false,
        |_| {},
    )
    .await
    .expect("backtest");
    run.ingest.expect("ingest");
    run.summary
}

/// Every state table a run is compared on (crash, fault and restart tests:
/// an interrupted run must end with these equal to an uninterrupted one):
/// (table, ORDER BY, columns left out as write-time noise).
pub const STATE_TABLES: [(&str, &str, &[&str]); 14] = [
    ("monthly_activity", "year_month", &["created_at"]),
    ("dvms", "id", &[]),
    ("users", "id", &[]),
    ("global_stats_rollups", "id", &[]),
    ("entity_activity", "day, role", &[]),
    ("dvm_stats_rollups", "day, dvm", &[]),
    ("kind_stats_rollups", "day, kind", &[]),
    ("kind_dvm_support", "kind, dvm", &[]),
    ("counters", "name", &[]),
    ("dead_letters", "reason, payload", &["pos", "recorded_at"]),
    ("overflow", "id", &[]),
    ("ever_seen", "role, id", &[]),
    ("dvm_profiles", "id", &[]),
    ("job_day_stats", "day, scope, key", &[]),
];

/// The job facts (issue 14) as a sorted multiset of text lines, one per
/// fact: how the rows split them into commits does not matter, a fact
/// stored twice or missing does.
pub async fn job_facts_dump(db: &Db) -> Vec<String> {
    let rows: Vec<(chrono::NaiveDate, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT day, requests, results FROM job_facts")
            .fetch_all(&db.pool)
            .await
            .expect("job_facts");
    let mut out = Vec::new();
    for (day, rq, rs) in rows {
        assert_eq!(rq.len() % dvmtop_core::jobs::REQUEST_FACT, 0);
        assert_eq!(rs.len() % dvmtop_core::jobs::RESULT_FACT, 0);
        for c in rq.chunks(dvmtop_core::jobs::REQUEST_FACT) {
            out.push(format!("{day}|request|{}", hex::encode(c)));
        }
        for c in rs.chunks(dvmtop_core::jobs::RESULT_FACT) {
            out.push(format!("{day}|result|{}", hex::encode(c)));
        }
    }
    out.sort();
    out
}
