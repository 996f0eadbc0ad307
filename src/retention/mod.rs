//! Retention (SPEC §6) and backups (SPEC §8), always on the queue's
//! clock. The policy — thresholds and cut-offs — is pure and lives in the
//! core ([`dvmtop_core::retention`]); this module carries it out:
//! [`cleanup`] writes the daily cleanup, [`backup`] writes
//! `monthly_activity` backups and [`restore`] puts them back. The job audit and the monitoring figures
//! are in [`crate::store`].

pub mod backup;
pub(crate) mod cleanup;
pub mod restore;

pub use backup::{Backup, backup_name, write_backup};
pub(crate) use cleanup::daily_cleanup;
pub use dvmtop_core::retention::{RetentionConfig, cutoffs};
pub use restore::{Restored, restore};
