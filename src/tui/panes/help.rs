//! The `?` overlay: every binding of the key map, by context.

use super::super::app::App;
use super::super::keymap::{BINDINGS, Ctx};
use super::super::theme::Theme;
use super::centered;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let mut lines = Vec::new();
    let key_w = BINDINGS
        .iter()
        .map(|b| b.keys_label().chars().count())
        .max()
        .unwrap_or(0);
    for ctx in [Ctx::Global, Ctx::Main, Ctx::View, Ctx::Filter, Ctx::Dialog] {
        lines.push(Line::styled(format!("{}:", ctx.title()), t.title()));
        for b in BINDINGS.iter().filter(|b| b.ctx == ctx) {
            let mut spans = vec![
                Span::styled(format!("  {:<key_w$}  ", b.keys_label()), t.key()),
                Span::raw(b.help),
            ];
            if app.info.readonly && b.action.mutates() {
                spans.push(Span::styled(" (disabled: read-only)", t.warn()));
            }
            lines.push(Line::from(spans));
        }
    }
    // The help's own keys go in its title, to keep it within 24 rows.
    let close: Vec<String> = BINDINGS
        .iter()
        .filter(|b| b.ctx == Ctx::Help)
        .map(|b| format!("{}: {}", b.keys_label(), b.help))
        .collect();
    let w = lines.iter().map(Line::width).max().unwrap_or(0).max(40) as u16 + 4;
    let h = lines.len() as u16 + 2;
    let r = centered(area, w, h);
    // Taller than the screen: it scrolls (↑/↓), and says how far.
    let inner_h = r.height.saturating_sub(2);
    let max_scroll = (lines.len() as u16).saturating_sub(inner_h);
    let scroll = app.help_scroll.min(max_scroll);
    let more = if max_scroll == 0 {
        String::new()
    } else {
        format!(" ↑↓ scroll {}/{} ", scroll, max_scroll)
    };
    f.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(t.title())
        .title(Span::styled(" Keys ", t.title()))
        .title_bottom(Line::from(Span::styled(more, t.label())).right_aligned())
        .title(
            Line::from(Span::styled(
                format!(" ? or {} ", close.join(", ")),
                t.label(),
            ))
            .right_aligned(),
        );
    f.render_widget(
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .block(block.padding(ratatui::widgets::Padding::horizontal(1))),
        r,
    );
}
