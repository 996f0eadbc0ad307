//! Command-line definitions. Every global flag has an environment variable
//! and a config-file key; flags win over the environment, which wins over
//! the file, which wins over the defaults.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "dvmtop",
    version,
    about = "Nostr DVM (NIP-90) analytics pipeline with a live terminal UI"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub tui: TuiArgs,
    /// Without a subcommand: files to ingest while the TUI runs the service.
    pub files: Vec<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Terminal UI options (`dvmtop`, `dvmtop backtest` without --headless).
#[derive(Debug, Clone, Args, Default)]
pub struct TuiArgs {
    /// No colours (also when NO_COLOR is set); meaning stays in words and glyphs.
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Capture the mouse (wheel switches views); off by default so the
    /// terminal's own selection keeps working.
    #[arg(long, global = true)]
    pub mouse: bool,
    /// Watch only: confirming rollovers and running cleanups are disabled.
    #[arg(long, global = true)]
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolloverArg {
    Auto,
    Manual,
}

#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// Isolates everything: PostgreSQL schema name and Redis key prefix.
    #[arg(long, global = true, env = "DVMTOP_NAMESPACE")]
    pub namespace: Option<String>,
    /// PostgreSQL connection URL (the database is created if missing).
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis connection URL.
    #[arg(long, global = true, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// TOML config file (default: ~/.config/dvmtop/config.toml when present).
    #[arg(long, global = true, env = "DVMTOP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Consume this Redis list instead of the namespace's own queue
    /// (e.g. `dvmdash_events`, filled by DVMDash collectors).
    #[arg(long, global = true)]
    pub queue_key: Option<String>,
    /// Most queue elements read per batch (overflow included).
    #[arg(long, global = true)]
    pub batch_size: Option<usize>,
    /// Events per commit group (default 250000): larger groups write each
    /// active user less often; a crash redoes at most about this many.
    #[arg(long, global = true)]
    pub commit_events: Option<u64>,
    /// Month rollover policy (default: auto headless, manual in the TUI).
    #[arg(long, global = true, value_enum)]
    pub rollover: Option<RolloverArg>,
    /// Days into the next month before a month rolls over.
    #[arg(long, global = true)]
    pub rollover_buffer_days: Option<u32>,
    /// Check BIP-340 signatures at ingest (costly).
    #[arg(long, global = true)]
    pub verify_signatures: bool,
    /// Reject events created before this as `too_old`: YYYY-MM-DD (UTC
    /// midnight) or unix seconds (default 2023-01-01).
    #[arg(long, value_name = "DATE", global = true)]
    pub min_created_at: Option<String>,
    /// Most entries in the Redis dead-letter list (100000); past it new
    /// dead letters are counted (dead_letters_dropped), not kept.
    #[arg(long, value_name = "N", global = true)]
    pub dead_letter_max: Option<u64>,
    /// Most bytes in the Redis dead-letter list (268435456 = 256 MiB).
    #[arg(long, value_name = "BYTES", global = true)]
    pub dead_letter_max_bytes: Option<u64>,
    #[command(flatten)]
    pub relays: RelayArgs,
    /// Where logs and backups go (default: ~/.local/share/dvmtop).
    #[arg(long, global = true, env = "DVMTOP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where monthly_activity backups go (default: DATA_DIR/backups/NAMESPACE).
    #[arg(long, global = true)]
    pub backup_dir: Option<PathBuf>,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// Live ingest from Nostr relays (`dvmtop`, `serve`, `ingest`).
#[derive(Debug, Clone, Args, Default)]
pub struct RelayArgs {
    /// A relay to ingest from, ws:// or wss:// (repeatable; replaces the
    /// config file's `relays` list).
    #[arg(
        long = "relay",
        value_name = "URL",
        global = true,
        env = "DVMTOP_RELAYS",
        value_delimiter = ','
    )]
    pub relays: Vec<String>,
    /// Ignore the configured relays (flags, environment and config file).
    #[arg(long, global = true)]
    pub no_relays: bool,
    /// First subscription asks for events since now minus this (1d); e.g. 6h, 30m.
    #[arg(long, value_name = "DURATION", global = true)]
    pub lookback: Option<String>,
    /// Renew each relay subscription this often (10m).
    #[arg(long, value_name = "DURATION", global = true)]
    pub resubscribe_every: Option<String>,
    /// Do not check BIP-340 signatures of relay events (checked by default).
    #[arg(long, global = true)]
    pub no_verify_relay_signatures: bool,
}

