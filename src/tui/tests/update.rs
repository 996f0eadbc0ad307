//! Pure `update()` tests: every key and every pipeline message, the
//! rollover dialog flow, read-only, pause/step semantics, redraw-on-change.

use super::fixture::*;
use crate::pipeline::{Control, Progress, RunEnd, Until};
use crate::tui::app::{App, Command, Level, Msg, Phase, VIEWS, update};
use crate::tui::dialog::{Choice, Preview};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use dvmtop_core::clock::{Awaiting, Policy};
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

fn running() -> App {
    let mut app = App::new(info());
    update(&mut app, Msg::Progress(Progress::Init(ym(2024, 1))));
    update(
        &mut app,
        Msg::Progress(Progress::Batch(batch(day(2024, 1, 31), 100, None))),
    );
    app.note = None;
    app
}

fn due(month: (i32, u32), blocked: bool) -> Awaiting {
    Awaiting {
        month: ym(month.0, month.1),
        blocked,
    }
}

fn due_batch(app: &mut App, d: chrono::NaiveDate, a: Awaiting) -> Vec<Command> {
    update(app, Msg::Progress(Progress::DayAdvanced { day: d }));
    update(app, Msg::Progress(Progress::Batch(batch(d, 10, Some(a)))))
}

fn cleanup_run() -> crate::retention::CleanupRun {
    crate::retention::CleanupRun {
        id: 1,
        job: "daily_cleanup".into(),
        reference_time: None,
        started_at: at(2025, 1, 1, 0, 0, 0),
        finished_at: Some(at(2025, 1, 1, 0, 0, 1)),
        rows: [("entity_activity".to_owned(), 5)].into(),
        outcome: "ok".into(),
        attempts: 1,
        detail: None,
    }
}

#[test]
fn pause_and_resume_follow_the_pipeline() {
    let mut app = running();
    let cmds = update(&mut app, key(' '));
    assert_eq!(sent(&cmds), vec![Control::Pause]);
    assert!(!app.run.paused, "paused only once the pipeline says so");
    assert!(update(&mut app, Msg::Progress(Progress::Paused(true))).contains(&Command::Redraw));
    assert!(app.run.paused);
    assert_eq!(app.state_line().1, "‖ PAUSED");
    assert_eq!(sent(&update(&mut app, key('p'))), vec![Control::Resume]);
    update(&mut app, Msg::Progress(Progress::Paused(false)));
    assert!(!app.run.paused);
    assert_eq!(app.state_line().1, "▶ RUNNING");
}

#[test]
fn step_batch_pauses_after_one_batch() {
    let mut app = running();
    update(&mut app, Msg::Progress(Progress::Paused(true)));
    assert_eq!(sent(&update(&mut app, key('s'))), vec![Control::StepBatch]);
    assert_eq!(app.run.stepping, Some(Until::Batch));
    assert_eq!(app.state_line().1, "▸ STEPPING");
    // A day advance does not end a batch step ...
    update(
        &mut app,
        Msg::Progress(Progress::DayAdvanced {
            day: day(2024, 2, 1),
        }),
    );
    assert_eq!(app.run.stepping, Some(Until::Batch));
    // ... a batch does; the pipeline reports the pause again.
    update(
        &mut app,
        Msg::Progress(Progress::Batch(batch(day(2024, 2, 1), 5, None))),
    );
    update(&mut app, Msg::Progress(Progress::Paused(true)));
    assert_eq!(app.run.stepping, None);
    assert!(app.run.paused);
    assert_eq!(app.state_line().1, "‖ PAUSED");
}

#[test]
fn step_day_ends_on_the_day_advance() {
    let mut app = running();
    assert_eq!(sent(&update(&mut app, key('d'))), vec![Control::StepDay]);
    assert_eq!(app.run.stepping, Some(Until::Day));
    update(
        &mut app,
        Msg::Progress(Progress::Batch(batch(day(2024, 1, 31), 5, None))),
    );
    assert_eq!(app.run.stepping, Some(Until::Day), "a batch is not a day");
    update(
        &mut app,
        Msg::Progress(Progress::DayAdvanced {
            day: day(2024, 2, 1),
        }),
    );
    assert_eq!(app.run.stepping, None);
    assert_eq!(app.current_day(), Some(day(2024, 2, 1)));
}

