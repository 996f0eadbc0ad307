//! Issue 16, TLS to managed services: a PostgreSQL of the test's own that
//! accepts only TLS connections (`hostssl`), reached with
//! `sslmode=require` and `verify-full` + `sslrootcert`, and a TLS-only
//! Redis (`rediss://`, `--redis-ca`), both with a self-signed CA made by
//! the `openssl` CLI; and errors that say which side refused and why.

mod common;
use common::fault::{Certs, PgOpts, Postgres, Redis, RedisOpts, ScratchDir, have_openssl};
use common::process::{Dvmtop, generate};
use common::*;
use std::path::Path;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A one-month input and its event count.
fn input(dir: &Path) -> (std::path::PathBuf, u64) {
    let file = dir.join("in.jsonl");
    let stats = generate(
        &[
            "--start",
            "2024-05",
            "--months",
            "1",
            "--events-per-day",
            "30",
        ],
        &file,
    );
    (file, stats.events)
}

/// A headless backtest of `file` must process every event.
fn backtest_ok(d: &Dvmtop, file: &Path, extra: &[&str], events: u64, what: &str) {
    let mut args = vec![
        "backtest".to_owned(),
        file.display().to_string(),
        "--headless".into(),
        "--fresh".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = d.output(&args);
    assert!(out.status.success(), "{what}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a summary")).unwrap();
    assert_eq!(summary["processed"], events, "{what}: {summary}");
}

/// A one-line error on stderr, returned.
fn refused(d: &Dvmtop, args: &[&str], what: &str) -> String {
    let out = d.output(args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

#[test]
fn postgres_over_tls_require_and_verify_full() {
    if !have_openssl() {
        eprintln!("SKIPPED: no openssl CLI to make certificates");
        return;
    }
    let dir = ScratchDir::new("pgtls");
    let certs = Certs::generate(&dir.path().join("ca"), "dvmtop test CA");
    let other = Certs::generate(&dir.path().join("other"), "another CA");
    // Only TLS connections over TCP are let in.
    let hba = dir.path().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    let mut opts = PgOpts {
        ssl: Some((certs.cert.clone(), certs.key.clone())),
        ..PgOpts::default()
    };
    opts.settings
        .push(("hba_file".into(), hba.display().to_string()));
    let pg = Postgres::start_with(opts);
    let ns = TestNs::new("pgtls");
    let (file, events) = input(dir.path());
    let base = pg.url("dvmtop");
    let with =
        |query: &str| Dvmtop::new(format!("{base}?{query}"), redis_url(), &ns.name, dir.path());

    backtest_ok(
        &with("sslmode=require"),
        &file,
        &[],
        events,
        "sslmode=require",
    );
    let ca = certs.ca.display().to_string();
    let full = with(&format!("sslmode=verify-full&sslrootcert={ca}"));
    backtest_ok(&full, &file, &[], events, "verify-full");
    let out = with(&format!("sslmode=verify-ca&sslrootcert={ca}")).output(["status", "--json"]);
    assert!(out.status.success(), "verify-ca: {}", text(&out.stderr));

    // A CA that did not sign the server's certificate: the client refuses.
    let wrong = other.ca.display().to_string();
    let err = refused(
        &with(&format!("sslmode=verify-full&sslrootcert={wrong}")),
        &["status"],
        "a wrong CA",
    );
    assert!(err.contains("TLS to PostgreSQL at 127.0.0.1:"), "{err}");
    assert!(
        err.contains("not signed by a CA this client trusts"),
        "{err}"
    );
    // Without TLS the server refuses (pg_hba has no plain-text entry).
    let err = refused(&with("sslmode=disable"), &["status"], "plain text");
    assert!(
        err.contains("PostgreSQL refused the login for role"),
        "{err}"
    );
    assert!(
        err.contains("no encryption"),
        "names the server's reason: {err}"
    );
}

#[test]
fn postgres_without_tls_is_refused_by_sslmode_require() {
    let pg = Postgres::start();
    let dir = ScratchDir::new("pgnotls");
    let ns = TestNs::new("pgnotls");
    let d = Dvmtop::new(
        format!("{}?sslmode=require", pg.url("dvmtop")),
        redis_url(),
        &ns.name,
        dir.path(),
    );
    let err = refused(&d, &["status"], "require against a plain server");
    assert!(err.contains("TLS to PostgreSQL"), "{err}");
    assert!(err.contains("the server does not offer TLS"), "{err}");
}

#[test]
fn redis_over_tls_with_a_ca_file() {
    if !have_openssl() {
        eprintln!("SKIPPED: no openssl CLI to make certificates");
        return;
    }
    let dir = ScratchDir::new("redistls");
    let certs = Certs::generate(&dir.path().join("ca"), "dvmtop test CA");
    let redis = Redis::start(RedisOpts::tls_only(&certs.cert, &certs.key, &certs.ca));
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let ns = TestNs::new("redistls");
    let (file, events) = input(dir.path());
    let d = Dvmtop::new(database_url(), redis.url(), &ns.name, dir.path());
    let ca = certs.ca.display().to_string();
    backtest_ok(
        &d,
        &file,
        &["--redis-ca", &ca],
        events,
        "rediss:// with --redis-ca",
    );
    let out = d.output(["status", "--json", "--redis-ca", &ca]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["counters"]["processed"], events, "{v}");

    // Without the CA: neither the system's roots nor Mozilla's know it.
    let err = refused(&d, &["status"], "no CA file");
    assert!(
        err.contains(&format!("TLS to Redis at {}", redis.url())),
        "{err}"
    );
    assert!(
        err.contains("not signed by a CA this client trusts"),
        "{err}"
    );
    // --redis-ca with a plain-text URL is a mistake, said so.
    let plain = Dvmtop::new(database_url(), redis_url(), &ns.name, dir.path());
    let err = refused(&plain, &["status", "--redis-ca", &ca], "redis:// with a CA");
    assert!(err.contains("--redis-ca is for TLS"), "{err}");
    // rediss:// to a server that speaks plain text.
    let port = redis_url().rsplit(':').next().unwrap().to_owned();
    let wrong = Dvmtop::new(
        database_url(),
        format!("rediss://127.0.0.1:{port}"),
        &ns.name,
        dir.path(),
    );
    let err = refused(&wrong, &["status"], "rediss:// to a plain server");
    assert!(err.contains("Redis at rediss://127.0.0.1"), "{err}");
}
