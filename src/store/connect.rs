//! Connecting to PostgreSQL, and saying in one line why it failed: the
//! server unreachable (start it), the login refused (fix the role or
//! password), TLS refused (which certificate, why), the database or the
//! namespace missing. Every session carries an `application_name` naming
//! the dvmtop command and its pid, so `pg_stat_activity` (and the
//! namespace-lock wait, `super::lock`) can say who holds what.

use crate::error::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, PgConnection};
use std::sync::OnceLock;

static COMMAND: OnceLock<String> = OnceLock::new();

/// Names this process's sessions after its command (`serve`, `status`,
/// `tui`, …); call once, before connecting. Unset: `dvmtop`.
pub fn set_application_name(command: &str) {
    let _ = COMMAND.set(command.to_owned());
}

/// `dvmtop serve pid=1234 host=box` (PostgreSQL keeps 63 bytes of it).
pub(super) fn application_name() -> String {
    let mut s = format!(
        "dvmtop {} pid={} host={}",
        COMMAND.get().map_or("", String::as_str),
        std::process::id(),
        super::hostname()
    )
    .replace("  ", " ");
    if s.len() > 63 {
        let mut end = 63;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// No TLS to a server on this machine unless asked for: when neither the
/// URL (`sslmode=`) nor `PGSSLMODE` chooses, a loopback host or a Unix
/// socket is reached in plain text. sqlx's own default (`prefer`, as
/// libpq's) negotiates TLS whenever the server offers it — Debian's
/// PostgreSQL does, with its snakeoil certificate — and encrypting every
/// commit over loopback cost a third of processing throughput (`dvmtop
/// bench`: 345 k → 225 k events/s) and ~80 MiB of peak memory. A remote
/// host keeps `prefer`.
pub(super) fn plain_on_loopback(url: &str, opts: PgConnectOptions) -> PgConnectOptions {
    let chosen = url.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.to_ascii_lowercase().starts_with("sslmode="))
    }) || std::env::var_os("PGSSLMODE").is_some();
    let host = opts.get_host();
    let local = host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local && !chosen {
        opts.ssl_mode(PgSslMode::Disable)
    } else {
        opts
    }
}

fn describe(opts: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("?")
    )
}

/// One line for a failed connection, by cause.
pub(crate) fn unreachable(opts: &PgConnectOptions, e: &sqlx::Error) -> Error {
    let at = describe(opts);
    // The server answered and then went away: a restart under way, which
    // is transient (`serve` tries its start-up again), not "start it".
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let restarting = match e {
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
        ),
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03"))
        }
        _ => false,
    };
    if restarting {
        return Error::Restarting(format!("PostgreSQL at {at} is restarting ({e})"));
    }
    match e {
        // 28P01 invalid_password, 28000 invalid_authorization_specification
        // (no such role, or no pg_hba.conf entry for it).
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("28P01" | "28000")) => {
            Error::Unreachable(format!(
                "PostgreSQL refused the login for role {:?} at {at} ({}): check the user and password in DATABASE_URL, and the server's pg_hba.conf",
                opts.get_username(),
                db.message()
            ))
        }
        sqlx::Error::Tls(t) => Error::Unreachable(format!(
            "TLS to PostgreSQL at {at} failed: {}: check sslmode and sslrootcert in DATABASE_URL",
            crate::tls::explain(&t.to_string())
        )),
        sqlx::Error::Io(io) if crate::tls::words(&io.to_string()).is_some() => {
            Error::Unreachable(format!(
                "TLS to PostgreSQL at {at} failed: {}: check sslmode and sslrootcert in DATABASE_URL",
                crate::tls::explain(&io.to_string())
            ))
        }
        sqlx::Error::Database(db) => Error::Unreachable(format!(
            "PostgreSQL at {at} refused the connection ({}): check DATABASE_URL",
            db.message()
        )),
        _ => Error::Unreachable(format!(
            "PostgreSQL at {at} is unreachable ({e}): start it or set DATABASE_URL"
        )),
    }
}

fn missing_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

/// Connects, creating the database when it does not exist yet.
pub(super) async fn connect_admin(opts: &PgConnectOptions) -> Result<PgConnection> {
    match opts.connect().await {
        Ok(c) => Ok(c),
        Err(e) if missing_database(&e) => {
            let name = opts.get_database().unwrap_or("dvmtop").to_owned();
            let mut admin = opts
                .clone()
                .database("postgres")
                .connect()
                .await
                .map_err(|e| unreachable(opts, &e))?;
            let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
            {
                // Another process may have created it meanwhile.
                if !matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P04")) {
                    return Err(Error::Postgres(e));
                }
            }
            opts.connect().await.map_err(|e| unreachable(opts, &e))
        }
        Err(e) => Err(unreachable(opts, &e)),
    }
}

/// Connects to the database of a namespace that must exist already: a
/// schema dvmtop migrated (it has `pipeline_state`). Creates nothing.
pub(super) async fn connect_existing(
    opts: &PgConnectOptions,
    namespace: &str,
) -> Result<PgConnection> {
    let at = describe(opts);
    let mut conn = match opts.connect().await {
        Ok(c) => c,
        Err(e) if missing_database(&e) => {
            return Err(Error::Namespace(format!(
                "namespace {namespace} does not exist: there is no database {at} yet (dvmtop serve or a backtest creates it); check --namespace and DATABASE_URL"
            )));
        }
        Err(e) => return Err(unreachable(opts, &e)),
    };
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'pipeline_state')",
    )
    .bind(namespace)
    .fetch_one(&mut conn)
    .await?;
    if exists {
        return Ok(conn);
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'pipeline_state' ORDER BY 1 LIMIT 11",
    )
    .fetch_all(&mut conn)
    .await?;
    let known = match names.len() {
        0 => "there are none yet".to_owned(),
        1..=10 => format!("existing: {}", names.join(", ")),
        _ => format!("existing: {}, …", names[..10].join(", ")),
    };
    Err(Error::Namespace(format!(
        "namespace {namespace} does not exist in {at} ({known}): check --namespace"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn mode(url: &str) -> PgSslMode {
        let opts = PgConnectOptions::from_str(url).expect("a valid URL");
        plain_on_loopback(url, opts).get_ssl_mode()
    }

    #[test]
    fn loopback_is_plain_unless_the_url_asks_for_tls() {
        if std::env::var_os("PGSSLMODE").is_some() {
            return; // the environment chooses; nothing of ours to check
        }
        for url in [
            "postgres://postgres@127.0.0.1:5432/dvmtop",
            "postgres://postgres@localhost/dvmtop",
            "postgres://postgres@[::1]:5432/dvmtop",
            "postgres://postgres@127.0.0.2/dvmtop?application_name=x",
            "postgres:///dvmtop?host=/var/run/postgresql",
        ] {
            assert!(matches!(mode(url), PgSslMode::Disable), "{url}");
        }
        assert!(matches!(
            mode("postgres://postgres@127.0.0.1/dvmtop?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://u@db.example.com/dvmtop"),
            PgSslMode::Prefer
        ));
    }
}