#[test]
fn run_to_rollover_ends_when_one_is_due_or_done() {
    let mut app = running();
    assert_eq!(
        sent(&update(&mut app, key('r'))),
        vec![Control::RunToRollover]
    );
    assert_eq!(app.run.stepping, Some(Until::Rollover));
    update(
        &mut app,
        Msg::Progress(Progress::Batch(batch(day(2024, 2, 2), 5, None))),
    );
    assert_eq!(app.run.stepping, Some(Until::Rollover));
    due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    assert_eq!(app.run.stepping, None);
    // Merged batch messages end a step the same way.
    update(&mut app, code(KeyCode::Esc));
    update(&mut app, key('s'));
    let cmds = update(
        &mut app,
        Msg::Batches {
            report: batch(day(2024, 2, 4), 3, None),
            count: 3,
            max_ms: 5.0,
            total_ms: 9.0,
        },
    );
    assert!(cmds.contains(&Command::Redraw));
    assert_eq!(app.run.stepping, None);
    assert_eq!(app.run.batches, 6);
}

#[test]
fn idle_ends_any_step() {
    let mut app = running();
    update(&mut app, key('d'));
    update(&mut app, Msg::Progress(Progress::Idle));
    assert_eq!(app.run.stepping, None);
    assert_eq!(app.run.phase, Phase::Idle);
    assert_eq!(app.state_line().1, "◇ IDLE");
}

#[test]
fn rollover_dialog_flow_confirm() {
    let mut app = running();
    let cmds = due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    assert!(
        cmds.contains(&Command::FetchPreview(ym(2024, 1))),
        "{cmds:?}"
    );
    let d = app.dialog.as_ref().expect("the dialog opens");
    assert_eq!(
        (d.month, d.choice, &d.preview),
        (ym(2024, 1), Choice::NotYet, &Preview::Loading)
    );
    // The summary arrives from the worker; one for another month is dropped.
    assert!(
        update(
            &mut app,
            Msg::Preview {
                month: ym(2023, 12),
                result: Ok(month_row("2023-12", 1))
            }
        )
        .is_empty()
    );
    update(
        &mut app,
        Msg::Preview {
            month: ym(2024, 1),
            result: Ok(month_row("2024-01", 7)),
        },
    );
    assert!(
        matches!(&app.dialog.as_ref().unwrap().preview, Preview::Ready(r) if r.total_requests == 7)
    );
    // Keys of the main screen do nothing while the dialog is up.
    assert!(sent(&update(&mut app, key('s'))).is_empty());
    let cmds = update(&mut app, key('y'));
    assert_eq!(sent(&cmds), vec![Control::Confirm(ym(2024, 1))]);
    assert!(app.dialog.is_none());
    assert_eq!(app.run.confirmed, Some(ym(2024, 1)));
    assert!(app.state_line().2.contains("confirmed"));
    // Batches still flagged as due until the rollover runs: no re-pop.
    update(
        &mut app,
        Msg::Progress(Progress::Batch(batch(
            day(2024, 2, 4),
            5,
            Some(due((2024, 1), false)),
        ))),
    );
    assert!(app.dialog.is_none());
    update(
        &mut app,
        Msg::Progress(Progress::Confirmed {
            month: ym(2024, 1),
            accepted: true,
        }),
    );
    let mut row = month_row("2024-01", 7);
    row.created_at = Some(at(2025, 1, 1, 0, 0, 0));
    update(
        &mut app,
        Msg::Progress(Progress::Rolled { row, millis: 12.0 }),
    );
    assert_eq!((app.run.due, app.run.confirmed), (None, None));
    assert_eq!(app.current_month(), Some(ym(2024, 2)));
    assert_eq!(app.run.rollovers, 1);
    assert_eq!(app.months.len(), 1);
    assert!(
        app.note
            .as_ref()
            .unwrap()
            .text
            .contains("rolled over 2024-01")
    );
}

