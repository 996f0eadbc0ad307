//! Window stats on the processing clock: 1 h, 24 h, 7 d, 30 d, with the
//! job analytics' answered share and median/p90 response time.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{pane, short_id};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    // The matching state held (requests kept for the horizon), so an
    // operator sees what bounds its memory.
    let (held, early) = app.status.jobs_held;
    let title = if held + early > 0 {
        format!(
            "Windows (processing clock) · matching: {} requests held, {} awaited",
            group(held as i64),
            group(early as i64)
        )
    } else {
        "Windows (processing clock)".to_owned()
    };
    let block = pane(&title, t, app.db.stale_since);
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
            Cell::from(
                Line::from(w.answered_pct.map_or("–".into(), |p| format!("{p:.0}%")))
                    .right_aligned(),
            ),
            Cell::from(
                Line::from(format!(
                    "{}/{}",
                    secs(w.median_response_s),
                    secs(w.p90_response_s)
                ))
                .right_aligned(),
            ),
            num(w.unique_users),
            num(w.unique_dvms),
            Cell::from(w.popular_dvm.as_deref().map_or("–".into(), short_id)),
            Cell::from(w.popular_kind.map_or("–".into(), |k| k.to_string())),
        ];
        if wide {
            cells.insert(8, num(w.unique_kinds));
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
        right("answ"),
        right("med/p90"),
        right("users"),
        right("DVMs"),
        Cell::from("top DVM"),
        Cell::from("top kind"),
    ];
    let mut widths = vec![
        Constraint::Length(3),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Length(8),
    ];
    if wide {
        // The kinds column (after DVMs) only where there is room.
        header.insert(8, right("kinds"));
        widths.insert(8, Constraint::Length(5));
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

/// A response time in at most four characters: `42s`, `5m`, `31h`, `2d`
/// (rounded); `–` for none.
pub(crate) fn secs(v: Option<i64>) -> String {
    let round = |s: i64, unit: i64| (s + unit / 2) / unit;
    match v {
        None => "–".into(),
        Some(s) if s < 100 => format!("{s}s"),
        Some(s) if s < 100 * 60 => format!("{}m", round(s, 60)),
        Some(s) if s < 100 * 3600 => format!("{}h", round(s, 3600)),
        Some(s) => format!("{}d", round(s, 86_400)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn response_times_are_compact() {
        let f = super::secs;
        assert_eq!(
            [
                f(None),
                f(Some(42)),
                f(Some(270)),
                f(Some(7560)),
                f(Some(400_000))
            ],
            ["–", "42s", "5m", "2h", "5d"]
        );
    }
}
