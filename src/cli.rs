//! Command-line definitions: each subcommand takes only its own flags,
//! shared groups flattened where they apply. Flags win over the
//! environment, which wins over the config file, which wins over the
//! defaults.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Without a subcommand dvmtop is the TUI over the service, so the top
/// level takes every flag the service takes. Each subcommand takes only
/// its own flags (`dvmtop gen --help` shows no `--database-url`); the
/// shared groups are flattened where they apply. Flags written before a
/// subcommand (`dvmtop --namespace x status`) still apply to it when it
/// takes them and are refused when it does not (see [`Cli::parse_args`]).
#[derive(Debug, Parser)]
#[command(
    name = "dvmtop",
    args_override_self = true,
    about = "Nostr DVM (NIP-90) analytics pipeline with a live terminal UI",
    after_help = "Without a subcommand: the terminal UI over the service (process the namespace's queue, ingest FILEs and the configured relays) until you quit."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub relays: RelayArgs,
    #[command(flatten)]
    pub tui: TuiArgs,
    /// Without a subcommand: files to ingest while the TUI runs the service.
    pub files: Vec<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses `argv`. Flags written before a subcommand are moved after
    /// its name and parsed again, so they apply to it when it takes them
    /// (`dvmtop --namespace x status`, as scripts and tests write it) and
    /// clap refuses them by name when it does not (`dvmtop --rollover auto
    /// status`); written twice, the later one wins.
    ///
    /// `version` is what `--version` prints (the binary passes the git
    /// revision build.rs found, so that a commit rebuilds only the binary,
    /// not this library and every test linked to it).
    pub fn parse_args<I, T>(argv: I, version: &'static str) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
        let cmd = Cli::command().version(version);
        let first = cmd.clone().try_get_matches_from(&argv)?;
        let Some((name, _)) = first.subcommand() else {
            return Cli::from_arg_matches(&first);
        };
        let Some(at) = subcommand_position(&cmd, &argv, name) else {
            return Cli::from_arg_matches(&first);
        };
        if at == 1 {
            return Cli::from_arg_matches(&first);
        }
        let mut moved = Vec::with_capacity(argv.len());
        moved.push(argv[0].clone());
        moved.push(argv[at].clone());
        moved.extend(argv[1..at].iter().cloned());
        moved.extend(argv[at + 1..].iter().cloned());
        Cli::from_arg_matches(&cmd.try_get_matches_from(&moved)?)
    }
}

/// Where the subcommand `name` stands in `argv`: the first token that is
/// neither a top-level flag nor the value of one.
fn subcommand_position(
    cmd: &clap::Command,
    argv: &[std::ffi::OsString],
    name: &str,
) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let t = argv[i].to_string_lossy();
        if t == "--" {
            return None;
        }
        if let Some(long) = t.strip_prefix("--") {
            if !long.contains('=') {
                let takes_value = cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .is_some_and(|a| a.get_action().takes_values());
                if takes_value {
                    i += 1;
                }
            }
        } else if !t.starts_with('-') {
            return (t == name).then_some(i);
        }
        i += 1;
    }
    None
}

