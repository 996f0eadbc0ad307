//! Issue 16, the CLI's edges, driving the real binary: a missing namespace
//! is one line and creates nothing; `confirm` with nothing due refuses
//! unless `--ahead`; a closed stdout ends quietly; file and login errors in
//! words; each subcommand's help lists only its flags; completions, man
//! page, `--version`; the human `status` table and `status --watch`.

mod common;
use common::fault::{PgOpts, Postgres, ScratchDir, free_port};
use common::process::{Dvmtop, Signal, generate};
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether PostgreSQL has a schema named `ns` (in the shared database).
async fn schema_exists(ns: &str) -> bool {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&database_url())
        .await
        .expect("connect to the shared PostgreSQL");
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(ns)
    .fetch_one(&mut c)
    .await
    .expect("query schemata")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A one-line error on stderr (no backtrace, no usage block, no panic).
fn assert_one_line(stderr: &str, what: &str) {
    assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(stderr.starts_with("dvmtop: "), "{what}: {stderr}");
}

/// A small one-month input (March 2024: nothing is ever due).
fn one_month_input(ns: &TestNs) -> std::path::PathBuf {
    let file = std::env::temp_dir().join(&ns.name).join("in.jsonl");
    generate(
        &[
            "--start",
            "2024-03",
            "--months",
            "1",
            "--events-per-day",
            "40",
        ],
        &file,
    );
    file
}

/// Creates the namespace with a headless backtest of [`one_month_input`].
fn populated(ns: &TestNs) -> Dvmtop {
    let d = Dvmtop::shared(ns);
    let file = one_month_input(ns);
    let out = d.output([
        "backtest".as_ref(),
        file.as_os_str(),
        "--headless".as_ref(),
        "--fresh".as_ref(),
    ]);
    assert!(out.status.success(), "backtest: {}", text(&out.stderr));
    d
}

#[tokio::test]
async fn commands_on_a_missing_namespace_fail_in_one_line_and_create_nothing() {
    let ns = TestNs::new("nons");
    let d = Dvmtop::shared(&ns);
    let backup = std::env::temp_dir().join(format!("{}-backup.json", ns.name));
    std::fs::write(&backup, "[]").unwrap();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["confirm"],
        vec!["confirm", "--ahead"],
        vec!["cleanup"],
        vec!["restore", backup.to_str().unwrap()],
    ] {
        let out = d.output(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {err}");
        assert_one_line(&err, &format!("{args:?}"));
        assert!(
            err.contains(&format!("namespace {} does not exist", ns.name)),
            "{args:?}: {err}"
        );
        assert!(text(&out.stdout).is_empty(), "{args:?} printed on stdout");
        assert!(
            !schema_exists(&ns.name).await,
            "{args:?} created the schema"
        );
    }
    let _ = std::fs::remove_file(backup);
}

