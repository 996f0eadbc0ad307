//! The running process's status, published for watchers: its snapshot and
//! who it is, in `pipeline_state`, with a notification on a channel of its
//! own so watchers wake at once (and the pipeline's request listener does
//! not).

use super::Db;
use crate::error::{Error, Result};
use crate::pipeline::PipelineStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The process holding a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub(crate) host: String,
    pub(crate) pid: u32,
    /// What it runs: `serve`, `backtest`, `tui`.
    pub(crate) command: String,
    pub(crate) since: DateTime<Utc>,
}

impl Holder {
    /// This process.
    pub(crate) fn me(command: &str) -> Holder {
        Holder {
            host: hostname(),
            pid: std::process::id(),
            command: command.to_owned(),
            since: Utc::now(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} (pid {}) since {}",
            self.command,
            self.host,
            self.pid,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// The machine's name (for "who holds the namespace").
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// What a watcher reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub(crate) status: Option<PipelineStatus>,
    pub(crate) at: Option<DateTime<Utc>>,
    pub(crate) holder: Option<Holder>,
    /// Whether the holder's lock is held right now (its session is alive).
    pub(crate) holding: bool,
    /// The alerts the holder evaluated last (none when it is gone).
    pub alerts: Vec<dvmtop_core::alerts::Alert>,
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Namespace(format!("pipeline_state holds an unreadable status: {e}"))
}

impl Db {
    /// The channel watchers listen on.
    pub(crate) fn status_channel(&self) -> String {
        format!("dvmtop_{}_status", self.namespace)
    }

    /// Records who holds the namespace (right after taking the lock).
    pub(crate) async fn set_holder(&self, h: &Holder) -> Result<()> {
        sqlx::query("UPDATE pipeline_state SET holder = $1")
            .bind(sqlx::types::Json(h))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Publishes the status snapshot and wakes watchers.
    pub(crate) async fn publish_status(&self, s: &PipelineStatus) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE pipeline_state SET status = $1, status_at = now()")
            .bind(sqlx::types::Json(s))
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(self.status_channel())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What the holder published, and whether it still holds the lock.
    pub(crate) async fn published(&self) -> Result<Published> {
        type Json = Option<serde_json::Value>;
        let (status, at, holder, alerts, holding): (Json, Option<DateTime<Utc>>, Json, Json, bool) =
            sqlx::query_as(
                "SELECT status, status_at, holder, alerts,
               EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND objsubid = 1
                 AND classid = ((hashtextextended($1, 0) >> 32) & 4294967295)::oid
                 AND objid = (hashtextextended($1, 0) & 4294967295)::oid)
             FROM pipeline_state",
            )
            .bind(self.lock_key())
            .fetch_one(&self.pool)
            .await?;
        Ok(Published {
            status: status
                .map(serde_json::from_value)
                .transpose()
                .map_err(json_err)?,
            at,
            holder: holder
                .map(serde_json::from_value)
                .transpose()
                .map_err(json_err)?,
            alerts: match alerts {
                Some(a) if holding => {
                    serde_json::from_value::<super::StoredAlerts>(a)
                        .map_err(json_err)?
                        .alerts
                }
                _ => Vec::new(),
            },
            holding,
        })
    }
}
