//! The namespace lock: a session advisory lock on a dedicated
//! connection, so the process that holds it is the one writing, and it is
//! released when that process dies — once PostgreSQL notices. After a
//! `kill -9` the dead client's backend lingers a moment (longer when the
//! client's host vanished), so a supervisor's immediate restart would be
//! refused; a start therefore waits for the lock (30 s by default,
//! `--lock-wait`), says once whom it waits for (from `pg_stat_activity`),
//! and gives up with a one-line error when a live process keeps it.

use super::Db;
use super::connect::unreachable;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use sqlx::{ConnectOptions, PgConnection};
use std::time::{Duration, Instant};

/// Holds the namespace while alive.
pub struct NamespaceLock {
    _conn: PgConnection,
}

/// The session that holds a namespace's lock, as `pg_stat_activity` shows
/// it (dvmtop names its sessions `dvmtop COMMAND pid=PID host=HOST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub application_name: String,
    /// The PostgreSQL backend's pid (not the client's).
    pub backend_pid: i32,
    pub client_addr: Option<String>,
    pub backend_start: Option<DateTime<Utc>>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.application_name.is_empty() {
            "a session without an application_name"
        } else {
            &self.application_name
        };
        write!(f, "{name} (PostgreSQL backend {}", self.backend_pid)?;
        if let Some(a) = &self.client_addr {
            write!(f, ", client {a}")?;
        }
        if let Some(t) = self.backend_start {
            write!(f, ", connected since {}", t.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        write!(f, ")")
    }
}

/// How often a waiting start tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

impl Db {
    /// The text whose hash is the namespace's advisory lock.
    pub(crate) fn lock_key(&self) -> String {
        format!("dvmtop:{}", self.namespace)
    }

    /// Takes the namespace lock now, or fails at once if another session
    /// holds it.
    pub async fn lock(&self) -> Result<NamespaceLock> {
        self.lock_waiting(Duration::ZERO, |_| {}).await
    }

    /// Takes the namespace lock, waiting up to `wait` while another
    /// session holds it; `notice` is told once, naming the holder, when
    /// the wait begins.
    pub async fn lock_waiting(
        &self,
        wait: Duration,
        mut notice: impl FnMut(&str),
    ) -> Result<NamespaceLock> {
        let mut conn = self
            .opts
            .connect()
            .await
            .map_err(|e| unreachable(&self.opts, &e))?;
        let started = Instant::now();
        let mut holder = None;
        loop {
            let got: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                    .bind(self.lock_key())
                    .fetch_one(&mut conn)
                    .await?;
            if got {
                if holder.is_some() {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "namespace lock released by its holder; continuing"
                    );
                }
                return Ok(NamespaceLock { _conn: conn });
            }
            if holder.is_none() {
                let who = match self.lock_holder(&mut conn).await {
                    Ok(Some(h)) => h.to_string(),
                    Ok(None) => "another session".to_owned(),
                    Err(e) => format!("another session ({e})"),
                };
                if !wait.is_zero() {
                    let text = format!(
                        "namespace {} is held by {who}; waiting up to {} s for it to be released (a crashed process's session ends once PostgreSQL notices)",
                        self.namespace,
                        wait.as_secs()
                    );
                    tracing::warn!("{text}");
                    notice(&text);
                }
                holder = Some(who);
            }
            if started.elapsed() >= wait {
                let who = holder.unwrap_or_default();
                let waited = if wait.is_zero() {
                    String::new()
                } else {
                    format!(" (waited {} s)", wait.as_secs())
                };
                return Err(Error::InUse(format!(
                    "namespace {} is in use by another dvmtop process: {who}{waited}; stop it or choose another --namespace",
                    self.namespace
                )));
            }
            tokio::time::sleep(RETRY_EVERY.min(wait.saturating_sub(started.elapsed()))).await;
        }
    }

    /// Who holds the namespace lock now, if anyone (PostgreSQL splits a
    /// bigint advisory key into `classid` (high half) and `objid` (low)).
    pub async fn lock_holder(&self, conn: &mut PgConnection) -> Result<Option<LockHolder>> {
        type Row = (String, i32, Option<String>, Option<DateTime<Utc>>);
        let row: Option<Row> = sqlx::query_as(
            "WITH k AS (SELECT hashtextextended($1, 0) AS key)
             SELECT coalesce(a.application_name, ''), a.pid, host(a.client_addr), a.backend_start
             FROM k, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = ((k.key >> 32) & 4294967295)::oid
               AND l.objid = (k.key & 4294967295)::oid
             LIMIT 1",
        )
        .bind(self.lock_key())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(
            |(application_name, backend_pid, client_addr, backend_start)| LockHolder {
                application_name,
                backend_pid,
                client_addr,
                backend_start,
            },
        ))
    }
}
