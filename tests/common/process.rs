//! Child processes for integration tests: the real `dvmtop` binary run
//! with explicit services, its output captured line by line while it runs
//! (progress lines are JSON on stdout), signals, and waits with deadlines.
//! Also the few POSIX calls the tests need (`kill`, `waitpid`, `prctl`),
//! declared here rather than pulling in a crate, and `/proc` look-ups.
//!
//! ```ignore
//! let run = Dvmtop::new(pg.url("dvmtop"), redis.url(), "ns", &dir)
//!     .spawn(["backtest", "in.jsonl", "--headless"]);
//! run.wait_for_json("a commit", Duration::from_secs(30), |v| v["event"] == "commit");
//! run.signal(Signal::Kill);
//! let done = run.finish(Duration::from_secs(10));
//! ```
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The `dvmtop` binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_dvmtop");

/// The libc calls the harness uses (std links libc already).
pub mod sys {
    unsafe extern "C" {
        pub safe fn kill(pid: i32, sig: i32) -> i32;
        pub safe fn geteuid() -> u32;
        pub unsafe fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        pub unsafe fn prctl(option: i32, ...) -> i32;
    }
    pub const WNOHANG: i32 = 1;
    pub const PR_SET_CHILD_SUBREAPER: i32 = 36;
}

/// Linux signal numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hup = 1,
    Int = 2,
    Quit = 3,
    Kill = 9,
    Usr1 = 10,
    Term = 15,
    Cont = 18,
    Stop = 19,
}

/// Sends `sig` to process `pid`; false if there is no such process.
pub fn send_signal(pid: u32, sig: Signal) -> bool {
    sys::kill(pid as i32, sig as i32) == 0
}

