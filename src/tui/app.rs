//! The TUI's state and its one `update` function (the Elm architecture):
//! every input — a key, the pipeline's published snapshot, one of its
//! events, a poll result — is a [`Msg`]; [`update`] changes the [`App`]
//! and returns [`Command`]s for the runtime to carry out. No I/O and no
//! clock in here: times arrive inside messages.
//!
//! The run state is the pipeline's [`PipelineStatus`], held as published
//! and never rebuilt from events: the screen cannot contradict the
//! pipeline, and the TUI shows what the JSON lines say.

use super::dialog::{Choice, Dialog};
use super::keymap::{self, Action, Ctx};
use super::views::{LoadResult, Move, Query, View, Views};
use crate::pipeline::{Control, Phase, PipelineStatus, Progress, RunEnd, Until};
use crate::store::{Holder, JobRun, MonthRow, Published, WindowStats};
use chrono::{DateTime, NaiveDate, Utc};
use crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};
use dvmtop_core::alerts::Alert;
use dvmtop_core::clock::Policy;
use dvmtop_core::{Outcome, YearMonth};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The views Tab cycles through (names of [`View::ALL`], in order).
pub(crate) const VIEWS: [&str; 6] = ["overview", "dvms", "kinds", "months", "history", "ingest"];

/// Backtest throttle steps: pause after each batch, in milliseconds.
pub(crate) const DELAYS_MS: [u64; 9] = [0, 5, 20, 50, 100, 250, 500, 1000, 2000];

/// Samples kept for the sparklines.
pub(crate) const HISTORY: usize = 240;

pub(crate) use crate::run::Mode;

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
pub(crate) struct DbView {
    pub(crate) current_month: Option<String>,
    pub(crate) current_day: Option<NaiveDate>,
    /// Processing clock, unix seconds.
    pub(crate) clock: Option<i64>,
    pub(crate) overflow_size: i64,
    /// The overflow by UTC day (it holds at most one batch, so this is cheap).
    pub(crate) overflow_days: Vec<(NaiveDate, i64)>,
    pub(crate) dvms_active: i64,
    pub(crate) dvms_inactive: i64,
    pub(crate) users_active: i64,
    pub(crate) users_inactive: i64,
    pub(crate) monthly_rows: i64,
    pub(crate) confirmed_month: Option<String>,
    /// processed, duplicate, ignored_prior_month, rejected:<reason>.
    pub(crate) counters: BTreeMap<String, i64>,
    /// Refused queue elements kept in PostgreSQL.
    pub(crate) dead_letters: i64,
    /// Newest audited job runs (cleanups, rollovers, backups), newest first.
    pub(crate) jobs: Vec<JobRun>,
}

