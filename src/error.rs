//! Library errors. Every variant renders as one line that says what to do;
//! the binary prints it and exits non-zero.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Namespace(String),
    /// Another dvmtop process holds the namespace.
    #[error("{0}")]
    InUse(String),
    /// The namespace lock went with its PostgreSQL session (a restart, a
    /// dropped connection) and is being taken again: nothing is written
    /// until it is (transient).
    #[error("{0}")]
    LockLost(String),
    /// PostgreSQL answered and went away at connect: a restart under way
    /// (transient).
    #[error("{0}")]
    Restarting(String),
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{}", io_words(path, source))]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("schema migration failed: {0}")]
    Migrate(String),
    /// Nothing to say: stdout's reader went away (`dvmtop status | head
    /// -1`); the command ends quietly.
    #[error("stdout closed")]
    Quiet,
    /// An input broke off; every complete element before the break was
    /// ingested (and a backtest processes them before it fails).
    #[error("{0}")]
    BrokenInput(BrokenInput),
    /// Redis lost the queue under a file's ingest: what was queued before
    /// may be gone, so ingest stops instead of queueing on behind a hole.
    #[error("{0}")]
    QueueLost(String),
}

/// Where and how an input broke off: a JSON array without its end, gzip
/// data that is corrupt or cut off, or a read error.
#[derive(Debug)]
pub struct BrokenInput {
    /// The file (`-` for stdin).
    pub(crate) path: String,
    /// Bytes of input (decompressed, for gzip) read before the break.
    pub(crate) offset: u64,
    /// Complete elements before the break, all of them ingested (in this
    /// run or, when resuming, an earlier one).
    pub(crate) elements: u64,
    /// The input is a JSON array (else JSONL).
    pub(crate) in_array: bool,
    pub(crate) gzip: bool,
    /// The reader's error; `None`: the input ends inside a JSON array.
    pub(crate) read_error: Option<String>,
}

impl std::fmt::Display for BrokenInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, offset, elements) = (&self.path, self.offset, self.elements);
        let cut = if self.in_array { "element" } else { "line" };
        let complete = match (elements, self.in_array) {
            (1, true) => "1 complete element was".to_owned(),
            (1, false) => "1 complete line was".to_owned(),
            (n, _) => format!("{n} complete {cut}s were"),
        };
        let again =
            "(a backtest with --resume; events already queued count as duplicates, not twice)";
        match &self.read_error {
            None => write!(
                f,
                "{path}: input ends inside a JSON array at byte {offset} ({complete} ingested, the cut one was not): the file is truncated; ingest the complete file again {again}"
            ),
            Some(e) if self.gzip => write!(
                f,
                "{path}: the gzip data is corrupt or cut off at decompressed byte {offset} ({}; {complete} ingested, a {cut} cut there was not): the file is damaged; ingest an intact copy again {again}",
                one_line(e)
            ),
            Some(e) => write!(
                f,
                "{path}: read error at byte {offset} ({}; {complete} ingested, a {cut} cut there was not): check the file and its device, then ingest it again {again}",
                one_line(e)
            ),
        }
    }
}

/// A file error in words: the file and the cause ("cannot open x.jsonl:
/// no such file"), not the OS's "entity not found" or "(os error 2)".
pub(crate) fn io_words(path: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => format!("cannot open {path}: no such file"),
        K::PermissionDenied => {
            format!("cannot open {path}: permission denied (check its owner and mode)")
        }
        K::IsADirectory => format!("cannot open {path}: it is a directory, not a file"),
        K::NotADirectory => format!("cannot open {path}: a part of the path is not a directory"),
        K::StorageFull => format!("cannot write {path}: no space left on the device"),
        K::ReadOnlyFilesystem => format!("cannot write {path}: the file system is read-only"),
        _ => {
            let text = e.to_string();
            // "Broken pipe (os error 32)" → "broken pipe".
            let text = match text.rfind(" (os error ") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            format!("{path}: {}", one_line(&text).to_lowercase())
        }
    }
}

/// Errors from below (I/O, decoders) may span lines; ours are one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Errors worth retrying with backoff (connection loss, a server
    /// restarting, serialization failures, deadlocks, the namespace lock
    /// being taken again); everything else is a bug or a configuration
    /// problem that retrying will not fix.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Postgres(e) => pg_transient(e),
            Error::Redis(e) => crate::queue::is_connection_error(e),
            Error::LockLost(_) | Error::Restarting(_) => true,
            _ => false,
        }
    }
}

/// A PostgreSQL error that a restart, a failover or a dropped connection
/// causes, and that goes away by itself: retried, never fatal.
pub(crate) fn pg_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exceptions; 57P01–57P03: admin, crash
            // shutdown and "cannot connect now" (starting up, shutting
            // down, recovering); 53: out of connections or resources for
            // a moment; 40001/40P01: serialization failure, deadlock.
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "40001" | "40P01")
        }),
        _ => false,
    }
}
