//! Pure `update()` tests: every key, the pipeline's snapshots and events,
//! the rollover dialog flow, read-only, pause/step semantics,
//! redraw-on-change. The run state on screen is always the last snapshot.

use super::fixture::*;
use crate::pipeline::{Control, Phase, PipelineStatus, Progress, RunEnd, Until};
use crate::tui::app::{App, Command, Level, Msg, VIEWS, update};
use crate::tui::dialog::Choice;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use dvmtop_core::Outcome;
use dvmtop_core::clock::Policy;
use std::time::Duration;

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn sent(cmds: &[Command]) -> Vec<Control> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Send(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn status(app: &mut App, s: PipelineStatus) -> Vec<Command> {
    update(app, Msg::Status(Box::new(s)))
}

/// The running snapshot with changes.
fn with(f: impl FnOnce(&mut PipelineStatus)) -> PipelineStatus {
    let mut s = running_status();
    f(&mut s);
    s
}

fn running() -> App {
    let mut app = App::new(info());
    status(&mut app, running_status());
    app.note = None;
    app
}

/// January's rollover waits while February 4 is processed.
fn jan_due(blocked: bool) -> PipelineStatus {
    PipelineStatus {
        day: Some(day(2024, 2, 4)),
        ..waiting_status(ym(2024, 1), blocked, 281_455)
    }
}

fn cleanup_run() -> crate::store::JobRun {
    crate::store::JobRun {
        id: 1,
        job: dvmtop_core::Job::DailyCleanup,
        reference_time: None,
        year_month: None,
        started_at: at(2025, 1, 1, 0, 0, 0),
        finished_at: Some(at(2025, 1, 1, 0, 0, 1)),
        rows: [("entity_activity".to_owned(), 5)].into(),
        outcome: Outcome::Ok,
        attempts: 1,
        detail: None,
    }
}

#[test]
fn pause_and_resume_follow_the_pipeline() {
    let mut app = running();
    let cmds = update(&mut app, key(' '));
    assert_eq!(sent(&cmds), vec![Control::Pause]);
    assert!(!app.status.paused, "paused only once the pipeline says so");
    assert!(app.note.as_ref().unwrap().text.starts_with("pausing"));
    assert!(status(&mut app, with(|s| s.paused = true)).contains(&Command::Redraw));
    assert_eq!(app.state_line().1, "‖ PAUSED");
    assert!(app.note.is_none(), "the 'pausing' note goes once it paused");
    assert_eq!(sent(&update(&mut app, key('p'))), vec![Control::Resume]);
    status(&mut app, running_status());
    assert_eq!(app.state_line().1, "▶ RUNNING");
}

#[test]
fn stepping_is_what_the_pipeline_says() {
    let mut app = running();
    status(&mut app, with(|s| s.paused = true));
    assert_eq!(sent(&update(&mut app, key('s'))), vec![Control::StepBatch]);
    status(
        &mut app,
        with(|s| {
            s.paused = true;
            s.stepping = Some(Until::Batch);
        }),
    );
    assert_eq!(app.state_line().1, "▸ STEPPING");
    assert!(app.state_line().2.contains("one batch"));
    status(&mut app, with(|s| s.paused = true));
    assert_eq!(app.state_line().1, "‖ PAUSED");
    assert_eq!(sent(&update(&mut app, key('d'))), vec![Control::StepDay]);
    status(&mut app, with(|s| s.stepping = Some(Until::Day)));
    assert!(app.state_line().2.contains("to the next day"));
    assert_eq!(
        sent(&update(&mut app, key('r'))),
        vec![Control::RunToRollover]
    );
    status(&mut app, with(|s| s.stepping = Some(Until::Rollover)));
    assert!(app.state_line().2.contains("to the next rollover"));
}

#[test]
fn rollover_dialog_flow_confirm() {
    let mut app = running();
    let cmds = status(&mut app, jan_due(false));
    assert!(cmds.contains(&Command::Redraw));
    let d = app.dialog.as_ref().expect("the dialog pops up");
    assert_eq!((d.month, d.choice), (ym(2024, 1), Choice::NotYet));
    // Its figures are the snapshot's preview of the row.
    assert_eq!(app.dialog_preview().unwrap().total_requests, 281_455);
    let (level, word, why) = app.state_line();
    assert_eq!((level, word), (Level::Warn, "▶ RUNNING"));
    assert!(why.contains("2024-02 is still processed"), "{why}");
    // Keys of the main screen do nothing under the dialog.
    assert!(update(&mut app, key('s')).is_empty());
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.dialog.as_ref().unwrap().choice, Choice::RollOver);
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert_eq!(sent(&cmds), vec![Control::Confirm(ym(2024, 1))]);
    assert!(app.dialog.is_none());
    // Before the pipeline has applied it, the same snapshot does not
    // bring the dialog back.
    let mut again = jan_due(false);
    again.session.batches += 1;
    status(&mut app, again);
    assert!(app.dialog.is_none());
    // The pipeline took it ...
    status(
        &mut app,
        PipelineStatus {
            confirmed: Some(ym(2024, 1)),
            ..jan_due(false)
        },
    );
    assert!(app.state_line().2.contains("2024-01 confirmed"));
    // ... and rolled it over: the note and the history say so.
    update(
        &mut app,
        Msg::Event(Progress::Rolled {
            row: month_row("2024-01", 281_455),
            millis: 3.0,
        }),
    );
    status(&mut app, with(|s| s.month = Some(ym(2024, 2))));
    assert!(
        app.note
            .as_ref()
            .unwrap()
            .text
            .contains("rolled over 2024-01")
    );
    assert_eq!(app.months.last().unwrap().year_month, ym(2024, 1));
    assert_eq!(app.state_line().1, "▶ RUNNING");
    assert!(app.dialog.is_none());
}