impl DbView {
    pub(crate) fn counter(&self, k: &str) -> i64 {
        self.counters.get(k).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DbPoll {
    pub(crate) view: DbView,
    /// Window stats, when they were (re)fetched (the clock moved).
    pub(crate) windows: Option<Vec<WindowStats>>,
    /// `monthly_activity`, when it was (re)fetched (a row was added).
    pub(crate) months: Option<Vec<MonthRow>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RedisView {
    pub(crate) depth: u64,
    /// events_read, accepted, rejected:<reason>.
    pub(crate) ingest: BTreeMap<String, u64>,
    pub(crate) dead_letters: u64,
    /// Per-relay stats (every relay feeding this namespace), by URL.
    pub(crate) relays: Vec<crate::relay::RelayStatus>,
}

impl RedisView {
    pub(crate) fn stat(&self, k: &str) -> u64 {
        self.ingest.get(k).copied().unwrap_or(0)
    }
}

/// One round of the poller: each source either answered or failed (an
/// error or its timeout), independently.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub(crate) at: DateTime<Utc>,
    pub(crate) db: Result<DbPoll, String>,
    pub(crate) redis: Result<RedisView, String>,
}

/// Last good data of a source, and since when it is stale.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Source<T> {
    pub(crate) data: Option<T>,
    pub(crate) stale_since: Option<DateTime<Utc>>,
    pub(crate) error: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The last thing worth telling the operator (shown under the state line).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Note {
    pub(crate) level: Level,
    pub(crate) text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub(crate) info: Info,
    pub(crate) view: usize,
    pub(crate) help: bool,
    /// The help overlay's first line shown (it scrolls when taller than the
    /// screen).
    pub(crate) help_scroll: u16,
    /// The cleanup history's first line shown (0: the newest run), on the
    /// overview and history views.
    pub(crate) cleanup_scroll: usize,
    /// The drill-down views' state (tables, period, detail, answers).
    pub(crate) views: Views,
    pub(crate) dialog: Option<Dialog>,
    /// The pipeline's latest snapshot (the whole run state).
    pub status: PipelineStatus,
    /// The pipeline task returned (how).
    pub(crate) ended: Option<Result<RunEnd, String>>,
    /// "Not yet" was answered for this month on this day.
    pub(crate) deferred: Option<(YearMonth, Option<NaiveDate>)>,
    /// A confirmation sent and not yet visible in the snapshot: the dialog
    /// does not pop up again for it meanwhile.
    pub(crate) confirm_sent: Option<YearMonth>,
    pub(crate) db: Source<DbView>,
    pub(crate) windows: Vec<WindowStats>,
    pub(crate) months: Vec<MonthRow>,
    pub(crate) redis: Source<RedisView>,
    /// Queue depth per poll, with the poll's time (the chart's time axis).
    pub(crate) depth_history: VecDeque<(DateTime<Utc>, u64)>,
    /// Batch latency, milliseconds (rounded up), one sample per snapshot
    /// that saw new batches.
    pub(crate) latency_history: VecDeque<u64>,
    /// Events accepted by ingest per second (from two polls).
    pub(crate) in_per_s: Option<f64>,
    /// (when, accepted) of the previous poll, for the ingest rate.
    prev_sample: Option<(DateTime<Utc>, u64)>,
    pub(crate) note: Option<Note>,
    /// Watching (`dvmtop watch`, `--readonly`): who holds the namespace and
    /// whether it still does, as last published.
    pub(crate) watched: Option<Watched>,
    /// The alerts that hold now, most severe first (the banner).
    pub(crate) alerts: Vec<Alert>,
    /// The wall-clock minute of the last poll: texts that depend on the
    /// wall clock (lag) are redrawn once a minute, no more.
    last_minute: i64,
    pub(crate) quitting: bool,
}

/// What a watcher knows about the process it watches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Watched {
    pub(crate) holder: Option<Holder>,
    /// The holder's lock is held right now (its session is alive).
    pub(crate) holding: bool,
    /// When the holder last published its snapshot.
    pub(crate) at: Option<DateTime<Utc>>,
}

impl Watched {
    /// Who can do what a watcher may not, for the refusal line.
    pub(crate) fn who(&self) -> String {
        match (&self.holder, self.holding) {
            (Some(h), true) => format!("only the {} on {} (pid {}) can", h.command, h.host, h.pid),
            _ => "no process holds the namespace now; start `dvmtop serve` (or the TUI) to".into(),
        }
    }
}

/// What the runtime must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send a control message to the pipeline task.
    Send(Control),
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
    /// A new snapshot of the pipeline.
    Status(Box<PipelineStatus>),
    /// One of the pipeline's events (notes only: the state is in the
    /// snapshot).
    Event(Progress),
    /// The pipeline task returned.
    PipelineEnded(Result<RunEnd, String>),
    Polled(Box<Poll>),
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(&'static str),
    /// Something the runtime wants shown (e.g. a control it could not send).
    Notice(Level, String),
    /// Watching: what the namespace's holder published.
    Watched(Box<Published>),
    /// The alert monitor's latest evaluation.
    Alerts(Vec<Alert>),
    /// The views' worker answered.
    Loaded(Box<LoadResult>),
}

impl App {
    pub fn new(info: Info) -> App {
        App {
            info,
            view: 0,
            help: false,
            help_scroll: 0,
            cleanup_scroll: 0,
            views: Views::default(),
            dialog: None,
            status: PipelineStatus::default(),
            ended: None,
            deferred: None,
            confirm_sent: None,
            db: Source::default(),
            windows: Vec::new(),
            months: Vec::new(),
            redis: Source::default(),
            depth_history: VecDeque::new(),
            latency_history: VecDeque::new(),
            in_per_s: None,
            prev_sample: None,
            note: None,
            watched: None,
            alerts: Vec::new(),
            last_minute: i64::MIN,
            quitting: false,
        }
    }

