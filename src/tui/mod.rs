//! The terminal UI: live panes over the same pipeline headless mode runs,
//! driven by the same [`Control`] messages.
//!
//! Elm architecture: one [`App`] owned by this task, one [`Msg`] enum, a
//! pure [`update`] returning [`Command`]s; workers (pipeline, poller,
//! previews) send messages over bounded channels. The screen is redrawn
//! only when an update says something visible changed, at most every
//! [`MIN_FRAME`].

pub mod app;
pub(crate) mod dialog;
pub(crate) mod keymap;
pub(crate) mod panes;
pub(crate) mod render;
pub(crate) mod terminal;
pub mod theme;
pub mod views;
pub(crate) mod workers;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pipeline::RunEnd;
use crate::run::{Ended, Runtime, Start, Watch};
pub(crate) use app::{App, Command, Info, Mode, Msg, update};
use crossterm::event::Event;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use theme::{Palette, Theme};
use tokio::sync::mpsc;

/// Redraws are coalesced to at most one per this interval.
pub(crate) const MIN_FRAME: Duration = Duration::from_millis(50);

/// How long a shutdown waits for the batch in flight.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub files: Vec<String>,
    pub start: Start,
    pub readonly: bool,
    pub mouse: bool,
    /// Start with processing paused (`--paused`).
    pub paused: bool,
    pub palette: Palette,
}

/// How the TUI ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A signal (not `q`) stopped it.
    pub interrupted: bool,
    /// One line for the operator, printed after the terminal is restored.
    pub summary: String,
}

/// Reads the terminal on a thread of its own (blocking reads; crossterm's
/// async stream lost wake-ups under quick key sequences in tmux) and turns
/// events into messages. It ends with the UI or the terminal.
fn spawn_input(tx: mpsc::Sender<Msg>) {
    let spawned = std::thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            loop {
                let msg = match crossterm::event::read() {
                    Ok(Event::Key(k)) => Msg::Key(k),
                    Ok(Event::Mouse(m)) => Msg::Mouse(m),
                    Ok(Event::Resize(w, h)) => Msg::Resize(w, h),
                    Ok(_) => continue,
                    // The terminal went away (e.g. the SSH session dropped).
                    Err(e) => {
                        tracing::warn!(error = %e, "terminal input ended");
                        let _ = tx.blocking_send(Msg::Signal("terminal closed"));
                        return;
                    }
                };
                if tx.blocking_send(msg).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the input thread");
    }
}

/// What the screen shows: a run of this process, or (watching) the run of
/// whichever process holds the namespace.
enum Driver {
    Run(Box<Runtime>),
    /// Held for its follower task and connections (dropped at the end).
    Watch {
        _held: Box<Watch>,
    },
}

impl Driver {
    /// The pipeline's or ingest's end; a watcher's never comes.
    async fn next_end(&mut self) -> Ended {
        match self {
            Driver::Run(rt) => rt.next_end().await,
            Driver::Watch { .. } => std::future::pending().await,
        }
    }
}

