//! Namespaces never reach what is not dvmtop's (issue 13, item 1): the
//! names of PostgreSQL's own schemas and malformed names are refused, and
//! `--fresh` drops only a schema dvmtop created. Run against a throwaway
//! PostgreSQL of the test's own, so that a regression drops nothing on
//! the shared server.

mod common;
use common::fault::{Postgres, Redis, RedisOpts, ScratchDir};
use common::process::Dvmtop;

fn input(dir: &ScratchDir) -> std::path::PathBuf {
    let line = common::event_line(1, common::at(2024, 1, 10, 12), 5000, vec![], "");
    let f = dir.path().join("in.jsonl");
    std::fs::write(&f, format!("{line}\n")).unwrap();
    f
}

fn fresh_backtest(pg: &Postgres, redis: &Redis, ns: &str, dir: &ScratchDir) -> (i32, String) {
    let f = input(dir);
    let out = Dvmtop::new(pg.url("postgres"), redis.url(), ns, dir.path()).output([
        "backtest".as_ref(),
        f.as_os_str(),
        "--headless".as_ref(),
        "--fresh".as_ref(),
    ]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The refusal is the only line on stderr (a warning about the test
/// Redis's persistence may come before it).
fn one_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    lines[0]
}

#[test]
fn fresh_on_postgres_schemas_is_refused_and_public_survives() {
    let pg = Postgres::start();
    let redis = Redis::start(RedisOpts::memory());
    let dir = ScratchDir::new("ns-public");
    pg.psql(
        "postgres",
        "CREATE TABLE public.precious (x int); INSERT INTO public.precious VALUES (42)",
    );
    for ns in [
        "public",
        "information_schema",
        "pg_catalog",
        "pg_temp",
        "_x",
        "Ab",
        "a-b",
    ] {
        let (rc, stderr) = fresh_backtest(&pg, &redis, ns, &dir);
        assert_eq!(rc, 1, "--namespace {ns} must be refused: {stderr}");
        let line = one_error_line(&stderr);
        assert!(line.contains("namespace"), "{ns}: {line}");
        if ns == "_x" {
            assert!(line.contains("starting with a letter"), "{line}");
        }
    }
    assert_eq!(
        pg.psql("postgres", "SELECT x FROM public.precious").trim(),
        "42"
    );
    // information_schema still works for a new namespace afterwards.
    let (rc, stderr) = fresh_backtest(&pg, &redis, "after", &dir);
    assert_eq!(rc, 0, "{stderr}");
}

#[test]
fn fresh_on_a_foreign_schema_is_refused_and_it_survives() {
    let pg = Postgres::start();
    let redis = Redis::start(RedisOpts::memory());
    let dir = ScratchDir::new("ns-foreign");
    pg.psql(
        "postgres",
        "CREATE SCHEMA billing; CREATE TABLE billing.invoices (x int); INSERT INTO billing.invoices VALUES (7);
         CREATE SCHEMA empty_one",
    );
    for ns in ["billing", "empty_one"] {
        let (rc, stderr) = fresh_backtest(&pg, &redis, ns, &dir);
        assert_eq!(rc, 1, "{ns}: {stderr}");
        let line = one_error_line(&stderr);
        assert!(line.contains("not created by dvmtop"), "{line}");
    }
    // Without --fresh it is not used either (no dvmtop table lands in it).
    let f = input(&dir);
    let out = Dvmtop::new(pg.url("postgres"), redis.url(), "billing", dir.path()).output([
        "backtest".as_ref(),
        f.as_os_str(),
        "--headless".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        pg.psql("postgres", "SELECT x FROM billing.invoices").trim(),
        "7"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'billing'"
        )
        .trim(),
        "1"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'empty_one'"
        )
        .trim(),
        "1"
    );
}

#[test]
fn dvmtop_namespaces_are_marked_and_old_ones_recognised() {
    let pg = Postgres::start();
    let redis = Redis::start(RedisOpts::memory());
    let dir = ScratchDir::new("ns-legacy");
    let (rc, stderr) = fresh_backtest(&pg, &redis, "mine", &dir);
    assert_eq!(rc, 0, "{stderr}");
    let comment = "SELECT obj_description('mine'::regnamespace, 'pg_namespace')";
    assert_eq!(pg.psql("postgres", comment).trim(), dvmtop::store::MARKER);
    // A namespace made before the marker: dvmtop's tables, no comment.
    pg.psql("postgres", "COMMENT ON SCHEMA mine IS NULL");
    let (rc, stderr) = fresh_backtest(&pg, &redis, "mine", &dir);
    assert_eq!(rc, 0, "a pre-marker namespace is dvmtop's: {stderr}");
    assert_eq!(pg.psql("postgres", comment).trim(), dvmtop::store::MARKER);
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT value FROM mine.counters WHERE name = 'processed'"
        )
        .trim(),
        "1"
    );
}