#[test]
fn y_waits_for_the_figures() {
    let mut app = running();
    // A dialog whose month's figures are not in the snapshot (yet).
    app.dialog = Some(crate::tui::dialog::Dialog {
        month: ym(2024, 1),
        choice: Choice::NotYet,
    });
    assert!(sent(&update(&mut app, key('y'))).is_empty());
    assert!(app.dialog.is_some());
    assert!(app.note.as_ref().unwrap().text.contains("still loading"));
    status(&mut app, jan_due(false));
    assert_eq!(
        sent(&update(&mut app, key('y'))),
        vec![Control::Confirm(ym(2024, 1))]
    );
}

#[test]
fn rollover_dialog_defer_with_n_and_esc() {
    let mut app = running();
    status(&mut app, jan_due(false));
    assert!(sent(&update(&mut app, key('n'))).is_empty());
    assert!(app.dialog.is_none());
    assert_eq!(app.deferred, Some((ym(2024, 1), Some(day(2024, 2, 4)))));
    // The same day: it stays closed.
    status(
        &mut app,
        PipelineStatus {
            session: Default::default(),
            ..jan_due(false)
        },
    );
    assert!(app.dialog.is_none());
    // c reopens it on demand.
    update(&mut app, key('c'));
    assert!(app.dialog.is_some());
    update(&mut app, code(KeyCode::Esc));
    assert!(app.dialog.is_none());
    // The next day asks again.
    status(
        &mut app,
        PipelineStatus {
            day: Some(day(2024, 2, 5)),
            ..jan_due(false)
        },
    );
    assert!(app.dialog.is_some());
}

#[test]
fn waiting_says_why_and_the_dialog_pops_once() {
    let mut app = running();
    status(&mut app, jan_due(true));
    let (level, word, why) = app.state_line();
    assert_eq!((level, word), (Level::Warn, "⚠ WAITING"));
    assert!(why.contains("nothing moves until it is confirmed"), "{why}");
    assert!(app.dialog.is_some());
    update(&mut app, key('n'));
    // Repeated snapshots of the same wait do not reopen it the same day.
    status(
        &mut app,
        PipelineStatus {
            processed_per_s: 0.0,
            ..jan_due(true)
        },
    );
    assert!(app.dialog.is_none());
    assert_eq!(app.state_line().1, "⚠ WAITING");
}

#[test]
fn a_rollover_confirmed_elsewhere_closes_the_dialog() {
    let mut app = running();
    status(&mut app, jan_due(true));
    assert!(app.dialog.is_some());
    // `dvmtop confirm` from another shell: the month rolled over.
    status(&mut app, with(|s| s.month = Some(ym(2024, 2))));
    assert!(app.dialog.is_none());
}

