//! Flags + environment + TOML file merged into one [`Config`].

use crate::cli::{GlobalArgs, RolloverArg};
use crate::error::{Error, Result};
use crate::event::{KindPolicy, Validation};
use crate::queue::DeadLetterCaps;
use crate::relay::{RelayConfig, RelayUrl, parse_duration};
use crate::retention::RetentionConfig;
use dvmtop_core::clock::{Params, Policy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The config file: every key optional, same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Alert thresholds (`[alerts]`: queue_growing_min, lag_min, …).
    pub alerts: Option<dvmtop_core::alerts::Thresholds>,
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    pub(crate) namespace: Option<String>,
    pub(crate) database_url: Option<String>,
    pub(crate) redis_url: Option<String>,
    /// PEM CA file for `rediss://` (`--redis-ca`).
    pub(crate) redis_ca: Option<PathBuf>,
    /// Seconds a start waits for a held namespace (`--lock-wait`).
    pub(crate) lock_wait: Option<u64>,
    pub(crate) queue_key: Option<String>,
    pub(crate) batch_size: Option<usize>,
    pub(crate) commit_events: Option<u64>,
    pub(crate) rollover: Option<Policy>,
    pub(crate) rollover_buffer_days: Option<u32>,
    pub(crate) verify_signatures: Option<bool>,
    /// e.g. "7d".
    pub(crate) job_horizon: Option<String>,
    /// `"YYYY-MM-DD"`, a TOML date, or unix seconds.
    pub(crate) min_created_at: Option<toml::Value>,
    pub(crate) dead_letter_max: Option<u64>,
    pub(crate) dead_letter_max_bytes: Option<u64>,
    pub(crate) excluded_kinds: Option<Vec<i64>>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) backup_dir: Option<PathBuf>,
    pub(crate) retention: Option<RetentionConfig>,
    /// Relays to ingest from (`--relay` replaces the list).
    pub(crate) relays: Option<Vec<String>>,
    /// e.g. "1d", "6h".
    pub(crate) lookback: Option<String>,
    /// e.g. "10m".
    pub(crate) resubscribe_every: Option<String>,
    pub(crate) verify_relay_signatures: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub database_url: String,
    pub redis_url: String,
    /// CA certificates (PEM) that sign the Redis server's certificate, for
    /// `rediss://`; `None`: the system's roots plus Mozilla's.
    pub(crate) redis_ca: Option<PathBuf>,
    /// How long a start waits for a namespace another session holds.
    pub(crate) lock_wait: std::time::Duration,
    pub queue_key: Option<String>,
    pub batch_size: usize,
    /// When the processor commits its in-memory aggregates.
    pub commit: crate::pipeline::CommitPolicy,
    pub params: Params,
    pub validation: Validation,
    pub data_dir: PathBuf,
    /// Backups of `monthly_activity` after each rollover.
    pub backup_dir: PathBuf,
    pub(crate) retention: RetentionConfig,
    /// Live relay ingest (no URLs: none).
    pub relay: RelayConfig,
    /// Bounds of the Redis dead-letter list.
    pub dead_letters: DeadLetterCaps,
    pub alerts: dvmtop_core::alerts::Thresholds,
    /// Where `/metrics` is served (none: no metrics).
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// Job analytics' matching horizon, seconds (README "Job analytics").
    pub(crate) job_horizon: i64,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/dvmtop";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// How long a start waits for a held namespace (see `store::lock`).
pub(crate) const DEFAULT_LOCK_WAIT_SECS: u64 = 30;

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// A `--min-created-at` value: `YYYY-MM-DD` (UTC midnight) or unix seconds.
pub(crate) fn parse_min_created_at(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("{s} is too large for unix seconds"));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp())
        .map_err(|_| format!("expected a date YYYY-MM-DD or unix seconds, got {s:?}"))
}

