//! `dvmtop restore FILE`: puts a backup's `monthly_activity` rows back,
//! idempotently, in one transaction — and only a backup that belongs
//! here: its format is one this dvmtop knows, it is the namespace's own
//! (another's only with `--from-namespace`), and every row's values are
//! possible ([`MonthRow::check`]). Anything else is refused with one line
//! and nothing written.
//!
//! The file is streamed: a reader thread parses it row by row and hands
//! each row over a channel of one, so memory holds about one row whatever
//! the file's size (the old restore read the whole file and every row of
//! it, and of the table, at once). The caller holds the namespace lock,
//! so no pipeline writes beside it.

use super::backup::FORMAT;
use crate::error::{Error, Result};
use crate::store::{Db, MonthRow};
use serde::Serialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::path::Path;
use tokio::sync::mpsc;

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// What the reader hands over, in file order.
enum Item {
    /// `format` and `namespace`, before the first row.
    Header {
        format: String,
        namespace: String,
    },
    Row(MonthRow),
}

/// Puts the rows of the backup `file` back into `db`'s namespace. The
/// backup must be of that namespace, or of `from` when given (restoring
/// another namespace's history on purpose).
pub async fn restore(db: &Db, file: &Path, from: Option<&str>) -> Result<Restored> {
    let shown = file.display().to_string();
    let f = std::fs::File::open(file).map_err(|source| Error::Io {
        path: shown.clone(),
        source,
    })?;
    let (tx, mut rx) = mpsc::channel::<Item>(1);
    let reader = tokio::task::spawn_blocking(move || read(f, tx));
    let result = apply(db, &shown, from, &mut rx).await;
    // Stops the reader if the rows were refused (its send fails).
    drop(rx);
    let read = reader
        .await
        .map_err(|e| Error::Config(format!("the backup reader failed: {e}")))?;
    match (result, read) {
        // A refusal names the first problem; the reader then only saw
        // its channel close.
        (Err(e), _) => Err(e),
        (Ok(written), Err(e)) => {
            if let Some((_, tx)) = written {
                rolled_back(tx).await;
            }
            Err(Error::Config(format!(
                "{shown} is not a dvmtop backup, or is damaged ({e}): nothing was restored"
            )))
        }
        (Ok(None), Ok(())) => Err(Error::Config(format!(
            "{shown} is not a dvmtop backup (no format, namespace and rows): nothing was restored"
        ))),
        (Ok(Some((out, tx))), Ok(())) => {
            tx.commit().await?;
            Ok(out)
        }
    }
}

type Pending = (Restored, sqlx::Transaction<'static, sqlx::Postgres>);

/// Rolls a refused restore's transaction back before returning. Dropping
/// it would only queue the rollback for whenever the runtime next polls
/// the pool, leaving its locks held meanwhile (a `DROP SCHEMA` of the
/// namespace then waited for ever in a test). A failed rollback means a
/// broken connection, which the server rolls back itself.
async fn rolled_back(tx: sqlx::Transaction<'static, sqlx::Postgres>) {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "rolling back a refused restore");
    }
}

/// Checks the header, then writes each row (checked) in one transaction,
/// left uncommitted until the reader has finished without an error.
async fn apply(
    db: &Db,
    shown: &str,
    from: Option<&str>,
    rx: &mut mpsc::Receiver<Item>,
) -> Result<Option<Pending>> {
    let Some(Item::Header { format, namespace }) = rx.recv().await else {
        return Ok(None);
    };
    if format != FORMAT {
        return Err(Error::Config(format!(
            "{shown} has backup format {format:?}, which this dvmtop does not know (it reads {FORMAT:?}): restore it with the dvmtop that wrote it"
        )));
    }
    let want = from.unwrap_or(&db.namespace);
    if namespace != want {
        let hint = match from {
            None => format!(
                "pass --from-namespace {namespace} to restore it into {} anyway",
                db.namespace
            ),
            Some(_) => "check the file and --from-namespace".into(),
        };
        return Err(Error::Config(format!(
            "{shown} is a backup of namespace {namespace}, not of {want}: {hint}; nothing was restored"
        )));
    }
    let mut tx = db.pool.begin().await?;
    match write_rows(db, shown, rx, &mut tx).await {
        Ok(out) => Ok(Some((out, tx))),
        Err(e) => {
            rolled_back(tx).await;
            Err(e)
        }
    }
}

/// Writes each row (checked) in `tx`, then the fence.
async fn write_rows(
    db: &Db,
    shown: &str,
    rx: &mut mpsc::Receiver<Item>,
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
) -> Result<Restored> {
    let mut out = Restored::default();
    while let Some(item) = rx.recv().await {
        let Item::Row(row) = item else { continue };
        row.check().map_err(|why| {
            Error::Config(format!(
                "{shown}: impossible values in the row of {why}: nothing was restored"
            ))
        })?;
        match crate::store::monthly_row_in(tx, row.year_month).await? {
            Some(mut old) => {
                old.created_at = row.created_at;
                if old == row {
                    out.unchanged += 1;
                    continue;
                }
                out.updated += 1;
            }
            None => out.inserted += 1,
        }
        crate::store::upsert_month(tx, &row).await?;
    }
    // Written only while this process holds the namespace.
    db.fence(tx).await?;
    Ok(out)
}

/// The reader thread: parses the file, sending the header and then each
/// row. Rows before `format` and `namespace` are refused (dvmtop writes
/// those first), so nothing is written before the header is checked.
fn read(f: std::fs::File, tx: mpsc::Sender<Item>) -> std::result::Result<(), String> {
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, f));
    let r = FileSeed { tx: &tx }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match r {
        Ok(()) => Ok(()),
        // The receiver refused a row and hung up: its error is the one.
        Err(_) if tx.is_closed() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

struct FileSeed<'a> {
    tx: &'a mpsc::Sender<Item>,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a dvmtop backup object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        use serde::de::Error as _;
        let (mut format, mut namespace) = (None::<String>, None::<String>);
        let mut header_sent = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => format = Some(map.next_value()?),
                "namespace" => namespace = Some(map.next_value()?),
                "rows" => {
                    let (Some(format), Some(namespace)) = (format.take(), namespace.take()) else {
                        return Err(A::Error::custom(
                            "its rows come before its format and namespace",
                        ));
                    };
                    self.tx
                        .blocking_send(Item::Header { format, namespace })
                        .map_err(|_| A::Error::custom("refused"))?;
                    header_sent = true;
                    map.next_value_seed(RowsSeed { tx: self.tx })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !header_sent {
            return Err(A::Error::custom("it has no rows"));
        }
        Ok(())
    }
}

struct RowsSeed<'a> {
    tx: &'a mpsc::Sender<Item>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of monthly_activity rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        use serde::de::Error as _;
        while let Some(row) = seq.next_element::<MonthRow>()? {
            self.tx
                .blocking_send(Item::Row(row))
                .map_err(|_| A::Error::custom("refused"))?;
        }
        Ok(())
    }
}