/// `pid`'s state letter and parent, from `/proc/PID/stat`.
pub fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` runs (a zombie, dead but not yet reaped, does not).
pub fn alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// The live processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| matches!(proc_stat(p), Some((s, pp)) if pp == pid && s != 'Z' && s != 'X'))
        .collect()
}

/// The live processes whose working directory is `dir`, or was before it
/// was removed (Redis and every PostgreSQL process of a cluster run in
/// their data directory).
pub fn processes_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let deleted = PathBuf::from(format!("{} (deleted)", dir.display()));
    all_pids()
        .into_iter()
        .filter(|&p| {
            std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c == dir || c == deleted)
        })
        .filter(|&p| alive(p))
        .collect()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How to run `dvmtop` against a given PostgreSQL, Redis and namespace.
/// Every setting is passed as a flag; the environment variables that
/// could change a run are removed and the config file is `/dev/null`, so
/// neither the test environment nor a user's config leaks in.
#[derive(Debug, Clone)]
pub struct Dvmtop {
    pub database_url: String,
    pub redis_url: String,
    pub namespace: String,
    pub data_dir: PathBuf,
}

impl Dvmtop {
    pub fn new(
        database_url: impl Into<String>,
        redis_url: impl Into<String>,
        namespace: &str,
        data_dir: &Path,
    ) -> Dvmtop {
        Dvmtop {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            namespace: namespace.to_owned(),
            data_dir: data_dir.to_owned(),
        }
    }

    /// A test namespace on the shared services (`DATABASE_URL`,
    /// `REDIS_URL`), its data dir the namespace's temp dir.
    pub fn shared(ns: &super::TestNs) -> Dvmtop {
        Dvmtop::new(
            super::database_url(),
            super::redis_url(),
            &ns.name,
            &std::env::temp_dir().join(&ns.name),
        )
    }

    /// The command, without a subcommand yet; stdin is closed.
    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        for var in [
            "DATABASE_URL",
            "REDIS_URL",
            "DVMTOP_NAMESPACE",
            "DVMTOP_DATA_DIR",
            "DVMTOP_CONFIG",
            "DVMTOP_RELAYS",
        ] {
            c.env_remove(var);
        }
        c.arg("--database-url")
            .arg(&self.database_url)
            .arg("--redis-url")
            .arg(&self.redis_url)
            .arg("--namespace")
            .arg(&self.namespace)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config")
            .arg("/dev/null")
            .stdin(Stdio::null());
        c
    }

    /// Runs `dvmtop ARGS` to the end and returns its output.
    pub fn output<I, S>(&self, args: I) -> std::process::Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
    }

    /// Starts `dvmtop ARGS`, its output captured as it comes.
    pub fn spawn<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let what = format!("dvmtop {}", args.join(" "));
        let mut c = self.command();
        c.args(&args);
        Running::spawn(c, &what)
    }
}

/// Output of a running process, line by line.
#[derive(Default)]
struct Captured {
    stdout: Vec<String>,
    stderr: Vec<String>,
    stdout_eof: bool,
    stderr_eof: bool,
}

#[derive(Default)]
struct Shared {
    out: Mutex<Captured>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Captured> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A child process whose stdout and stderr are read by threads of their
/// own as it runs. Killed (SIGKILL) and reaped on drop if still running.
pub struct Running {
    child: Child,
    what: String,
    shared: Arc<Shared>,
    status: Option<ExitStatus>,
}

/// How a process ended, and everything it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The last non-empty stdout line as JSON (headless runs end with
    /// their summary).
    pub fn last_json(&self) -> Value {
        let last = self
            .stdout
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no output; stderr: {}", tail(&self.stderr, 20)));
        serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
    }

    /// The stdout lines that are JSON objects.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }
}

impl Running {
    /// Spawns `cmd` with stdout and stderr piped to reader threads.
    pub fn spawn(mut cmd: Command, what: &str) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        Self::reader(stdout, shared.clone(), false);
        Self::reader(stderr, shared.clone(), true);
        Running {
            child,
            what: what.to_owned(),
            shared,
            status: None,
        }
    }

    fn reader(pipe: impl Read + Send + 'static, shared: Arc<Shared>, is_err: bool) {
        std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = r.read_until(b'\n', &mut buf).unwrap_or(0);
                let mut out = shared.lock();
                if n == 0 {
                    if is_err {
                        out.stderr_eof = true;
                    } else {
                        out.stdout_eof = true;
                    }
                    shared.changed.notify_all();
                    return;
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if is_err {
                    out.stderr.push(line);
                } else {
                    out.stdout.push(line);
                }
                shared.changed.notify_all();
            }
        });
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.shared.lock().stdout.clone()
    }

    /// The stderr so far.
    pub fn stderr(&self) -> String {
        self.shared.lock().stderr.join("\n")
    }

    fn tails(&self) -> String {
        let out = self.shared.lock();
        format!(
            "stdout tail:\n{}\nstderr tail:\n{}",
            tail(&out.stdout.join("\n"), 15),
            tail(&out.stderr.join("\n"), 30)
        )
    }

    /// Waits until a stdout line (any so far, or one to come) satisfies
    /// `pred`, and returns it; fails the test after `timeout`, or as soon
    /// as the process closes its stdout without one.
    pub fn wait_for_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        let mut out = self.shared.lock();
        loop {
            if let Some(l) = out.stdout[seen..].iter().find(|l| pred(l)) {
                return l.clone();
            }
            seen = out.stdout.len();
            let now = Instant::now();
            if now >= deadline || out.stdout_eof {
                drop(out);
                // (Closed stdout: the process is exiting; give it a moment.)
                let status = self.wait_with_timeout(Duration::from_secs(1));
                panic!(
                    "{}: no line for {what} within {timeout:?} (process: {status:?})\n{}",
                    self.what,
                    self.tails()
                );
            }
            out = self
                .shared
                .changed
                .wait_timeout(out, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// [`Running::wait_for_line`] for JSON lines: the first stdout JSON
    /// object that satisfies `pred`.
    pub fn wait_for_json(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let line = self.wait_for_line(what, timeout, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object() && pred(&v))
        });
        serde_json::from_str(&line).expect("matched as JSON")
    }

    /// Sends `sig`; false if the process has already exited (its pid is
    /// never reused before it is reaped here, so no stray signal).
    pub fn signal(&mut self, sig: Signal) -> bool {
        self.try_wait().is_none() && send_signal(self.pid(), sig)
    }

    /// The exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits up to `timeout` for the exit; `None` if still running.
    pub fn wait_with_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the exit and returns all the output; on
    /// timeout kills the process and fails the test.
    pub fn finish(&mut self, timeout: Duration) -> Finished {
        let Some(status) = self.wait_with_timeout(timeout) else {
            self.signal(Signal::Kill);
            let _ = self.wait_with_timeout(Duration::from_secs(10));
            panic!(
                "{} still running after {timeout:?} (killed)\n{}",
                self.what,
                self.tails()
            );
        };
        // The pipes reach end of file once the process (and anything it
        // passed them to) is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = self.shared.lock();
        while !(out.stdout_eof && out.stderr_eof) && Instant::now() < deadline {
            out = self
                .shared
                .changed
                .wait_timeout(out, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let (mut stdout, mut stderr) = (out.stdout.join("\n"), out.stderr.join("\n"));
        for s in [&mut stdout, &mut stderr] {
            if !s.is_empty() {
                s.push('\n');
            }
        }
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// SIGTERM, then [`Running::finish`] within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Finished {
        self.signal(Signal::Term);
        self.finish(timeout)
    }

    /// SIGKILL, then [`Running::finish`].
    pub fn kill(&mut self) -> Finished {
        self.signal(Signal::Kill);
        self.finish(Duration::from_secs(30))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The generator's own account of what it wrote.
#[derive(Debug, Clone, Copy)]
pub struct GenStats {
    pub lines: u64,
    pub events: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub future: u64,
    pub stragglers: u64,
}

/// `dvmtop gen ARGS -o OUTPUT`; parses its stderr line
/// `dvmtop gen: L lines (E events, D duplicates, M malformed, F future, S stragglers)`.
pub fn generate(args: &[&str], output: &Path) -> GenStats {
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let out = Command::new(BIN)
        .arg("gen")
        .args(args)
        .arg("-o")
        .arg(output)
        .output()
        .expect("run dvmtop gen");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dvmtop gen failed: {err}");
    let mut n: BTreeMap<String, u64> = BTreeMap::new();
    let body = err
        .split_once("dvmtop gen:")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("unexpected gen output: {err}"));
    let words: Vec<&str> = body
        .split(|c: char| c.is_whitespace() || "(),".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    for w in words.windows(2) {
        if let Ok(v) = w[0].parse::<u64>() {
            n.insert(w[1].to_owned(), v);
        }
    }
    let get = |k: &str| {
        *n.get(k)
            .unwrap_or_else(|| panic!("no {k:?} in gen output: {err}"))
    };
    GenStats {
        lines: get("lines"),
        events: get("events"),
        duplicates: get("duplicates"),
        malformed: get("malformed"),
        future: get("future"),
        stragglers: get("stragglers"),
    }
}
