//! The facts the alert rules need ([`dvmtop_core::alerts`]), and the
//! holder's evaluated alerts with their trend history, persisted.

use super::Db;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use dvmtop_core::alerts::{Alert, Facts, FailedJob, Trends};
use dvmtop_core::{Outcome, YearMonth};
use serde::{Deserialize, Serialize};

/// What the holder stores: its alerts and the history behind them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct StoredAlerts {
    pub(crate) alerts: Vec<Alert>,
    pub(crate) trends: Trends,
}

/// Failed job runs this far back are read.
const FAILED_JOBS: i64 = 20;

impl Db {
    /// The rollover waiting for confirmation (and since when), and the
    /// failed job runs, newest first.
    pub(crate) async fn alert_facts(&self) -> Result<Facts> {
        let (month, since, confirmed): (Option<String>, Option<DateTime<Utc>>, Option<String>) =
            sqlx::query_as(
                "SELECT awaiting_month, awaiting_since, confirmed_month FROM pipeline_state",
            )
            .fetch_one(&self.pool)
            .await?;
        // A confirmed month no longer waits for anyone.
        let awaiting = month
            .filter(|m| confirmed.as_ref() != Some(m))
            .map(|m| m.parse::<YearMonth>().map_err(Error::Namespace))
            .transpose()?
            .map(|m| (m, since));
        let failed_jobs = self
            .job_runs(None, FAILED_JOBS, None)
            .await?
            .into_iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .map(|r| FailedJob {
                job: r.job.to_string(),
                month: r.year_month,
                at: r.finished_at.unwrap_or(r.started_at),
                detail: r.detail.unwrap_or_default(),
            })
            .collect();
        Ok(Facts {
            awaiting,
            failed_jobs,
            ..Facts::default()
        })
    }

    /// Stores the holder's evaluation.
    pub(crate) async fn store_alerts(&self, a: &StoredAlerts) -> Result<()> {
        sqlx::query("UPDATE pipeline_state SET alerts = $1, alerts_at = now()")
            .bind(sqlx::types::Json(a))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The holder's last evaluation, if any.
    pub(crate) async fn stored_alerts(&self) -> Result<Option<StoredAlerts>> {
        let v: Option<serde_json::Value> = sqlx::query_scalar("SELECT alerts FROM pipeline_state")
            .fetch_one(&self.pool)
            .await?;
        v.map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::Namespace(format!("pipeline_state holds unreadable alerts: {e}")))
    }
}
