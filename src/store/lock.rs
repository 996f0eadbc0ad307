//! The namespace lock: one process processes a namespace at a time.
//!
//! It is a PostgreSQL session advisory lock, so it dies with its session —
//! when the process dies (good: nothing to clean up), but also when
//! PostgreSQL restarts or the connection drops. A keeper task therefore
//! holds it on a dedicated connection, checks that session every
//! [`CHECK_EVERY`], and after a loss reconnects and takes the lock again.
//! Meanwhile the state says [`LockState::Lost`] and every write of the
//! pipeline is refused (a transient error: retried, shown as retrying);
//! each group's commit also checks, inside its transaction, that the
//! keeper's session holds the lock. If another process took the namespace
//! in the gap, the state becomes [`LockState::TakenOver`] for good: this
//! process stops processing and says why. So two processes never write
//! one namespace side by side.

use super::Db;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the keeper checks that its session (and so the lock) lives.
/// A second: every commit also checks the lock inside its transaction, so
/// this only bounds how soon a lost lock is noticed and taken again, and
/// an idle service's CPU is mostly these pings (4 a second cost 0.25 % of
/// a core in a debug build, over the 0.1 % the README promises).
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A check that takes longer counts as a lost session.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnects back off from the first to the last delay.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Whether this process holds its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// Held by the keeper's session (its backend pid).
    Held { pid: i32 },
    /// The session died (PostgreSQL restarted, the connection dropped):
    /// the keeper is taking the lock again; nothing may be written.
    Lost { error: String },
    /// Another process took the namespace while the lock was lost: this
    /// one must stop processing.
    TakenOver,
}

/// Holds the namespace while alive (the keeper task ends on drop, and
/// its session with it).
pub struct NamespaceLock {
    state: watch::Receiver<LockState>,
    task: JoinHandle<()>,
}

impl NamespaceLock {
    /// The lock's state, as the keeper sees it.
    pub fn state(&self) -> watch::Receiver<LockState> {
        self.state.clone()
    }
}

impl Drop for NamespaceLock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The session that holds a namespace's lock, as `pg_stat_activity` shows
/// it (dvmtop names its sessions `dvmtop COMMAND pid=PID host=HOST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub(crate) application_name: String,
    /// The PostgreSQL backend's pid (not the client's).
    pub(crate) backend_pid: i32,
    pub(crate) client_addr: Option<String>,
    pub(crate) backend_start: Option<DateTime<Utc>>,
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

/// A session of one server run: its backend pid, and when the server
/// started (pids are reused after a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    pid: i32,
    server_start: chrono::DateTime<chrono::Utc>,
}

/// `pg_try_advisory_lock` on the namespace key: the session when taken.
async fn try_lock(conn: &mut PgConnection, key: &str) -> Result<Option<Session>> {
    let (got, pid, server_start): (bool, i32, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT pg_try_advisory_lock(hashtextextended($1, 0)), pg_backend_pid(), pg_postmaster_start_time()",
    )
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    Ok(got.then_some(Session { pid, server_start }))
}

/// The server's start time, as `conn` sees it.
async fn server_start(conn: &mut PgConnection) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(sqlx::query_scalar("SELECT pg_postmaster_start_time()")
        .fetch_one(&mut *conn)
        .await?)
}

/// The backend holding the namespace key, if any.
async fn holder(conn: &mut PgConnection, key: &str) -> Result<Option<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND classid = ((hashtextextended($1, 0) >> 32) & 4294967295)::oid
           AND objid = (hashtextextended($1, 0) & 4294967295)::oid
         LIMIT 1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?)
}

impl Db {
    /// Takes the namespace for this process now (refused when another
    /// holds it) and keeps it: see the module doc.
    pub async fn lock(&self) -> Result<NamespaceLock> {
        self.lock_waiting(Duration::ZERO, |_| {}).await
    }

