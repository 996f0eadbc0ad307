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
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("schema migration failed: {0}")]
    Migrate(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Errors worth retrying with backoff (connection loss, serialization
    /// failures, deadlocks); everything else is a bug or a configuration
    /// problem that retrying will not fix.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Postgres(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Database(db) => matches!(
                    db.code().as_deref(),
                    Some("40001" | "40P01" | "57P01" | "08006" | "08003")
                ),
                _ => false,
            },
            Error::Redis(e) => e.is_io_error() || e.is_timeout() || e.is_connection_dropped(),
            _ => false,
        }
    }
}
