//! Self-test of the fault-injection harness (`tests/common/fault.rs`):
//! throwaway Redis and PostgreSQL servers start on free ports, keep or
//! lose data across restarts as configured, accept new connections after
//! a restart, run the real `dvmtop`, and leave no process and no dir
//! behind — after a drop, a panic, or the death of the test process.
//! Each test prints its timings (`cargo nextest run --no-capture`).

mod common;
use common::fault::{Postgres, Redis, RedisOpts, ScratchDir, Shutdown, become_subreaper};
use common::process::{Dvmtop, Running, alive, generate, processes_in, sys};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    println!("{what}: {:.0?}", t.elapsed());
    v
}

fn set(r: &Redis, k: &str, v: &str) {
    let _: () = redis::cmd("SET")
        .arg(k)
        .arg(v)
        .query(&mut r.connection())
        .expect("SET");
}

fn get(r: &Redis, k: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(k)
        .query(&mut r.connection())
        .expect("GET")
}

/// Nothing of an instance is left: no process runs in its dir, none of
/// its pids exists (not even as a zombie), the dir is gone, and nothing
/// listens on its port.
fn assert_gone(what: &str, dir: &Path, pids: &[u32], port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = processes_in(dir);
        let present: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if running.is_empty() && present.is_empty() && !dir.exists() && !listening {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: left behind: processes in {} {running:?}, pids {present:?}, dir exists {}, port {port} listening {listening}",
            dir.display(),
            dir.exists()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn redis_with_aof_keeps_a_key_across_stop_and_kill() {
    let mut r = timed("redis start (AOF)", || Redis::start(RedisOpts::aof()));
    set(&r, "k", "v1");
    timed("redis restart (SIGTERM + start)", || r.restart());
    assert_eq!(get(&r, "k").as_deref(), Some("v1"), "{}", r.log_tail(20));
    // appendfsync always: even SIGKILL loses nothing acknowledged.
    set(&r, "k", "v2");
    r.kill();
    timed("redis start_again after SIGKILL", || r.start_again());
    assert_eq!(get(&r, "k").as_deref(), Some("v2"), "{}", r.log_tail(20));
    assert!(r.dir().join("appendonlydir").is_dir());
}

#[test]
fn redis_without_persistence_loses_the_key_on_restart() {
    let mut r = Redis::start(RedisOpts::memory());
    set(&r, "k", "v");
    assert_eq!(get(&r, "k").as_deref(), Some("v"));
    let port = r.port();
    r.restart();
    assert_eq!(r.port(), port);
    assert_eq!(get(&r, "k"), None);
    assert!(!r.dir().join("appendonlydir").exists());
}

#[test]
fn a_frozen_redis_times_out_and_thaws() {
    let r = Redis::start(RedisOpts::memory());
    let mut con = r.connection();
    con.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    r.freeze();
    let t = Instant::now();
    let e = redis::cmd("PING").query::<String>(&mut con).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(250));
    r.thaw();
    assert_eq!(get(&r, "nothing"), None);
}

#[tokio::test]
async fn postgres_accepts_new_connections_after_each_kind_of_restart() {
    use sqlx::Connection;
    let mut pg = timed("postgres start", Postgres::start);
    let url = pg.url("postgres");
    let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("CREATE TABLE t (v int)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);

    let count = |url: String| async move {
        let mut c = sqlx::PgConnection::connect(&url)
            .await
            .expect("a new connection");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut c)
            .await
            .unwrap();
        n
    };
    let port = pg.port();
    timed("postgres restart fast", || pg.restart(Shutdown::Fast));
    assert_eq!(count(url.clone()).await, 1);
    timed("postgres restart immediate", || {
        pg.restart(Shutdown::Immediate)
    });
    assert_eq!(count(url.clone()).await, 1);
    pg.kill();
    timed("postgres start_again after SIGKILL", || pg.start_again());
    assert_eq!(count(url.clone()).await, 1);
    assert_eq!(pg.port(), port);
    assert!(pg.log_tail(200).contains("database system was interrupted"));

    // A session cut by kill_backends errors; a new one works.
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    assert!(pg.kill_backends() >= 1);
    assert!(sqlx::query("SELECT 1").execute(&mut c).await.is_err());
    assert_eq!(count(url).await, 1);
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM t").trim(), "1");
}

#[test]
fn both_drop_cleanly() {
    let r = Redis::start(RedisOpts::aof());
    let pg = Postgres::start();
    let (rdir, rpid, rport) = (r.dir().to_owned(), r.pid().unwrap(), r.port());
    let pdir = pg.data_dir().to_owned();
    let pport = pg.port();
    // (Children come and go: any seen is checked.)
    let mut ppids = pg.pids();
    ppids.extend(processes_in(&pdir));
    assert!(
        ppids.len() > 2,
        "the postmaster and its children: {ppids:?}"
    );
    assert!(processes_in(&pdir).contains(&pg.pid().unwrap()));
    assert_eq!(processes_in(&rdir), [rpid]);
    timed("drop redis", || drop(r));
    timed("drop postgres", || drop(pg));
    assert_gone("redis", &rdir, &[rpid], rport);
    assert_gone("postgres", &pdir, &ppids, pport);
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let mut seen = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let r = Redis::start(RedisOpts::memory());
        let pg = Postgres::start();
        seen = Some((
            (r.dir().to_owned(), vec![r.pid().unwrap()], r.port()),
            (pg.data_dir().to_owned(), pg.pids(), pg.port()),
        ));
        panic!("the test fails");
    }));
    assert!(r.is_err());
    let ((rdir, rpids, rport), (pdir, ppids, pport)) = seen.unwrap();
    assert_gone("redis", &rdir, &rpids, rport);
    assert_gone("postgres", &pdir, &ppids, pport);
}