    /// Takes the namespace, waiting up to `wait` while another session
    /// holds it (after a `kill -9` the dead client's backend lingers until
    /// PostgreSQL notices, so a supervisor's immediate restart would be
    /// refused); `notice` is told once, naming the holder from
    /// `pg_stat_activity`, when the wait begins. Then keeps it.
    pub(crate) async fn lock_waiting(
        &self,
        wait: Duration,
        mut notice: impl FnMut(&str),
    ) -> Result<NamespaceLock> {
        // From the pool (which waits out a server starting up), then
        // detached: the lock's session is the keeper's alone.
        let mut conn = self.pool.acquire().await?.detach();
        let started = std::time::Instant::now();
        let mut who: Option<String> = None;
        let session = loop {
            if let Some(s) = try_lock(&mut conn, &self.lock_key()).await? {
                if who.is_some() {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "namespace lock released by its holder; continuing"
                    );
                }
                break s;
            }
            if who.is_none() {
                let w = match self.lock_holder(&mut conn).await {
                    Ok(Some(h)) => h.to_string(),
                    Ok(None) => "another session".to_owned(),
                    Err(e) => format!("another session ({e})"),
                };
                if !wait.is_zero() {
                    let text = format!(
                        "namespace {} is held by {w}; waiting up to {} s for it to be released (a crashed process's session ends once PostgreSQL notices)",
                        self.namespace,
                        wait.as_secs()
                    );
                    tracing::warn!("{text}");
                    notice(&text);
                }
                who = Some(w);
            }
            if started.elapsed() >= wait {
                let waited = if wait.is_zero() {
                    String::new()
                } else {
                    format!(" (waited {} s)", wait.as_secs())
                };
                return Err(Error::InUse(format!(
                    "namespace {} is in use by another dvmtop process: {}{waited}; stop it or choose another --namespace",
                    self.namespace,
                    who.unwrap_or_default()
                )));
            }
            tokio::time::sleep(RETRY_EVERY.min(wait.saturating_sub(started.elapsed()))).await;
        };
        let (tx, state) = watch::channel(LockState::Held { pid: session.pid });
        let task = tokio::spawn(keep(self.clone(), conn, session, tx));
        Ok(NamespaceLock { state, task })
    }

    /// Who holds the namespace lock now, if anyone (PostgreSQL splits a
    /// bigint advisory key into `classid` (high half) and `objid` (low)).
    pub(crate) async fn lock_holder(&self, conn: &mut PgConnection) -> Result<Option<LockHolder>> {
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

    /// This handle's writes require the namespace lock `lock` holds.
    pub fn locked_by(mut self, lock: &NamespaceLock) -> Db {
        self.lock = Some(lock.state());
        self
    }

    /// Whether this process may write the namespace now: the keeper's
    /// backend pid when it holds the lock (`None` when this handle is not
    /// a lock holder's); a transient error while the lock is being taken
    /// again; [`Error::InUse`] once another process took it.
    pub fn lock_held(&self) -> Result<Option<i32>> {
        let Some(state) = &self.lock else {
            return Ok(None);
        };
        match &*state.borrow() {
            LockState::Held { pid } => Ok(Some(*pid)),
            LockState::Lost { error } => Err(Error::LockLost(format!(
                "the lock of namespace {} went with its PostgreSQL session ({error}); taking it again before writing",
                self.namespace
            ))),
            LockState::TakenOver => Err(Error::InUse(format!(
                "namespace {} was taken over by another dvmtop process while PostgreSQL was unreachable: this one stopped processing (nothing written since); stop one of them, then --resume",
                self.namespace
            ))),
        }
    }

    /// Inside a writing transaction: refuses it unless the keeper's
    /// session still holds the lock right now (its check runs only every
    /// [`CHECK_EVERY`]).
    pub(crate) async fn fence(&self, conn: &mut PgConnection) -> Result<()> {
        let Some(pid) = self.lock_held()? else {
            return Ok(());
        };
        if holder(conn, &self.lock_key()).await? == Some(pid) {
            return Ok(());
        }
        Err(Error::LockLost(format!(
            "the lock of namespace {} is not held by this process's session any more (PostgreSQL restarted?); taking it again before writing",
            self.namespace
        )))
    }
}

/// The keeper: checks the session; after a loss, takes the lock again on
/// a new session, or gives up for good when another process has it.
async fn keep(db: Db, mut conn: PgConnection, mut ours: Session, tx: watch::Sender<LockState>) {
    let key = db.lock_key();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let error = match tokio::time::timeout(CHECK_TIMEOUT, conn.ping()).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CHECK_TIMEOUT:?}"),
        };
        tracing::warn!(namespace = %db.namespace, %error, "namespace lock lost with its PostgreSQL session; taking it again");
        let _ = tx.send(LockState::Lost {
            error: error.clone(),
        });
        // The old session may linger on the server (a frozen server, a
        // half-open connection): it is ours, so it may be ended — if the
        // server has not restarted since (pids are reused then).
        let old = ours;
        drop(conn);
        let mut delay = RETRY_FIRST;
        let taken = loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
            let mut c = match tokio::time::timeout(CHECK_TIMEOUT, db.opts.connect()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot reconnect the namespace lock yet");
                    continue;
                }
                Err(_) => continue,
            };
            match try_lock(&mut c, &key).await {
                Ok(Some(s)) => break Some((c, s)),
                Ok(None) => match holder(&mut c, &key).await {
                    Ok(Some(h))
                        if h == old.pid
                            && server_start(&mut c).await.ok() == Some(old.server_start) =>
                    {
                        tracing::warn!(pid = h, "ending this process's old lock session");
                        let _ = sqlx::query("SELECT pg_terminate_backend($1)")
                            .bind(h)
                            .execute(&mut c)
                            .await;
                    }
                    // Released between the two queries: try again.
                    Ok(None) | Err(_) => {}
                    Ok(Some(_)) => break None,
                },
                Err(e) => tracing::debug!(error = %e, "cannot take the namespace lock yet"),
            }
        };
        match taken {
            Some((c, s)) => {
                tracing::info!(namespace = %db.namespace, pid = s.pid, "namespace lock taken again");
                conn = c;
                ours = s;
                let _ = tx.send(LockState::Held { pid: s.pid });
            }
            None => {
                tracing::error!(namespace = %db.namespace, "namespace taken over by another process while the lock was lost; stopping processing");
                let _ = tx.send(LockState::TakenOver);
                return;
            }
        }
    }
}
