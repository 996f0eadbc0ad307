//! The namespace's schema and the marker that says dvmtop made it.
//!
//! A namespace is a schema of the operator's database, and `--fresh`
//! drops it whole (`DROP SCHEMA … CASCADE`). So dvmtop only ever drops or
//! fills a schema it can prove is its own: the one it creates carries the
//! comment [`MARKER`] (`COMMENT ON SCHEMA`, which travels with the schema
//! in `pg_dump` and needs no table of ours). A schema that exists without
//! the marker is someone else's and is refused, with `--fresh` or without.
//!
//! Namespaces made before the marker existed are recognised by their
//! contents — both dvmtop's migration ledger (`_sqlx_migrations`) and its
//! `pipeline_state` table — and marked on first use.

use crate::error::{Error, Result};
use sqlx::PgConnection;

/// The schema comment that marks a namespace as dvmtop's.
pub const MARKER: &str = "dvmtop namespace: created and dropped by dvmtop (--fresh)";

/// `[a-z][a-z0-9_]*`, at most 48 characters, and not one of PostgreSQL's
/// own schemas: safe as a schema name and a Redis key prefix without
/// quoting.
pub fn validate_namespace(ns: &str) -> Result<()> {
    dvmtop_core::namespace::check(ns).map_err(Error::Config)
}

/// Who a schema of that name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// No such schema.
    Absent,
    /// Marked as dvmtop's.
    Dvmtop,
    /// Unmarked, but holding dvmtop's tables: a namespace from before the
    /// marker.
    Legacy,
    /// Someone else's.
    Foreign,
}

/// Looks the schema up.
pub(crate) async fn owner(conn: &mut PgConnection, ns: &str) -> Result<Owner> {
    let row: Option<(Option<String>, bool)> = sqlx::query_as(
        "SELECT obj_description(n.oid, 'pg_namespace'),
                to_regclass(quote_ident(n.nspname) || '._sqlx_migrations') IS NOT NULL
                AND to_regclass(quote_ident(n.nspname) || '.pipeline_state') IS NOT NULL
         FROM pg_namespace n WHERE n.nspname = $1",
    )
    .bind(ns)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => Owner::Absent,
        Some((Some(c), _)) if c == MARKER => Owner::Dvmtop,
        Some((_, true)) => Owner::Legacy,
        Some(_) => Owner::Foreign,
    })
}

fn foreign(ns: &str) -> Error {
    Error::Namespace(format!(
        "schema {ns} exists but was not created by dvmtop (it lacks dvmtop's marker), so dvmtop will neither use nor drop it: choose another --namespace"
    ))
}

async fn mark(conn: &mut PgConnection, ns: &str) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "COMMENT ON SCHEMA {ns} IS '{MARKER}'"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Makes sure the schema exists and is dvmtop's: creates and marks it
/// when absent, marks a legacy one, refuses a foreign one.
pub(crate) async fn ensure(conn: &mut PgConnection, ns: &str) -> Result<()> {
    match owner(conn, ns).await? {
        Owner::Dvmtop => Ok(()),
        Owner::Legacy => {
            tracing::info!(namespace = ns, "marking a namespace made before the marker");
            mark(conn, ns).await
        }
        Owner::Foreign => Err(foreign(ns)),
        Owner::Absent => create(conn, ns).await,
    }
}

/// Creates and marks the schema in one transaction. Two processes racing:
/// the loser finds the winner's marked schema.
async fn create(conn: &mut PgConnection, ns: &str) -> Result<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {ns}")))
        .execute(&mut *tx)
        .await;
    match created {
        Ok(_) => {
            mark(&mut tx, ns).await?;
            tx.commit().await?;
            Ok(())
        }
        // 42P06 duplicate_schema; 23505: the catalog's unique index.
        Err(sqlx::Error::Database(d)) if matches!(d.code().as_deref(), Some("42P06" | "23505")) => {
            tx.rollback().await.ok();
            match owner(conn, ns).await? {
                Owner::Dvmtop => Ok(()),
                _ => Err(foreign(ns)),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops the schema and creates it again, empty and marked — only when
/// it is dvmtop's (checked again here, in the same transaction).
pub(crate) async fn recreate(conn: &mut PgConnection, ns: &str) -> Result<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    // Serialise with other dvmtops recreating or creating the same name.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
        .bind(format!("dvmtop-schema:{ns}"))
        .execute(&mut *tx)
        .await?;
    match owner(&mut tx, ns).await? {
        Owner::Dvmtop | Owner::Legacy => {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {ns} CASCADE")))
                .execute(&mut *tx)
                .await?;
        }
        Owner::Absent => {}
        Owner::Foreign => return Err(foreign(ns)),
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {ns}")))
        .execute(&mut *tx)
        .await?;
    mark(&mut tx, ns).await?;
    tx.commit().await?;
    Ok(())
}
