//! The DVMs view: every DVM of the period, sortable by each column,
//! filtered by name or id prefix, scrolled; Enter opens its detail.

use super::super::app::{App, group};
use super::super::panes::windows::secs;
use super::super::panes::{fit_columns, pane, short_id};
use super::super::theme::Theme;
use super::Query;
use super::table::Table;
use crate::store::DvmRow;
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table as TableWidget};
use std::cmp::Ordering;

/// The columns, in display (and sort-key) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Name,
    Responses,
    Answered,
    Median,
    P90,
    Feedback,
    Kinds,
    Share,
    FirstSeen,
    LastSeen,
    State,
}

pub(crate) const COLS: [Col; 11] = [
    Col::Name,
    Col::Responses,
    Col::Answered,
    Col::Median,
    Col::P90,
    Col::Feedback,
    Col::Kinds,
    Col::Share,
    Col::FirstSeen,
    Col::LastSeen,
    Col::State,
];

impl Col {
    pub(crate) fn title(self) -> &'static str {
        match self {
            Col::Name => "DVM",
            Col::Responses => "responses",
            Col::Answered => "answered",
            Col::Median => "median",
            Col::P90 => "p90",
            Col::Feedback => "feedback",
            Col::Kinds => "kinds",
            Col::Share => "share",
            Col::FirstSeen => "first seen",
            Col::LastSeen => "last seen",
            Col::State => "state",
        }
    }

    fn width(self) -> u16 {
        match self {
            Col::Name => 22,
            Col::Responses => 9,
            Col::Answered => 8,
            Col::Median | Col::P90 => 6,
            Col::Feedback => 8,
            Col::Kinds => 14,
            Col::Share => 6,
            Col::FirstSeen | Col::LastSeen => 10,
            Col::State => 8,
        }
    }
}

/// Counts sort largest first, names and dates smallest first.
pub(crate) fn desc_by_default(c: usize) -> bool {
    matches!(
        COLS.get(c),
        Some(
            Col::Responses
                | Col::Answered
                | Col::Median
                | Col::P90
                | Col::Feedback
                | Col::Kinds
                | Col::Share
        )
    )
}

/// What the list shows for a DVM: its NIP-89 name, else a short id.
pub(crate) fn label(id: &str, name: Option<&str>) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.chars().filter(|c| !c.is_control()).collect(),
        None => short_id(id),
    }
}

fn state_rank(r: &DvmRow) -> u8 {
    match r.active {
        Some(true) => 0,
        Some(false) => 1,
        None => 2,
    }
}

fn cmp(a: &DvmRow, b: &DvmRow, col: Col) -> Ordering {
    match col {
        // Sorted with cached labels in `visible`.
        Col::Name => Ordering::Equal,
        Col::Responses | Col::Share => a.responses.cmp(&b.responses),
        Col::Answered => a.jobs.answered.cmp(&b.jobs.answered),
        // No samples sorts below every time.
        Col::Median => a.jobs.median_s.cmp(&b.jobs.median_s),
        Col::P90 => a.jobs.p90_s.cmp(&b.jobs.p90_s),
        Col::Feedback => a.feedback.cmp(&b.feedback),
        Col::Kinds => a.kinds.len().cmp(&b.kinds.len()),
        Col::FirstSeen => a.first_seen.cmp(&b.first_seen),
        Col::LastSeen => a.last_seen.cmp(&b.last_seen),
        Col::State => state_rank(a).cmp(&state_rank(b)),
    }
}

/// The rows the table shows: filtered, then sorted by the table's column
/// and direction (ties by id, so the order is stable across reloads).
pub(crate) fn visible<'a>(rows: &'a [DvmRow], t: &Table) -> Vec<&'a DvmRow> {
    let col = COLS.get(t.sort).copied().unwrap_or(Col::Responses);
    let v = rows.iter().filter(|r| t.passes(&r.id, r.name.as_deref()));
    let dir = |o: Ordering| if t.desc { o.reverse() } else { o };
    if col == Col::Name {
        // Labels are built once, not in every comparison (1,000 DVMs).
        let mut keyed: Vec<(String, &DvmRow)> = v
            .map(|r| (label(&r.id, r.name.as_deref()).to_lowercase(), r))
            .collect();
        keyed.sort_by(|a, b| dir(a.0.cmp(&b.0)).then_with(|| a.1.id.cmp(&b.1.id)));
        return keyed.into_iter().map(|(_, r)| r).collect();
    }
    let mut v: Vec<&DvmRow> = v.collect();
    v.sort_by(|a, b| dir(cmp(a, b, col)).then_with(|| a.id.cmp(&b.id)));
    v
}

fn date(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".into(), |t| t.format("%Y-%m-%d").to_string())
}

fn kinds_text(kinds: &[i32], w: usize) -> String {
    let all = kinds
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    if all.chars().count() <= w {
        return all;
    }
    let mut s = String::new();
    for (i, k) in kinds.iter().enumerate() {
        let more = format!(" +{}", kinds.len() - i);
        let next = if s.is_empty() {
            k.to_string()
        } else {
            format!("{s} {k}")
        };
        if next.chars().count() + more.chars().count() > w {
            return if s.is_empty() {
                format!("{} kinds", kinds.len())
            } else {
                format!("{s}{more}")
            };
        }
        s = next;
    }
    s
}

