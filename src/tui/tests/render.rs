//! Whole-screen snapshots (ratatui TestBackend + insta) at 80×24 and
//! 120×40, from fixed data and a fixed "now", plus the too-small screen.
//! The `.snap` files are committed; a mismatch fails (CI never writes).

use super::fixture::*;
use crate::tui::app::{App, Msg, update};
use crate::tui::render::render;
use crate::tui::theme::{Palette, Theme};
use crate::tui::views::View;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

pub(crate) fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, app, &Theme::new(Palette::Indexed), now()))
        .unwrap();
    t
}

pub(crate) fn snap(name: &str, app: &App, w: u16, h: u16) {
    let t = draw(app, w, h);
    // What a live screen takes from the wall clock or from measured rates
    // is masked, so the snapshots hold the layout and the data's words and
    // figures, not timing.
    insta::with_settings!({
        snapshot_path => "snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
        filters => vec![
            (r"│\d{2}:\d{2}:\d{2} ", "│[time] "),
            (r"since \d{2}:\d{2}:\d{2}", "since [time]"),
            (r"(\d+y )?\d+d( \d+h)? behind wall clock", "[lag] behind wall clock"),
            (r"\b[\d,.]+(k|M)?/s\b", "[rate]/s"),
            (r"\b[\d,.]+ ev/s\b", "[rate] ev/s"),
            (r"\b\d+ ms\b", "[ms]"),
        ],
    }, {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), t.backend());
    });
}

fn with_dialog() -> App {
    let mut app = busy_app();
    // February is still open while March is processed; April waits.
    app.months.pop();
    if let Some(d) = &mut app.db.data {
        d.current_month = Some("2024-02".into());
    }
    update(
        &mut app,
        Msg::Status(Box::new(waiting_status(ym(2024, 2), true, 302_118))),
    );
    app
}

fn with_help() -> App {
    let mut app = busy_app();
    update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE)),
    );
    app
}

#[test]
fn main_screen() {
    snap("main", &busy_app(), 80, 24);
    snap("main", &busy_app(), 120, 40);
}

#[test]
fn help_overlay() {
    snap("help", &with_help(), 80, 24);
    snap("help", &with_help(), 120, 40);
}

#[test]
fn rollover_dialog() {
    snap("dialog", &with_dialog(), 80, 24);
    snap("dialog", &with_dialog(), 120, 40);
}

#[test]
fn other_views() {
    let mut app = busy_app();
    app.view = View::History.index();
    snap("history", &app, 80, 24);
    app.view = View::Ingest.index();
    snap("ingest", &app, 80, 24);
    // Wide enough for the relays' last errors in the table.
    snap("ingest", &app, 120, 40);
}

#[test]
fn ingest_view_without_relays_says_how_to_add_them() {
    let mut app = busy_app();
    app.view = View::Ingest.index();
    if let Some(r) = &mut app.redis.data {
        r.relays.clear();
    }
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains("Relays · 0/0 connected"), "{text}");
    assert!(text.contains("no relays: dvmtop --relay wss://"), "{text}");
}

#[test]
fn too_small() {
    snap("too_small", &busy_app(), 60, 20);
    // One column short is already too small.
    let t = draw(&busy_app(), 79, 24);
    let text = format!("{}", t.backend());
    assert!(text.contains("terminal too small"), "{text}");
    assert!(text.contains("79×24, need 80×24"));
}

#[test]
fn starting_screen_without_data() {
    snap("empty", &App::new(info()), 80, 24);
}

#[test]
fn stale_data_is_marked() {
    let mut app = busy_app();
    let mut p = poll(at(2025, 6, 1, 11, 59, 30), 48_211, 899_120, 812_345);
    p.db = Err("PostgreSQL did not answer within 3 s".into());
    update(&mut app, Msg::Polled(Box::new(p)));
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains("stale since 11:59:30"), "{text}");
    // The figures are still there.
    assert!(text.contains("2024-03-14"));
}

#[test]
fn monochrome_keeps_the_words() {
    let app = with_dialog();
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| render(f, &app, &Theme::new(Palette::Mono), now()))
        .unwrap();
    let buf = t.backend().buffer();
    let text = format!("{}", t.backend());
    assert!(text.contains("WAITING") && text.contains("Not yet (n)"));
    for cell in buf.content() {
        assert!(
            matches!(cell.fg, ratatui::style::Color::Reset)
                && matches!(cell.bg, ratatui::style::Color::Reset),
            "NO_COLOR must not paint colours: {cell:?}"
        );
    }
}

