//! The whole screen: title, state, the current view's panes, footer, then
//! the overlays (dialog, help) last. `now` is handed in, so a render is a
//! pure function of the App and the time (snapshot tests rely on it).

use super::app::App;
use super::dialog;
use super::panes::{
    self, cleanup, clock, entities, footer, help, ingest, monthly, overflow, queue, relays, status,
    throughput, windows,
};
use super::theme::Theme;
use super::views::{self, View};
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Sparkline, Wrap};

/// Below this the screen shows only "terminal too small".
pub(crate) const MIN_WIDTH: u16 = 80;
pub(crate) const MIN_HEIGHT: u16 = 24;

pub(crate) fn render(f: &mut Frame, app: &App, t: &Theme, now: DateTime<Utc>) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(f, area, app, t);
        return;
    }
    // Alerts (a lost queue, Redis unreachable or not persisting) take a
    // line each under the state line, at most two; none: no line.
    let banner = status::banner_lines(app);
    let [title, state, alerts, note, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(banner.len().min(2) as u16),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    status::title(f, title, app, t);
    status::state(f, state, app, t);
    status::banner(f, alerts, &banner, t);
    status::note(f, note, app, t);
    match app.current_view() {
        View::History => history(f, body, app, t),
        View::Ingest => ingest_view(f, body, app, t, now),
        View::Dvms | View::Kinds | View::Months => views::render(f, body, app, t),
        View::Overview => overview(f, body, app, t, now),
    }
    footer::render(f, foot, app, t);
    if let Some(d) = &app.dialog {
        dialog::render(f, area, app, d, t);
    }
    if app.help {
        help::render(f, area, app, t);
    }
}

/// Says what is needed, and still says what the pipeline is doing.
fn too_small(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let (_, word, _) = app.state_line();
    let lines = vec![
        Line::styled("terminal too small", t.warn()),
        Line::from(format!(
            "{}×{}, need {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        )),
        Line::from(word.to_string()),
        Line::styled("q quits", t.label()),
    ];
    let h = (lines.len() as u16).min(area.height);
    let r = panes::centered(area, area.width, h);
    f.render_widget(
        Paragraph::new(lines).centered().wrap(Wrap { trim: true }),
        r,
    );
}

/// Rows the windows pane needs (border, header, four windows).
const WINDOWS_H: u16 = 7;
/// The least a cleanup-history pane is worth showing (border, header,
/// three runs).
const CLEANUP_MIN_H: u16 = 5;

/// The overview: the card's five panes — queue with its history, the
/// ground-truth clock, the overflow buffer, active/inactive entities and
/// the cleanup history — at every size from 80×24 up; window stats and
/// the monthly history fill what is left.
fn overview(f: &mut Frame, body: Rect, app: &App, t: &Theme, now: DateTime<Utc>) {
    let rest = body.height.saturating_sub(12);
    // Windows only when the cleanup history keeps its minimum beside them;
    // monthly history beside the cleanup history when both have room.
    let win_h = if rest >= WINDOWS_H + CLEANUP_MIN_H {
        WINDOWS_H
    } else {
        0
    };
    let lower_h = rest - win_h;
    let [a, b, c, d] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(win_h),
        Constraint::Length(lower_h),
    ])
    .areas(body);
    let [a1, a2] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(a);
    queue::render(f, a1, app, t, now);
    clock::render(f, a2, app, t, now);
    let [b1, b2] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(b);
    let block = panes::pane("Overflow · throughput", t, app.db.stale_since);
    let inner = block.inner(b1);
    f.render_widget(block, b1);
    let mut lines = overflow::lines(app, t, inner.width);
    lines.extend(throughput::lines(app, t));
    f.render_widget(Paragraph::new(lines), inner);
    let block = panes::pane(
        "DVMs · users · ingest",
        t,
        app.db.stale_since.or(app.redis.stale_since),
    );
    let inner = block.inner(b2);
    f.render_widget(block, b2);
    let mut lines = entities::lines(app, t, inner.width);
    lines.extend(ingest::lines(app, t));
    f.render_widget(Paragraph::new(lines), inner);
    if win_h > 0 {
        windows::render(f, c, app, t);
    }
    if lower_h >= 8 && body.width >= 120 {
        let [d1, d2] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(d);
        monthly::render(f, d1, app, t);
        cleanup::render(f, d2, app, t);
    } else if lower_h > 0 {
        cleanup::render(f, d, app, t);
    }
}

fn history(f: &mut Frame, body: Rect, app: &App, t: &Theme) {
    let [m, c] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    monthly::render(f, m, app, t);
    cleanup::render(f, c, app, t);
}

fn ingest_view(f: &mut Frame, body: Rect, app: &App, t: &Theme, now: DateTime<Utc>) {
    // Rejections and queue on top (14 rows hold the whole table; with 13,
    // at 80×24, reasons that are zero yield), the relays below: a header
    // and at least four relays at 80×24.
    let top_h = if body.height >= 30 { 14 } else { 13 };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(top_h), Constraint::Min(0)]).areas(body);
    relays::render(f, bottom, app, t, now);
    let [left, right] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(top);
    ingest::render(f, left, app, t);
    let [q, thr] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
    queue::render(f, q, app, t, now);
    let block = panes::pane("Throughput · batch latency (ms)", t, None);
    let inner = block.inner(thr);
    f.render_widget(block, thr);
    let [text, chart] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    f.render_widget(Paragraph::new(throughput::lines(app, t)), text);
    let data = queue::tail(&app.latency_history, chart.width as usize);
    f.render_widget(Sparkline::default().data(data).style(t.chart_alt()), chart);
}