#[test]
fn readonly_refuses_confirm_and_cleanup() {
    let mut app = App::new(crate::tui::app::Info {
        readonly: true,
        ..info()
    });
    status(&mut app, jan_due(true));
    assert!(app.dialog.is_none(), "read-only never pops the dialog");
    update(&mut app, key('c'));
    assert!(app.dialog.is_some(), "but it can be reviewed");
    assert!(sent(&update(&mut app, key('y'))).is_empty());
    assert!(app.note.as_ref().unwrap().text.starts_with("read-only"));
    update(&mut app, key('n'));
    assert!(sent(&update(&mut app, key('x'))).is_empty());
}

#[test]
fn auto_policy_never_pops() {
    let mut app = App::new(crate::tui::app::Info {
        policy: Policy::Auto,
        ..info()
    });
    status(&mut app, jan_due(false));
    assert!(app.dialog.is_none());
}

#[test]
fn cleanup_now_needs_a_current_day() {
    let mut app = App::new(info());
    status(&mut app, with(|s| s.day = None));
    assert!(sent(&update(&mut app, key('x'))).is_empty());
    assert_eq!(app.note.as_ref().unwrap().level, Level::Warn);
    let mut app = running();
    assert_eq!(sent(&update(&mut app, key('x'))), vec![Control::CleanupNow]);
    update(&mut app, Msg::Event(Progress::Cleanup(cleanup_run())));
    assert!(app.note.as_ref().unwrap().text.contains("5 rows affected"));
}

#[test]
fn speed_keys_step_the_throttle() {
    let mut app = running();
    assert_eq!(
        sent(&update(&mut app, key('-'))),
        vec![Control::SetDelay(Duration::from_millis(5))]
    );
    status(&mut app, with(|s| s.delay_ms = 1000));
    assert_eq!(
        sent(&update(&mut app, key('-'))),
        vec![Control::SetDelay(Duration::from_millis(2000))]
    );
    assert_eq!(
        sent(&update(&mut app, key('+'))),
        vec![Control::SetDelay(Duration::from_millis(500))]
    );
    status(&mut app, with(|s| s.delay_ms = 2000));
    assert!(update(&mut app, key('-')).is_empty(), "slowest already");
    status(&mut app, with(|s| s.delay_ms = 0));
    assert!(update(&mut app, key('+')).is_empty(), "fastest already");
}

#[test]
fn views_help_redraw_and_resize() {
    let mut app = running();
    assert_eq!(update(&mut app, code(KeyCode::Tab)), vec![Command::Redraw]);
    assert_eq!(app.view, 1);
    update(&mut app, code(KeyCode::BackTab));
    update(&mut app, code(KeyCode::BackTab));
    assert_eq!(app.view, VIEWS.len() - 1);
    update(&mut app, key('1'));
    assert_eq!(app.view, 0);
    update(&mut app, key('3'));
    assert_eq!(app.view, 2);
    update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::SHIFT)),
    );
    assert!(app.help);
    assert!(
        update(&mut app, key('s')).is_empty(),
        "help swallows main keys"
    );
    update(&mut app, code(KeyCode::Esc));
    assert!(!app.help);
    update(&mut app, code(KeyCode::F(1)));
    update(&mut app, key('?'));
    assert!(!app.help);
    assert_eq!(update(&mut app, ctrl('l')), vec![Command::ClearScreen]);
    assert_eq!(
        update(&mut app, Msg::Resize(100, 30)),
        vec![Command::Redraw]
    );
    assert!(
        update(&mut app, key('z')).is_empty(),
        "unbound keys do nothing"
    );
    // The mouse wheel switches views only with --mouse.
    let wheel = Msg::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 0,
        row: 0,
        modifiers: KeyModifiers::NONE,
    });
    assert!(update(&mut app, wheel.clone()).is_empty());
    app.info.mouse = true;
    update(&mut app, wheel);
    assert_eq!(app.view, 3);
}