/// Retention thresholds (SPEC §6); defaults in parentheses.
#[derive(Debug, Clone, Args, Default)]
pub struct RetentionArgs {
    /// Delete detail/window rows older than this many days (35).
    #[arg(long, global = true)]
    pub activity_retention_days: Option<u32>,
    /// Mark DVMs/users inactive after this many silent days (30).
    #[arg(long, global = true)]
    pub inactive_after_days: Option<u32>,
    /// Delete inactive DVMs/users after this many silent days (60).
    #[arg(long, global = true)]
    pub delete_after_days: Option<u32>,
    /// Delete cleanup_log entries older than this many days (365).
    #[arg(long, global = true)]
    pub cleanup_log_days: Option<u32>,
    /// Keep cleanup_log under this many rows (100000).
    #[arg(long, global = true)]
    pub cleanup_log_max_rows: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest files and process them to the end.
    Backtest(BacktestArgs),
    /// Process the queue (and optional input files) until stopped.
    Serve(ServeArgs),
    /// Ingest only: validate, deduplicate and enqueue, no processing.
    Ingest(IngestArgs),
    /// Print a one-shot status snapshot.
    Status(StatusArgs),
    /// Confirm the due rollover of the open month (manual policy).
    Confirm(ConfirmArgs),
    /// Write synthetic DVM events as JSONL.
    Gen(GenArgs),
    /// Run the daily cleanup now, for the current processing day.
    Cleanup,
    /// Put the monthly_activity rows of a backup file back (idempotent).
    Restore(RestoreArgs),
    /// Generate a backfill and measure ingest, Redis, processing and more.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Months of data (DVMDash's real volume is ~600 k events a month).
    #[arg(long, default_value_t = 12)]
    pub months: u32,
    #[arg(long, default_value_t = 20_000)]
    pub events_per_day: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the end-to-end backtest (halves the run time).
    #[arg(long)]
    pub no_e2e: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup written after a rollover (monthly_activity-YYYY-MM.json).
    pub file: PathBuf,
    /// The namespace the backup was written by, when it is not the one
    /// restored into (another namespace's backups are refused otherwise).
    #[arg(long, value_name = "NS")]
    pub from_namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// JSONL or JSON-array files (`.gz` ok); `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Run without the TUI: JSON lines on stdout, summary last.
    #[arg(long)]
    pub headless: bool,
    /// Wipe the namespace first.
    #[arg(long, conflicts_with = "resume")]
    pub fresh: bool,
    /// Continue an interrupted backtest in this namespace.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Files to ingest before (and while) processing the queue.
    pub files: Vec<String>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files to ingest (`-` reads stdin). Optional with relays: then it runs
    /// until SIGINT/SIGTERM/SIGHUP.
    pub files: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The month to confirm (default: the open month).
    pub month: Option<String>,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First month, YYYY-MM.
    #[arg(long, default_value = "2024-01")]
    pub start: String,
    #[arg(long, default_value_t = 3)]
    pub months: u32,
    /// Average events per day (DVMDash's real volume: ~20000).
    #[arg(long, default_value_t = 20_000)]
    pub events_per_day: u32,
    #[arg(long, default_value_t = 0.0)]
    pub late_rate: f64,
    #[arg(long, default_value_t = 36)]
    pub late_max_hours: u32,
    #[arg(long, default_value_t = 0.0)]
    pub dup_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    pub future_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    pub straggler_rate: f64,
    /// Sign events with BIP-340 (slower) instead of a placeholder signature.
    #[arg(long)]
    pub sign: bool,
    /// Output file (`.gz` compresses); default stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}
