//! # Fault-injection harness
//!
//! Throwaway Redis and PostgreSQL servers of a test's own, on free ports
//! and in temp dirs, to stop, kill, freeze and restart while `dvmtop` runs
//! against them (see [`super::process`] for running the binary). The
//! shared servers at 127.0.0.1:5432 and :6379 are never touched.
//!
//! ```ignore
//! mod common;
//! use common::fault::{Postgres, Redis, RedisOpts, ScratchDir, Shutdown};
//! use common::process::{Dvmtop, Signal};
//!
//! let mut redis = Redis::start(RedisOpts::aof());
//! let mut pg = Postgres::start();
//! let dir = ScratchDir::new("mytest"); // --data-dir, removed on drop
//! let mut run = Dvmtop::new(pg.url("dvmtop"), redis.url(), "ns", dir.path())
//!     .spawn(["serve", "--no-relays", "in.jsonl"]);
//! pg.restart(Shutdown::Immediate); // crash recovery under a live pipeline
//! redis.kill();                      // lose Redis (AOF: kept)...
//! redis.start_again();               // ...and bring it back on its port
//! let done = run.terminate(Duration::from_secs(60));
//! ```
//!
//! The API, in short (details at each item):
//!
//! * [`Redis::start`]`(RedisOpts)`, `url`, `port`, `dir`, `pid`,
//!   `connection`, `stop` (SIGTERM), `kill` (SIGKILL), `start_again`,
//!   `restart`, `freeze`/`thaw` (SIGSTOP/SIGCONT), `log_tail`.
//! * [`Postgres::start`] / `start_with(PgOpts)`, `url(db)`, `port`,
//!   `data_dir`, `pid`, `pids`, `stop(Shutdown)`, `start_again`,
//!   `restart(Shutdown)`, `kill` (SIGKILL to all its processes),
//!   `kill_backends`, `psql(db, sql)`, `log_tail`.
//! * [`ScratchDir`], [`free_port`], [`become_subreaper`].
//! * TLS: [`Certs::generate`] (a CA and a server certificate for
//!   127.0.0.1, with the `openssl` CLI; [`have_openssl`]),
//!   [`PgOpts`]`::ssl` (`ssl=on`), [`RedisOpts::tls_only`] (`url()` is then
//!   `rediss://`).
//! * In [`super::process`]: [`Dvmtop`](super::process::Dvmtop) (`new`,
//!   `shared`, `command`, `output`, `spawn`) and
//!   [`Running`](super::process::Running) (`wait_for_line`,
//!   `wait_for_json`, `signal`, `try_wait`, `wait_with_timeout`, `finish`,
//!   `terminate`, `kill`).
//!
//! ## What it needs
//!
//! * `redis-server` on `PATH` (7.x: the append-only file lives in
//!   `appendonlydir/` of the data dir).
//! * PostgreSQL's server binaries (`initdb`, `postgres`, `pg_isready`,
//!   `psql`) in `$(pg_config --bindir)`, else in the newest
//!   `/usr/lib/postgresql/*/bin`.
//! * Run as root (as CI does), a `postgres` user: PostgreSQL refuses to
//!   run as root, so `initdb` and `postgres` run as that user (the child's
//!   uid/gid are set before exec; the instance dir is `chown`ed to it). Run
//!   as anyone else, they run as that user.
//!
//! ## How it works
//!
//! * Ports: random, below the kernel's ephemeral range
//!   (`/proc/sys/net/ipv4/ip_local_port_range`) and checked free by
//!   binding them, so that neither a parallel test nor the local end of
//!   some client connection takes a stopped server's port before it comes
//!   back. A start that still loses the race (`Address already in use`)
//!   retries on another port; a restart keeps its port.
//! * Both servers run as direct children of the test (PostgreSQL's
//!   postmaster too, not through `pg_ctl`, which detaches it), so they are
//!   reaped here and no zombie is left to this machine's init, which does
//!   not reap; they are stopped with the signals `pg_ctl` itself sends.
//! * Dirs: `$TMPDIR/dvmtop-fault-{redis,pg}-PID-N`, removed on drop.
//! * Cleanup, pass or fail: `Drop` kills the server and removes its dir
//!   (panics unwind through it). In case the test process dies without
//!   unwinding (nextest's timeout kill, SIGKILL), each instance has a
//!   watchdog `sh` in a process group of its own that waits on a pipe from
//!   the test: when the pipe closes without a word, it kills every process
//!   whose working directory is the instance's data dir (Redis's and all of
//!   PostgreSQL's) and removes the dir.
//! * PostgreSQL: `initdb` takes 1.5 s or more, so its result is kept as a
//!   template in cargo's `target/tmp` (per PostgreSQL version and uid) and
//!   copied (`cp -a`, ~0.15 s) for each instance. Started with
//!   `fsync=off` by default ([`PgOpts`]): a killed server process loses
//!   nothing that way (its writes are in the page cache; recovery replays
//!   the WAL as usual), only a machine crash would, which no test makes.
//!
//! ## Timings
//!
//! Measured by `tests/fault_harness.rs` (`--no-capture` prints them) on
//! the 2-core machine while other builds ran (load average 5–8):
//!
//! | step | time |
//! | --- | --- |
//! | `Redis::start` (to the first `PONG`) | 20–90 ms |
//! | `Redis::restart` (SIGTERM, exit, start) | ~130 ms (Redis acts on SIGTERM at its next 100 ms tick) |
//! | `Redis::kill` + `start_again` (AOF replayed) | 20–40 ms |
//! | `Postgres::start`, template present | 0.3–0.5 s (`cp -a` of ~40 MB, start, ready) |
//! | `Postgres::start`, first ever (`initdb`) | 1.5 s idle, 3 s loaded |
//! | `Postgres::restart(Fast)` / `restart(Immediate)` | 75–200 ms |
//! | `Postgres::kill` + `start_again` (crash recovery) | 75–100 ms |
//! | drop: Redis / PostgreSQL | ~20 ms / ~120 ms |
//!
//! A test process that dies without unwinding is cleaned up by the
//! watchdogs within about half a second.
#![allow(dead_code)]