#[test]
fn quit_shuts_the_pipeline_down_once() {
    let mut app = running();
    let cmds = update(&mut app, key('q'));
    assert_eq!(
        cmds,
        vec![
            Command::Send(Control::Shutdown),
            Command::Quit,
            Command::Redraw
        ]
    );
    assert_eq!(app.phase(), Phase::Stopping);
    assert_eq!(app.state_line().1, "■ STOPPING");
    assert!(update(&mut app, key('q')).is_empty());
    assert!(update(&mut app, Msg::Signal("SIGTERM")).is_empty());
    // q works inside the dialog and the help too.
    let mut app = running();
    status(&mut app, jan_due(false));
    assert!(update(&mut app, key('q')).contains(&Command::Quit));
    let mut app = running();
    update(&mut app, key('?'));
    assert!(update(&mut app, ctrl('c')).contains(&Command::Quit));
    // After the pipeline ended, quitting sends nothing to it.
    let mut app = running();
    status(&mut app, with(|s| s.phase = Phase::Finished));
    update(&mut app, Msg::PipelineEnded(Ok(RunEnd::Drained)));
    assert_eq!(app.state_line().1, "■ FINISHED");
    assert!(
        app.note
            .as_ref()
            .unwrap()
            .text
            .contains("all input processed")
    );
    assert_eq!(
        update(&mut app, key('q')),
        vec![Command::Quit, Command::Redraw]
    );
}

#[test]
fn a_backtest_waiting_at_its_end_can_still_be_confirmed() {
    // Everything is processed and January waits: the pipeline has not
    // ended, so the dialog acts.
    let mut app = running();
    status(
        &mut app,
        PipelineStatus {
            phase: Phase::Waiting,
            ..jan_due(false)
        },
    );
    assert_eq!(app.state_line().1, "⚠ WAITING");
    assert_eq!(
        sent(&update(&mut app, key('y'))),
        vec![Control::Confirm(ym(2024, 1))]
    );
}

#[test]
fn signals_quit() {
    let mut app = running();
    let cmds = update(&mut app, Msg::Signal("SIGHUP"));
    assert!(cmds.contains(&Command::Send(Control::Shutdown)) && cmds.contains(&Command::Quit));
    assert!(app.note.as_ref().unwrap().text.starts_with("SIGHUP"));
}

#[test]
fn pipeline_errors_are_shown_not_fatal() {
    let mut app = running();
    status(&mut app, jan_due(false));
    status(
        &mut app,
        PipelineStatus {
            phase: Phase::Retrying {
                error: "PostgreSQL error: connection reset".into(),
                attempt: 2,
                next_in_ms: 400,
            },
            ..jan_due(false)
        },
    );
    assert_eq!(app.state_line().1, "↻ RETRYING");
    update(
        &mut app,
        Msg::PipelineEnded(Err("namespace x is in use".into())),
    );
    assert!(app.dialog.is_none());
    let (level, word, why) = app.state_line();
    assert_eq!((level, word), (Level::Error, "✖ ERROR"));
    assert!(why.contains("namespace x is in use"));
    // Controls are refused with a word, not sent into a closed channel.
    assert!(sent(&update(&mut app, key(' '))).is_empty());
    assert!(app.note.as_ref().unwrap().text.contains("not running"));
    // A late snapshot does not revive it.
    status(&mut app, with(|s| s.phase = Phase::Idle));
    assert!(matches!(app.phase(), Phase::Failed { .. }));
}

#[test]
fn events_become_notes() {
    let mut app = App::new(info());
    assert_eq!(app.state_line().1, "… STARTING");
    update(&mut app, Msg::Event(Progress::Init(ym(2024, 1))));
    assert!(
        app.note
            .as_ref()
            .unwrap()
            .text
            .contains("opened month 2024-01")
    );
    update(
        &mut app,
        Msg::Event(Progress::Confirmed {
            month: ym(2023, 11),
            accepted: false,
        }),
    );
    assert_eq!(app.note.as_ref().unwrap().level, Level::Warn);
    update(
        &mut app,
        Msg::Event(Progress::Backup {
            month: ym(2024, 1),
            result: Err("disk full".into()),
        }),
    );
    let n = app.note.as_ref().unwrap();
    assert_eq!(n.level, Level::Error);
    assert!(n.text.contains("BACKUP FAILED"));
    let mut bad = cleanup_run();
    bad.outcome = Outcome::Failed;
    bad.detail = Some("lock timeout".into());
    update(&mut app, Msg::Event(Progress::DailyCleanup(bad)));
    assert!(app.note.as_ref().unwrap().text.contains("lock timeout"));
    // Routine events change nothing on screen.
    assert!(update(&mut app, Msg::Event(Progress::Idle)).is_empty());
    update(
        &mut app,
        Msg::Notice(Level::Warn, "the pipeline is busy".into()),
    );
    assert_eq!(app.note.as_ref().unwrap().text, "the pipeline is busy");
    update(&mut app, Msg::PipelineEnded(Ok(RunEnd::Shutdown)));
}

