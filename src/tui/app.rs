//! The TUI's state and its one `update` function (the Elm architecture):
//! every input — a key, a pipeline report, a poll result — is a [`Msg`];
//! [`update`] changes the [`App`] and returns [`Command`]s for the runtime
//! to carry out. No I/O and no clock in here: times arrive inside messages.

use super::dialog::{Choice, Dialog, Preview};
use super::keymap::{self, Action, Ctx};
use crate::pipeline::{BatchReport, Control, Progress, RunEnd, Until};
use crate::retention::CleanupRun;
use crate::store::{MonthRow, WindowStats};
use chrono::{DateTime, NaiveDate, Utc};
use crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};
use dvmtop_core::YearMonth;
use dvmtop_core::clock::{Awaiting, Policy};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The views Tab cycles through.
pub const VIEWS: [&str; 3] = ["overview", "history", "ingest"];

/// Backtest throttle steps: pause after each batch, in milliseconds.
pub const DELAYS_MS: [u64; 9] = [0, 5, 20, 50, 100, 250, 500, 1000, 2000];

/// Samples kept for the sparklines.
pub const HISTORY: usize = 240;

/// What the TUI is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `dvmtop` without a subcommand: the service, until stopped.
    Serve,
    /// `dvmtop backtest FILE...`: ends when everything is processed.
    Backtest,
}

/// Fixed facts about the run, shown in the title bar and dialogs.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub namespace: String,
    pub mode: Mode,
    pub batch_size: usize,
    pub policy: Policy,
    pub buffer_days: u32,
    pub readonly: bool,
    pub mouse: bool,
}

/// The database side of one poll, as the panes need it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbView {
    pub current_month: Option<String>,
    pub current_day: Option<NaiveDate>,
    /// Processing clock, unix seconds.
    pub clock: Option<i64>,
    pub overflow_size: i64,
    /// The overflow by UTC day (it holds at most one batch, so this is cheap).
    pub overflow_days: Vec<(NaiveDate, i64)>,
    pub dvms_active: i64,
    pub dvms_inactive: i64,
    pub users_active: i64,
    pub users_inactive: i64,
    pub monthly_rows: i64,
    pub confirmed_month: Option<String>,
    /// processed, duplicate, ignored_prior_month, rejected:<reason>.
    pub counters: BTreeMap<String, i64>,
    /// Refused queue elements kept in PostgreSQL.
    pub dead_letters: i64,
    /// Newest audited job runs (cleanups, rollovers, backups), newest first.
    pub jobs: Vec<CleanupRun>,
}

