//! Alerts as PostgreSQL keeps them (so a later `status` still shows a
//! lost queue), and the Redis queue generation the committed position
//! refers to (see migration 0006 and `queue`'s epoch).

use super::Db;
use crate::error::Result;
use dvmtop_core::{Alert, Severity};

impl Db {
    /// Records `a` (replacing the alert of its kind; `since` is kept when
    /// the message is unchanged).
    pub(crate) async fn raise_alert(&self, a: &Alert) -> Result<()> {
        sqlx::query(
            "INSERT INTO alerts (kind, severity, message, since) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind) DO UPDATE SET severity = excluded.severity, message = excluded.message,
               since = CASE WHEN alerts.message = excluded.message THEN alerts.since ELSE excluded.since END",
        )
        .bind(&a.kind)
        .bind(a.severity.as_str())
        .bind(&a.message)
        .bind(a.since)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The condition of `kind` is over.
    pub(crate) async fn clear_alert(&self, kind: &str) -> Result<()> {
        sqlx::query("DELETE FROM alerts WHERE kind = $1")
            .bind(kind)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every current alert, the most severe first.
    pub(crate) async fn alerts(&self) -> Result<Vec<Alert>> {
        let rows: Vec<(String, String, String, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("SELECT kind, severity, message, since FROM alerts ORDER BY kind")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::new();
        for (kind, severity, message, since) in rows {
            dvmtop_core::alert::upsert(
                &mut out,
                Alert::new(&kind, Severity::parse(&severity), message, since),
            );
        }
        Ok(out)
    }

    /// The Redis queue generation the committed position refers to.
    pub(crate) async fn redis_epoch(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT redis_epoch FROM pipeline_state")
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn set_redis_epoch(&self, epoch: &str) -> Result<()> {
        sqlx::query("UPDATE pipeline_state SET redis_epoch = $1")
            .bind(epoch)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