#[test]
fn rollover_dialog_defer_with_n_and_esc() {
    let mut app = running();
    due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    assert!(app.dialog.is_some());
    let cmds = update(&mut app, key('n'));
    assert!(sent(&cmds).is_empty(), "not yet sends nothing");
    assert!(app.dialog.is_none());
    assert_eq!(app.run.deferred, Some((ym(2024, 1), Some(day(2024, 2, 4)))));
    assert_eq!(app.state_line().1, "▶ RUNNING");
    assert!(app.state_line().2.contains("rollover of 2024-01 due"));
    // Not re-popped by every batch of the same day, nor by Blocked.
    update(
        &mut app,
        Msg::Progress(Progress::Batch(batch(
            day(2024, 2, 4),
            5,
            Some(due((2024, 1), false)),
        ))),
    );
    assert!(app.dialog.is_none());
    // The next day's notice asks again.
    due_batch(&mut app, day(2024, 2, 5), due((2024, 1), false));
    assert!(app.dialog.is_some());
    update(&mut app, code(KeyCode::Esc));
    assert!(app.dialog.is_none());
    assert_eq!(app.run.deferred, Some((ym(2024, 1), Some(day(2024, 2, 5)))));
    // Enter presses the default button: not yet.
    update(&mut app, key('c'));
    assert!(app.dialog.is_some(), "c reopens a deferred rollover");
    assert!(sent(&update(&mut app, code(KeyCode::Enter))).is_empty());
    assert!(app.dialog.is_none());
    // Moving to "roll over" and pressing Enter confirms.
    update(&mut app, key('c'));
    update(&mut app, code(KeyCode::Right));
    assert_eq!(app.dialog.as_ref().unwrap().choice, Choice::RollOver);
    assert_eq!(
        sent(&update(&mut app, code(KeyCode::Enter))),
        vec![Control::Confirm(ym(2024, 1))]
    );
}

#[test]
fn blocked_says_why_and_pops_once() {
    let mut app = running();
    update(
        &mut app,
        Msg::Progress(Progress::DayAdvanced {
            day: day(2024, 2, 29),
        }),
    );
    let cmds = update(
        &mut app,
        Msg::Progress(Progress::Blocked(due((2024, 1), true))),
    );
    assert!(cmds.contains(&Command::FetchPreview(ym(2024, 1))));
    assert!(app.dialog.as_ref().unwrap().blocked);
    update(&mut app, key('n'));
    let (level, word, why) = app.state_line();
    assert_eq!((level, word), (Level::Warn, "⚠ WAITING"));
    assert!(
        why.contains("waiting for confirmation") && why.contains("nothing moves"),
        "{why}"
    );
    // Repeated Blocked (same day) does not re-pop nor redraw.
    let cmds = update(
        &mut app,
        Msg::Progress(Progress::Blocked(due((2024, 1), true))),
    );
    assert!(app.dialog.is_none());
    assert!(cmds.is_empty(), "{cmds:?}");
    // A later month's notice does pop.
    update(
        &mut app,
        Msg::Progress(Progress::Rolled {
            row: month_row("2024-01", 1),
            millis: 1.0,
        }),
    );
    due_batch(&mut app, day(2024, 3, 4), due((2024, 2), false));
    assert_eq!(app.dialog.as_ref().map(|d| d.month), Some(ym(2024, 2)));
}

#[test]
fn readonly_refuses_confirm_and_cleanup() {
    let mut app = running();
    app.info.readonly = true;
    let cmds = due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    assert!(
        app.dialog.is_none(),
        "read-only does not pop a dialog it cannot act on"
    );
    assert!(!cmds.iter().any(|c| matches!(c, Command::FetchPreview(_))));
    // c shows the summary; y does nothing but say why.
    assert!(update(&mut app, key('c')).contains(&Command::FetchPreview(ym(2024, 1))));
    let cmds = update(&mut app, key('y'));
    assert!(sent(&cmds).is_empty());
    assert!(app.dialog.is_some(), "still open");
    assert!(app.note.as_ref().unwrap().text.starts_with("read-only"));
    update(&mut app, code(KeyCode::Tab));
    assert!(sent(&update(&mut app, code(KeyCode::Enter))).is_empty());
    update(&mut app, key('n'));
    assert!(app.dialog.is_none());
    assert!(sent(&update(&mut app, key('x'))).is_empty());
    assert!(app.note.as_ref().unwrap().text.starts_with("read-only"));
    // Watching is still allowed.
    assert_eq!(sent(&update(&mut app, key(' '))), vec![Control::Pause]);
}

#[test]
fn auto_policy_never_pops() {
    let mut app = running();
    app.info.policy = Policy::Auto;
    due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    assert!(app.dialog.is_none());
}

#[test]
fn cleanup_now_needs_a_current_day() {
    let mut app = App::new(info());
    assert!(sent(&update(&mut app, key('x'))).is_empty());
    assert!(app.note.as_ref().unwrap().text.contains("no current day"));
    let mut app = running();
    assert_eq!(sent(&update(&mut app, key('x'))), vec![Control::CleanupNow]);
    update(&mut app, Msg::Progress(Progress::Cleanup(cleanup_run())));
    let n = app.note.as_ref().unwrap();
    assert_eq!(n.level, Level::Info);
    assert!(n.text.contains("5 rows"), "{}", n.text);
}