impl DbView {
    pub fn counter(&self, k: &str) -> i64 {
        self.counters.get(k).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbPoll {
    pub view: DbView,
    /// Window stats, when they were (re)fetched (the clock moved).
    pub windows: Option<Vec<WindowStats>>,
    /// `monthly_activity`, when it was (re)fetched (a row was added).
    pub months: Option<Vec<MonthRow>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RedisView {
    pub depth: u64,
    /// events_read, accepted, rejected:<reason>.
    pub ingest: BTreeMap<String, u64>,
    pub dead_letters: u64,
    /// Per-relay stats (every relay feeding this namespace), by URL.
    pub relays: Vec<crate::relay::RelayStatus>,
}

impl RedisView {
    pub fn stat(&self, k: &str) -> u64 {
        self.ingest.get(k).copied().unwrap_or(0)
    }
}

/// One round of the poller: each source either answered or failed (an
/// error or its timeout), independently.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub at: DateTime<Utc>,
    pub db: Result<DbPoll, String>,
    pub redis: Result<RedisView, String>,
}

/// Last good data of a source, and since when it is stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Source<T> {
    pub data: Option<T>,
    pub stale_since: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

impl<T> Default for Source<T> {
    fn default() -> Self {
        Source {
            data: None,
            stale_since: None,
            error: None,
        }
    }
}

impl<T: PartialEq> Source<T> {
    /// Takes a poll result; returns whether anything visible changed.
    fn take(&mut self, r: Result<T, String>, at: DateTime<Utc>) -> bool {
        match r {
            Ok(v) => {
                let changed = self.data.as_ref() != Some(&v) || self.stale_since.is_some();
                self.data = Some(v);
                self.stale_since = None;
                self.error = None;
                changed
            }
            Err(e) => {
                let changed = self.stale_since.is_none() || self.error.as_ref() != Some(&e);
                self.stale_since.get_or_insert(at);
                self.error = Some(e);
                changed
            }
        }
    }
}

/// What the pipeline task is doing, as far as its reports tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// No report yet.
    Starting,
    /// Processing batches.
    Running,
    /// Nothing pending in the queue.
    Idle,
    /// A transient error; the step is retried.
    Retrying { error: String, millis: u64 },
    /// A backtest processed all its input; the pipeline stopped.
    Finished,
    /// The pipeline stopped on an error.
    Failed(String),
    /// Shutdown requested; waiting for the batch in flight.
    ShuttingDown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub phase: Phase,
    pub paused: bool,
    /// A stepping command in progress (it pauses again when reached).
    pub stepping: Option<Until>,
    /// A rollover due and waiting for confirmation (manual policy).
    pub due: Option<Awaiting>,
    /// "Not yet" was answered for this month on this day.
    pub deferred: Option<(YearMonth, Option<NaiveDate>)>,
    /// Confirmation sent, rollover not reported yet.
    pub confirmed: Option<YearMonth>,
    pub delay_ms: u64,
    /// From the pipeline's reports (fresher than the poller's).
    pub month: Option<YearMonth>,
    pub day: Option<NaiveDate>,
    pub overflow: Option<usize>,
    pub batches: u64,
    pub processed: u64,
    pub rollovers: u32,
    pub last_batch: Option<BatchReport>,
    /// Slowest batch seen.
    pub max_batch_ms: f64,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            phase: Phase::Starting,
            paused: false,
            stepping: None,
            due: None,
            deferred: None,
            confirmed: None,
            delay_ms: 0,
            month: None,
            day: None,
            overflow: None,
            batches: 0,
            processed: 0,
            rollovers: 0,
            last_batch: None,
            max_batch_ms: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The last thing worth telling the operator (shown under the state line).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub level: Level,
    pub text: String,
}

/// Rates from two successive polls.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Events accepted by ingest per second.
    pub in_per_s: Option<f64>,
    /// Events processed per second.
    pub out_per_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub info: Info,
    pub view: usize,
    pub help: bool,
    pub dialog: Option<Dialog>,
    pub run: Run,
    pub db: Source<DbView>,
    pub windows: Vec<WindowStats>,
    pub months: Vec<MonthRow>,
    pub redis: Source<RedisView>,
    pub depth_history: VecDeque<u64>,
    /// Batch latency, milliseconds (rounded up), per report.
    pub latency_history: VecDeque<u64>,
    pub rates: Rates,
    /// (when, accepted, processed) of the previous poll, for the rates.
    prev_sample: Option<(DateTime<Utc>, Option<u64>, Option<i64>)>,
    pub note: Option<Note>,
    /// The wall-clock minute of the last poll: texts that depend on the
    /// wall clock (lag) are redrawn once a minute, no more.
    last_minute: i64,
    pub quitting: bool,
}

/// What the runtime must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send a control message to the pipeline task.
    Send(Control),
    /// Compute the month's rollover summary (in a worker) for the dialog.
    FetchPreview(YearMonth),
    /// Something visible changed.
    Redraw,
    /// Clear the terminal and repaint everything (Ctrl-L).
    ClearScreen,
    /// Shut down: wait for the pipeline, restore the terminal, exit.
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// A pipeline report (batches arrive as [`Msg::Batches`]).
    Progress(Progress),
    /// One or more consecutive batch reports, merged: counts summed, the
    /// rest from the last one.
    Batches {
        report: BatchReport,
        count: u32,
        max_ms: f64,
        total_ms: f64,
    },
    /// The pipeline task returned.
    PipelineEnded(Result<RunEnd, String>),
    Polled(Box<Poll>),
    Preview {
        month: YearMonth,
        result: Result<MonthRow, String>,
    },
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(&'static str),
    /// Something the runtime wants shown (e.g. a control it could not send).
    Notice(Level, String),
}

impl App {
    pub fn new(info: Info) -> App {
        App {
            info,
            view: 0,
            help: false,
            dialog: None,
            run: Run::default(),
            db: Source::default(),
            windows: Vec::new(),
            months: Vec::new(),
            redis: Source::default(),
            depth_history: VecDeque::new(),
            latency_history: VecDeque::new(),
            rates: Rates::default(),
            prev_sample: None,
            note: None,
            last_minute: i64::MIN,
            quitting: false,
        }
    }

