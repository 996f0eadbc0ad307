//! Queue depth: the number, its history, and the in/out rates.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{human_secs, kv, pane, si};
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, RenderDirection, Sparkline};
use std::collections::VecDeque;

/// The last `n` samples of a history, for a sparkline `n` wide (it draws
/// from the left, so the newest sample ends at the right edge).
pub(crate) fn tail(h: &std::collections::VecDeque<u64>, n: usize) -> Vec<u64> {
    h.iter().skip(h.len().saturating_sub(n)).copied().collect()
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme, now: DateTime<Utc>) {
    let block = pane("Queue", t, app.redis.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [top, chart] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let Some(r) = &app.redis.data else {
        f.render_widget(
            Paragraph::new(Line::styled(
                waiting("Redis", app.redis.error.as_deref()),
                t.label(),
            )),
            top,
        );
        return;
    };
    let rate = |v: Option<f64>| v.map_or("–".into(), |v| format!("{}/s", si(v)));
    let mut spans = kv(t, "depth ", group(r.depth as i64));
    spans.extend(kv(t, "  in ", rate(app.in_per_s)));
    spans.extend(kv(t, "  out ", rate(Some(app.status.processed_per_s))));
    f.render_widget(Paragraph::new(Line::from(spans)), top);
    history(f, chart, &app.depth_history, now, t);
}

/// The depth history as a chart with its scale: the largest depth shown
/// at the top of the y axis, 0 at its foot, and under it a time axis from
/// the oldest sample shown (`-2m`) to `now` — the newest sample at the
/// right edge. Without room for both axes, the bars alone.
pub(crate) fn history(
    f: &mut Frame,
    area: Rect,
    h: &VecDeque<(DateTime<Utc>, u64)>,
    now: DateTime<Utc>,
    t: &Theme,
) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let depths: VecDeque<u64> = h.iter().map(|s| s.1).collect();
    if area.height < 2 || area.width < 16 {
        let data = tail(&depths, area.width as usize);
        f.render_widget(Sparkline::default().data(data).style(t.chart()), area);
        return;
    }
    let [bars_row, axis_row] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    // The scale: as wide as its largest label.
    let max_at = |w: usize| tail(&depths, w).into_iter().max().unwrap_or(0);
    let label_w = si(max_at(area.width as usize) as f64)
        .chars()
        .count()
        .max(1) as u16;
    let [gutter, bars] =
        Layout::horizontal([Constraint::Length(label_w + 1), Constraint::Min(0)]).areas(bars_row);
    let n = (bars.width as usize).min(h.len());
    let mut data = tail(&depths, bars.width as usize);
    let max = data.iter().copied().max().unwrap_or(0);
    data.reverse();
    f.render_widget(
        Sparkline::default()
            .data(data)
            .max(max)
            .direction(RenderDirection::RightToLeft)
            .style(t.chart()),
        bars,
    );
    let w = label_w as usize;
    let mut scale = vec![Line::styled(format!("{:>w$}┤", si(max as f64)), t.label())];
    for _ in 2..gutter.height {
        scale.push(Line::styled(format!("{:>w$}│", ""), t.label()));
    }
    if gutter.height > 1 {
        scale.push(Line::styled(format!("{:>w$}┤", "0"), t.label()));
    }
    f.render_widget(Paragraph::new(scale), gutter);
    // The time axis: the oldest sample's age where that sample is drawn.
    let oldest = h.iter().rev().nth(n.saturating_sub(1)).map(|s| s.0);
    let mut axis = format!("{:>w$}└", "");
    let span = bars.width as usize;
    if let Some(t0) = oldest {
        let label = format!("-{}", human_secs((now - t0).num_seconds()));
        let at = (span - n).min(span.saturating_sub(label.chars().count() + 4));
        axis.push_str(&"─".repeat(at));
        axis.push_str(&label);
        let used = at + label.chars().count();
        axis.push_str(&"─".repeat(span.saturating_sub(used + 3)));
        axis.push_str("now");
    } else {
        axis.push_str(&"─".repeat(span));
    }
    f.render_widget(Paragraph::new(Line::styled(axis, t.label())), axis_row);
}

/// "waiting for X" or the error that keeps it away.
pub(crate) fn waiting(source: &str, error: Option<&str>) -> String {
    match error {
        Some(e) => format!("{source}: {e}"),
        None => format!("waiting for {source}…"),
    }
}