use super::process::{Signal, children_of, proc_stat, send_signal, sys};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Generous: the machine is shared and often busy.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts lost to a port taken in the meantime are retried this often.
const PORT_ATTEMPTS: usize = 5;

// ---------------------------------------------------------------- ports

/// A port free on 127.0.0.1 now: random below the ephemeral range (see the
/// module docs), else one the kernel picks.
pub fn free_port() -> u16 {
    let eph_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    if eph_low > 12_000 {
        let span = u64::from(eph_low - 10_000);
        let state = std::hash::RandomState::new();
        for i in 0..64u32 {
            let mut h = state.build_hasher();
            h.write_u32(i);
            h.write_u32(std::process::id());
            let port = 10_000 + (h.finish() % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

// ------------------------------------------------------------ instance dirs

/// A fresh, empty, canonical dir for one server.
fn instance_dir(kind: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("dvmtop-fault-{kind}-{}-{n}", std::process::id()));
    // A dir left by an earlier process with the same pid.
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d.canonicalize().expect("canonical instance dir")
}

/// A temp dir removed on drop, pass or fail: e.g. a `dvmtop --data-dir`.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        ScratchDir(instance_dir(tag))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What a log file got since `offset`.
fn read_from(path: &Path, offset: u64) -> String {
    let mut s = Vec::new();
    if let Ok(mut f) = File::open(path) {
        use std::io::Seek;
        let _ = f.seek(std::io::SeekFrom::Start(offset));
        let _ = f.read_to_end(&mut s);
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn log_tail(path: &Path, n: usize) -> String {
    super::process::tail(&read_from(path, 0), n)
}

/// Waits up to `timeout` for `child` to exit; false if it did not.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

// ----------------------------------------------------------------- watchdog

/// Kills an instance's processes and removes its dir if the test process
/// dies without dropping it (see the module docs).
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

const WATCHDOG: &str = r#"
if read -r _; then exit 0; fi
for p in /proc/[0-9]*; do
  if [ "$(readlink "$p/cwd" 2>/dev/null)" = "$FAULT_DIR" ]; then kill -9 "${p#/proc/}" 2>/dev/null; fi
done
sleep 0.2
rm -rf "$FAULT_BASE"
"#;

impl Watchdog {
    fn arm(base: &Path, dir: &Path) -> Watchdog {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .env("FAULT_BASE", base)
            .env("FAULT_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the test's process group: a signal to the group (a
            // test timeout) must not take the watchdog with it.
            .process_group(0)
            .spawn()
            .expect("start the watchdog (sh)");
        let stdin = child.stdin.take();
        Watchdog { child, stdin }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The instance was cleaned up: tell the watchdog to just exit.
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

// -------------------------------------------------------------------- Redis

/// Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppendFsync {
    Always,
    #[default]
    EverySec,
    No,
}

/// How to run a [`Redis`].
#[derive(Debug, Clone, Default)]
pub struct RedisOpts {
    /// Append-only file on: a stop or kill and `start_again` keeps the data.
    pub appendonly: bool,
    pub appendfsync: AppendFsync,
    /// More `redis-server` arguments, after the harness's (so they win),
    /// e.g. `--tls-port P --port 0 --tls-cert-file …`; `{port}` stands
    /// for the instance's port.
    pub args: Vec<String>,
}

impl RedisOpts {
    /// AOF on, fsync on every write.
    pub fn aof() -> RedisOpts {
        RedisOpts {
            appendonly: true,
            appendfsync: AppendFsync::Always,
            args: Vec::new(),
        }
    }

    /// No persistence at all: a restart starts empty.
    pub fn memory() -> RedisOpts {
        RedisOpts::default()
    }

    /// TLS only (no plain port), with this certificate and key, clients
    /// not asked for certificates; [`Redis::url`] is then `rediss://`.
    pub fn tls_only(cert: &Path, key: &Path, ca: &Path) -> RedisOpts {
        let mut args: Vec<String> = ["--port", "0", "--tls-port", "{port}"]
            .map(String::from)
            .to_vec();
        for (flag, f) in [
            ("--tls-cert-file", cert),
            ("--tls-key-file", key),
            ("--tls-ca-cert-file", ca),
        ] {
            args.push(flag.into());
            args.push(f.display().to_string());
        }
        args.extend(["--tls-auth-clients", "no"].map(String::from));
        RedisOpts {
            args,
            ..RedisOpts::default()
        }
    }
}

/// A `redis-server` of the test's own (see the module docs).
pub struct Redis {
    opts: RedisOpts,
    port: u16,
    base: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _watchdog: Watchdog,
}

impl Redis {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start(opts: RedisOpts) -> Redis {
        let base = instance_dir("redis");
        let dir = base.join("data");
        std::fs::create_dir(&dir).expect("create the Redis dir");
        let mut r = Redis {
            opts,
            port: 0,
            log: base.join("redis.log"),
            _watchdog: Watchdog::arm(&base, &dir),
            base,
            dir,
            child: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            r.port = free_port();
            match r.spawn_and_wait() {
                Ok(()) => return r,
                Err(e) if e.contains("Address already in use") && attempt < PORT_ATTEMPTS => {}
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for [`RedisOpts::tls_only`]).
    pub fn url(&self) -> String {
        let tls = self.opts.args.iter().any(|a| a == "--tls-port");
        let scheme = if tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data dir (`--dir`; the AOF is in `appendonlydir/` there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A plain synchronous connection.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Shuts it down with SIGTERM (with AOF on, it fsyncs the file) and
    /// waits for the exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("Redis::stop: not running");
        send_signal(child.id(), Signal::Cont);
        send_signal(child.id(), Signal::Term);
        if !wait_exit(&mut child, STOP_TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-server :{} ignored SIGTERM for {STOP_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log_tail(30)
            );
        }
    }

    /// SIGKILL: what the last fsync did not save is lost.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("Redis::kill: not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again after `stop` or `kill`: same port, same dir.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Redis::start_again: still running");
        if let Err(e) = self.spawn_and_wait() {
            panic!("{e}");
        }
    }

    /// Starts it again like [`Redis::start_again`] with `args` added to
    /// this and every later start (e.g. `--key-load-delay 100`: loading
    /// the data takes long enough that clients surely meet `LOADING`).
    pub fn start_again_with(&mut self, args: &[&str]) {
        self.opts.args.extend(args.iter().map(|a| a.to_string()));
        self.start_again();
    }

    /// `stop` then `start_again`.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// SIGSTOP: the server hangs (connections stay open, nothing answers)
    /// until [`Redis::thaw`].
    pub fn freeze(&self) {
        send_signal(self.pid().expect("not running"), Signal::Stop);
    }

    /// SIGCONT after [`Redis::freeze`].
    pub fn thaw(&self) {
        send_signal(self.pid().expect("not running"), Signal::Cont);
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let from = file_len(&self.log);
        let log = append(&self.log);
        let fsync = match self.opts.appendfsync {
            AppendFsync::Always => "always",
            AppendFsync::EverySec => "everysec",
            AppendFsync::No => "no",
        };
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--dir"])
            .arg(&self.dir)
            .args(["--save", "", "--daemonize", "no", "--appendonly"])
            .arg(if self.opts.appendonly { "yes" } else { "no" })
            .args(["--appendfsync", fsync])
            .args(self.opts.args.iter().map(|a| a.replace("{port}", &port)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start redis-server (is it installed?): {e}"))?;
        let pid = child.id();
        self.child = Some(child);
        let tls = self.opts.args.iter().any(|a| a == "--tls-port");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Err(format!(
                    "redis-server :{port} exited at start ({st}); its log:\n{}",
                    super::process::tail(&read_from(&self.log, from), 30)
                ));
            }
            // A TLS-only server answers no plain PING: its log says when.
            let ready = if tls {
                read_from(&self.log, from).contains("Ready to accept connections")
            } else {
                ping(addr)
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return Err(format!(
                    "redis-server :{port} (pid {pid}) not ready within {START_TIMEOUT:?}; its log:\n{}",
                    super::process::tail(&read_from(&self.log, from), 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether a Redis at `addr` answers `PING` with `PONG` (not `-LOADING`).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

// --------------------------------------------------------------- PostgreSQL

/// PostgreSQL's shutdown modes: the signal `pg_ctl stop -m MODE` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM: waits for every client to disconnect.
    Smart,
    /// SIGINT: ends sessions (rolling back), checkpoints, exits.
    Fast,
    /// SIGQUIT: exits at once; the next start runs crash recovery.
    Immediate,
}

impl Shutdown {
    fn signal(self) -> Signal {
        match self {
            Shutdown::Smart => Signal::Term,
            Shutdown::Fast => Signal::Int,
            Shutdown::Immediate => Signal::Quit,
        }
    }
}

/// How to run a [`Postgres`].
#[derive(Debug, Clone)]
pub struct PgOpts {
    /// `fsync` (off by default: see the module docs).
    pub fsync: bool,
    /// More settings, as `-c NAME=VALUE`.
    pub settings: Vec<(String, String)>,
    /// `ssl=on` with this certificate and key (PEM; see [`Certs`]): they
    /// are copied into the instance dir, owned by the server's user, key
    /// mode 0600 as PostgreSQL demands. Plain connections still work.
    pub ssl: Option<(PathBuf, PathBuf)>,
}

impl Default for PgOpts {
    fn default() -> PgOpts {
        PgOpts {
            fsync: false,
            settings: vec![("shared_buffers".into(), "32MB".into())],
            ssl: None,
        }
    }
}

/// A PostgreSQL cluster of the test's own (see the module docs); its
/// superuser is `postgres`, trusted without a password.
pub struct Postgres {
    opts: PgOpts,
    port: u16,
    base: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// The postmaster.
    child: Option<Child>,
    _watchdog: Watchdog,
}

impl Postgres {
    /// [`Postgres::start_with`] the default options.
    pub fn start() -> Postgres {
        Postgres::start_with(PgOpts::default())
    }

    /// Creates a cluster in a temp dir, starts it on a free port, and
    /// waits until it accepts connections.
    pub fn start_with(opts: PgOpts) -> Postgres {
        let base = instance_dir("pg");
        if let Some((uid, gid)) = pg_user() {
            std::os::unix::fs::chown(&base, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", base.display()));
        }
        let data = base.join("data");
        let mut pg = Postgres {
            opts,
            port: 0,
            log: base.join("log"),
            _watchdog: Watchdog::arm(&base, &data),
            data,
            base,
            child: None,
        };
        create_cluster(&pg.data, &pg.base);
        if let Some((cert, key)) = pg.opts.ssl.clone() {
            let (c, k) = (pg.base.join("server.crt"), pg.base.join("server.key"));
            std::fs::copy(&cert, &c).expect("copy the server certificate");
            std::fs::copy(&key, &k).expect("copy the server key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the server key");
            if let Some((uid, gid)) = pg_user() {
                for f in [&c, &k] {
                    std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown the TLS files");
                }
            }
            pg.opts.settings.extend([
                ("ssl".to_owned(), "on".to_owned()),
                ("ssl_cert_file".to_owned(), c.display().to_string()),
                ("ssl_key_file".to_owned(), k.display().to_string()),
            ]);
        }
        for attempt in 1..=PORT_ATTEMPTS {
            pg.port = free_port();
            match pg.spawn_and_wait() {
                Ok(()) => return pg,
                Err(e) if e.contains("Address already in use") && attempt < PORT_ATTEMPTS => {}
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The postmaster and its children (backends, checkpointer, …).
    pub fn pids(&self) -> Vec<u32> {
        self.pid()
            .map(|p| std::iter::once(p).chain(children_of(p)).collect())
            .unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Shuts the server down in `mode` and waits until every process of
    /// it has exited.
    pub fn stop(&mut self, mode: Shutdown) {
        let mut child = self.child.take().expect("Postgres::stop: not running");
        send_signal(child.id(), mode.signal());
        if !wait_exit(&mut child, STOP_TIMEOUT) {
            kill_cluster(child);
            panic!(
                "PostgreSQL :{} did not stop ({mode:?}) within {STOP_TIMEOUT:?} (killed); log:\n{}",
                self.port,
                self.log_tail(30)
            );
        }
    }

    /// Starts it again after `stop` or `kill`: same port, same data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Postgres::start_again: still running");
        if let Err(e) = self.spawn_and_wait() {
            panic!("{e}");
        }
    }

    /// `stop(mode)` then `start_again` (what `pg_ctl restart -m MODE` does).
    pub fn restart(&mut self, mode: Shutdown) {
        self.stop(mode);
        self.start_again();
    }

    /// SIGKILL to the postmaster and all its processes at once, as a
    /// machine losing the server would; the next start runs crash
    /// recovery.
    pub fn kill(&mut self) {
        kill_cluster(self.child.take().expect("Postgres::kill: not running"));
    }

    /// Terminates every client session (`pg_terminate_backend`); returns
    /// how many there were.
    pub fn kill_backends(&self) -> u64 {
        let n = self.psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        n.trim().parse().expect("a count")
    }

    /// Runs SQL with `psql` (unaligned, tuples only) and returns its
    /// output; fails the test on an error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(pg_bindir().join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql on :{} failed: {}\nSQL: {sql}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let from = file_len(&self.log);
        let log = append(&self.log);
        let mut c = pg_command("postgres");
        c.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.base)
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!(
                "fsync={}",
                if self.opts.fsync { "on" } else { "off" }
            ));
        for (k, v) in &self.opts.settings {
            c.arg("-c").arg(format!("{k}={v}"));
        }
        let child = c
            .current_dir(&self.base)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let pid = child.id();
        self.child = Some(child);
        let fail = |pg: &mut Postgres, why: String| {
            if let Some(child) = pg.child.take() {
                kill_cluster(child);
            }
            Err(format!(
                "PostgreSQL :{} {why}; its log:\n{}",
                pg.port,
                super::process::tail(&read_from(&pg.log, from), 30)
            ))
        };
        let deadline = Instant::now() + START_TIMEOUT;
        // Ready as pg_ctl sees it: this postmaster's pid file says so...
        loop {
            if let Ok(Some(st)) = self.child.as_mut().expect("spawned").try_wait() {
                self.child = None;
                return fail(self, format!("exited at start ({st})"));
            }
            let pidfile =
                std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
            let lines: Vec<&str> = pidfile.lines().collect();
            if lines.first() == Some(&pid.to_string().as_str())
                && lines.get(7).is_some_and(|s| s.trim() == "ready")
            {
                break;
            }
            if Instant::now() >= deadline {
                return fail(self, format!("not ready within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // ...and it accepts connections on its TCP port.
        loop {
            let ok = Command::new(pg_bindir().join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-t",
                    "5",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return fail(self, format!("refuses connections after {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), Signal::Quit);
            if !wait_exit(&mut child, Duration::from_secs(10)) {
                kill_cluster(child);
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Makes this process the reaper of its orphaned descendants (instead of
/// init, which on this machine does not reap them: they would stay
/// zombies). Only pids the harness knows are reaped, with `waitpid(PID)`,
/// so `std::process::Child` handles are unaffected.
pub fn become_subreaper() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| unsafe {
        sys::prctl(sys::PR_SET_CHILD_SUBREAPER, 1 as std::ffi::c_ulong);
    });
}

/// SIGKILL to a postmaster and its children; reaps them all.
fn kill_cluster(mut postmaster: Child) {
    become_subreaper();
    let kids = children_of(postmaster.id());
    let _ = postmaster.kill();
    for &k in &kids {
        send_signal(k, Signal::Kill);
    }
    let _ = postmaster.wait();
    let me = std::process::id();
    let deadline = Instant::now() + STOP_TIMEOUT;
    for k in kids {
        while Instant::now() < deadline {
            let reaped = unsafe { sys::waitpid(k as i32, std::ptr::null_mut(), sys::WNOHANG) };
            if reaped == k as i32 {
                break;
            }
            // Not ours: done once it is gone, or dead under another parent.
            match proc_stat(k) {
                None => break,
                Some((state, parent)) if "ZX".contains(state) && parent != me => break,
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// PostgreSQL's binaries: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` that has a server.
fn pg_bindir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut candidates = Vec::new();
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| d.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect())
            .unwrap_or_default();
        versions.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        candidates.extend(versions.into_iter().rev());
        candidates
            .into_iter()
            .find(|d| d.join("postgres").is_file() && d.join("initdb").is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL server binaries (initdb, postgres) in `pg_config --bindir` \
                     nor /usr/lib/postgresql/*/bin: install the PostgreSQL server"
                )
            })
    })
}

/// The uid and gid to run PostgreSQL as: the `postgres` user's when
/// running as root, else none (run as the current user).
fn pg_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        if sys::geteuid() != 0 {
            return None;
        }
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(u), Some(g)) => Some((u, g)),
            _ => panic!(
                "running as root, and PostgreSQL refuses to run as root: the harness runs it \
                 as the `postgres` user, which does not exist (`useradd --system postgres`)"
            ),
        }
    })
}

/// A command running PostgreSQL binary `bin` as [`pg_user`].
fn pg_command(bin: &str) -> Command {
    let mut c = Command::new(pg_bindir().join(bin));
    if let Some((uid, gid)) = pg_user() {
        c.uid(uid).gid(gid);
    }
    c.env("LC_ALL", "C").env_remove("PGDATA");
    c
}

/// `initdb`'s result for this PostgreSQL version and user, kept in
/// cargo's `target/tmp`.
fn template_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(template_dir_uncached)
}

fn template_dir_uncached() -> PathBuf {
    let out = Command::new(pg_bindir().join("postgres"))
        .arg("--version")
        .output()
        .expect("postgres --version");
    let version: String = String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fault-pg-template-{version}-uid{}", sys::geteuid()))
}

/// A new cluster at `data`: a copy of the template, or `initdb` (which
/// then becomes the template).
fn create_cluster(data: &Path, base: &Path) {
    let template = template_dir();
    let usable = |d: &Path| d.join("PG_VERSION").is_file() && d.join("global/pg_control").is_file();
    if usable(template) {
        let out = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(data)
            .output();
        if out.as_ref().is_ok_and(|o| o.status.success()) && usable(data) {
            return;
        }
        let _ = std::fs::remove_dir_all(data);
    }
    let out = pg_command("initdb")
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .current_dir(base)
        .stdin(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb {} failed:\n{}{}",
        data.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Publish it as the template: copied aside, then renamed into place
    // (atomic; a parallel test that got there first wins).
    static N: AtomicU32 = AtomicU32::new(0);
    let parent = template.parent().expect("target/tmp");
    let staging = parent.join(format!(
        "{}.staging-{}-{}",
        template.file_name().expect("a name").to_string_lossy(),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::create_dir_all(parent);
    let copied = Command::new("cp")
        .arg("-a")
        .arg(data)
        .arg(&staging)
        .status()
        .is_ok_and(|s| s.success());
    if !copied || std::fs::rename(&staging, template).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
}

// ---------------------------------------------------------------- TLS

/// A throwaway certificate authority and a server certificate it signs
/// for `127.0.0.1` and `localhost`, made with the `openssl` CLI in `dir`
/// (PEM files: `ca.crt`, `server.crt`, `server.key`).
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Whether the `openssl` CLI is there (TLS tests need it).
pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Certs {
    /// Generates the CA (`cn` names it) and the server certificate.
    pub fn generate(dir: &Path, cn: &str) -> Certs {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::create_dir_all(dir).expect("create the certificate dir");
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            &format!("/CN={cn}"),
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write ext.cnf");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "ext.cnf",
        ]);
        Certs {
            ca: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }
}
