//! The overflow buffer: later days parked while the earliest is processed.
//! Its size against the batch size (it never holds more than one batch),
//! and which days it holds.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{bar, kv};
use ratatui::text::{Line, Span};

/// Two lines: size + gauge, then the by-day breakdown.
pub(crate) fn lines<'a>(app: &'a App, t: &Theme, width: u16) -> Vec<Line<'a>> {
    let Some(size) = app.overflow() else {
        return vec![Line::styled("overflow –", t.label())];
    };
    let batch = app.info.batch_size.max(1);
    let ratio = size as f64 / batch as f64;
    let head = format!("{}/{} ", group(size as i64), group(batch as i64));
    let pct = format!(" {:>3.0}%", ratio * 100.0);
    let room = (width as usize).saturating_sub(9 + head.chars().count() + pct.len());
    let mut l1 = kv(t, "overflow ", head);
    l1.push(Span::styled(bar(ratio, room.min(20)), t.chart()));
    l1.push(Span::styled(pct, t.value()));
    let days = app.overflow_days();
    let l2 = if size == 0 {
        Line::styled("  empty: no later day parked", t.label())
    } else if days.is_empty() {
        Line::styled("  by day: –", t.label())
    } else {
        let parts: Vec<String> = days
            .iter()
            .map(|(d, n)| format!("{} {}", d.format("%m-%d"), group(*n)))
            .collect();
        Line::from(vec![
            Span::styled("  by day ", t.label()),
            Span::styled(parts.join(" · "), t.value()),
        ])
    };
    vec![Line::from(l1), l2]
}