#[test]
fn figures_come_from_one_snapshot() {
    let mut app = running();
    // Clock, day, overflow, rate and latency all from the snapshot.
    assert_eq!(app.current_day(), Some(day(2024, 3, 14)));
    assert_eq!(app.clock(), Some(at(2024, 3, 14, 17, 42, 9).timestamp()));
    assert_eq!(app.overflow(), Some(1_250));
    assert_eq!(app.status.processed_per_s, 88_000.0);
    let l = app.status.latency;
    assert!(l.max_ms >= l.avg_ms && l.max_ms >= l.last_ms);
    // A poll of older committed figures does not move them.
    update(
        &mut app,
        Msg::Polled(Box::new(poll(at(2025, 6, 1, 12, 0, 0), 10, 1, 1))),
    );
    assert_eq!(app.current_day(), Some(day(2024, 3, 14)));
}

#[test]
fn polls_mark_stale_sources_and_compute_the_ingest_rate() {
    let mut app = App::new(info());
    let t0 = at(2025, 6, 1, 12, 0, 0);
    assert_eq!(
        update(&mut app, Msg::Polled(Box::new(poll(t0, 10, 1_000, 500)))),
        vec![Command::Redraw]
    );
    assert_eq!(app.windows.len(), 4);
    assert_eq!(app.months.len(), 2);
    let p = poll(t0 + chrono::Duration::seconds(2), 10, 3_000, 1_500);
    update(&mut app, Msg::Polled(Box::new(p)));
    assert_eq!(app.in_per_s, Some(1_000.0));
    // The same data again, same minute: nothing to redraw.
    let same = poll(t0 + chrono::Duration::seconds(4), 10, 3_000, 1_500);
    update(&mut app, Msg::Polled(Box::new(same)));
    let again = poll(t0 + chrono::Duration::seconds(6), 10, 3_000, 1_500);
    assert!(update(&mut app, Msg::Polled(Box::new(again))).is_empty());
    // PostgreSQL times out: stale since the first failure, data kept.
    let mut bad = poll(t0 + chrono::Duration::seconds(8), 10, 3_000, 1_500);
    bad.db = Err("PostgreSQL did not answer within 3 s".into());
    assert_eq!(
        update(&mut app, Msg::Polled(Box::new(bad.clone()))),
        vec![Command::Redraw]
    );
    bad.at = t0 + chrono::Duration::seconds(10);
    update(&mut app, Msg::Polled(Box::new(bad)));
    assert_eq!(app.db.stale_since, Some(t0 + chrono::Duration::seconds(8)));
    assert!(app.db.data.is_some());
    assert_eq!(app.redis.stale_since, None);
    // It answers again: fresh.
    update(
        &mut app,
        Msg::Polled(Box::new(poll(
            t0 + chrono::Duration::seconds(12),
            10,
            3_000,
            1_500,
        ))),
    );
    assert_eq!(app.db.stale_since, None);
    // A new minute redraws once (the lag text depends on the wall clock).
    let later = poll(t0 + chrono::Duration::seconds(61), 10, 3_000, 1_500);
    assert_eq!(
        update(&mut app, Msg::Polled(Box::new(later))),
        vec![Command::Redraw]
    );
}

#[test]
fn the_same_snapshot_twice_redraws_once() {
    let mut app = running();
    assert_eq!(
        status(&mut app, with(|s| s.phase = Phase::Idle)),
        vec![Command::Redraw]
    );
    assert!(status(&mut app, with(|s| s.phase = Phase::Idle)).is_empty());
}

/// A watcher's app: read-only, following `serve` on host `box` (pid 7).
fn watcher(s: PipelineStatus, holding: bool) -> App {
    let mut app = App::new(crate::tui::app::Info {
        readonly: true,
        ..info()
    });
    update(
        &mut app,
        Msg::Watched(Box::new(crate::store::Published {
            status: Some(s),
            at: Some(now()),
            holder: Some(crate::store::Holder {
                host: "box".into(),
                pid: 7,
                command: "serve".into(),
                since: now(),
            }),
            holding,
            alerts: Vec::new(),
        })),
    );
    app
}