/// Opens the namespace, starts ingest and the pipeline, and runs the UI
/// until the operator quits or a signal arrives. With `readonly` it runs
/// nothing: it watches the namespace's holder (see [`crate::run::watcher`]).
pub async fn run(cfg: &Config, opts: Options) -> Result<Outcome> {
    if opts.readonly && opts.paused {
        return Err(Error::Config(
            "a watcher (--readonly, `dvmtop watch`) runs nothing to pause: drop --paused".into(),
        ));
    }
    if opts.readonly && !opts.files.is_empty() {
        return Err(Error::Config(
            "a watcher (--readonly, `dvmtop watch`) ingests nothing: drop the files, or run without --readonly".into(),
        ));
    }
    for f in &opts.files {
        if f == "-" {
            return Err(Error::Config(
                "the TUI reads the keyboard, so it cannot ingest stdin: add --headless, or pass files".into(),
            ));
        }
        // The same words as headless: "cannot open FILE: no such file".
        if let Err(source) = std::fs::File::open(f) {
            return Err(Error::Io {
                path: f.clone(),
                source,
            });
        }
    }
    if !std::io::stdout().is_terminal() {
        return Err(Error::Config(
            "stdout is not a terminal, and the TUI needs one: add --headless (backtest) or use `dvmtop serve`".into(),
        ));
    }
    // Before the terminal is taken over, so errors print as one plain line.
    let (tx, mut rx) = mpsc::channel::<Msg>(256);
    let (mut driver, ctl, mut workers, db, status) = if opts.readonly {
        let w = Watch::attach(cfg).await?;
        let (status_tx, status) = tokio::sync::watch::channel(Default::default());
        let workers = vec![
            workers::spawn_watched(w.published(), tx.clone(), status_tx),
            workers::spawn_poller(
                w.services.db.clone(),
                w.services.queue.clone(),
                tx.clone(),
                workers::PollTiming::default(),
                status.clone(),
            ),
        ];
        let db = w.services.db.clone();
        (
            Driver::Watch { _held: Box::new(w) },
            None,
            workers,
            db,
            status,
        )
    } else {
        let mut rt =
            Runtime::launch_with(cfg, opts.mode, &opts.files, opts.start, opts.paused).await?;
        let mut workers = vec![
            workers::spawn_status(rt.status(), tx.clone()),
            workers::spawn_alerts(rt.alerts(), tx.clone()),
            workers::spawn_poller(
                rt.services.db.clone(),
                rt.services.queue.clone(),
                tx.clone(),
                workers::PollTiming::default(),
                rt.status(),
            ),
        ];
        if let Some(events) = rt.take_events() {
            workers.push(workers::spawn_events(events, tx.clone()));
        }
        let ctl = rt.controls();
        let (db, status) = (rt.services.db.clone(), rt.status());
        (Driver::Run(Box::new(rt)), Some(ctl), workers, db, status)
    };
    // The drill-down views' reads: the UI names what it needs, the worker
    // reads it in the background.
    let (want_tx, want_rx) = tokio::sync::watch::channel(None);
    workers.push(views::loader::spawn(
        db,
        want_rx,
        tx.clone(),
        views::loader::LoaderTiming::default(),
        status,
    ));
    use tokio::signal::unix::{SignalKind, signal};
    let sig =
        |k| signal(k).map_err(|e| Error::Config(format!("cannot install signal handlers: {e}")));
    let (mut int, mut term, mut hup) = (
        sig(SignalKind::interrupt())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::hangup())?,
    );

    let mut terminal = match terminal::enter(opts.mouse) {
        Ok(t) => t,
        Err(e) => {
            terminal::restore(opts.mouse);
            if let Driver::Run(rt) = driver {
                rt.shutdown(SHUTDOWN_WAIT).await;
            }
            return Err(Error::Config(format!("cannot set up the terminal: {e}")));
        }
    };
    let theme = Theme::new(opts.palette);
    let mut app = App::new(Info {
        namespace: cfg.namespace.clone(),
        mode: opts.mode,
        batch_size: cfg.batch_size,
        policy: cfg.params.policy,
        buffer_days: cfg.params.buffer_days,
        readonly: opts.readonly,
        mouse: opts.mouse,
    });
    spawn_input(tx.clone());
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    let mut interrupted = false;
    let mut quit_at: Option<Instant> = None;
    // A watcher has no pipeline of its own to wait for.
    let mut ended = matches!(driver, Driver::Watch { .. });

    loop {
        let due = last_draw.is_none_or(|t| t.elapsed() >= MIN_FRAME);
        if dirty && due {
            // A failed draw (terminal gone after a hang-up) must not stop
            // the shutdown path.
            let t = Instant::now();
            let _ = terminal.draw(|f| render::render(f, &app, &theme, chrono::Utc::now()));
            // The README's render-time figure comes from these lines.
            tracing::debug!(micros = t.elapsed().as_micros() as u64, "frame");
            dirty = false;
            last_draw = Some(Instant::now());
        }
        if quit_at.is_some() && ended {
            break;
        }
        let frame_wait = if dirty {
            MIN_FRAME.saturating_sub(last_draw.map_or(Duration::ZERO, |t| t.elapsed()))
        } else {
            Duration::from_secs(3600)
        };
        let give_up = quit_at.map(|t| SHUTDOWN_WAIT.saturating_sub(t.elapsed()));
        let msg = tokio::select! {
            // Keys, resizes, snapshots, events, polls: all are messages.
            m = rx.recv() => m,
            e = driver.next_end() => match e {
                Ended::Pipeline(e) => {
                    ended = true;
                    Some(Msg::PipelineEnded(e))
                }
                // Ingest errors (an unreadable or truncated file) are shown.
                Ended::Ingest(r) => r
                    .err()
                    .map(|e| Msg::Notice(app::Level::Error, format!("ingest stopped: {e}"))),
            },
            _ = int.recv() => { interrupted = true; Some(Msg::Signal("SIGINT")) }
            _ = term.recv() => { interrupted = true; Some(Msg::Signal("SIGTERM")) }
            _ = hup.recv() => { interrupted = true; Some(Msg::Signal("SIGHUP")) }
            _ = tokio::time::sleep(frame_wait), if dirty => None,
            _ = tokio::time::sleep(give_up.unwrap_or_default()), if give_up.is_some() => {
                tracing::warn!("the pipeline did not stop within {SHUTDOWN_WAIT:?}; leaving anyway (nothing uncommitted is acknowledged)");
                break;
            }
        };
        let Some(msg) = msg else { continue };
        if let Msg::Signal(name) = &msg {
            tracing::info!("{name}: shutting down");
        }
        let cmds = update(&mut app, msg);
        let want = app.wanted();
        if *want_tx.borrow() != want {
            want_tx.send_replace(want);
        }
        for c in cmds {
            match c {
                Command::Send(c) => {
                    let Some(ctl) = ctl.as_ref().filter(|_| !ended) else {
                        continue;
                    };
                    if let Err(e) = ctl.try_send(c) {
                        let why = match e {
                            mpsc::error::TrySendError::Full(_) => "the pipeline is busy: try again",
                            mpsc::error::TrySendError::Closed(_) => "the pipeline has stopped",
                        };
                        for c in update(&mut app, Msg::Notice(app::Level::Warn, why.into())) {
                            dirty |= c == Command::Redraw;
                        }
                    }
                }
                Command::Redraw => dirty = true,
                Command::ClearScreen => {
                    let _ = terminal::repaint(&mut terminal);
                    dirty = true;
                    last_draw = None;
                }
                Command::Quit => {
                    quit_at.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    for w in &workers {
        w.abort();
    }
    terminal::leave(terminal, opts.mouse);
    let processed = app.status.session.processed;
    let month = app.current_month().map_or("none".into(), |m| m.to_string());
    let rt = match driver {
        Driver::Run(rt) => *rt,
        Driver::Watch { .. } => {
            return Ok(Outcome {
                interrupted,
                summary: format!(
                    "dvmtop: watched {} · open month {month} · nothing was run or changed",
                    cfg.namespace
                ),
            });
        }
    };
    // The pipeline has stopped (or did not in time): the rest of the one
    // shutdown sequence — ingest, relays, listeners.
    let stopped = rt.shutdown(Duration::from_secs(1)).await;
    if let Err(e) = &stopped.ingest {
        tracing::error!(error = %e, "ingest stopped");
    }
    match &stopped.end {
        Some(Ok(end)) => tracing::info!(?end, "TUI stopped; the pipeline ended cleanly"),
        Some(Err(e)) => tracing::error!(error = %e, "TUI stopped; the pipeline had failed"),
        None => tracing::warn!("TUI stopped; the pipeline did not stop in time"),
    }
    match stopped.end {
        Some(Err(e)) => Err(Error::Config(e)),
        None => Err(Error::Config(format!(
            "the pipeline did not stop within {} s; nothing uncommitted was acknowledged, so a restart continues where it was",
            SHUTDOWN_WAIT.as_secs()
        ))),
        Some(Ok(end)) => {
            stopped.ingest?;
            Ok(Outcome {
                interrupted,
                summary: format!(
                    "dvmtop: {} · {} events processed this session · open month {month}{}",
                    cfg.namespace,
                    app::group(processed as i64),
                    if end == RunEnd::Drained {
                        " · input fully processed"
                    } else {
                        ""
                    }
                ),
            })
        }
    }
}
#[cfg(test)]
mod tests;