/// Terminal UI options (`dvmtop`, `dvmtop backtest` without --headless).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Terminal UI")]
pub struct TuiArgs {
    /// No colours (also when NO_COLOR is set); meaning stays in words and glyphs.
    #[arg(long)]
    pub no_color: bool,
    /// Capture the mouse (wheel switches views); off by default so the
    /// terminal's own selection keeps working.
    #[arg(long)]
    pub mouse: bool,
    /// Watch only (like `dvmtop watch`): show the live state of the process
    /// holding the namespace, without its lock; nothing is run or changed.
    #[arg(long)]
    pub readonly: bool,
    /// Start with processing paused: nothing is processed until space or p
    /// resumes (or s/d/r steps). Needs the TUI: refused with --headless.
    #[arg(long)]
    pub paused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolloverArg {
    Auto,
    Manual,
}

/// Where the services are, which namespace, where logs go: every command
/// that touches PostgreSQL or Redis takes these.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Services")]
pub struct ConnArgs {
    /// Isolates everything: PostgreSQL schema name and Redis key prefix.
    #[arg(long, env = "DVMTOP_NAMESPACE")]
    pub namespace: Option<String>,
    /// PostgreSQL connection URL (the database is created if missing);
    /// TLS with `?sslmode=require|verify-ca|verify-full[&sslrootcert=FILE]`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis connection URL; `rediss://` for TLS.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM file of the CA(s) that sign the Redis server's certificate
    /// (rediss://); default: the system's roots plus Mozilla's.
    #[arg(long, value_name = "FILE", env = "DVMTOP_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,
    /// TOML config file (default: ~/.config/dvmtop/config.toml when present).
    #[arg(long, env = "DVMTOP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where logs and backups go (default: ~/.local/share/dvmtop).
    #[arg(long, env = "DVMTOP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// How the pipeline processes the queue (the TUI, `backtest`, `serve`,
/// `cleanup`, `bench`).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Processing")]
pub struct ProcessArgs {
    /// Consume this Redis list instead of the namespace's own queue
    /// (e.g. `dvmdash_events`, filled by DVMDash collectors).
    #[arg(long)]
    pub queue_key: Option<String>,
    /// Most queue elements read per batch (overflow included).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Events per commit group (default 250000): larger groups write each
    /// active user less often; a crash redoes at most about this many.
    #[arg(long)]
    pub commit_events: Option<u64>,
    /// Month rollover policy (default: auto headless, manual in the TUI).
    #[arg(long, value_enum)]
    pub rollover: Option<RolloverArg>,
    /// Days into the next month before a month rolls over.
    #[arg(long)]
    pub rollover_buffer_days: Option<u32>,
    /// Where monthly_activity backups go (default: DATA_DIR/backups/NAMESPACE).
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// How long a start waits for a namespace another process holds (30):
    /// after a crash PostgreSQL may need a moment to notice the dead session.
    #[arg(long, value_name = "SECONDS", env = "DVMTOP_LOCK_WAIT")]
    pub lock_wait: Option<u64>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
    /// Serve Prometheus metrics on this address (`serve`, the TUI
    /// service, a backtest), e.g. 127.0.0.1:9464; path /metrics.
    #[arg(long, value_name = "ADDR", env = "DVMTOP_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Job analytics: a result answers its request only within this of it
    /// (7d); e.g. 36h, 2d.
    #[arg(long, value_name = "DURATION")]
    pub job_horizon: Option<String>,
}

/// Alert thresholds (the TUI banner, `status --json`'s `alerts`);
/// defaults in parentheses.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Alerts")]
pub struct AlertArgs {
    /// Alert when the queue has grown without a pause this many minutes (10).
    #[arg(long, value_name = "MIN")]
    pub alert_queue_growing_min: Option<u32>,
    /// Alert when a live service with a backlog is this many minutes
    /// behind the wall clock (60).
    #[arg(long, value_name = "MIN")]
    pub alert_lag_min: Option<u32>,
    /// Alert when a relay has been down this many minutes (5).
    #[arg(long, value_name = "MIN")]
    pub alert_relay_down_min: Option<u32>,
    /// Alert on this many refused events within 15 minutes (100).
    #[arg(long, value_name = "N")]
    pub alert_dead_letters: Option<u64>,
    /// Keep alerting on a failed job (cleanup, rollover, backup) this many hours (24).
    #[arg(long, value_name = "H")]
    pub alert_failed_job_hours: Option<u32>,
}

/// Ingest validation and dead letters (everything that ingests).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Ingest")]
pub struct InputArgs {
    /// Check BIP-340 signatures at ingest (costly).
    #[arg(long)]
    pub verify_signatures: bool,
    /// Reject events created before this as `too_old`: YYYY-MM-DD (UTC
    /// midnight) or unix seconds (default 2023-01-01).
    #[arg(long, value_name = "DATE")]
    pub min_created_at: Option<String>,
    /// Most entries in the Redis dead-letter list (100000); past it new
    /// dead letters are counted (dead_letters_dropped), not kept.
    #[arg(long, value_name = "N")]
    pub dead_letter_max: Option<u64>,
    /// Most bytes in the Redis dead-letter list (268435456 = 256 MiB).
    #[arg(long, value_name = "BYTES")]
    pub dead_letter_max_bytes: Option<u64>,
}

/// Everything [`crate::config::Config::resolve`] reads: the flags of
/// every group, merged. Built from a command's groups by [`Cli::parse_args`]
/// (tests build it directly).
#[derive(Debug, Clone, Default)]
pub struct GlobalArgs {
    pub namespace: Option<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_ca: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub queue_key: Option<String>,
    pub batch_size: Option<usize>,
    pub commit_events: Option<u64>,
    pub rollover: Option<RolloverArg>,
    pub rollover_buffer_days: Option<u32>,
    pub verify_signatures: bool,
    pub min_created_at: Option<String>,
    pub dead_letter_max: Option<u64>,
    pub dead_letter_max_bytes: Option<u64>,
    pub relays: RelayArgs,
    pub data_dir: Option<PathBuf>,
    pub backup_dir: Option<PathBuf>,
    pub lock_wait: Option<u64>,
    pub retention: RetentionArgs,
    pub alerts: AlertArgs,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub job_horizon: Option<String>,
}

impl GlobalArgs {
    pub fn with_conn(mut self, c: ConnArgs) -> GlobalArgs {
        self.namespace = c.namespace;
        self.database_url = c.database_url;
        self.redis_url = c.redis_url;
        self.redis_ca = c.redis_ca;
        self.config = c.config;
        self.data_dir = c.data_dir;
        self
    }