#[test]
fn a_watcher_shows_the_published_snapshot_and_sends_nothing() {
    let mut app = watcher(jan_due(true), true);
    assert_eq!(
        app.status,
        jan_due(true),
        "the holder's snapshot is the state"
    );
    assert!(app.dialog.is_none(), "a watcher is not prompted");
    let mut cmds = Vec::new();
    for k in [' ', 's', 'd', 'r', '+', '-', 'x', 'c', 'y', 'q'] {
        cmds.extend(update(&mut app, key(k)));
    }
    assert_eq!(sent(&cmds), vec![], "no control, not even Shutdown on q");
    assert!(cmds.contains(&Command::Quit));
}

#[test]
fn a_watchers_refusal_names_who_can() {
    let mut app = watcher(jan_due(true), true);
    update(&mut app, key('c'));
    assert!(app.dialog.is_some(), "a watcher may review the figures");
    update(&mut app, key('y'));
    assert!(app.dialog.is_none(), "the refusal closes the dialog");
    let note = app.note.clone().expect("a refusal");
    assert_eq!(note.level, Level::Warn);
    assert!(
        note.text.contains("only the serve on box (pid 7) can"),
        "{}",
        note.text
    );
    update(&mut app, key(' '));
    assert!(app.note.unwrap().text.contains("pause"));
}

#[test]
fn a_watcher_says_when_no_process_holds_the_namespace() {
    let app = watcher(running_status(), false);
    let (level, word, why) = app.state_line();
    assert_eq!((level, word), (Level::Warn, "◌ NO HOLDER"));
    assert!(why.contains("last published"), "{why}");
}

#[test]
fn the_cleanup_history_scrolls_on_the_overview_and_history_views() {
    let mut app = busy_app();
    many_jobs(&mut app);
    assert_eq!(app.cleanup_scroll, 0);
    assert_eq!(update(&mut app, code(KeyCode::Down)), vec![Command::Redraw]);
    assert_eq!(update(&mut app, key('j')), vec![Command::Redraw]);
    assert_eq!(app.cleanup_scroll, 2);
    update(&mut app, key('k'));
    assert_eq!(app.cleanup_scroll, 1);
    update(&mut app, code(KeyCode::PageDown));
    assert_eq!(app.cleanup_scroll, 11, "never past the oldest line");
    assert!(
        update(&mut app, code(KeyCode::Down)).is_empty(),
        "at the end: nothing changes, nothing to redraw"
    );
    update(&mut app, code(KeyCode::PageUp));
    assert_eq!(app.cleanup_scroll, 1);
    update(&mut app, code(KeyCode::Home));
    assert_eq!(app.cleanup_scroll, 0);
    assert!(update(&mut app, code(KeyCode::Up)).is_empty());
    // The history view (5) scrolls the same history.
    update(&mut app, key('5'));
    update(&mut app, key('g'));
    update(&mut app, key('j'));
    assert_eq!(app.cleanup_scroll, 1);
    // On a list view the same keys move its selection instead.
    update(&mut app, key('2'));
    update(&mut app, key('j'));
    assert_eq!(app.cleanup_scroll, 1);
    // Every scroll key is in the key map, under the main screen.
    for k in [
        KeyCode::Down,
        KeyCode::Up,
        KeyCode::PageDown,
        KeyCode::PageUp,
        KeyCode::Home,
    ] {
        let ev = KeyEvent::new(k, KeyModifiers::NONE);
        assert!(
            crate::tui::keymap::lookup(crate::tui::keymap::Ctx::Main, &ev).is_some(),
            "{k:?}"
        );
    }
}

#[test]
fn a_refused_confirmation_brings_the_dialog_back_at_once() {
    let mut app = running();
    status(&mut app, jan_due(true));
    assert!(app.dialog.is_some());
    let cmds = update(&mut app, key('y'));
    assert_eq!(sent(&cmds), vec![Control::Confirm(ym(2024, 1))]);
    assert!(app.dialog.is_none());
    update(
        &mut app,
        Msg::Event(Progress::Confirmed {
            month: ym(2024, 1),
            accepted: false,
        }),
    );
    assert!(
        app.dialog.as_ref().is_some_and(|d| d.month == ym(2024, 1)),
        "the rollover still waits: asked again without waiting for another snapshot"
    );
    assert_eq!(app.note.as_ref().map(|n| n.level), Some(Level::Warn));
}
