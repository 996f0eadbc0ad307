//! Backups of `monthly_activity` (SPEC §8), the one irreplaceable table:
//! written atomically after every rollover, put back idempotently by
//! `dvmtop restore`.

use crate::error::{Error, Result};
use crate::store::{Db, MonthRow};
use chrono::{DateTime, Utc};
use dvmtop_core::YearMonth;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The backup file format this dvmtop writes and reads.
pub const FORMAT: &str = "dvmtop-monthly-activity-v1";

/// Name of the backup written after the rollover of `m`.
pub fn backup_name(m: YearMonth) -> String {
    format!("monthly_activity-{m}.json")
}

/// The backup file: every `monthly_activity` row at the time of writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    pub namespace: String,
    pub rolled_up: String,
    pub written_at: DateTime<Utc>,
    pub rows: Vec<MonthRow>,
}

/// Writes all `monthly_activity` rows atomically (temp file, fsync,
/// rename) into `dir`, named after the month just rolled up.
pub async fn write_backup(db: &Db, dir: &Path, m: YearMonth) -> Result<PathBuf> {
    let rows = db.monthly_rows().await?;
    let backup = Backup {
        format: FORMAT.into(),
        namespace: db.namespace.clone(),
        rolled_up: m.to_string(),
        written_at: Utc::now(),
        rows,
    };
    let dir = dir.to_owned();
    let path = dir.join(backup_name(m));
    let text = serde_json::to_vec_pretty(&backup).map_err(|e| Error::Config(e.to_string()))?;
    let target = path.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("backup")
        ));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)
        })();
        if written.is_err() {
            // A full disk, a vanished directory: never leave the
            // half-written temp file behind.
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(|e| Error::Config(format!("backup task: {e}")))?
    .map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}