    pub fn with_process(mut self, p: ProcessArgs) -> GlobalArgs {
        self.queue_key = p.queue_key;
        self.batch_size = p.batch_size;
        self.commit_events = p.commit_events;
        self.rollover = p.rollover;
        self.rollover_buffer_days = p.rollover_buffer_days;
        self.backup_dir = p.backup_dir;
        self.lock_wait = p.lock_wait;
        self.retention = p.retention;
        self.alerts = p.alerts;
        self.metrics_addr = p.metrics_addr;
        self.job_horizon = p.job_horizon;
        self
    }

    pub fn with_input(mut self, i: InputArgs) -> GlobalArgs {
        self.verify_signatures = i.verify_signatures;
        self.min_created_at = i.min_created_at;
        self.dead_letter_max = i.dead_letter_max;
        self.dead_letter_max_bytes = i.dead_letter_max_bytes;
        self
    }

    pub fn with_relays(mut self, r: RelayArgs) -> GlobalArgs {
        self.relays = r;
        self
    }
}

/// Live ingest from Nostr relays (`dvmtop`, `serve`, `ingest`).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Relays")]
pub struct RelayArgs {
    /// A relay to ingest from, ws:// or wss:// (repeatable; replaces the
    /// config file's `relays` list).
    #[arg(
        long = "relay",
        value_name = "URL",
        env = "DVMTOP_RELAYS",
        value_delimiter = ','
    )]
    pub relays: Vec<String>,
    /// Ignore the configured relays (flags, environment and config file).
    #[arg(long)]
    pub no_relays: bool,
    /// First subscription asks for events since now minus this (1d); e.g. 6h, 30m.
    #[arg(long, value_name = "DURATION")]
    pub lookback: Option<String>,
    /// Renew each relay subscription this often (10m).
    #[arg(long, value_name = "DURATION")]
    pub resubscribe_every: Option<String>,
    /// Do not check BIP-340 signatures of relay events (checked by default).
    #[arg(long)]
    pub no_verify_relay_signatures: bool,
}