    /// The key context of the topmost layer.
    pub fn ctx(&self) -> Ctx {
        if self.help {
            Ctx::Help
        } else if self.dialog.is_some() {
            Ctx::Dialog
        } else {
            Ctx::Main
        }
    }

    /// The pipeline's current day: from its reports, else from the poller.
    pub fn current_day(&self) -> Option<NaiveDate> {
        self.run
            .day
            .or(self.db.data.as_ref().and_then(|d| d.current_day))
    }

    /// The open month: from the pipeline's reports, else from the poller.
    pub fn current_month(&self) -> Option<YearMonth> {
        self.run.month.or_else(|| {
            self.db
                .data
                .as_ref()
                .and_then(|d| d.current_month.as_deref())
                .and_then(|m| m.parse().ok())
        })
    }

    pub fn overflow(&self) -> Option<usize> {
        self.run.overflow.or(self
            .db
            .data
            .as_ref()
            .map(|d| d.overflow_size.max(0) as usize))
    }

    pub fn pipeline_alive(&self) -> bool {
        !matches!(
            self.run.phase,
            Phase::Finished | Phase::Failed(_) | Phase::ShuttingDown
        )
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        self.note = Some(Note {
            level,
            text: text.into(),
        });
    }

    /// The one-line pipeline state: a glyph and word (meaning without
    /// colour), then why.
    pub fn state_line(&self) -> (Level, &'static str, String) {
        let r = &self.run;
        let due_text = |a: &Awaiting| {
            if a.blocked {
                format!(
                    "rollover of {} due: waiting for confirmation; nothing moves until it is confirmed (the next pending day is past {}; c opens the dialog)",
                    a.month,
                    a.month.next()
                )
            } else {
                format!(
                    "rollover of {} due, waiting for confirmation; {} is still processed (c to review)",
                    a.month,
                    a.month.next()
                )
            }
        };
        match &r.phase {
            Phase::Failed(e) => (
                Level::Error,
                "✖ ERROR",
                format!("pipeline stopped: {e} (q quits)"),
            ),
            Phase::ShuttingDown => (
                Level::Warn,
                "■ STOPPING",
                "finishing the batch in flight and committing…".into(),
            ),
            Phase::Finished => (
                Level::Info,
                "■ FINISHED",
                "backtest input fully processed (q quits)".into(),
            ),
            _ if r.stepping.is_some() => {
                let what = match r.stepping {
                    Some(Until::Batch) => "one batch",
                    Some(Until::Day) => "to the next day",
                    _ => "to the next rollover",
                };
                (
                    Level::Info,
                    "▸ STEPPING",
                    format!("running {what}, then pausing"),
                )
            }
            _ if r.paused => {
                let mut s = "processing paused; the view keeps updating (space resumes)".to_owned();
                if let Some(a) = &r.due {
                    s = format!("{s}; {}", due_text(a));
                }
                (Level::Warn, "‖ PAUSED", s)
            }
            _ if r.due.is_some_and(|a| a.blocked) && r.confirmed.is_none() => (
                Level::Warn,
                "⚠ WAITING",
                due_text(r.due.as_ref().expect("checked")),
            ),
            Phase::Retrying { error, millis } => (
                Level::Error,
                "↻ RETRYING",
                format!("{error} (next try in {millis} ms)"),
            ),
            _ if r.confirmed.is_some() => (
                Level::Info,
                "▶ RUNNING",
                format!(
                    "rollover of {} confirmed; it runs before the next batch",
                    r.confirmed.expect("checked")
                ),
            ),
            _ if r.due.is_some() => (
                Level::Warn,
                "▶ RUNNING",
                due_text(r.due.as_ref().expect("checked")),
            ),
            Phase::Idle => (
                Level::Info,
                "◇ IDLE",
                "queue empty, waiting for events".into(),
            ),
            Phase::Starting => (Level::Info, "… STARTING", "opening the pipeline".into()),
            _ => (Level::Info, "▶ RUNNING", "processing the queue".into()),
        }
    }