/// The period line shared by the DVM and kind views.
pub(crate) fn period_line<'a>(app: &App, t: &Theme, what: String, filter: &Table) -> Line<'a> {
    let p = app.views.period;
    let mut spans = vec![
        Span::styled("period ", t.label()),
        Span::styled(p.label(), t.value()),
    ];
    if let Some((a, b)) = p.days(app.clock()) {
        spans.push(Span::styled(format!(" ({a} … {b})"), t.label()));
    }
    spans.push(Span::styled(format!(" · {what}"), t.value()));
    if app.views.filtering || !filter.filter.is_empty() {
        spans.push(Span::styled(" · filter ", t.label()));
        let cursor = if app.views.filtering { "▏" } else { "" };
        spans.push(Span::styled(format!("{}{cursor}", filter.filter), t.key()));
    }
    Line::from(spans)
}

/// "loading…", or the error, when there is nothing to show yet.
pub(crate) fn waiting(f: &mut Frame, area: Rect, app: &App, t: &Theme, q: &Query) {
    let msg = match app.views.answer(q).and_then(|a| a.error.as_ref()) {
        Some(e) => Line::styled(format!("cannot read PostgreSQL: {e}"), t.error()),
        None => Line::styled("loading…", t.label()),
    };
    f.render_widget(
        Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }),
        area,
    );
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let v = &app.views;
    let q = Query::Dvms(v.period);
    let stale = v.answer(&q).and_then(|a| a.stale_since);
    let block = pane("DVMs", t, stale);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let Some(rows) = v.dvm_rows(v.period) else {
        f.render_widget(
            Paragraph::new(period_line(app, t, "DVMs".into(), &v.dvms)),
            head,
        );
        waiting(f, body, app, t, &q);
        return;
    };
    let shown = visible(rows, &v.dvms);
    let total: i64 = rows.iter().map(|r| r.responses).sum();
    let what = if shown.len() == rows.len() {
        format!("{} DVMs", group(rows.len() as i64))
    } else {
        format!(
            "{} of {} DVMs",
            group(shown.len() as i64),
            group(rows.len() as i64)
        )
    };
    f.render_widget(Paragraph::new(period_line(app, t, what, &v.dvms)), head);
    if shown.is_empty() {
        let text = if rows.is_empty() {
            "no DVM answered in this period"
        } else {
            "no DVM matches the filter"
        };
        f.render_widget(Paragraph::new(Line::styled(text, t.label())), body);
        return;
    }
    let widths: Vec<u16> = COLS.iter().map(|c| c.width()).collect();
    let n = fit_columns(&widths, body.width);
    let name_w = body
        .width
        .saturating_sub(widths[1..n].iter().map(|w| w + 1).sum::<u16>())
        .max(8);
    let header = Row::new(COLS[..n].iter().enumerate().map(|(i, c)| {
        let arrow = if i == v.dvms.sort {
            if v.dvms.desc { "↓" } else { "↑" }
        } else {
            ""
        };
        Cell::from(format!("{}{arrow}", c.title()))
    }))
    .style(t.label());
    let height = body.height.saturating_sub(1) as usize;
    let sel = v.dvms.selection(shown.len());
    let off = v.dvms.offset(shown.len(), height);
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
                        Col::Name => label(&r.id, r.name.as_deref()),
                        Col::Responses => group(r.responses),
                        Col::Answered => group(r.jobs.answered),
                        Col::Median => secs(r.jobs.median_s),
                        Col::P90 => secs(r.jobs.p90_s),
                        Col::Feedback => group(r.feedback),
                        Col::Kinds => kinds_text(&r.kinds, c.width() as usize),
                        Col::Share => share(r.responses, total),
                        Col::FirstSeen => date(r.first_seen),
                        Col::LastSeen => date(r.last_seen),
                        Col::State => state(r.active).into(),
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
    let mut cons = vec![Constraint::Length(name_w)];
    cons.extend(widths[1..n].iter().map(|w| Constraint::Length(*w)));
    f.render_widget(
        TableWidget::new(lines, cons)
            .header(header)
            .column_spacing(1),
        body,
    );
}

pub(crate) fn state(active: Option<bool>) -> &'static str {
    match active {
        Some(true) => "active",
        Some(false) => "inactive",
        None => "deleted",
    }
}

/// `part` as a percentage of `total`, or "–".
pub(crate) fn share(part: i64, total: i64) -> String {
    if total > 0 {
        format!("{:.1}%", part as f64 * 100.0 / total as f64)
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_cut_with_a_count() {
        assert_eq!(kinds_text(&[5300, 5050], 14), "5300 5050");
        assert_eq!(kinds_text(&[5000, 5001, 5002, 5003], 14), "5000 5001 +2");
        assert_eq!(kinds_text(&[], 14), "");
    }

    #[test]
    fn labels_prefer_the_profile_name() {
        let id = "ab".repeat(32);
        assert_eq!(label(&id, Some(" Translator ")), "Translator");
        assert_eq!(label(&id, Some("")), "ababab…abab");
        assert_eq!(label(&id, None), "ababab…abab");
        assert_eq!(share(1, 4), "25.0%");
        assert_eq!(share(0, 0), "–");
    }
}
