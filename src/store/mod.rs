//! PostgreSQL: connection and namespace (schema) management, migrations,
//! the namespace lock, and the committed pipeline state.

mod alert_facts;
mod alerts;
mod audit;
mod commit;
mod connect;
mod figures;
pub mod jobs;
mod load;
mod lock;
mod namespace;
mod published;
mod rollover;
mod status;
mod views;

pub(crate) use alert_facts::StoredAlerts;
pub(crate) use audit::JobRun;
pub(crate) use commit::Commit;
pub use connect::set_application_name;
use connect::{connect_admin, unreachable};
pub use dvmtop_core::MonthRow;
pub use lock::{LockHolder, LockState, NamespaceLock};
pub use namespace::{MARKER, validate_namespace};
pub use published::{Holder, Published, hostname};
pub use rollover::month_summary;
pub use rollover::{monthly_row_in, upsert_month};
pub use status::{Snapshot, WindowStats, windows};
pub use views::{DvmDetail, DvmRow, JobFigures, KindDetail, KindRow, Lifecycle, Profile, Range};

use crate::error::{Error, Result};
use dvmtop_core::YearMonth;
use dvmtop_core::clock::ClockState;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Row};
use std::str::FromStr;

/// A namespace's database handle: a pool whose sessions see only the
/// namespace's schema, in UTC.
#[derive(Clone)]
pub struct Db {
    pub pool: PgPool,
    pub namespace: String,
    opts: PgConnectOptions,
    /// The namespace lock this handle writes under (see [`lock`]); `None`
    /// for readers (status, watchers) and tests.
    lock: Option<tokio::sync::watch::Receiver<LockState>>,
}

impl Db {
    /// Connects and makes sure the schema exists (it may be empty).
    pub async fn connect(url: &str, namespace: &str) -> Result<Db> {
        Db::open(url, namespace, true).await
    }

    /// Connects to a namespace dvmtop already set up; a missing one (a
    /// typo in `--namespace`) is an error naming the namespaces there are,
    /// and nothing is created — not even the database.
    pub async fn connect_existing(url: &str, namespace: &str) -> Result<Db> {
        Db::open(url, namespace, false).await
    }