    /// A due notice from the pipeline: remember it, and open the dialog
    /// unless the operator said "not yet" for this month on this day.
    fn due_notice(&mut self, a: Awaiting) -> Vec<Command> {
        let changed = self.run.due != Some(a);
        self.run.due = Some(a);
        if let Some(d) = &mut self.dialog {
            if d.month == a.month {
                d.blocked = a.blocked;
            }
            return redraw_if(changed);
        }
        let deferred = match self.run.deferred {
            Some((m, day)) => a.month < m || (a.month == m && self.current_day() <= day),
            None => false,
        };
        if self.info.policy != Policy::Manual
            || self.info.readonly
            || deferred
            || self.run.confirmed == Some(a.month)
            || self.quitting
        {
            return redraw_if(changed);
        }
        self.open_dialog(a.month, a.blocked)
    }

    fn open_dialog(&mut self, month: YearMonth, blocked: bool) -> Vec<Command> {
        self.dialog = Some(Dialog {
            month,
            blocked,
            choice: Choice::NotYet,
            preview: Preview::Loading,
        });
        vec![Command::FetchPreview(month), Command::Redraw]
    }

    fn send(&mut self, c: Control) -> Vec<Command> {
        if !self.pipeline_alive() {
            self.say(
                Level::Warn,
                "the pipeline is not running: nothing to control",
            );
            return vec![Command::Redraw];
        }
        vec![Command::Send(c), Command::Redraw]
    }

    fn quit(&mut self) -> Vec<Command> {
        if self.quitting {
            return Vec::new();
        }
        self.quitting = true;
        self.dialog = None;
        self.help = false;
        let mut out = Vec::new();
        if self.pipeline_alive() {
            self.run.phase = Phase::ShuttingDown;
            out.push(Command::Send(Control::Shutdown));
        }
        out.extend([Command::Quit, Command::Redraw]);
        out
    }

    fn action(&mut self, a: Action) -> Vec<Command> {
        if self.info.readonly && a.mutates() {
            self.say(
                Level::Warn,
                "read-only: confirming rollovers and running cleanups are disabled",
            );
            return vec![Command::Redraw];
        }
        match a {
            Action::Quit => self.quit(),
            Action::ToggleHelp => {
                self.help = !self.help;
                vec![Command::Redraw]
            }
            Action::CloseHelp => {
                self.help = false;
                vec![Command::Redraw]
            }
            Action::Redraw => vec![Command::ClearScreen],
            Action::TogglePause => {
                if self.run.paused {
                    self.send(Control::Resume)
                } else {
                    self.say(Level::Info, "pausing after the step in flight");
                    self.send(Control::Pause)
                }
            }
            Action::StepBatch | Action::StepDay | Action::RunToRollover => {
                let (until, c) = match a {
                    Action::StepBatch => (Until::Batch, Control::StepBatch),
                    Action::StepDay => (Until::Day, Control::StepDay),
                    _ => (Until::Rollover, Control::RunToRollover),
                };
                let out = self.send(c);
                if self.pipeline_alive() {
                    self.run.stepping = Some(until);
                    self.note = None;
                }
                out
            }
            Action::ReviewRollover => match self.run.due {
                Some(a) if self.run.confirmed != Some(a.month) => {
                    self.open_dialog(a.month, a.blocked)
                }
                _ => {
                    self.say(Level::Info, "no rollover is waiting for confirmation");
                    vec![Command::Redraw]
                }
            },
            Action::CleanupNow => {
                if self.current_day().is_none() {
                    self.say(
                        Level::Warn,
                        "nothing processed yet: there is no current day to clean up for",
                    );
                    return vec![Command::Redraw];
                }
                if self.pipeline_alive() {
                    self.say(Level::Info, "cleanup requested");
                }
                self.send(Control::CleanupNow)
            }
            Action::Faster | Action::Slower => {
                let i = DELAYS_MS
                    .iter()
                    .position(|&d| d >= self.run.delay_ms)
                    .unwrap_or(DELAYS_MS.len() - 1);
                let j = if a == Action::Faster {
                    i.saturating_sub(1)
                } else {
                    (i + 1).min(DELAYS_MS.len() - 1)
                };
                if DELAYS_MS[j] == self.run.delay_ms {
                    return Vec::new();
                }
                self.run.delay_ms = DELAYS_MS[j];
                self.send(Control::SetDelay(Duration::from_millis(DELAYS_MS[j])))
            }
            Action::NextView => {
                self.view = (self.view + 1) % VIEWS.len();
                vec![Command::Redraw]
            }
            Action::PrevView => {
                self.view = (self.view + VIEWS.len() - 1) % VIEWS.len();
                vec![Command::Redraw]
            }
            Action::GoToView => Vec::new(),
            Action::Confirm => self.confirm(),
            Action::Defer => self.defer(),
            Action::ToggleChoice => {
                if let Some(d) = &mut self.dialog {
                    d.choice = match d.choice {
                        Choice::NotYet => Choice::RollOver,
                        Choice::RollOver => Choice::NotYet,
                    };
                }
                vec![Command::Redraw]
            }
            Action::Choose => match self.dialog.as_ref().map(|d| d.choice) {
                Some(Choice::RollOver) if self.info.readonly => self.action(Action::Confirm),
                Some(Choice::RollOver) => self.confirm(),
                Some(Choice::NotYet) => self.defer(),
                None => Vec::new(),
            },
        }
    }

