//! The ground-truth clock: open month, current day, processing clock, and
//! how far it is behind the wall clock.

use super::super::app::App;
use super::super::theme::Theme;
use super::{human_secs, kv, pane};
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme, now: DateTime<Utc>) {
    let block = pane("Clock (from the queue's events)", t, app.db.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let month = app.current_month().map_or("– (no event yet)".into(), |m| {
        let mut s = format!("{m} open");
        if app.status.awaiting.as_ref().is_some_and(|a| a.month == m) {
            s.push_str(" · rollover due");
        }
        s
    });
    let day = app
        .current_day()
        .map_or("–".into(), |d| d.format("%Y-%m-%d").to_string());
    let clock = app.clock();
    let (clock_s, lag) = match clock.and_then(|c| DateTime::from_timestamp(c, 0)) {
        Some(c) => (
            c.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            format!("{} behind wall clock", human_secs((now - c).num_seconds())),
        ),
        None => ("–".into(), "–".into()),
    };
    let lines = vec![
        Line::from(kv(t, "month  ", month)),
        Line::from(kv(t, "day    ", day)),
        Line::from(kv(t, "clock  ", clock_s)),
        Line::from(kv(t, "lag    ", lag)),
    ];
    f.render_widget(Paragraph::new(lines), inner);
}
