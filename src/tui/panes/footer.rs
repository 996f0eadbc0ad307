//! Footer hints, generated from the key map: the context's keys that fit,
//! and always the global ones (`?` help, `q` quit) at the end; when some
//! did not fit, `?` says `more`.

use super::super::app::App;
use super::super::keymap;
use super::super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

fn width(h: &[(String, &str)]) -> usize {
    h.iter()
        .map(|(k, w)| k.chars().count() + 1 + w.chars().count() + 2)
        .sum()
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let (local, global) = keymap::hints(app.ctx(), app.info.readonly);
    let room = (area.width as usize).saturating_sub(width(&global) + 1);
    let mut shown = Vec::new();
    let mut dropped = false;
    for h in local {
        if width(&shown) + width(std::slice::from_ref(&h)) > room {
            dropped = true;
            break;
        }
        shown.push(h);
    }
    // Keys that did not fit are behind `?`: say so.
    shown.extend(global.into_iter().map(|(k, w)| {
        if dropped && w == "help" {
            (k, "more")
        } else {
            (k, w)
        }
    }));
    let mut spans = vec![Span::styled(" ", t.bar())];
    for (k, w) in shown {
        spans.push(Span::styled(k, t.key()));
        spans.push(Span::styled(format!(" {w}  "), t.bar()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)).style(t.bar()), area);
}