    fn confirm(&mut self) -> Vec<Command> {
        let Some(d) = self.dialog.take() else {
            return Vec::new();
        };
        self.run.confirmed = Some(d.month);
        self.say(
            Level::Info,
            format!("confirmed: {} rolls over before the next batch", d.month),
        );
        self.send(Control::Confirm(d.month))
    }

    fn defer(&mut self) -> Vec<Command> {
        let Some(d) = self.dialog.take() else {
            return Vec::new();
        };
        self.run.deferred = Some((d.month, self.current_day()));
        self.say(
            Level::Info,
            format!(
                "not yet: {} stays open; asked again on the next day (c reopens)",
                d.month
            ),
        );
        vec![Command::Redraw]
    }

    fn progress(&mut self, p: Progress) -> Vec<Command> {
        let before = self.clone_state();
        if let Some(u) = self.run.stepping
            && u.reached_by(&p)
        {
            self.run.stepping = None;
        }
        let live = |phase: &mut Phase, to: Phase| {
            if !matches!(
                phase,
                Phase::Finished | Phase::Failed(_) | Phase::ShuttingDown
            ) {
                *phase = to;
            }
        };
        match p {
            Progress::Batch(b) => {
                let ms = b.millis;
                return self.batches(b, 1, ms, ms);
            }
            // The poller shows committed figures; nothing to draw here.
            Progress::Committed(_) => return Vec::new(),
            Progress::Backup { month, result } => match result {
                Ok(path) => self.say(Level::Info, format!("backup of {month} written to {path}")),
                Err(e) => self.say(
                    Level::Error,
                    format!("BACKUP FAILED after the rollover of {month} ({e}); retried at the next rollover"),
                ),
            },
            Progress::Idle => {
                live(&mut self.run.phase, Phase::Idle);
                return redraw_if(before != self.clone_state());
            }
            Progress::Blocked(a) => {
                live(&mut self.run.phase, Phase::Running);
                let mut out = self.due_notice(a);
                if before != self.clone_state() && !out.contains(&Command::Redraw) {
                    out.push(Command::Redraw);
                }
                return out;
            }
            Progress::Init(m) => {
                self.run.month = Some(m);
                self.say(Level::Info, format!("opened month {m}"));
            }
            Progress::Rolled { row, millis } => {
                let m: Option<YearMonth> = Some(row.year_month);
                if let Some(m) = m {
                    self.run.month = Some(m.next());
                    self.run.rollovers += 1;
                    if self.run.due.is_some_and(|a| a.month == m) {
                        self.run.due = None;
                    }
                    if self.run.confirmed == Some(m) {
                        self.run.confirmed = None;
                    }
                    if self.dialog.as_ref().is_some_and(|d| d.month == m) {
                        self.dialog = None;
                    }
                }
                self.say(
                    Level::Info,
                    format!(
                        "rolled over {} in {millis:.1} ms: {} requests, {} responses, {} users",
                        row.year_month,
                        group(row.total_requests),
                        group(row.total_responses),
                        group(row.unique_users),
                    ),
                );
                if let Some(i) = self
                    .months
                    .iter()
                    .position(|r| r.year_month >= row.year_month)
                {
                    if self.months[i].year_month == row.year_month {
                        self.months[i] = row;
                    } else {
                        self.months.insert(i, row);
                    }
                } else {
                    self.months.push(row);
                }
            }
            Progress::DayAdvanced { day } => {
                self.run.day = Some(day);
            }
            Progress::DailyCleanup(cleanup) => {
                if cleanup.outcome != "ok" {
                    let day = cleanup
                        .reference_time
                        .map_or_else(|| "?".to_owned(), |t| t.date_naive().to_string());
                    self.say(
                        Level::Error,
                        format!(
                            "daily cleanup for {day} ended {}: {}",
                            cleanup.outcome,
                            cleanup.detail.unwrap_or_default()
                        ),
                    );
                }
            }
            Progress::Confirmed { month, accepted } => {
                if !accepted {
                    if self.run.confirmed == Some(month) {
                        self.run.confirmed = None;
                    }
                    self.say(
                        Level::Warn,
                        format!("{month} is not the open month: the confirmation was not taken"),
                    );
                }
            }
            Progress::Cleanup(run) => {
                let rows: i64 = run.rows.values().sum();
                self.say(
                    if run.outcome == "ok" {
                        Level::Info
                    } else {
                        Level::Error
                    },
                    format!(
                        "cleanup {} in {} ms: {} rows affected",
                        run.outcome,
                        run.millis().unwrap_or(0),
                        group(rows)
                    ),
                );
            }
            Progress::Paused(p) => {
                self.run.paused = p;
                if !p {
                    self.run.stepping = None;
                }
                if self
                    .note
                    .as_ref()
                    .is_some_and(|n| n.text.starts_with("pausing"))
                {
                    self.note = None;
                }
            }
            Progress::Retrying { error, millis } => {
                live(&mut self.run.phase, Phase::Retrying { error, millis });
            }
        }
        vec![Command::Redraw]
    }