    async fn open(url: &str, namespace: &str, create: bool) -> Result<Db> {
        validate_namespace(namespace)?;
        crate::tls::install_provider();
        let parsed = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("invalid DATABASE_URL {url:?}: {e}")))?;
        let base = connect::plain_on_loopback(url, parsed)
            .application_name(&connect::application_name())
            .log_statements(tracing::log::LevelFilter::Trace);
        let mut admin = if create {
            connect_admin(&base).await?
        } else {
            connect::connect_existing(&base, namespace).await?
        };
        if create {
            // Only a schema dvmtop created (or an unmarked one holding its
            // tables, from before the marker) is used; see `namespace`.
            namespace::ensure(&mut admin, namespace).await?;
        }
        admin.close().await.ok();
        let opts = base.options([("search_path", namespace), ("TimeZone", "UTC")]);
        let pool = PgPoolOptions::new()
            // The processor, the commit under way, a vacuum and a TUI poller.
            .max_connections(6)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .map_err(|e| unreachable(&opts, &e))?;
        Ok(Db {
            pool,
            namespace: namespace.to_owned(),
            opts,
            lock: None,
        })
    }

    /// Applies pending migrations; refuses a schema from a newer dvmtop.
    pub(crate) async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations").run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => Error::Namespace(format!(
                "namespace {} has schema version {v}, which this dvmtop does not know: upgrade dvmtop or use another --namespace",
                self.namespace
            )),
            // A restart while migrating: retried like any dropped
            // connection (migrations run in transactions).
            sqlx::migrate::MigrateError::Execute(e)
            | sqlx::migrate::MigrateError::ExecuteMigration(e, _)
                if crate::error::pg_transient(&e) =>
            {
                Error::Postgres(e)
            }
            other => Error::Migrate(other.to_string()),
        })
    }

    /// The text whose hash is the namespace's advisory lock.
    pub(crate) fn lock_key(&self) -> String {
        format!("dvmtop:{}", self.namespace)
    }

    /// Whether the namespace's schema holds any pipeline data.
    pub(crate) async fn has_data(&self) -> Result<bool> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'pipeline_state')",
        )
        .bind(&self.namespace)
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Ok(false);
        }
        Ok(sqlx::query_scalar(
            "SELECT current_month IS NOT NULL OR last_seq > 0 OR EXISTS (SELECT 1 FROM monthly_activity) FROM pipeline_state",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Drops and recreates the schema (empty, not migrated) — only one
    /// dvmtop created; any other is refused.
    pub(crate) async fn wipe(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        namespace::recreate(&mut conn, &self.namespace).await
    }

    /// Drops the schema for good (tests clean up with this) — only one
    /// dvmtop created.
    pub async fn drop_namespace(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        match namespace::owner(&mut conn, &self.namespace).await? {
            namespace::Owner::Dvmtop | namespace::Owner::Legacy => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA {} CASCADE",
                    self.namespace
                )))
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub async fn load_state(&self) -> Result<PersistedState> {
        let row = sqlx::query(
            "SELECT current_month, current_day, clock, confirmed_month, last_seq, last_count FROM pipeline_state",
        )
        .fetch_one(&self.pool)
        .await?;
        let month = |c: &str| parse_month(c, row.try_get(c)?);
        Ok(PersistedState {
            clock: ClockState {
                month: month("current_month")?,
                day: row.try_get("current_day")?,
                clock: row.try_get("clock")?,
                confirmed: month("confirmed_month")?,
            },
            last_seq: row.try_get("last_seq")?,
            last_count: row.try_get("last_count")?,
        })
    }

    /// The overflow buffer's payloads in FIFO order.
    pub(crate) async fn load_overflow(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT payloads FROM overflow")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Id keys applied in the open window, by day (for processing-side
    /// dedup).
    pub(crate) async fn load_seen(&self) -> Result<Vec<(chrono::NaiveDate, Vec<u128>)>> {
        let rows: Vec<(chrono::NaiveDate, Vec<u8>)> =
            sqlx::query_as("SELECT day, ids FROM seen_ids")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(day, blob)| {
                let keys = blob
                    .chunks_exact(16)
                    .map(|c| u128::from_be_bytes(c.try_into().expect("16-byte chunk")))
                    .collect();
                (day, keys)
            })
            .collect())
    }

    pub(crate) async fn set_month(&self, m: YearMonth) -> Result<()> {
        sqlx::query("UPDATE pipeline_state SET current_month = $1, updated_at = now() WHERE current_month IS NULL")
            .bind(m.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn set_day(&self, day: chrono::NaiveDate) -> Result<()> {
        sqlx::query("UPDATE pipeline_state SET current_day = $1, updated_at = now() WHERE current_day IS NULL OR current_day < $1")
            .bind(day)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Vacuums the tables every commit rewrites or trims, so dead row
    /// versions are reused instead of piling up — also where autovacuum is
    /// off (as on the machine the benchmarks ran on). `SKIP_LOCKED`: a
    /// table another vacuum holds is left for the next round.
    pub(crate) async fn vacuum_hot_tables(&self) -> Result<()> {
        sqlx::query(
            "VACUUM (SKIP_LOCKED) users, dvms, kind_dvm_support, entity_activity, seen_ids,
               dvm_stats_rollups, kind_stats_rollups, overflow, time_window_stats, counters,
               pipeline_state, global_stats_rollups",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The `LISTEN`/`NOTIFY` channel a running pipeline listens on for
    /// other processes' requests.
    pub(crate) fn channel(&self) -> String {
        format!("dvmtop_{}", self.namespace)
    }

    /// Records the operator's confirmation of `m`'s rollover (`dvmtop
    /// confirm`, another process): only the open month as committed, or
    /// the one whose rollover the running pipeline awaits (its open month
    /// runs ahead of the committed one while the previous rollover's
    /// commit is under way), can be confirmed. Returns whether it took. A
    /// running pipeline is notified.
    pub(crate) async fn confirm(&self, m: YearMonth) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE pipeline_state SET confirmed_month = $1, updated_at = now()
             WHERE current_month = $1 OR awaiting_month = $1",
        )
        .bind(m.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("SELECT pg_notify($1, 'confirm')")
            .bind(self.channel())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The running pipeline's own confirmation of its open month (which
    /// it has checked; it may be ahead of the committed one).
    pub(crate) async fn record_confirmation(&self, m: YearMonth) -> Result<()> {
        sqlx::query("UPDATE pipeline_state SET confirmed_month = $1, updated_at = now()")
            .bind(m.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What other processes asked of the running pipeline: the confirmed
    /// month, and whether a cleanup was requested.
    pub(crate) async fn requests(&self) -> Result<crate::pipeline::Requests> {
        let (month, cleanup): (Option<String>, bool) =
            sqlx::query_as("SELECT confirmed_month, cleanup_requested FROM pipeline_state")
                .fetch_one(&self.pool)
                .await?;
        Ok(crate::pipeline::Requests {
            confirmed: parse_month("confirmed_month", month)?,
            cleanup,
        })
    }

    /// Records the rollover waiting for confirmation (`since` moves only
    /// when the month changes), or that none waits.
    pub(crate) async fn set_awaiting(&self, a: Option<(YearMonth, bool)>) -> Result<()> {
        sqlx::query(
            "UPDATE pipeline_state SET
               awaiting_since = CASE WHEN $1::text IS NULL THEN NULL
                 WHEN awaiting_month IS DISTINCT FROM $1 THEN now() ELSE awaiting_since END,
               awaiting_month = $1, awaiting_blocked = coalesce($2, false)",
        )
        .bind(a.map(|(m, _)| m.to_string()))
        .bind(a.map(|(_, b)| b))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Asks the pipeline that holds the namespace to run the daily cleanup
    /// (and notifies it).
    pub(crate) async fn request_cleanup(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE pipeline_state SET cleanup_requested = true, updated_at = now()")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, 'cleanup')")
            .bind(self.channel())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forwards notifications on [`Self::channel`] as
    /// [`Signal::Requests`](crate::pipeline::Signal) until the receiver is
    /// gone; reconnects (sqlx's listener does) and resubscribes after a
    /// lost connection. A request that arrives while it is down is still
    /// seen: the pipeline reads the requests on a fallback timer too.
    pub(crate) async fn forward_requests(
        &self,
        to: tokio::sync::mpsc::Sender<crate::pipeline::Signal>,
    ) {
        let mut delay = std::time::Duration::from_millis(200);
        while !to.is_closed() {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
                l.listen(&self.channel()).await?;
                Ok::<_, sqlx::Error>(l)
            };
            match listener.await {
                Ok(mut l) => loop {
                    delay = std::time::Duration::from_millis(200);
                    match l.recv().await {
                        Ok(_) => {
                            let _ = to.try_send(crate::pipeline::Signal::Requests);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "PostgreSQL listener lost; listening again");
                            break;
                        }
                    }
                    if to.is_closed() {
                        return;
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "cannot LISTEN on PostgreSQL; retrying in {delay:?}");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
    }

    /// The rollover waiting for confirmation as the pipeline that reached
    /// it recorded it, and since when.
    pub(crate) async fn awaiting(
        &self,
    ) -> Result<Option<(YearMonth, chrono::DateTime<chrono::Utc>)>> {
        let (month, since): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as("SELECT awaiting_month, awaiting_since FROM pipeline_state")
                .fetch_one(&self.pool)
                .await?;
        Ok(parse_month("awaiting_month", month)?
            .map(|m| (m, since.unwrap_or_else(chrono::Utc::now))))
    }

    pub(crate) async fn cleanup_done(&self) -> Result<()> {
        sqlx::query("UPDATE pipeline_state SET cleanup_requested = false")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A month column of `pipeline_state`; a value that is not a month is
/// corruption, said so (never silently dropped).
fn parse_month(column: &str, v: Option<String>) -> Result<Option<YearMonth>> {
    v.map(|s| {
        s.parse()
            .map_err(|e: String| Error::Namespace(format!("corrupt pipeline_state.{column}: {e}")))
    })
    .transpose()
}

/// A job kind as stored (`integer`).
pub(crate) fn kind_column(k: Option<dvmtop_core::JobKind>) -> Option<i32> {
    k.map(|k| k.0 as i32)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersistedState {
    pub clock: ClockState,
    pub(crate) last_seq: i64,
    pub(crate) last_count: i64,
}