/// The config file's `min_created_at`: a string as for the flag, an
/// integer (unix seconds) or a bare TOML date (`2023-01-01`).
fn file_min_created_at(v: &toml::Value) -> std::result::Result<i64, String> {
    match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n),
        toml::Value::String(s) => parse_min_created_at(s),
        toml::Value::Datetime(d) => parse_min_created_at(&d.to_string()),
        other => Err(format!(
            "expected a date YYYY-MM-DD or unix seconds, got {other}"
        )),
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text)
        .map_err(|e| Error::Config(format!("config file {}: {}", path.display(), e.message())))
}

impl Config {
    /// Merges flags/env (`args`) over the config file over the defaults.
    /// `default_policy` differs between the TUI (manual) and headless (auto).
    pub fn resolve(args: &GlobalArgs, default_policy: Policy) -> Result<Config> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => {
                let p = home().join(".config/dvmtop/config.toml");
                if p.exists() {
                    read_file(&p)?
                } else {
                    FileConfig::default()
                }
            }
        };
        let policy = match args.rollover {
            Some(RolloverArg::Auto) => Policy::Auto,
            Some(RolloverArg::Manual) => Policy::Manual,
            None => file.rollover.unwrap_or(default_policy),
        };
        let namespace = args
            .namespace
            .clone()
            .or(file.namespace)
            .unwrap_or_else(|| "dvmtop".into());
        crate::store::validate_namespace(&namespace)?;
        let batch_size = args.batch_size.or(file.batch_size).unwrap_or(5000);
        if batch_size == 0 || batch_size > crate::pipeline::MAX_BATCH {
            return Err(Error::Config(format!(
                "--batch-size must be between 1 and {}, got {batch_size}",
                crate::pipeline::MAX_BATCH
            )));
        }
        let mut commit = crate::pipeline::CommitPolicy::default();
        if let Some(n) = args.commit_events.or(file.commit_events) {
            if n == 0 {
                return Err(Error::Config("--commit-events must be at least 1".into()));
            }
            commit = crate::pipeline::CommitPolicy::with_target(n);
        }
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| home().join(".local/share/dvmtop"));
        let backup_dir = args
            .backup_dir
            .clone()
            .or(file.backup_dir)
            .unwrap_or_else(|| data_dir.join("backups").join(&namespace));
        let mut retention = file.retention.unwrap_or_default();
        let r = &args.retention;
        for (flag, slot) in [
            (r.activity_retention_days, &mut retention.activity_days),
            (r.inactive_after_days, &mut retention.inactive_after_days),
            (r.delete_after_days, &mut retention.delete_after_days),
            (r.cleanup_log_days, &mut retention.cleanup_log_days),
            (r.cleanup_log_max_rows, &mut retention.cleanup_log_max_rows),
        ] {
            if let Some(v) = flag {
                *slot = v;
            }
        }
        if retention.delete_after_days < retention.inactive_after_days {
            return Err(Error::Config(format!(
                "--delete-after-days ({}) must not be less than --inactive-after-days ({})",
                retention.delete_after_days, retention.inactive_after_days
            )));
        }
        let min_created_at = match (&args.min_created_at, &file.min_created_at) {
            (Some(s), _) => parse_min_created_at(s)
                .map_err(|e| Error::Config(format!("--min-created-at: {e}")))?,
            (None, Some(v)) => file_min_created_at(v)
                .map_err(|e| Error::Config(format!("config file min_created_at: {e}")))?,
            (None, None) => crate::event::DEFAULT_MIN_CREATED_AT,
        };
        let ra = &args.relays;
        let urls: Vec<String> = if ra.no_relays {
            Vec::new()
        } else if !ra.relays.is_empty() {
            ra.relays.clone()
        } else {
            file.relays.unwrap_or_default()
        };
        let mut urls = urls
            .iter()
            .filter(|u| !u.trim().is_empty())
            .map(|u| RelayUrl::parse(u))
            .collect::<Result<Vec<_>>>()?;
        urls.sort();
        urls.dedup();
        let duration = |flag: &str, v: Option<&String>, default: std::time::Duration| match v {
            None => Ok(default),
            Some(s) => parse_duration(s)
                .map_err(|e| Error::Config(format!("{flag}: {e}")))
                .and_then(|d| {
                    if d.is_zero() {
                        Err(Error::Config(format!("{flag} must be more than 0")))
                    } else {
                        Ok(d)
                    }
                }),
        };
        let defaults = RelayConfig::default();
        let relay = RelayConfig {
            urls,
            lookback: duration(
                "--lookback",
                ra.lookback.as_ref().or(file.lookback.as_ref()),
                defaults.lookback,
            )?,
            resubscribe_every: duration(
                "--resubscribe-every",
                ra.resubscribe_every
                    .as_ref()
                    .or(file.resubscribe_every.as_ref()),
                defaults.resubscribe_every,
            )?,
            verify_signatures: !ra.no_verify_relay_signatures
                && file.verify_relay_signatures.unwrap_or(true),
            ..defaults
        };
        let job_horizon = match args.job_horizon.as_ref().or(file.job_horizon.as_ref()) {
            None => dvmtop_core::jobs::DEFAULT_HORIZON,
            Some(s) => {
                let secs = parse_duration(s)
                    .map_err(|e| Error::Config(format!("--job-horizon: {e}")))?
                    .as_secs();
                let max = dvmtop_core::jobs::MAX_HORIZON;
                if secs > max as u64 {
                    return Err(Error::Config(format!(
                        "--job-horizon: {s} is longer than the longest horizon, 366d; give at most 366d"
                    )));
                }
                secs as i64
            }
        };
        let caps = DeadLetterCaps::default();
        let dead_letters = DeadLetterCaps {
            max_entries: args
                .dead_letter_max
                .or(file.dead_letter_max)
                .unwrap_or(caps.max_entries),
            max_bytes: args
                .dead_letter_max_bytes
                .or(file.dead_letter_max_bytes)
                .unwrap_or(caps.max_bytes),
        };
        let mut alerts = file.alerts.unwrap_or_default();
        let a = &args.alerts;
        for (flag, slot) in [
            (a.alert_queue_growing_min, &mut alerts.queue_growing_min),
            (a.alert_lag_min, &mut alerts.lag_min),
            (a.alert_relay_down_min, &mut alerts.relay_down_min),
            (a.alert_failed_job_hours, &mut alerts.failed_job_hours),
        ] {
            if let Some(v) = flag {
                *slot = v;
            }
        }
        if let Some(n) = a.alert_dead_letters {
            alerts.dead_letters_rise = n;
        }
        Ok(Config {
            relay,
            dead_letters,
            alerts,
            metrics_addr: args.metrics_addr.or(file.metrics_addr),
            job_horizon,
            backup_dir,
            retention,
            namespace,
            database_url: args
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            redis_url: args
                .redis_url
                .clone()
                .or(file.redis_url)
                .unwrap_or_else(|| DEFAULT_REDIS_URL.into()),
            redis_ca: args.redis_ca.clone().or(file.redis_ca),
            lock_wait: std::time::Duration::from_secs(
                args.lock_wait
                    .or(file.lock_wait)
                    .unwrap_or(DEFAULT_LOCK_WAIT_SECS),
            ),
            queue_key: args.queue_key.clone().or(file.queue_key),
            batch_size,
            commit,
            params: Params {
                buffer_days: args
                    .rollover_buffer_days
                    .or(file.rollover_buffer_days)
                    .unwrap_or(3),
                policy,
            },
            validation: Validation {
                kinds: file
                    .excluded_kinds
                    .map(|excluded| KindPolicy { excluded })
                    .unwrap_or_default(),
                verify_signatures: args.verify_signatures
                    || file.verify_signatures.unwrap_or(false),
                min_created_at,
                ..Validation::default()
            },
            data_dir,
        })
    }
}