    /// The parts of the state a report can change, for "did it change".
    fn clone_state(&self) -> (Phase, Option<Awaiting>, Option<Until>, bool) {
        (
            self.run.phase.clone(),
            self.run.due,
            self.run.stepping,
            self.dialog.is_some(),
        )
    }

    fn batches(&mut self, b: BatchReport, count: u32, max_ms: f64, total_ms: f64) -> Vec<Command> {
        if !matches!(
            self.run.phase,
            Phase::Finished | Phase::Failed(_) | Phase::ShuttingDown
        ) {
            self.run.phase = Phase::Running;
        }
        self.run.batches += u64::from(count);
        self.run.processed += b.processed as u64;
        self.run.overflow = Some(b.overflow);
        if let Some(d) = b.day {
            self.run.day = Some(self.run.day.map_or(d, |c| c.max(d)));
        }
        self.run.max_batch_ms = self.run.max_batch_ms.max(max_ms);
        let avg = total_ms / f64::from(count.max(1));
        push(&mut self.latency_history, avg.ceil() as u64);
        let awaiting = b.awaiting;
        self.run.last_batch = Some(b);
        let mut out = match awaiting {
            Some(a) => self.due_notice(a),
            None => {
                self.run.due = None;
                Vec::new()
            }
        };
        if !out.contains(&Command::Redraw) {
            out.push(Command::Redraw);
        }
        out
    }

    fn polled(&mut self, p: Poll) -> Vec<Command> {
        let mut changed = false;
        let (accepted, processed) = (
            p.redis.as_ref().ok().map(|r| r.stat("accepted")),
            p.db.as_ref().ok().map(|d| d.view.counter("processed")),
        );
        if let Ok(r) = &p.redis {
            let flat = self.depth_history.back() == Some(&r.depth) && self.depth_history.len() > 1;
            push(&mut self.depth_history, r.depth);
            changed |= !flat;
        }
        let rates = match self.prev_sample {
            Some((t0, a0, p0)) if p.at > t0 => {
                let dt = (p.at - t0).num_milliseconds() as f64 / 1000.0;
                let rate = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => Some(((b - a) / dt).max(0.0)),
                    _ => None,
                };
                Rates {
                    in_per_s: rate(a0.map(|v| v as f64), accepted.map(|v| v as f64)),
                    out_per_s: rate(p0.map(|v| v as f64), processed.map(|v| v as f64)),
                }
            }
            _ => self.rates,
        };
        changed |= rates != self.rates;
        self.rates = rates;
        self.prev_sample = Some((p.at, accepted, processed));
        match p.db {
            Ok(d) => {
                if let Some(w) = d.windows {
                    changed |= w != self.windows;
                    self.windows = w;
                }
                if let Some(m) = d.months {
                    changed |= m != self.months;
                    self.months = m;
                }
                changed |= self.db.take(Ok(d.view), p.at);
            }
            Err(e) => changed |= self.db.take(Err(e), p.at),
        }
        changed |= self.redis.take(p.redis, p.at);
        let minute = p.at.timestamp().div_euclid(60);
        changed |= minute != self.last_minute;
        self.last_minute = minute;
        redraw_if(changed)
    }
}

