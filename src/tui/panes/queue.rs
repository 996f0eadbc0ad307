//! Queue depth: the number, its history, and the in/out rates.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{kv, pane, si};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Sparkline};

/// The last `n` samples of a history, for a sparkline `n` wide (it draws
/// from the left, so the newest sample ends at the right edge).
pub(crate) fn tail(h: &std::collections::VecDeque<u64>, n: usize) -> Vec<u64> {
    h.iter().skip(h.len().saturating_sub(n)).copied().collect()
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
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
    if chart.height > 0 {
        let data = tail(&app.depth_history, chart.width as usize);
        f.render_widget(Sparkline::default().data(data).style(t.chart()), chart);
    }
}

/// "waiting for X" or the error that keeps it away.
pub(crate) fn waiting(source: &str, error: Option<&str>) -> String {
    match error {
        Some(e) => format!("{source}: {e}"),
        None => format!("waiting for {source}…"),
    }
}
