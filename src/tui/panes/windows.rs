//! Window stats on the processing clock: 1 h, 24 h, 7 d, 30 d.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{pane, short_id};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let block = pane("Windows (processing clock)", t, app.db.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if app.windows.is_empty() {
        let why = match app.db.data.as_ref().map(|d| d.clock) {
            None => "waiting for PostgreSQL…",
            Some(None) => "no event processed yet",
            Some(Some(_)) => "computing the window stats…",
        };
        f.render_widget(Paragraph::new(Line::styled(why, t.label())), inner);
        return;
    }
    let wide = inner.width >= 100;
    let num = |v: i64| Cell::from(Line::from(group(v)).right_aligned());
    let rows = app.windows.iter().map(|w| {
        let mut cells = vec![
            Cell::from(w.window),
            num(w.requests),
            num(w.responses),
            Cell::from(
                Line::from(
                    w.completion
                        .map_or("–".into(), |c| format!("{:.1}%", c * 100.0)),
                )
                .right_aligned(),
            ),
            num(w.unique_users),
            num(w.unique_dvms),
            num(w.unique_kinds),
            Cell::from(w.popular_dvm.as_deref().map_or("–".into(), short_id)),
            Cell::from(w.popular_kind.map_or("–".into(), |k| k.to_string())),
        ];
        if wide {
            cells.insert(3, num(w.feedback));
            cells.push(Cell::from(
                w.competitive_kind.map_or("–".into(), |k| k.to_string()),
            ));
        }
        Row::new(cells)
    });
    let right = |s: &'static str| Cell::from(Line::from(s).right_aligned());
    let mut header = vec![
        Cell::from("win"),
        right("requests"),
        right("responses"),
        right("compl"),
        right("users"),
        right("DVMs"),
        right("kinds"),
        Cell::from("top DVM"),
        Cell::from("top kind"),
    ];
    let mut widths = vec![
        Constraint::Length(3),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Length(8),
    ];
    if wide {
        header.insert(3, right("feedback"));
        widths.insert(3, Constraint::Length(9));
        header.push(Cell::from("competitive"));
        widths.push(Constraint::Length(11));
    }
    f.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(t.label()))
            .column_spacing(1),
        inner,
    );
}