    /// The key context of the topmost layer.
    pub(crate) fn ctx(&self) -> Ctx {
        if self.help {
            Ctx::Help
        } else if self.dialog.is_some() {
            Ctx::Dialog
        } else if self.current_view().is_list() {
            if self.views.filtering {
                Ctx::Filter
            } else {
                Ctx::View
            }
        } else {
            Ctx::Main
        }
    }

    pub(crate) fn current_view(&self) -> View {
        View::of(self.view)
    }

    /// What the current view needs read from PostgreSQL (the views'
    /// worker reads it; `None`: nothing).
    pub(crate) fn wanted(&self) -> Option<Query> {
        self.views.wanted(self.current_view(), self.current_month())
    }

    fn go_to_view(&mut self, i: usize) -> Vec<Command> {
        if i != self.view {
            self.view = i;
            self.views.detail = None;
            self.views.filtering = false;
        }
        vec![Command::Redraw]
    }

    fn view_move(&mut self, m: Move) -> Vec<Command> {
        let view = self.current_view();
        self.views.act(view, m, &self.months);
        vec![Command::Redraw]
    }

    /// Whether the pipeline has published anything yet.
    fn started(&self) -> bool {
        self.status.phase != Phase::Starting
    }

    /// The pipeline's phase, with the task's own end taken into account.
    pub(crate) fn phase(&self) -> Phase {
        match &self.ended {
            Some(Ok(RunEnd::Drained)) => Phase::Finished,
            Some(Err(e)) => Phase::Failed { error: e.clone() },
            Some(Ok(RunEnd::Shutdown)) => Phase::Stopping,
            None if self.quitting && !self.status.phase.is_over() => Phase::Stopping,
            None => self.status.phase.clone(),
        }
    }

    /// The current day: the pipeline's, else (before its first snapshot)
    /// the committed one.
    pub(crate) fn current_day(&self) -> Option<NaiveDate> {
        if self.started() {
            return self.status.day;
        }
        self.db.data.as_ref().and_then(|d| d.current_day)
    }

    /// The open month: the pipeline's, else the committed one.
    pub(crate) fn current_month(&self) -> Option<YearMonth> {
        if self.started() {
            return self.status.month;
        }
        self.db
            .data
            .as_ref()
            .and_then(|d| d.current_month.as_deref())
            .and_then(|m| m.parse().ok())
    }

    /// The processing clock: the pipeline's, else the committed one.
    pub(crate) fn clock(&self) -> Option<i64> {
        if self.started() {
            return self.status.clock;
        }
        self.db.data.as_ref().and_then(|d| d.clock)
    }

    pub(crate) fn overflow(&self) -> Option<usize> {
        if self.started() {
            return Some(self.status.overflow);
        }
        self.db
            .data
            .as_ref()
            .map(|d| d.overflow_size.max(0) as usize)
    }

    /// The overflow by day.
    pub(crate) fn overflow_days(&self) -> Vec<(NaiveDate, i64)> {
        if self.started() {
            return self
                .status
                .overflow_days
                .iter()
                .map(|(d, n)| (*d, *n as i64))
                .collect();
        }
        self.db
            .data
            .as_ref()
            .map(|d| d.overflow_days.clone())
            .unwrap_or_default()
    }