/// Retention thresholds (docs/RETENTION.md); defaults in parentheses.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Retention")]
pub struct RetentionArgs {
    /// Delete detail/window rows older than this many days (35).
    #[arg(long)]
    pub activity_retention_days: Option<u32>,
    /// Mark DVMs/users inactive after this many silent days (30).
    #[arg(long)]
    pub inactive_after_days: Option<u32>,
    /// Delete inactive DVMs/users after this many silent days (60).
    #[arg(long)]
    pub delete_after_days: Option<u32>,
    /// Delete cleanup_log entries older than this many days (365).
    #[arg(long)]
    pub cleanup_log_days: Option<u32>,
    /// Keep cleanup_log under this many rows (100000).
    #[arg(long)]
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
    /// Show the namespace's state: a short table, or one JSON object.
    Status(StatusArgs),
    /// Watch the namespace another process runs (serve, a TUI, a
    /// backtest): its live state in the TUI, without its lock; nothing is
    /// run or changed. Any number of watchers may attach. Same as
    /// `dvmtop --readonly`.
    Watch(WatchArgs),
    /// Confirm the due rollover of the open month (manual policy).
    Confirm(ConfirmArgs),
    /// Write synthetic DVM events as JSONL.
    Gen(GenArgs),
    /// Run the daily cleanup now, for the current processing day.
    Cleanup(CleanupArgs),
    /// Put the monthly_activity rows of a backup file back (idempotent).
    Restore(RestoreArgs),
    /// Generate a backfill and measure ingest, Redis, processing and more.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff) generated from these definitions.
    Man,
}

impl Command {
    /// The name as typed (`backtest`, `status`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Backtest(_) => "backtest",
            Command::Serve(_) => "serve",
            Command::Ingest(_) => "ingest",
            Command::Status(_) => "status",
            Command::Watch(_) => "watch",
            Command::Confirm(_) => "confirm",
            Command::Gen(_) => "gen",
            Command::Cleanup(_) => "cleanup",
            Command::Restore(_) => "restore",
            Command::Bench(_) => "bench",
            Command::Completions(_) => "completions",
            Command::Man => "man",
        }
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub tui: TuiArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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
    /// Users of the population run (10× DVMDash's peak month: 370,000).
    #[arg(long, default_value_t = 370_000)]
    pub users: usize,
    /// DVMs of the population run; about two thirds are active in a given
    /// month, so 2,475 gives ~1,650 (10× DVMDash's peak month).
    #[arg(long, default_value_t = 2_475)]
    pub dvms: usize,
    /// Only the main backfill: no verified-ingest, population or JSON
    /// array runs.
    #[arg(long)]
    pub main_only: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup written after a rollover (monthly_activity-YYYY-MM.json).
    pub file: PathBuf,
    /// The namespace the backup was written by, when it is not the one
    /// restored into (another namespace's backups are refused otherwise).
    #[arg(long, value_name = "NS")]
    pub from_namespace: Option<String>,
    /// Create the namespace when it does not exist (recovery into a new
    /// database); without it a missing namespace is refused.
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
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
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub tui: TuiArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Files to ingest before (and while) processing the queue.
    pub files: Vec<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub relays: RelayArgs,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files to ingest (`-` reads stdin). Optional with relays: then it runs
    /// until SIGINT/SIGTERM/SIGHUP.
    pub files: Vec<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub relays: RelayArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output: one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Refresh every 2 s until Ctrl-C (the table, or one JSON line each time).
    #[arg(long)]
    pub watch: bool,
    /// Report this Redis list's depth instead of the namespace's own queue.
    #[arg(long)]
    pub queue_key: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The month to confirm (default: the open month).
    pub month: Option<String>,
    /// Confirm ahead of time: record the confirmation although the
    /// rollover is not due yet (it runs as soon as it is).
    #[arg(long)]
    pub ahead: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
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
    /// Users sending requests (default: ~5 % of a month's events); given,
    /// requests go to them in turn, so each is active every month that has
    /// as many requests.
    #[arg(long)]
    pub users: Option<usize>,
    /// DVMs (default: one per 2,500 events a month, 8 … 170); about two
    /// thirds are active in a given month.
    #[arg(long)]
    pub dvms: Option<usize>,
    /// Output file (`.gz` compresses); default stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}