fn push(h: &mut VecDeque<u64>, v: u64) {
    if h.len() == HISTORY {
        h.pop_front();
    }
    h.push_back(v);
}

fn redraw_if(changed: bool) -> Vec<Command> {
    if changed {
        vec![Command::Redraw]
    } else {
        Vec::new()
    }
}

/// Digits grouped by thousands: 1234567 → "1,234,567".
pub fn group(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The pure update: state change plus commands, no I/O.
pub fn update(app: &mut App, msg: Msg) -> Vec<Command> {
    match msg {
        Msg::Key(k) => match keymap::lookup(app.ctx(), &k) {
            Some(Action::GoToView) => match k.code {
                crossterm::event::KeyCode::Char(c @ '1'..='9') => {
                    app.view = (c as usize - '1' as usize).min(VIEWS.len() - 1);
                    vec![Command::Redraw]
                }
                _ => Vec::new(),
            },
            Some(a) => app.action(a),
            None => Vec::new(),
        },
        Msg::Mouse(m) if app.info.mouse => match m.kind {
            MouseEventKind::ScrollDown if app.ctx() == Ctx::Main => app.action(Action::NextView),
            MouseEventKind::ScrollUp if app.ctx() == Ctx::Main => app.action(Action::PrevView),
            _ => Vec::new(),
        },
        Msg::Mouse(_) => Vec::new(),
        Msg::Resize(..) => vec![Command::Redraw],
        Msg::Progress(p) => app.progress(p),
        Msg::Batches {
            report,
            count,
            max_ms,
            total_ms,
        } => {
            if let Some(u) = app.run.stepping
                && u.reached_by(&Progress::Batch(report.clone()))
            {
                app.run.stepping = None;
            }
            app.batches(report, count, max_ms, total_ms)
        }
        Msg::PipelineEnded(r) => {
            app.run.stepping = None;
            match r {
                Ok(RunEnd::Drained) => {
                    if !app.quitting {
                        app.run.phase = Phase::Finished;
                    }
                    // With nothing left to process no rollover can run (it
                    // is decided on the next pending day): say so instead
                    // of leaving a dialog that cannot act.
                    let waiting = app
                        .dialog
                        .take()
                        .map(|d| d.month)
                        .or(app.run.due.map(|a| a.month));
                    app.run.due = None;
                    match waiting {
                        Some(m) => app.say(
                            Level::Info,
                            format!("all input processed; the pipeline stopped. {m} stays open: it rolls over once later events arrive (--resume)"),
                        ),
                        None => app.say(Level::Info, "all input processed; the pipeline stopped"),
                    }
                }
                Ok(RunEnd::Shutdown) => {}
                Err(e) => {
                    app.dialog = None;
                    app.run.phase = Phase::Failed(e.clone());
                    app.say(Level::Error, e);
                }
            }
            vec![Command::Redraw]
        }
        Msg::Polled(p) => app.polled(*p),
        Msg::Preview { month, result } => match &mut app.dialog {
            Some(d) if d.month == month => {
                d.preview = match result {
                    Ok(row) => Preview::Ready(Box::new(row)),
                    Err(e) => Preview::Failed(e),
                };
                vec![Command::Redraw]
            }
            _ => Vec::new(),
        },
        Msg::Signal(name) => {
            if !app.quitting {
                app.say(Level::Warn, format!("{name}: shutting down"));
            }
            app.quit()
        }
        Msg::Notice(level, text) => {
            app.say(level, text);
            vec![Command::Redraw]
        }
    }
}
