//! The monthly history view: every closed month (scrollable), a chart of
//! requests, responses and unique users over the months, the open month's
//! running figures; Enter opens a month's breakdown by DVM and by kind
//! (from `monthly_activity`'s per-DVM and per-kind activity).

use super::super::app::{App, group};
use super::super::panes::{first, fit_columns, pane};
use super::super::theme::Theme;
use super::chart::{self, Series};
use super::dvms::{label, share};
use super::kinds::percent;
use super::table::Table;
use super::{Loaded, Query};
use crate::store::MonthRow;
use dvmtop_core::YearMonth;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table as TableWidget};
use std::collections::HashMap;

/// The closed months as listed: newest first unless reversed.
pub(crate) fn ordered<'a>(months: &'a [MonthRow], t: &Table) -> Vec<&'a MonthRow> {
    let mut v: Vec<&MonthRow> = months.iter().collect();
    v.sort_by_key(|m| m.year_month);
    if t.desc {
        v.reverse();
    }
    v
}

/// A month's per-DVM activity, most responses first (ties by id).
pub(crate) fn dvm_breakdown(m: &MonthRow) -> Vec<(String, i64, i64)> {
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_i64()).unwrap_or(0);
    let mut v: Vec<(String, i64, i64)> = m
        .dvm_activity
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(id, a)| (id.clone(), num(a, "responses"), num(a, "feedback")))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// A month's per-kind activity, most requests first (ties by kind).
pub(crate) fn kind_breakdown(m: &MonthRow) -> Vec<(i64, i64, i64)> {
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_i64()).unwrap_or(0);
    let mut v: Vec<(i64, i64, i64)> = m
        .kind_activity
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, a)| {
                    Some((k.parse().ok()?, num(a, "requests"), num(a, "responses")))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

pub(crate) fn breakdown_len(m: &MonthRow) -> usize {
    dvm_breakdown(m).len().max(kind_breakdown(m).len())
}

/// DVM names the views have read (any DVM list answer), for labels.
pub(crate) fn names(app: &App) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    for a in &app.views.answers {
        if let Some(Loaded::Dvms(rows)) = &a.data {
            for r in rows {
                if let Some(n) = r.name.as_deref() {
                    out.insert(r.id.as_str(), n);
                }
            }
        }
    }
    out
}

fn month_label(m: YearMonth) -> String {
    m.to_string()
}