/// Several instances started at once (nextest also runs these tests in
/// parallel processes) get distinct ports and all work.
#[test]
fn instances_started_in_parallel_get_distinct_ports() {
    let t = Instant::now();
    let redises: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| Redis::start(RedisOpts::memory())))
        .collect();
    let pgs: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(Postgres::start))
        .collect();
    let redises: Vec<Redis> = redises.into_iter().map(|h| h.join().unwrap()).collect();
    let pgs: Vec<Postgres> = pgs.into_iter().map(|h| h.join().unwrap()).collect();
    println!("4 redis + 2 postgres in parallel: {:.0?}", t.elapsed());
    let mut ports: Vec<u16> = redises.iter().map(Redis::port).collect();
    ports.extend(pgs.iter().map(Postgres::port));
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 6, "{ports:?}");
    for (i, r) in redises.iter().enumerate() {
        set(r, "who", &i.to_string());
    }
    for (i, r) in redises.iter().enumerate() {
        assert_eq!(get(r, "who"), Some(i.to_string()));
    }
    for pg in &pgs {
        assert_eq!(pg.psql("postgres", "SELECT 1").trim(), "1");
    }
}

/// The real binary against throwaway services: a headless backtest to
/// the end, then `serve` stopped by SIGTERM.
#[test]
fn dvmtop_runs_against_throwaway_services() {
    let redis = Redis::start(RedisOpts::aof());
    let pg = Postgres::start();
    let scratch = ScratchDir::new("run");
    let dir = scratch.path();
    let input = dir.join("in.jsonl");
    let stats = generate(&["--months", "1", "--events-per-day", "30"], &input);
    let d = Dvmtop::new(pg.url("dvmtop_fault"), redis.url(), "faultrun", dir);

    let t = Instant::now();
    let mut run = d.spawn(["backtest", "--headless", "--fresh", input.to_str().unwrap()]);
    let summary = run.wait_for_json("the summary", Duration::from_secs(60), |v| {
        v["event"] == "summary"
    });
    let done = run.finish(Duration::from_secs(30));
    assert!(done.status.success(), "{done:?}");
    assert_eq!(summary["accepted"], stats.events, "{summary}");
    assert_eq!(done.last_json(), summary);
    println!("backtest of {} events: {:.0?}", stats.events, t.elapsed());
    // Its tables are in the throwaway cluster's database.
    let n = pg.psql(
        "dvmtop_fault",
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'faultrun'",
    );
    assert!(n.trim().parse::<u32>().unwrap() > 5, "{n}");

    // `serve` on a namespace of its own: processes the file, then waits
    // for relays (none here) until SIGTERM.
    let d = Dvmtop::new(pg.url("dvmtop_fault"), redis.url(), "faultserve", dir);
    let t = Instant::now();
    let mut serve = d.spawn(["serve", "--no-relays", input.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = d.output(["status", "--json"]);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if st["counters"]["processed"] == stats.events {
            break;
        }
        assert!(
            serve.try_wait().is_none(),
            "serve exited: {:?}",
            serve.finish(Duration::ZERO)
        );
        assert!(
            Instant::now() < deadline,
            "serve never processed the file: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("serve processed the file: {:.0?}", t.elapsed());
    let done = serve.terminate(Duration::from_secs(60));
    assert!(done.status.success(), "{done:?}");
    let summary = done.last_json();
    assert_eq!(summary["event"], "summary", "{}", done.stdout);
    assert_eq!(summary["processed"], stats.events, "{summary}");
}

/// Run by [`a_dying_test_process_leaves_nothing_behind`] as a process of
/// its own: starts both servers, says where, and aborts (no unwinding, no
/// drop), as a test killed by a timeout would end.
#[test]
#[ignore = "a helper, run by a_dying_test_process_leaves_nothing_behind"]
fn dying_helper() {
    if std::env::var_os("FAULT_DYING_HELPER").is_none() {
        return;
    }
    let r = Redis::start(RedisOpts::aof());
    let pg = Postgres::start();
    let pids = |v: Vec<u32>| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    println!(
        "HELPER {} {} {} {} {} {}",
        r.dir().display(),
        pids(vec![r.pid().unwrap()]),
        r.port(),
        pg.data_dir().display(),
        pids(pg.pids()),
        pg.port()
    );
    std::process::abort();
}

#[test]
fn a_dying_test_process_leaves_nothing_behind() {
    // The helper's orphans come here, to be reaped (see assert_gone).
    become_subreaper();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "dying_helper",
        "--exact",
        "--include-ignored",
        "--nocapture",
    ])
    .env("FAULT_DYING_HELPER", "1");
    let mut helper = Running::spawn(cmd, "the dying helper");
    let line = helper.wait_for_line("the servers", Duration::from_secs(60), |l| {
        l.starts_with("HELPER ")
    });
    let done = helper.finish(Duration::from_secs(30));
    assert!(!done.status.success(), "{done:?}");
    let f: Vec<&str> = line.split_whitespace().collect();
    let pids = |s: &str| -> Vec<u32> { s.split(',').map(|p| p.parse().unwrap()).collect() };
    let (rdir, rpids, rport) = (PathBuf::from(f[1]), pids(f[2]), f[3].parse().unwrap());
    let (pdir, ppids, pport) = (PathBuf::from(f[4]), pids(f[5]), f[6].parse().unwrap());
    // The watchdogs kill the servers; reap what comes here meanwhile.
    // (This process has no other child left, so reaping any is safe.)
    let t = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reap = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                while unsafe { sys::waitpid(-1, std::ptr::null_mut(), sys::WNOHANG) } > 0 {}
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    assert_gone("redis (orphaned)", &rdir, &rpids, rport);
    assert_gone("postgres (orphaned)", &pdir, &ppids, pport);
    println!("watchdogs cleaned up after {:.0?}", t.elapsed());
    assert!(rpids.iter().chain(&ppids).all(|&p| !alive(p)));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reap.join().unwrap();
}