/// Render cost of one full frame at 120×40 (the figure in README.md comes
/// from `cargo nextest run --release render_time -- --nocapture`).
#[test]
fn render_time_per_frame() {
    let mut app = with_dialog();
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let theme = Theme::new(Palette::Indexed);
    let n = 200;
    let start = std::time::Instant::now();
    for i in 0..n {
        // Alternate views so every frame repaints most cells.
        app.view = [View::Overview, View::History, View::Ingest][i % 3].index();
        t.draw(|f| render(f, &app, &theme, now())).unwrap();
    }
    let per = start.elapsed() / n as u32;
    println!("render_time_per_frame: {per:?} at 120x40 ({n} frames)");
    assert!(
        per < std::time::Duration::from_millis(50),
        "{per:?} per frame"
    );
}

#[test]
fn alerts_and_an_unreachable_redis_are_a_banner_under_the_state_line() {
    let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T12:00:00Z")
        .unwrap()
        .to_utc();
    let mut app = busy_app();
    app.status.alerts = vec![dvmtop_core::Alert::new(
        dvmtop_core::alert::QUEUE_LOST,
        dvmtop_core::Severity::Critical,
        "queue of namespace x lost: Redis restarted without its data",
        t,
    )];
    app.status.redis_unreachable = Some(crate::queue::Outage {
        since: t,
        error: "Connection refused".into(),
    });
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(
        text.contains("▲ Redis unreachable since 12:00:00 UTC, retrying"),
        "{text}"
    );
    assert!(
        text.contains("▲ error: queue of namespace x lost"),
        "{text}"
    );
    let text = format!("{}", draw(&busy_app(), 80, 24).backend());
    assert!(!text.contains('▲'), "no alert, no banner: {text}");
}

#[test]
fn cleanup_history_scrolled() {
    let mut app = busy_app();
    many_jobs(&mut app);
    snap("cleanup_top", &app, 80, 24);
    for _ in 0..3 {
        update(
            &mut app,
            Msg::Key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE)),
        );
    }
    snap("cleanup_scrolled", &app, 80, 24);
}

/// Each screen line's words, as the words of the texts it shows: a word
/// on screen that is not one of them (nor an ellipsis) was cut.
fn assert_no_word_cut(screen: &str, texts: &[&str]) {
    let words: std::collections::BTreeSet<&str> = texts.iter().flat_map(|t| t.split(' ')).collect();
    for line in screen.lines().take(4) {
        let line = line.trim_matches('"');
        for w in line.split(' ').filter(|w| w.len() > 1) {
            let w = w.trim_end_matches('…');
            if w.is_empty() || w.chars().all(|c| !c.is_alphanumeric()) {
                continue;
            }
            assert!(
                words.contains(w) || !texts.iter().any(|t| t.contains(w)),
                "{w:?} is cut in:\n{screen}"
            );
        }
    }
}

#[test]
fn long_state_lines_and_alerts_shorten_by_whole_words_at_80_columns() {
    let mut app = with_dialog();
    app.dialog = None;
    let why = "rollover of 2024-02 due: waiting for confirmation; nothing moves until it is confirmed (c reviews it)";
    let alert = dvmtop_core::Alert {
        kind: "relay_down".into(),
        severity: dvmtop_core::Severity::Warning,
        message: "relay wss://relay.example.com disconnected for 12 minutes: connect: IO error: Connection refused".into(),
        since: now(),
    };
    let line = format!("{}: {}", alert.kind, alert.message);
    update(&mut app, Msg::Alerts(vec![alert]));
    assert!(app.state_line().2.contains("nothing moves until"));
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains("nothing moves …"), "{text}");
    assert!(text.contains("disconnected for 12 minutes: …"), "{text}");
    assert_no_word_cut(&text, &[why, &line]);
    snap("long_state", &app, 80, 24);
}

#[test]
fn a_full_share_is_never_cut() {
    let mut app = busy_app();
    if let Some(d) = &mut app.db.data {
        d.dvms_inactive = 0;
        d.users_active = 12_911;
        d.users_inactive = 0;
    }
    let text = format!("{}", draw(&app, 80, 24).backend());
    let dvms = text.lines().find(|l| l.contains("│DVMs ")).unwrap();
    assert!(dvms.contains(" 100%"), "{text}");
    let users = text.lines().find(|l| l.contains("│users ")).unwrap();
    assert!(users.contains(" 100%"), "{text}");
}
