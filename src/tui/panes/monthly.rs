//! Monthly history: `monthly_activity` as a bar chart of requests and a
//! table, newest first.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{first, fit_columns, pane, short_id, si};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Cell, Paragraph, Row, Table};

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let title = match app.current_month() {
        Some(m) => format!("Monthly history (rolled up; {m} open)"),
        None => "Monthly history (rolled up)".into(),
    };
    let block = pane(&title, t, app.db.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if app.months.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled(
                "no month rolled up yet (a month rolls over once processing is 3 days into the next)",
                t.label(),
            ))
            .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let chart_h = if inner.height >= 9 {
        (inner.height / 2).max(5)
    } else {
        0
    };
    let [chart, table] =
        Layout::vertical([Constraint::Length(chart_h), Constraint::Min(0)]).areas(inner);
    if chart_h > 0 {
        let bar_w: u16 = 5;
        let fit = ((chart.width + 1) / (bar_w + 1)).max(1) as usize;
        let shown = &app.months[app.months.len().saturating_sub(fit)..];
        let bars: Vec<Bar> = shown
            .iter()
            .map(|m| {
                Bar::default()
                    .value(m.total_requests.max(0) as u64)
                    .text_value(si(m.total_requests as f64))
                    .label(Line::from(m.year_month.to_string()[2..].to_owned()))
            })
            .collect();
        f.render_widget(
            BarChart::default()
                .data(BarGroup::default().bars(&bars))
                .bar_width(bar_w)
                .bar_gap(1)
                .bar_style(t.chart())
                .value_style(t.value().add_modifier(ratatui::style::Modifier::REVERSED))
                .label_style(t.label()),
            chart,
        );
    }
    let num = |v: i64| Cell::from(Line::from(group(v)).right_aligned());
    let right = |s: &'static str| Cell::from(Line::from(s).right_aligned());
    // By importance; narrow panes drop the trailing ones.
    let widths = [7u16, 9, 9, 6, 7, 8, 5, 5, 11];
    let n = fit_columns(&widths, table.width);
    let rows = app.months.iter().rev().map(|m| {
        let compl = if m.total_requests > 0 {
            format!(
                "{:.1}%",
                m.total_responses as f64 * 100.0 / m.total_requests as f64
            )
        } else {
            "–".into()
        };
        Row::new(first(
            vec![
                Cell::from(m.year_month.to_string()),
                num(m.total_requests),
                num(m.total_responses),
                Cell::from(Line::from(compl).right_aligned()),
                num(m.unique_users),
                Cell::from(m.most_popular_kind.map_or("–".into(), |k| k.to_string())),
                num(m.unique_dvms),
                num(m.unique_kinds),
                Cell::from(m.most_popular_dvm.as_deref().map_or("–".into(), short_id)),
            ],
            n,
        ))
    });
    let header = Row::new(first(
        vec![
            Cell::from("month"),
            right("requests"),
            right("responses"),
            right("compl"),
            right("users"),
            Cell::from("top kind"),
            right("DVMs"),
            right("kinds"),
            Cell::from("top DVM"),
        ],
        n,
    ))
    .style(t.label());
    f.render_widget(
        Table::new(rows, widths[..n].iter().map(|w| Constraint::Length(*w)))
            .header(header)
            .column_spacing(1),
        table,
    );
}