#[tokio::test]
async fn confirm_with_nothing_due_refuses_unless_ahead() {
    let ns = TestNs::new("confirmnd");
    let d = populated(&ns);
    let out = d.output(["confirm"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "confirm with nothing due succeeded");
    assert_one_line(&err, "confirm");
    assert!(err.contains("nothing to confirm"), "{err}");
    assert!(err.contains("--ahead"), "{err}");
    let db = dvmtop::store::Db::connect_existing(&database_url(), &ns.name)
        .await
        .unwrap();
    let state = db.load_state().await.unwrap();
    assert_eq!(
        state.clock.confirmed, None,
        "a refused confirm recorded nothing"
    );
    let out = d.output(["confirm", "--ahead"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ahead of time"),
        "{}",
        text(&out.stdout)
    );
    let state = db.load_state().await.unwrap();
    assert_eq!(
        state.clock.confirmed.map(|m| m.to_string()).as_deref(),
        Some("2024-03")
    );
}

/// `dvmtop status | head -1` and friends: the reader goes away first.
#[tokio::test]
async fn a_closed_stdout_ends_quietly() {
    let ns = TestNs::new("epipe");
    let d = populated(&ns);
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["status", "--watch"],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        // Completions and the man page take no service flags.
        let mut cmd = if args[0] == "status" {
            d.command()
        } else {
            Command::new(common::process::BIN)
        };
        let mut child = cmd
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dvmtop");
        // Close the read end before dvmtop writes anything.
        drop(child.stdout.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "{args:?} did not end");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{args:?}: {status:?} {err}");
        assert!(err.is_empty(), "{args:?} said something: {err}");
    }
}

#[tokio::test]
async fn a_missing_input_file_is_named_with_the_cause_in_words() {
    let ns = TestNs::new("nofile");
    let d = Dvmtop::shared(&ns);
    let missing = "/nonexistent/dir/events.jsonl";
    let want = format!("cannot open {missing}: no such file");
    for args in [
        vec!["backtest", missing, "--headless", "--fresh"],
        vec!["ingest", missing],
        // The TUI's own check (runs before it needs a terminal).
        vec!["backtest", missing],
        vec![missing],
    ] {
        let out = d.output(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(
            !err.contains("os error") && !err.contains("entity not found"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `--paused` needs the TUI's keys to resume: headless (or watching) it
/// is refused in one line, before anything is opened or created.
#[tokio::test]
async fn paused_without_the_tui_is_refused_in_one_line() {
    let ns = TestNs::new("pausedhl");
    let d = Dvmtop::shared(&ns);
    let input = one_month_input(&ns);
    let input = input.to_str().unwrap();
    for (args, want) in [
        (
            vec!["backtest", input, "--headless", "--fresh", "--paused"],
            "--paused needs the TUI",
        ),
        (vec!["watch", "--paused"], "drop --paused"),
    ] {
        let out = d.output(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_one_line(&err, "the refusal");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!schema_exists(&ns.name).await, "nothing was created");
}

#[test]
fn a_refused_postgres_login_is_told_apart_from_an_unreachable_server() {
    let ns = TestNs::new("pglogin");
    let d = Dvmtop::shared(&ns);
    let mut url = url_with_user(&database_url(), "no_such_role_dvmtop");
    let out = Dvmtop {
        database_url: url.clone(),
        ..d.clone()
    }
    .output(["status"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_one_line(&err, "wrong role");
    assert!(
        err.contains("PostgreSQL refused the login for role \"no_such_role_dvmtop\""),
        "{err}"
    );
    assert!(!err.contains("unreachable"), "{err}");
    // Nothing listens there: unreachable, start it.
    url = format!("postgres://postgres@127.0.0.1:{}/test", free_port());
    let out = Dvmtop {
        database_url: url,
        ..d
    }
    .output(["status"]);
    let err = text(&out.stderr);
    assert_one_line(&err, "no server");
    assert!(
        err.contains("unreachable") && err.contains("start it"),
        "{err}"
    );
}

/// A wrong password (the common case on a managed server): a refused
/// login, with the server's reason, and the password never printed.
#[test]
fn a_wrong_password_is_a_refused_login() {
    let dir = ScratchDir::new("pgpw");
    let hba = dir.path().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let mut opts = PgOpts::default();
    opts.settings
        .push(("hba_file".into(), hba.display().to_string()));
    let pg = Postgres::start_with(opts);
    pg.psql("postgres", "CREATE ROLE dvm LOGIN PASSWORD 'right-one'");
    let ns = TestNs::new("pgpw");
    let url = format!(
        "postgres://dvm:not-this-one@127.0.0.1:{}/postgres",
        pg.port()
    );
    let out = Dvmtop::new(url, redis_url(), &ns.name, dir.path()).output(["status"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_one_line(&err, "wrong password");
    assert!(
        err.contains("PostgreSQL refused the login for role \"dvm\""),
        "{err}"
    );
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        !err.contains("not-this-one"),
        "the password is printed: {err}"
    );
}

/// `postgres://USER@host…` with another user (drops any password).
fn url_with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host}")
}

fn help(args: &[&str]) -> String {
    let out = Command::new(common::process::BIN)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn each_subcommand_lists_only_its_own_flags() {
    let gen_help = help(&["gen", "--help"]);
    for flag in [
        "--database-url",
        "--redis-url",
        "--namespace",
        "--rollover",
        "--queue-key",
        "--relay",
        "--no-color",
        "--readonly",
        "--activity-retention-days",
    ] {
        assert!(
            !gen_help.contains(flag),
            "gen --help shows {flag}:\n{gen_help}"
        );
    }
    assert!(gen_help.contains("--events-per-day"), "{gen_help}");
    let status = help(&["status", "--help"]);
    for flag in [
        "--namespace",
        "--database-url",
        "--redis-ca",
        "--json",
        "--watch",
    ] {
        assert!(
            status.contains(flag),
            "status --help lacks {flag}:\n{status}"
        );
    }
    for flag in [
        "--rollover",
        "--batch-size",
        "--relay",
        "--headless",
        "--mouse",
    ] {
        assert!(
            !status.contains(flag),
            "status --help shows {flag}:\n{status}"
        );
    }
    let serve = help(&["serve", "--help"]);
    for flag in [
        "--relay",
        "--rollover",
        "--lock-wait",
        "--redis-ca",
        "--batch-size",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}:\n{serve}");
    }
    assert!(
        !serve.contains("--headless") && !serve.contains("--mouse"),
        "{serve}"
    );
    let backtest = help(&["backtest", "--help"]);
    assert!(
        !backtest.contains("--relay"),
        "backtests never read relays:\n{backtest}"
    );
    assert!(
        backtest.contains("--readonly") && backtest.contains("--fresh"),
        "{backtest}"
    );
    // The TUI (no subcommand) keeps every service flag, --readonly too.
    let top = help(&["--help"]);
    for flag in ["--readonly", "--relay", "--rollover", "--namespace"] {
        assert!(top.contains(flag), "dvmtop --help lacks {flag}");
    }
}

#[tokio::test]
async fn flags_before_a_subcommand_apply_to_it_or_are_refused_by_name() {
    let ns = TestNs::new("flagpos");
    let d = Dvmtop::shared(&ns);
    // Written before `status` (as the test harness does): applies to it.
    let out = d.output(["status"]);
    assert!(text(&out.stderr).contains(&format!("namespace {} does not", ns.name)));
    // A flag `status` does not take: refused, naming it, in one line.
    let out = d.output(["--rollover", "auto", "status"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_one_line(&err, "misplaced flag");
    assert!(
        err.contains("--rollover") && err.contains("dvmtop status --help"),
        "{err}"
    );
    // After the subcommand, as everywhere: the later value wins.
    let out = d.output(["status", "--namespace", "other_ns_that_is_not_there"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("namespace other_ns_that_is_not_there does not exist"),
        "{err}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_definitions() {
    let bash = help(&["completions", "bash"]);
    assert!(
        bash.contains("_dvmtop()") && bash.contains("--database-url"),
        "bash"
    );
    assert!(
        bash.contains("completions") && bash.contains("backtest"),
        "bash"
    );
    let zsh = help(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef dvmtop"), "zsh");
    let fish = help(&["completions", "fish"]);
    assert!(fish.contains("complete -c dvmtop"), "fish");
    let man = help(&["man"]);
    assert!(
        man.contains(".TH dvmtop"),
        "man: {}",
        &man[..man.len().min(200)]
    );
    assert!(
        man.contains("serve") && man.contains("status"),
        "man lists subcommands"
    );
    let out = Command::new(common::process::BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_one_line(&text(&out.stderr), "unknown shell");
}

#[test]
fn version_names_the_git_revision() {
    let v = help(&["--version"]);
    assert!(
        v.starts_with(&format!("dvmtop {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let rev = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned());
    match rev {
        Some(r) => assert!(v.contains(&format!("git {r}")), "{v} (HEAD is {r})"),
        None => assert!(v.contains("no git revision"), "{v}"),
    }
}

#[tokio::test]
async fn status_is_a_table_for_people_and_watch_refreshes_it() {
    let ns = TestNs::new("statustbl");
    let d = populated(&ns);
    let out = d.output(["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        serde_json::from_str::<serde_json::Value>(&table).is_err(),
        "JSON: {table}"
    );
    assert!(table.starts_with("namespace"), "{table}");
    assert!(
        table.contains(&ns.name) && table.contains("open month 2024-03"),
        "{table}"
    );
    assert!(table.contains("rollover      none waiting"), "{table}");
    assert!(table.lines().count() <= 16, "short:\n{table}");
    // --json keeps its structure, plus the waiting rollover (none here).
    let out = d.output(["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["namespace"], ns.name.as_str());
    assert!(v["awaiting_confirmation"].is_null(), "{v}");
    assert!(
        v["queue_depth"].is_u64() && v["counters"].is_object(),
        "{v}"
    );
    // --watch: a fresh table every 2 s, until Ctrl-C.
    let mut run = d.spawn(["status", "--watch"]);
    let started = Instant::now();
    let tables = std::cell::Cell::new(0);
    run.wait_for_line("a second table", Duration::from_secs(30), |l| {
        if l.starts_with("namespace") {
            tables.set(tables.get() + 1);
        }
        tables.get() >= 2
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "refreshed too soon"
    );
    assert!(run.signal(Signal::Int));
    let done = run.finish(Duration::from_secs(10));
    assert!(done.status.success(), "{:?} {}", done.status, done.stderr);
    assert!(done.stderr.is_empty(), "{}", done.stderr);
}
