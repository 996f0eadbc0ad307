//! The kinds view: every request kind of the period — requests,
//! responses, completion, DVMs answering it, the top DVM — sortable and
//! filterable; Enter opens its detail.

use super::super::app::{App, group};
use super::super::panes::windows::secs;
use super::super::panes::{fit_columns, pane};
use super::super::theme::Theme;
use super::Query;
use super::dvms::{label, period_line, waiting};
use super::table::Table;
use crate::store::KindRow;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table as TableWidget};
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Kind,
    Requests,
    Responses,
    Completion,
    Answered,
    Median,
    Dvms,
    TopDvm,
}

pub(crate) const COLS: [Col; 8] = [
    Col::Kind,
    Col::Requests,
    Col::Responses,
    Col::Completion,
    Col::Answered,
    Col::Median,
    Col::Dvms,
    Col::TopDvm,
];

impl Col {
    pub(crate) fn title(self) -> &'static str {
        match self {
            Col::Kind => "kind",
            Col::Requests => "requests",
            Col::Responses => "responses",
            Col::Completion => "completion",
            Col::Answered => "answered",
            Col::Median => "median",
            Col::Dvms => "DVMs",
            Col::TopDvm => "top DVM",
        }
    }

    fn width(self) -> u16 {
        match self {
            Col::Kind => 6,
            Col::Requests | Col::Responses => 10,
            Col::Completion => 11,
            Col::Answered => 9,
            Col::Median => 6,
            Col::Dvms => 6,
            Col::TopDvm => 22,
        }
    }
}

pub(crate) fn desc_by_default(c: usize) -> bool {
    !matches!(COLS.get(c), Some(Col::Kind | Col::TopDvm))
}

/// responses / requests; `None` without requests.
pub(crate) fn completion(r: &KindRow) -> Option<f64> {
    (r.requests > 0).then(|| r.responses as f64 / r.requests as f64)
}

/// Requests answered / requests (answers are counted by result time, so
/// a period's share can pass 100 % slightly); `None` without requests.
pub(crate) fn answered(r: &KindRow) -> Option<f64> {
    (r.requests > 0).then(|| r.jobs.answered as f64 / r.requests as f64)
}

fn top(r: &KindRow) -> String {
    r.top_dvm
        .as_deref()
        .map_or_else(|| "–".into(), |id| label(id, r.top_dvm_name.as_deref()))
}

fn cmp(a: &KindRow, b: &KindRow, col: Col) -> Ordering {
    match col {
        Col::Kind => a.kind.cmp(&b.kind),
        Col::Requests => a.requests.cmp(&b.requests),
        Col::Responses => a.responses.cmp(&b.responses),
        Col::Completion => completion(a)
            .unwrap_or(-1.0)
            .total_cmp(&completion(b).unwrap_or(-1.0)),
        Col::Answered => answered(a)
            .unwrap_or(-1.0)
            .total_cmp(&answered(b).unwrap_or(-1.0)),
        Col::Median => a.jobs.median_s.cmp(&b.jobs.median_s),
        Col::Dvms => a.dvms.cmp(&b.dvms),
        Col::TopDvm => top(a).to_lowercase().cmp(&top(b).to_lowercase()),
    }
}

/// Filtered (kind number by prefix, top DVM's name anywhere) and sorted
/// (ties by kind).
pub(crate) fn visible<'a>(rows: &'a [KindRow], t: &Table) -> Vec<&'a KindRow> {
    let col = COLS.get(t.sort).copied().unwrap_or(Col::Requests);
    let mut v: Vec<&KindRow> = rows
        .iter()
        .filter(|r| t.passes(&r.kind.to_string(), r.top_dvm_name.as_deref()))
        .collect();
    v.sort_by(|a, b| {
        let o = cmp(a, b, col);
        let o = if t.desc { o.reverse() } else { o };
        o.then_with(|| a.kind.cmp(&b.kind))
    });
    v
}

pub(crate) fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{:.1}%", r * 100.0))
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let v = &app.views;
    let q = Query::Kinds(v.period);
    let stale = v.answer(&q).and_then(|a| a.stale_since);
    let block = pane("Kinds", t, stale);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let Some(rows) = v.kind_rows(v.period) else {
        f.render_widget(
            Paragraph::new(period_line(app, t, "kinds".into(), &v.kinds)),
            head,
        );
        waiting(f, body, app, t, &q);
        return;
    };
    let shown = visible(rows, &v.kinds);
    let what = if shown.len() == rows.len() {
        format!("{} request kinds", rows.len())
    } else {
        format!("{} of {} request kinds", shown.len(), rows.len())
    };
    f.render_widget(Paragraph::new(period_line(app, t, what, &v.kinds)), head);
    if shown.is_empty() {
        let text = if rows.is_empty() {
            "no request kind in this period"
        } else {
            "no kind matches the filter"
        };
        f.render_widget(Paragraph::new(Line::styled(text, t.label())), body);
        return;
    }
    let widths: Vec<u16> = COLS.iter().map(|c| c.width()).collect();
    let n = fit_columns(&widths, body.width);
    let header = Row::new(COLS[..n].iter().enumerate().map(|(i, c)| {
        let arrow = if i == v.kinds.sort {
            if v.kinds.desc { "↓" } else { "↑" }
        } else {
            ""
        };
        Cell::from(format!("{}{arrow}", c.title()))
    }))
    .style(t.label());
    let height = body.height.saturating_sub(1) as usize;
    let sel = v.kinds.selection(shown.len());
    let off = v.kinds.offset(shown.len(), height);
    let lines = shown
        .iter()
        .enumerate()
        .skip(off)
        .take(height)
        .map(|(i, r)| {
            let cells: Vec<Cell> = COLS[..n]
                .iter()
                .map(|c| {
                    Cell::from(match c {
                        Col::Kind => r.kind.to_string(),
                        Col::Requests => group(r.requests),
                        Col::Responses => group(r.responses),
                        Col::Completion => percent(completion(r)),
                        Col::Answered => percent(answered(r)),
                        Col::Median => secs(r.jobs.median_s),
                        Col::Dvms => group(r.dvms),
                        Col::TopDvm => top(r),
                    })
                })
                .collect();
            let row = Row::new(cells);
            if Some(i) == sel {
                row.style(t.selected())
            } else {
                row
            }
        });
    let mut cons: Vec<Constraint> = widths[..n].iter().map(|w| Constraint::Length(*w)).collect();
    if let Some(last) = cons.last_mut() {
        *last = Constraint::Min(widths[n - 1]);
    }
    f.render_widget(
        TableWidget::new(lines, cons)
            .header(header)
            .column_spacing(1),
        body,
    );
}