    pub(crate) fn pipeline_alive(&self) -> bool {
        !self.quitting && !self.phase().is_over()
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
        let s = &self.status;
        let awaiting = s.awaiting.as_ref();
        let confirmed = awaiting.is_some_and(|a| s.confirmed == Some(a.month));
        let due_text = |blocked: bool| {
            let a = awaiting.expect("only called when a rollover waits");
            if blocked {
                format!(
                    "rollover of {} due: waiting for confirmation; nothing moves until it is confirmed (c reviews it)",
                    a.month
                )
            } else {
                format!(
                    "rollover of {} due, waiting for confirmation; {} is still processed (c reviews it)",
                    a.month,
                    a.month.next()
                )
            }
        };
        if let Some(w) = self.watched.as_ref().filter(|w| !w.holding) {
            let last = w.at.map_or_else(
                || "nothing published yet".to_owned(),
                |t| format!("last published {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
            );
            return (
                Level::Warn,
                "◌ NO HOLDER",
                format!("no process runs this namespace now; {last} (q quits)"),
            );
        }
        match self.phase() {
            Phase::Failed { error } => (
                Level::Error,
                "✖ ERROR",
                format!("pipeline stopped: {error} (q quits)"),
            ),
            Phase::Stopping => (
                Level::Warn,
                "■ STOPPING",
                "finishing the batch in flight and committing…".into(),
            ),
            Phase::Finished => (
                Level::Info,
                "■ FINISHED",
                "backtest input fully processed (q quits)".into(),
            ),
            _ if s.stepping.is_some() => {
                let what = match s.stepping {
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
            _ if s.paused => {
                let mut t = "processing paused; the view keeps updating (space resumes)".to_owned();
                if let Some(a) = awaiting
                    && !confirmed
                {
                    t = format!("{t}; {}", due_text(a.blocked));
                }
                (Level::Warn, "‖ PAUSED", t)
            }
            Phase::Waiting if !confirmed => (Level::Warn, "⚠ WAITING", due_text(true)),
            Phase::Retrying {
                error, next_in_ms, ..
            } => (
                Level::Error,
                "↻ RETRYING",
                format!("{error} (next try in {next_in_ms} ms)"),
            ),
            _ if confirmed => (
                Level::Info,
                "▶ RUNNING",
                format!(
                    "rollover of {} confirmed; it runs before the next batch",
                    awaiting
                        .map(|a| a.month)
                        .expect("confirmed implies awaiting")
                ),
            ),
            _ if awaiting.is_some() => (Level::Warn, "▶ RUNNING", due_text(false)),
            Phase::Idle => (
                Level::Info,
                "◇ IDLE",
                "queue empty, waiting for events".into(),
            ),
            Phase::Starting => (Level::Info, "… STARTING", "opening the pipeline".into()),
            _ => (Level::Info, "▶ RUNNING", "processing the queue".into()),
        }
    }

    /// Whether the dialog should pop up for this month now.
    fn should_prompt(&self, m: YearMonth) -> bool {
        let deferred = match self.deferred {
            Some((dm, day)) => m < dm || (m == dm && self.current_day() <= day),
            None => false,
        };
        self.info.policy == Policy::Manual
            && !self.info.readonly
            && !deferred
            && self.status.confirmed != Some(m)
            && self.confirm_sent != Some(m)
            && !self.quitting
            && self.pipeline_alive()
    }

    /// A new snapshot: take it, keep the dialog in step with what waits.
    fn status(&mut self, s: PipelineStatus) -> Vec<Command> {
        if s == self.status {
            return Vec::new();
        }
        if s.session.batches > self.status.session.batches {
            push(&mut self.latency_history, s.latency.last_ms.ceil() as u64);
        }
        if self.status.paused != s.paused
            && self
                .note
                .as_ref()
                .is_some_and(|n| n.text.starts_with("pausing"))
        {
            self.note = None;
        }
        self.status = s;
        let waiting = self.status.awaiting.as_ref().map(|a| a.month);
        if self.confirm_sent.is_some() && self.confirm_sent != waiting {
            self.confirm_sent = None;
        }
        match (waiting, self.dialog.as_ref().map(|d| d.month)) {
            // The month rolled over (here or by `dvmtop confirm`), or a
            // later one waits now: the dialog follows.
            (w, Some(open)) if w != Some(open) => {
                self.dialog = None;
                if let Some(m) = w
                    && self.should_prompt(m)
                {
                    self.open_dialog(m);
                }
            }
            (Some(m), None) if self.should_prompt(m) => self.open_dialog(m),
            _ => {}
        }
        vec![Command::Redraw]
    }

    fn open_dialog(&mut self, month: YearMonth) {
        self.dialog = Some(Dialog {
            month,
            choice: Choice::NotYet,
        });
    }

    fn send(&mut self, c: Control) -> Vec<Command> {
        if let Some(w) = &self.watched {
            let line = format!(
                "watching only: {} pause, step, throttle, confirm or clean up",
                w.who()
            );
            self.say(Level::Warn, line);
            return vec![Command::Redraw];
        }
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
        let alive = self.pipeline_alive();
        self.quitting = true;
        self.dialog = None;
        self.help = false;
        let mut out = Vec::new();
        if alive && self.watched.is_none() {
            out.push(Command::Send(Control::Shutdown));
        }
        out.extend([Command::Quit, Command::Redraw]);
        out
    }

    fn action(&mut self, a: Action) -> Vec<Command> {
        if self.info.readonly && a.mutates() {
            let line = match &self.watched {
                Some(w) => format!(
                    "watching only: {} pause, step, throttle, confirm or clean up",
                    w.who()
                ),
                None => "read-only: nothing that changes the run or its data".into(),
            };
            // The refusal is the answer: the dialog closes so it is seen.
            if a == Action::Confirm {
                self.dialog = None;
            }
            self.say(Level::Warn, line);
            return vec![Command::Redraw];
        }
        match a {
            Action::Quit => self.quit(),
            Action::ToggleHelp => {
                self.help = !self.help;
                self.help_scroll = 0;
                vec![Command::Redraw]
            }
            Action::CloseHelp => {
                self.help = false;
                vec![Command::Redraw]
            }
            Action::Redraw => vec![Command::ClearScreen],
            Action::TogglePause => {
                if self.status.paused {
                    self.send(Control::Resume)
                } else {
                    self.say(Level::Info, "pausing after the step in flight");
                    self.send(Control::Pause)
                }
            }
            Action::StepBatch => self.send(Control::StepBatch),
            Action::StepDay => self.send(Control::StepDay),
            Action::RunToRollover => self.send(Control::RunToRollover),
            Action::ReviewRollover => match self.status.awaiting.as_ref().map(|a| a.month) {
                Some(m) if self.status.confirmed != Some(m) && self.confirm_sent != Some(m) => {
                    self.open_dialog(m);
                    vec![Command::Redraw]
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
                let now = self.status.delay_ms;
                let i = DELAYS_MS
                    .iter()
                    .position(|&d| d >= now)
                    .unwrap_or(DELAYS_MS.len() - 1);
                let j = if a == Action::Faster {
                    i.saturating_sub(1)
                } else {
                    (i + 1).min(DELAYS_MS.len() - 1)
                };
                if DELAYS_MS[j] == now {
                    return Vec::new();
                }
                self.send(Control::SetDelay(Duration::from_millis(DELAYS_MS[j])))
            }
            Action::NextView => self.go_to_view((self.view + 1) % VIEWS.len()),
            Action::PrevView => self.go_to_view((self.view + VIEWS.len() - 1) % VIEWS.len()),
            Action::Up | Action::Down if self.help => {
                self.help_scroll = if a == Action::Up {
                    self.help_scroll.saturating_sub(1)
                } else {
                    self.help_scroll.saturating_add(1).min(200)
                };
                vec![Command::Redraw]
            }
            Action::Up | Action::Down | Action::PageUp | Action::PageDown | Action::Top
                if self.shows_cleanup_history() =>
            {
                self.scroll_cleanup(a)
            }
            Action::Up => self.view_move(Move::Up),
            Action::Down => self.view_move(Move::Down),
            Action::PageUp => self.view_move(Move::PageUp),
            Action::PageDown => self.view_move(Move::PageDown),
            Action::Top => self.view_move(Move::Top),
            Action::Bottom => self.view_move(Move::Bottom),
            Action::SortNext => self.view_move(Move::SortNext),
            Action::SortPrev => self.view_move(Move::SortPrev),
            Action::SortReverse => self.view_move(Move::Reverse),
            Action::NextPeriod => self.view_move(Move::NextPeriod),
            Action::PrevPeriod => self.view_move(Move::PrevPeriod),
            Action::Open => self.view_move(Move::Open),
            Action::Back => self.view_move(Move::Back),
            Action::Filter => self.view_move(Move::Filter),
            Action::FilterDone => {
                let v = self.current_view();
                self.views.filter_key(v, None, true);
                vec![Command::Redraw]
            }
            Action::FilterCancel => {
                let v = self.current_view();
                self.views.filter_cancel(v);
                vec![Command::Redraw]
            }
            Action::FilterBackspace => {
                let v = self.current_view();
                self.views.filter_key(v, None, false);
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

    /// Whether the current view is one whose scroll keys move the cleanup
    /// history (the overview, history).
    fn shows_cleanup_history(&self) -> bool {
        matches!(self.current_view(), View::Overview | View::History)
    }

    /// ↓/↑ one line, PgDn/PgUp ten, Home back to the newest run; never
    /// past the oldest line.
    fn scroll_cleanup(&mut self, a: Action) -> Vec<Command> {
        let last = super::panes::cleanup::count(self).saturating_sub(1);
        let now = self.cleanup_scroll.min(last);
        let next = match a {
            Action::Up => now.saturating_sub(1),
            Action::Down => now + 1,
            Action::PageUp => now.saturating_sub(10),
            Action::PageDown => now + 10,
            _ => 0,
        }
        .min(last);
        if next == self.cleanup_scroll {
            return Vec::new();
        }
        self.cleanup_scroll = next;
        vec![Command::Redraw]
    }

    /// The figures the dialog shows: the snapshot's preview of the month,
    /// `None` while it is not there (then `y` does nothing).
    pub(crate) fn dialog_preview(&self) -> Option<&MonthRow> {
        let d = self.dialog.as_ref()?;
        self.status
            .awaiting
            .as_ref()
            .filter(|a| a.month == d.month)
            .map(|a| &a.preview)
    }

    fn confirm(&mut self) -> Vec<Command> {
        let Some(m) = self.dialog.as_ref().map(|d| d.month) else {
            return Vec::new();
        };
        if self.dialog_preview().is_none() {
            self.say(
                Level::Info,
                "the month's figures are still loading: confirm once they are shown",
            );
            return vec![Command::Redraw];
        }
        self.dialog = None;
        self.confirm_sent = Some(m);
        self.say(
            Level::Info,
            format!("confirmed: {m} rolls over before the next batch"),
        );
        self.send(Control::Confirm(m))
    }

    fn defer(&mut self) -> Vec<Command> {
        let Some(d) = self.dialog.take() else {
            return Vec::new();
        };
        self.deferred = Some((d.month, self.current_day()));
        self.say(
            Level::Info,
            format!(
                "not yet: {} stays open; asked again on the next day (c reopens)",
                d.month
            ),
        );
        vec![Command::Redraw]
    }

    /// A pipeline event: a note for the operator (the state is in the
    /// snapshot).
    fn event(&mut self, p: Progress) -> Vec<Command> {
        match p {
            Progress::Backup { month, result } => match result {
                Ok(path) => self.say(Level::Info, format!("backup of {month} written to {path}")),
                Err(e) => self.say(
                    Level::Error,
                    format!("BACKUP FAILED after the rollover of {month} ({e}); retried at the next rollover"),
                ),
            },
            Progress::Init(m) => self.say(Level::Info, format!("opened month {m}")),
            Progress::Rolled { row, millis } => {
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
                match self
                    .months
                    .binary_search_by_key(&row.year_month, |r| r.year_month)
                {
                    Ok(i) => self.months[i] = row,
                    Err(i) => self.months.insert(i, row),
                }
            }
            Progress::DailyCleanup(run) if run.outcome != Outcome::Ok => {
                let day = run
                    .reference_time
                    .map_or_else(|| "?".to_owned(), |t| t.date_naive().to_string());
                self.say(
                    Level::Error,
                    format!(
                        "daily cleanup for {day} ended {}: {}",
                        run.outcome,
                        run.detail.unwrap_or_default()
                    ),
                );
            }
            Progress::Confirmed {
                month,
                accepted: false,
            } => {
                if self.confirm_sent == Some(month) {
                    self.confirm_sent = None;
                }
                self.say(
                    Level::Warn,
                    format!("{month} is not the open month: the confirmation was not taken"),
                );
                // Refused while its rollover still waits: the dialog comes
                // back at once (not at the next snapshot that differs).
                let waiting = self.status.awaiting.as_ref().map(|a| a.month);
                if self.dialog.is_none() && waiting == Some(month) && self.should_prompt(month) {
                    self.open_dialog(month);
                }
            }
            Progress::Cleanup(run) => {
                let rows: i64 = run.rows.values().sum();
                self.say(
                    if run.outcome == Outcome::Ok {
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
            _ => return Vec::new(),
        }
        vec![Command::Redraw]
    }

    fn polled(&mut self, p: Poll) -> Vec<Command> {
        let mut changed = false;
        let accepted = p.redis.as_ref().ok().map(|r| r.stat("accepted"));
        if let Ok(r) = &p.redis {
            let flat = self.depth_history.back().map(|s| s.1) == Some(r.depth)
                && self.depth_history.len() > 1;
            push(&mut self.depth_history, (p.at, r.depth));
            changed |= !flat;
        }
        let rate = match (self.prev_sample, accepted) {
            (Some((t0, a0)), Some(a1)) if p.at > t0 => {
                let dt = (p.at - t0).num_milliseconds() as f64 / 1000.0;
                Some(((a1 as f64 - a0 as f64) / dt).max(0.0))
            }
            _ => self.in_per_s,
        };
        changed |= rate != self.in_per_s;
        self.in_per_s = rate;
        if let Some(a) = accepted {
            self.prev_sample = Some((p.at, a));
        }
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

fn push<T>(h: &mut VecDeque<T>, v: T) {
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
        Msg::Key(k) if app.ctx() == Ctx::Filter && typed(&k).is_some() => {
            let v = app.current_view();
            app.views.filter_key(v, typed(&k), false);
            vec![Command::Redraw]
        }
        Msg::Key(k) => match keymap::lookup(app.ctx(), &k) {
            Some(Action::GoToView) => match k.code {
                crossterm::event::KeyCode::Char(c @ '1'..='9') => {
                    app.go_to_view((c as usize - '1' as usize).min(VIEWS.len() - 1))
                }
                _ => Vec::new(),
            },
            Some(a) => app.action(a),
            None => Vec::new(),
        },
        Msg::Mouse(m) if app.info.mouse => match m.kind {
            MouseEventKind::ScrollDown if matches!(app.ctx(), Ctx::Main | Ctx::View) => {
                app.action(Action::NextView)
            }
            MouseEventKind::ScrollUp if matches!(app.ctx(), Ctx::Main | Ctx::View) => {
                app.action(Action::PrevView)
            }
            _ => Vec::new(),
        },
        Msg::Mouse(_) => Vec::new(),
        Msg::Resize(..) => vec![Command::Redraw],
        Msg::Status(s) => app.status(*s),
        Msg::Event(p) => app.event(p),
        Msg::PipelineEnded(r) => {
            match &r {
                Ok(RunEnd::Drained) => {
                    app.say(Level::Info, "all input processed; the pipeline stopped")
                }
                Ok(RunEnd::Shutdown) => {}
                Err(e) => {
                    app.dialog = None;
                    app.say(Level::Error, e.clone());
                }
            }
            app.ended = Some(r);
            vec![Command::Redraw]
        }
        Msg::Polled(p) => app.polled(*p),
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
        Msg::Watched(p) => {
            let Published {
                status,
                at,
                holder,
                holding,
                alerts,
            } = *p;
            let w = Watched {
                holder,
                holding,
                at,
            };
            let mut out = Vec::new();
            if app.watched.as_ref() != Some(&w) {
                app.watched = Some(w);
                out.push(Command::Redraw);
            }
            if let Some(s) = status {
                out.extend(app.status(s));
            }
            out.extend(update(app, Msg::Alerts(alerts)));
            out
        }
        Msg::Alerts(a) => {
            if app.alerts == a {
                return Vec::new();
            }
            app.alerts = a;
            vec![Command::Redraw]
        }
        Msg::Loaded(r) => redraw_if(app.views.take(*r)),
    }
}

/// The character a key types into a filter: printable, without Ctrl or Alt.
fn typed(k: &KeyEvent) -> Option<char> {
    use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
    if k.kind == KeyEventKind::Release
        || k.modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return None;
    }
    match k.code {
        KeyCode::Char(c) if !c.is_control() => Some(c),
        _ => None,
    }
}