fn open_line<'a>(app: &App, t: &Theme) -> Line<'a> {
    let Some(open) = app.current_month() else {
        return Line::styled("no month open yet", t.label());
    };
    let q = Query::OpenMonth(open);
    let a = app.views.answer(&q);
    match a.and_then(|a| a.data.as_ref()) {
        Some(Loaded::OpenMonth(r)) => Line::from(vec![
            Span::styled(format!("open {open} so far: "), t.label()),
            Span::styled(
                format!(
                    "{} requests · {} responses · {} users · {} DVMs · {} kinds",
                    group(r.total_requests),
                    group(r.total_responses),
                    group(r.unique_users),
                    group(r.unique_dvms),
                    group(r.unique_kinds)
                ),
                t.value(),
            ),
            Span::styled(
                if a.is_some_and(|a| a.stale_since.is_some()) {
                    " (stale)"
                } else {
                    ""
                },
                t.error(),
            ),
        ]),
        _ => match a.and_then(|a| a.error.as_ref()) {
            Some(e) => Line::styled(
                format!("open {open}: cannot read PostgreSQL: {e}"),
                t.error(),
            ),
            None => Line::styled(format!("open {open}: loading…"), t.label()),
        },
    }
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    if let Some(super::Detail::Month(m)) = &app.views.detail
        && let Some(row) = app.months.iter().find(|r| r.year_month == *m)
    {
        return breakdown(f, area, app, t, row);
    }
    let stale = app
        .current_month()
        .and_then(|m| app.views.answer(&Query::OpenMonth(m)))
        .and_then(|a| a.stale_since)
        .or(app.db.stale_since);
    let block = pane("Monthly history", t, stale);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let months = ordered(&app.months, &app.views.months);
    let chart_h = if inner.height >= 20 {
        inner.height / 2
    } else if inner.height >= 14 {
        7
    } else {
        0
    };
    let open_line = open_line(app, t);
    let open_h = if open_line.width() > inner.width as usize {
        2
    } else {
        1
    };
    let [open, charts, table] = Layout::vertical([
        Constraint::Length(open_h),
        Constraint::Length(chart_h),
        Constraint::Min(0),
    ])
    .areas(inner);
    f.render_widget(
        Paragraph::new(open_line).wrap(ratatui::widgets::Wrap { trim: true }),
        open,
    );
    if app.months.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled(
                "no month rolled up yet (a month rolls over once processing is 3 days into the next)",
                t.label(),
            ))
            .wrap(ratatui::widgets::Wrap { trim: true }),
            table,
        );
        return;
    }
    if chart_h > 0 {
        let asc = ordered(&app.months, &Table::new(0, false));
        let labels = [
            month_label(asc[0].year_month),
            month_label(asc[asc.len() / 2].year_month),
            month_label(asc[asc.len() - 1].year_month),
        ];
        let [l, r] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .spacing(2)
            .areas(charts);
        chart::render(
            f,
            l,
            t,
            &[
                Series {
                    name: "requests",
                    style: t.chart(),
                    values: asc.iter().map(|m| m.total_requests as f64).collect(),
                },
                Series {
                    name: "responses",
                    style: t.chart_alt(),
                    values: asc.iter().map(|m| m.total_responses as f64).collect(),
                },
            ],
            labels.clone(),
        );
        chart::render(
            f,
            r,
            t,
            &[Series {
                name: "unique users",
                style: t.value(),
                values: asc.iter().map(|m| m.unique_users as f64).collect(),
            }],
            labels,
        );
    }
    let widths = [7u16, 9, 9, 8, 6, 5, 7, 5, 5, 22];
    let titles = [
        "month",
        "requests",
        "responses",
        "feedback",
        "compl",
        "DVMs",
        "users",
        "kinds",
        "top k",
        "top DVM",
    ];
    let n = fit_columns(&widths, table.width);
    let header = Row::new(first(titles.to_vec(), n)).style(t.label());
    let height = table.height.saturating_sub(1) as usize;
    let sel = app.views.months.selection(months.len());
    let off = app.views.months.offset(months.len(), height);
    let names = names(app);
    let rows = months
        .iter()
        .enumerate()
        .skip(off)
        .take(height)
        .map(|(i, m)| {
            let compl =
                (m.total_requests > 0).then(|| m.total_responses as f64 / m.total_requests as f64);
            let cells = vec![
                m.year_month.to_string(),
                group(m.total_requests),
                group(m.total_responses),
                group(m.total_feedback),
                percent(compl),
                group(m.unique_dvms),
                group(m.unique_users),
                group(m.unique_kinds),
                m.most_popular_kind.map_or("–".into(), |k| k.0.to_string()),
                m.most_popular_dvm
                    .as_deref()
                    .map_or("–".into(), |d| label(d, names.get(d).copied())),
            ];
            let row = Row::new(first(cells, n).into_iter().map(Cell::from));
            if Some(i) == sel {
                row.style(t.selected())
            } else {
                row
            }
        });
    let cons: Vec<Constraint> = widths[..n].iter().map(|w| Constraint::Length(*w)).collect();
    f.render_widget(
        TableWidget::new(rows, cons)
            .header(header)
            .column_spacing(1),
        table,
    );
}

fn breakdown(f: &mut Frame, area: Rect, app: &App, t: &Theme, m: &MonthRow) {
    let block = pane("Month breakdown", t, app.db.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [head, body] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(format!("{} ", m.year_month), t.title()),
                Span::styled(
                    format!(
                        "{} requests · {} responses · {} feedback",
                        group(m.total_requests),
                        group(m.total_responses),
                        group(m.total_feedback)
                    ),
                    t.value(),
                ),
            ]),
            Line::styled(
                format!(
                    "{} DVMs · {} users · {} kinds (Esc back)",
                    group(m.unique_dvms),
                    group(m.unique_users),
                    group(m.unique_kinds)
                ),
                t.label(),
            ),
        ]),
        head,
    );
    let [l, r] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    let off = app.views.breakdown.selected;
    let height = body.height.saturating_sub(2) as usize;
    let names = names(app);
    let dvms = dvm_breakdown(m);
    let rows = dvms.iter().skip(off).take(height).map(|(id, s, fb)| {
        Row::new([
            Cell::from(label(id, names.get(id.as_str()).copied())),
            Cell::from(group(*s)),
            Cell::from(share(*s, m.total_responses)),
            Cell::from(group(*fb)),
        ])
    });
    let block = pane("by DVM", t, None);
    f.render_widget(
        TableWidget::new(
            rows,
            [
                Constraint::Min(10),
                Constraint::Length(9),
                Constraint::Length(5),
                Constraint::Length(8),
            ],
        )
        .header(Row::new(["DVM", "responses", "share", "feedback"]).style(t.label()))
        .block(block),
        l,
    );
    let kinds = kind_breakdown(m);
    let rows = kinds.iter().skip(off).take(height).map(|(k, rq, rs)| {
        let c = (*rq > 0).then(|| *rs as f64 / *rq as f64);
        Row::new([
            Cell::from(k.to_string()),
            Cell::from(group(*rq)),
            Cell::from(group(*rs)),
            Cell::from(percent(c)),
        ])
    });
    f.render_widget(
        TableWidget::new(
            rows,
            [
                Constraint::Length(5),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Min(6),
            ],
        )
        .header(Row::new(["kind", "requests", "responses", "compl"]).style(t.label()))
        .block(pane("by kind", t, None)),
        r,
    );
}
