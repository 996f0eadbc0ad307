//! The binary's edge: parse flags, set up logging, dispatch, and turn every
//! failure into one line on stderr and a non-zero exit code.

use dvmtop::cli::{Cli, Command, GlobalArgs, TuiArgs};
use dvmtop::config::Config;
use dvmtop::error::Error;
use dvmtop::generate::{GenConfig, generate_population};
use dvmtop::pipeline::Control;
use dvmtop::run::{self, Mode, Start};
use dvmtop::tui::{self, theme::Palette};
use dvmtop_core::clock::Policy;
use std::io::Write;
use std::process::ExitCode;
use tokio::sync::mpsc;

/// `dvmtop --version`: the package version and the git revision it was
/// built from (build.rs; "no git revision" when built outside a checkout).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DVMTOP_GIT_REV"), ")");

fn main() -> ExitCode {
    dvmtop::memory::return_large_blocks();
    let cli = match Cli::parse_args(std::env::args_os(), VERSION) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, not clap's whole usage block.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let _ = writeln!(
                std::io::stderr(),
                "dvmtop: {} (see {} --help)",
                first.trim_start_matches("error: "),
                help_for()
            );
            return ExitCode::from(2);
        }
    };
    if let Err(e) = color_eyre::install() {
        eprintln!("dvmtop: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dvmtop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(Error::Quiet) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics when stderr is gone (SSH hang-up).
            let _ = writeln!(std::io::stderr(), "dvmtop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Which `--help` to point a refused command line at: `dvmtop SUB` when
/// a subcommand was named, else `dvmtop`.
fn help_for() -> String {
    use clap::CommandFactory;
    let cmd = Cli::command();
    std::env::args()
        .skip(1)
        .find(|a| cmd.get_subcommands().any(|s| s.get_name() == a))
        .map_or_else(|| "dvmtop".to_owned(), |s| format!("dvmtop {s}"))
}

/// Writes `text` to stdout. A reader that went away (`dvmtop status |
/// head -1`) ends the command quietly: [`Error::Quiet`] exits 0 without a
/// word, as `cat` does when its reader stops.
fn out(text: &str) -> Result<(), Error> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Error::Quiet
            } else {
                Error::Io {
                    path: "stdout".into(),
                    source: e,
                }
            }
        })
}

/// Logs go to a daily file under the data dir, never to the terminal.
fn init_logging(cfg: &Config) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = cfg.data_dir.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::daily(dir, "dvmtop.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("DVMTOP_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(guard)
}

/// SIGINT, SIGTERM and SIGHUP (an SSH session dropping) send `Shutdown`.
fn stop_on_signals(ctl: mpsc::Sender<Control>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        tracing::info!("signal received: shutting down");
        let _ = ctl.send(Control::Shutdown).await;
    });
}