#[test]
fn speed_keys_step_the_throttle() {
    let mut app = running();
    assert!(update(&mut app, key('+')).is_empty(), "already full speed");
    assert_eq!(
        sent(&update(&mut app, key('-'))),
        vec![Control::SetDelay(Duration::from_millis(5))]
    );
    assert_eq!(
        sent(&update(&mut app, key('-'))),
        vec![Control::SetDelay(Duration::from_millis(20))]
    );
    assert_eq!(
        sent(&update(&mut app, key('='))),
        vec![Control::SetDelay(Duration::from_millis(5))]
    );
    for _ in 0..20 {
        update(&mut app, key('-'));
    }
    assert_eq!(app.run.delay_ms, 2000);
    assert!(update(&mut app, key('-')).is_empty());
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
    assert_eq!(app.view, 0);
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
    assert_eq!(app.run.phase, Phase::ShuttingDown);
    assert_eq!(app.state_line().1, "■ STOPPING");
    assert!(update(&mut app, key('q')).is_empty());
    assert!(update(&mut app, Msg::Signal("SIGTERM")).is_empty());
    // q works inside the dialog and the help too.
    let mut app = running();
    due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    assert!(update(&mut app, key('q')).contains(&Command::Quit));
    let mut app = running();
    update(&mut app, key('?'));
    assert!(update(&mut app, ctrl('c')).contains(&Command::Quit));
    // After the pipeline ended, quitting sends nothing to it.
    let mut app = running();
    due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    assert!(app.dialog.is_some());
    update(&mut app, Msg::PipelineEnded(Ok(RunEnd::Drained)));
    assert!(
        app.dialog.is_none(),
        "a drained backtest cannot roll over: no dialog left"
    );
    assert!(
        app.note
            .as_ref()
            .unwrap()
            .text
            .contains("2024-01 stays open")
    );
    assert_eq!(app.run.phase, Phase::Finished);
    assert_eq!(
        update(&mut app, key('q')),
        vec![Command::Quit, Command::Redraw]
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
    due_batch(&mut app, day(2024, 2, 4), due((2024, 1), false));
    update(
        &mut app,
        Msg::Progress(Progress::Retrying {
            error: "PostgreSQL error: connection reset".into(),
            millis: 400,
        }),
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
    // Late reports do not revive it.
    update(&mut app, Msg::Progress(Progress::Idle));
    assert!(matches!(app.run.phase, Phase::Failed(_)));
}

#[test]
fn other_reports() {
    let mut app = App::new(info());
    assert_eq!(app.state_line().1, "… STARTING");
    update(&mut app, Msg::Progress(Progress::Init(ym(2024, 1))));
    assert_eq!(app.current_month(), Some(ym(2024, 1)));
    update(
        &mut app,
        Msg::Progress(Progress::Confirmed {
            month: ym(2023, 11),
            accepted: false,
        }),
    );
    assert_eq!(app.note.as_ref().unwrap().level, Level::Warn);
    update(
        &mut app,
        Msg::Progress(Progress::Backup {
            month: ym(2024, 1),
            result: Err("disk full".into()),
        }),
    );
    let n = app.note.as_ref().unwrap();
    assert_eq!(n.level, Level::Error);
    assert!(n.text.contains("BACKUP FAILED"));
    let mut bad = cleanup_run();
    bad.outcome = "failed".into();
    bad.detail = Some("lock timeout".into());
    update(&mut app, Msg::Progress(Progress::DailyCleanup(bad)));
    assert!(app.note.as_ref().unwrap().text.contains("lock timeout"));
    update(
        &mut app,
        Msg::Notice(Level::Warn, "the pipeline is busy".into()),
    );
    assert_eq!(app.note.as_ref().unwrap().text, "the pipeline is busy");
    update(&mut app, Msg::PipelineEnded(Ok(RunEnd::Shutdown)));
}

#[test]
fn polls_mark_stale_sources_and_compute_rates() {
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
    assert_eq!(app.rates.in_per_s, Some(1_000.0));
    assert_eq!(app.rates.out_per_s, Some(500.0));
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
fn idle_twice_redraws_once() {
    let mut app = running();
    assert_eq!(
        update(&mut app, Msg::Progress(Progress::Idle)),
        vec![Command::Redraw]
    );
    assert!(update(&mut app, Msg::Progress(Progress::Idle)).is_empty());
}