/// A headless backtest or service: JSON lines, the summary last; ingest's
/// own failure (a truncated file) after the summary, as the exit status.
async fn headless(
    cfg: &Config,
    mode: Mode,
    files: &[String],
    start: Start,
) -> Result<ExitCode, Error> {
    let r = run::headless(cfg, mode, files, start, true, print_line).await?;
    let interrupted = r.summary.interrupted;
    let mut v = serde_json::to_value(&r.summary).map_err(|e| Error::Config(e.to_string()))?;
    v.as_object_mut()
        .map(|o| o.insert("event".into(), "summary".into()));
    print_line(v);
    r.ingest?;
    if let Some(first) = r.summary.backup_failures.first() {
        return Err(Error::Config(format!(
            "{} backup(s) of monthly_activity failed in this run, the first after the rollover of {} ({}): check the backup directory {} (space, permissions); the next rollover's backup holds every row again",
            r.summary.backup_failures.len(),
            first.month,
            first.error,
            cfg.backup_dir.display()
        )));
    }
    if let Some(lost) = r
        .summary
        .queue_lost
        .as_ref()
        .filter(|_| mode == Mode::Backtest)
    {
        return Err(Error::Config(format!(
            "this backtest's figures are incomplete: {lost}"
        )));
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_line(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The terminal UI; its summary line is printed once the terminal is back.
async fn run_tui(
    cfg: &Config,
    args: &TuiArgs,
    mode: Mode,
    files: Vec<String>,
    start: Start,
) -> Result<ExitCode, Error> {
    let opts = tui::Options {
        mode,
        files,
        start,
        readonly: args.readonly,
        mouse: args.mouse,
        paused: args.paused,
        palette: Palette::detect(args.no_color),
    };
    let outcome = tui::run(cfg, opts).await?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", outcome.summary);
    let _ = out.flush();
    Ok(if outcome.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let Some(command) = cli.command else {
        // No subcommand: the TUI over the service, on the configured
        // namespace (opened like `serve`), manual rollovers by default.
        let args = GlobalArgs::default()
            .with_conn(cli.conn)
            .with_process(cli.process)
            .with_input(cli.input)
            .with_relays(cli.relays);
        let cfg = Config::resolve(&args, Policy::Manual)?;
        let _guard = init_logging(&cfg);
        dvmtop::store::set_application_name("tui");
        return run_tui(&cfg, &cli.tui, Mode::Serve, cli.files, Start::Resume).await;
    };
    dvmtop::store::set_application_name(command.name());
    match command {
        Command::Gen(a) => gen_command(a),
        Command::Completions(a) => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(
                a.shell,
                &mut Cli::command().version(VERSION),
                "dvmtop",
                &mut text,
            );
            out(&String::from_utf8_lossy(&text))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command().version(VERSION))
                .render(&mut text)
                .map_err(|source| Error::Io {
                    path: "the man page".into(),
                    source,
                })?;
            out(&String::from_utf8_lossy(&text))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest(a) => {
            if a.headless && a.tui.paused {
                return Err(Error::Config(
                    "--paused needs the TUI, whose keys resume or step the run; a headless backtest has none: drop --headless or --paused".into(),
                ));
            }
            let args = GlobalArgs::default()
                .with_conn(a.conn)
                .with_process(a.process)
                .with_input(a.input);
            let cfg = Config::resolve(
                &args,
                if a.headless {
                    Policy::Auto
                } else {
                    Policy::Manual
                },
            )?;
            let _guard = init_logging(&cfg);
            let start = if a.fresh {
                Start::Fresh
            } else if a.resume {
                Start::Resume
            } else {
                Start::New
            };
            if !a.headless {
                return run_tui(&cfg, &a.tui, Mode::Backtest, a.files, start).await;
            }
            headless(&cfg, Mode::Backtest, &a.files, start).await
        }
        Command::Watch(a) => {
            let cfg = Config::resolve(&GlobalArgs::default().with_conn(a.conn), Policy::Manual)?;
            let _guard = init_logging(&cfg);
            let args = TuiArgs {
                readonly: true,
                ..a.tui
            };
            run_tui(&cfg, &args, Mode::Serve, Vec::new(), Start::Resume).await
        }
        Command::Serve(a) => {
            let args = GlobalArgs::default()
                .with_conn(a.conn)
                .with_process(a.process)
                .with_input(a.input)
                .with_relays(a.relays);
            let cfg = Config::resolve(&args, Policy::Auto)?;
            let _guard = init_logging(&cfg);
            headless(&cfg, Mode::Serve, &a.files, Start::Resume).await
        }
        Command::Ingest(a) => {
            let args = GlobalArgs::default()
                .with_conn(a.conn)
                .with_input(a.input)
                .with_relays(a.relays);
            let cfg = Config::resolve(&args, Policy::Auto)?;
            let _guard = init_logging(&cfg);
            let (tx, rx) = mpsc::channel(4);
            stop_on_signals(tx);
            let v = dvmtop::commands::collect(&cfg, &a.files, rx, print_line).await?;
            print_line(v);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(a) => {
            let mut args = GlobalArgs::default().with_conn(a.conn);
            args.queue_key = a.queue_key;
            let cfg = Config::resolve(&args, Policy::Auto)?;
            status_command(&cfg, a.json, a.watch).await
        }
        Command::Cleanup(a) => {
            let args = GlobalArgs::default()
                .with_conn(a.conn)
                .with_process(a.process);
            let cfg = Config::resolve(&args, Policy::Auto)?;
            let _guard = init_logging(&cfg);
            match dvmtop::commands::cleanup_now(&cfg).await? {
                dvmtop::commands::CleanupOutcome::Ran(run) => {
                    print_line(serde_json::json!({"event": "cleanup", "run": run}))
                }
                dvmtop::commands::CleanupOutcome::Requested => print_line(serde_json::json!({
                    "event": "cleanup_requested",
                    "why": "a running dvmtop holds the namespace; it runs the cleanup within a second (or when it next pauses) and audits it in job_runs",
                })),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(a) => {
            let cfg = Config::resolve(&GlobalArgs::default().with_conn(a.conn), Policy::Auto)?;
            let _guard = init_logging(&cfg);
            // A missing namespace is refused unless --create; then the
            // namespace lock: never beside a running pipeline.
            if !a.create {
                drop(run::Services::open_existing(&cfg).await?);
            }
            let services = run::Services::open(&cfg, Start::Resume, true).await?;
            let r = dvmtop::retention::restore(&services.db, &a.file, a.from_namespace.as_deref())
                .await?;
            print_line(
                serde_json::json!({"event": "restored", "file": a.file.display().to_string(), "result": r}),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(a) => {
            let mut args = GlobalArgs::default()
                .with_conn(a.conn)
                .with_process(a.process);
            if args.namespace.is_none() {
                args.namespace = Some("dvmtop_bench".into());
            }
            let cfg = Config::resolve(&args, Policy::Auto)?;
            let _guard = init_logging(&cfg);
            let b = dvmtop::bench::BenchConfig {
                months: a.months,
                events_per_day: a.events_per_day,
                seed: a.seed,
                end_to_end: !a.no_e2e,
                users: a.users,
                dvms: a.dvms,
                main_only: a.main_only,
            };
            let report = dvmtop::bench::run(&cfg, &b, |phase| {
                let _ = writeln!(std::io::stderr(), "dvmtop bench: {phase}");
            })
            .await?;
            if a.json {
                print_line(
                    serde_json::to_value(&report).map_err(|e| Error::Config(e.to_string()))?,
                );
            } else {
                out(&dvmtop::bench::render(&report))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Confirm(a) => {
            let cfg = Config::resolve(&GlobalArgs::default().with_conn(a.conn), Policy::Manual)?;
            let text = dvmtop::commands::confirm_with(&cfg, a.month.as_deref(), a.ahead).await?;
            out(&format!("{text}\n"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `dvmtop status`: the human table (`--json`: one object); `--watch`
/// redraws it every 2 s until Ctrl-C (JSON: one line each time).
async fn status_command(cfg: &Config, json: bool, watch: bool) -> Result<ExitCode, Error> {
    let services = run::Services::open_existing(cfg).await?;
    let render = |v: &serde_json::Value| -> Result<String, Error> {
        if json {
            Ok(format!("{v}\n"))
        } else {
            Ok(dvmtop::commands::status_table(v, chrono::Utc::now()))
        }
    };
    let v = dvmtop::commands::status_of(&services, cfg).await?;
    if !watch {
        out(&render(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let tty = !json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut v = v;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let text = render(&v)?;
        // On a terminal: clear and redraw in place; piped: one block each time.
        out(&if tty {
            format!("\x1b[H\x1b[2J{text}")
        } else {
            text
        })?;
        tokio::select! {
            _ = &mut interrupt => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(dvmtop::commands::STATUS_WATCH_EVERY) => {}
        }
        v = dvmtop::commands::status_of(&services, cfg).await?;
    }
}

/// `dvmtop gen`: synthetic traffic to a file or stdout.
fn gen_command(a: dvmtop::cli::GenArgs) -> Result<ExitCode, Error> {
    let start = a.start.parse().map_err(Error::Config)?;
    let g = GenConfig {
        seed: a.seed,
        start,
        months: a.months,
        events_per_day: a.events_per_day,
        late_rate: a.late_rate,
        late_max_hours: a.late_max_hours,
        dup_rate: a.dup_rate,
        malformed_rate: a.malformed_rate,
        future_rate: a.future_rate,
        straggler_rate: a.straggler_rate,
        sign: a.sign,
    };
    let population = dvmtop::generate::Population {
        users: a.users,
        dvms: a.dvms,
    };
    fn io(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_owned(),
            source,
        }
    }
    let stats = match &a.output {
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let quiet = |e: std::io::Error| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    Error::Quiet
                } else {
                    io("stdout")(e)
                }
            };
            let s = generate_population(&g, population, &mut out).map_err(quiet)?;
            out.flush().map_err(quiet)?;
            s
        }
        Some(p) => {
            let name = p.display().to_string();
            let file = std::fs::File::create(p).map_err(io(&name))?;
            if p.extension().is_some_and(|e| e == "gz") {
                let mut enc = std::io::BufWriter::new(flate2::write::GzEncoder::new(
                    file,
                    flate2::Compression::default(),
                ));
                let s = generate_population(&g, population, &mut enc).map_err(io(&name))?;
                enc.into_inner()
                    .map_err(|e| Error::Io {
                        path: name.clone(),
                        source: e.into_error(),
                    })?
                    .finish()
                    .map_err(io(&name))?;
                s
            } else {
                let mut out = std::io::BufWriter::new(file);
                let s = generate_population(&g, population, &mut out).map_err(io(&name))?;
                out.flush().map_err(io(&name))?;
                s
            }
        }
    };
    let _ = writeln!(
        std::io::stderr(),
        "dvmtop gen: {} lines ({} events, {} duplicates, {} malformed, {} future, {} stragglers)",
        stats.lines,
        stats.events,
        stats.duplicates,
        stats.malformed,
        stats.future,
        stats.stragglers
    );
    Ok(ExitCode::SUCCESS)
}
