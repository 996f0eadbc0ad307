//! The DVM and kind details: what one DVM (or kind) did over the period,
//! with a per-day chart; Esc goes back to the list.

use super::super::app::{App, group};
use super::super::panes::pane;
use super::super::panes::windows::secs;
use super::super::theme::Theme;
use super::chart::{self, Series};
use super::dvms::{label, share, waiting};
use super::{Loaded, Query};
use crate::store::{DvmDetail, JobFigures, KindDetail};
use chrono::NaiveDate;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table as TableWidget, Wrap};

/// Every day of `[first, last]` with its value (0 where absent).
pub(crate) fn fill_days<T: Copy>(
    first: NaiveDate,
    last: NaiveDate,
    rows: &[(NaiveDate, T)],
    zero: T,
) -> Vec<(NaiveDate, T)> {
    let mut out = Vec::new();
    let mut d = first;
    let mut i = 0;
    // A window is at most a month long; the bound guards a bad range.
    while d <= last && out.len() < 400 {
        while i < rows.len() && rows[i].0 < d {
            i += 1;
        }
        let v = if i < rows.len() && rows[i].0 == d {
            rows[i].1
        } else {
            zero
        };
        out.push((d, v));
        match d.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

/// A DVM's or kind's job figures in one phrase.
fn jobs_text(j: &JobFigures) -> String {
    format!(
        "{} answered · median {} · p90 {}",
        group(j.answered),
        secs(j.median_s),
        secs(j.p90_s)
    )
}

fn day_labels(days: &[NaiveDate]) -> [String; 3] {
    let f = |d: Option<&NaiveDate>| d.map_or_else(String::new, |d| d.format("%m-%d").to_string());
    [f(days.first()), f(days.get(days.len() / 2)), f(days.last())]
}

fn loaded<'a>(app: &'a App, q: &Query) -> Option<&'a Loaded> {
    app.views.answer(q).and_then(|a| a.data.as_ref())
}

pub(crate) fn render_dvm(f: &mut Frame, area: Rect, app: &App, t: &Theme, id: &str) {
    let q = Query::Dvm(id.to_owned(), app.views.period);
    let stale = app.views.answer(&q).and_then(|a| a.stale_since);
    let block = pane("DVM detail", t, stale);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(Loaded::Dvm(d)) = loaded(app, &q) else {
        return waiting(f, inner, app, t, &q);
    };
    dvm_body(f, inner, app, t, d);
}

fn dvm_body(f: &mut Frame, area: Rect, app: &App, t: &Theme, d: &DvmDetail) {
    let name = d.profile.as_ref().and_then(|p| p.name.as_deref());
    let mut lines = vec![Line::from(vec![
        Span::styled(label(&d.id, name), t.title()),
        Span::styled(format!("  {}", d.id), t.label()),
    ])];
    if let Some(p) = &d.profile {
        let about: String = p
            .about
            .as_deref()
            .unwrap_or("")
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        lines.push(Line::from(vec![
            Span::styled("profile ", t.label()),
            Span::styled(
                format!("announced {}", p.announced_at.format("%Y-%m-%d")),
                t.value(),
            ),
            Span::styled(
                if about.is_empty() {
                    String::new()
                } else {
                    format!(" · {about}")
                },
                t.value(),
            ),
        ]));
    } else {
        lines.push(Line::styled(
            "profile none (no NIP-89 announcement seen)",
            t.label(),
        ));
    }
    let state = match &d.lifecycle {
        Some(l) if l.active => format!(
            "active · first seen {} · last seen {}",
            l.first_seen.format("%Y-%m-%d %H:%M"),
            l.last_seen.format("%Y-%m-%d %H:%M")
        ),
        Some(l) => format!(
            "inactive since {} · first seen {} · last seen {}",
            l.deactivated_at
                .map_or("?".into(), |t| t.format("%Y-%m-%d").to_string()),
            l.first_seen.format("%Y-%m-%d"),
            l.last_seen.format("%Y-%m-%d")
        ),
        None => "deleted by retention (no longer in dvms)".into(),
    };
    lines.push(Line::from(vec![
        Span::styled("state ", t.label()),
        Span::styled(state, t.value()),
    ]));
    let fb: Vec<String> = dvmtop_core::jobs::FeedbackStatus::ALL
        .iter()
        .zip(d.feedback_status)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{} {}", s.as_str(), group(n)))
        .collect();
    lines.push(Line::from(vec![
        Span::styled("jobs ", t.label()),
        Span::styled(
            format!(
                "{} · feedback: {}",
                jobs_text(&d.jobs),
                if fb.is_empty() {
                    "none".to_owned()
                } else {
                    fb.join(", ")
                }
            ),
            t.value(),
        ),
    ]));
    // The kinds last: a long list wraps and is what gets cut first.
    let kinds = if d.kinds.is_empty() {
        "none".to_owned()
    } else {
        d.kinds
            .iter()
            .map(|(k, a, b)| format!("{k} ({}…{})", a.format("%y-%m-%d"), b.format("%y-%m-%d")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    lines.push(Line::from(vec![
        Span::styled("kinds ", t.label()),
        Span::styled(kinds, t.value()),
    ]));
    let text_h = (lines.len() as u16 + 1).min(area.height / 2);
    let [text, rest] =
        Layout::vertical([Constraint::Length(text_h), Constraint::Min(0)]).areas(area);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), text);
    let [c, m] =
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(rest);
    let days = app.views.period.days(app.clock());
    let filled = days.map_or_else(Vec::new, |(a, b)| fill_days(a, b, &d.per_day, 0));
    let total: i64 = filled.iter().map(|(_, v)| v).sum();
    let block = pane("responses per day", t, None);
    let ci = block.inner(c);
    f.render_widget(block, c);
    if filled.is_empty() || total == 0 {
        f.render_widget(
            Paragraph::new(chart::empty(t, "no response in this period")),
            ci,
        );
    } else {
        let dates: Vec<NaiveDate> = filled.iter().map(|(d, _)| *d).collect();
        chart::render(
            f,
            ci,
            t,
            &[Series {
                name: "responses",
                style: t.chart(),
                values: filled.iter().map(|(_, v)| *v as f64).collect(),
            }],
            day_labels(&dates),
        );
    }
    let height = m.height.saturating_sub(3) as usize;
    let off = app.views.detail_table.offset(d.months.len(), height);
    let sel = app.views.detail_table.selection(d.months.len());
    let rows = d
        .months
        .iter()
        .enumerate()
        .skip(off)
        .take(height)
        .map(|(i, (ym, s, fb))| {
            let r = Row::new([
                Cell::from(ym.clone()),
                Cell::from(group(*s)),
                Cell::from(group(*fb)),
            ]);
            if Some(i) == sel {
                r.style(t.selected())
            } else {
                r
            }
        });
    let title = if d.months.is_empty() {
        "monthly history: none"
    } else {
        "monthly history"
    };
    f.render_widget(
        TableWidget::new(
            rows,
            [
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Min(8),
            ],
        )
        .header(Row::new(["month", "responses", "feedback"]).style(t.label()))
        .block(pane(title, t, None)),
        m,
    );
}

pub(crate) fn render_kind(f: &mut Frame, area: Rect, app: &App, t: &Theme, kind: i32) {
    let q = Query::Kind(kind, app.views.period);
    let stale = app.views.answer(&q).and_then(|a| a.stale_since);
    let block = pane("Kind detail", t, stale);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(Loaded::Kind(k)) = loaded(app, &q) else {
        return waiting(f, inner, app, t, &q);
    };
    kind_body(f, inner, app, t, k);
}

fn kind_body(f: &mut Frame, area: Rect, app: &App, t: &Theme, k: &KindDetail) {
    let days = app.views.period.days(app.clock());
    let req: Vec<(NaiveDate, i64)> = k.per_day.iter().map(|(d, r, _)| (*d, *r)).collect();
    let res: Vec<(NaiveDate, i64)> = k.per_day.iter().map(|(d, _, s)| (*d, *s)).collect();
    let (req, res) = match days {
        Some((a, b)) => (fill_days(a, b, &req, 0), fill_days(a, b, &res, 0)),
        None => (Vec::new(), Vec::new()),
    };
    let total_rq: i64 = req.iter().map(|(_, v)| v).sum();
    let total_rs: i64 = res.iter().map(|(_, v)| v).sum();
    let head = Line::from(vec![
        Span::styled(format!("kind {} ", k.kind), t.title()),
        Span::styled(
            format!(
                "period {} · {} requests · {} responses (daily rollups) · {} DVMs",
                app.views.period.label(),
                group(total_rq),
                group(total_rs),
                k.dvms.len(),
            ),
            t.value(),
        ),
    ]);
    let jobs = Line::from(vec![
        Span::styled("jobs ", t.label()),
        Span::styled(jobs_text(&k.jobs), t.value()),
    ]);
    let head = vec![head, jobs];
    let [h, rest] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(area);
    f.render_widget(Paragraph::new(head), h);
    let [c, m] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(rest);
    let block = pane("per day", t, None);
    let ci = block.inner(c);
    f.render_widget(block, c);
    if req.is_empty() || total_rq + total_rs == 0 {
        f.render_widget(
            Paragraph::new(chart::empty(t, "nothing in this period")),
            ci,
        );
    } else {
        let dates: Vec<NaiveDate> = req.iter().map(|(d, _)| *d).collect();
        chart::render(
            f,
            ci,
            t,
            &[
                Series {
                    name: "requests",
                    style: t.chart(),
                    values: req.iter().map(|(_, v)| *v as f64).collect(),
                },
                Series {
                    name: "responses",
                    style: t.chart_alt(),
                    values: res.iter().map(|(_, v)| *v as f64).collect(),
                },
            ],
            day_labels(&dates),
        );
    }
    let height = m.height.saturating_sub(3) as usize;
    let off = app.views.detail_table.offset(k.dvms.len(), height);
    let sel = app.views.detail_table.selection(k.dvms.len());
    let sum: i64 = k.dvms.iter().map(|(_, _, s)| (*s).max(0)).sum();
    let rows = k
        .dvms
        .iter()
        .enumerate()
        .skip(off)
        .take(height)
        .map(|(i, (id, name, s))| {
            let (s, sh) = if *s < 0 {
                ("–".into(), "–".into())
            } else {
                (group(*s), share(*s, sum))
            };
            let r = Row::new([
                Cell::from(label(id, name.as_deref())),
                Cell::from(s),
                Cell::from(sh),
            ]);
            if Some(i) == sel {
                r.style(t.selected())
            } else {
                r
            }
        });
    f.render_widget(
        TableWidget::new(
            rows,
            [
                Constraint::Min(10),
                Constraint::Length(9),
                Constraint::Length(5),
            ],
        )
        .header(Row::new(["DVM", "responses", "share"]).style(t.label()))
        .block(pane("its DVMs", t, None)),
        m,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, n).unwrap()
    }

    #[test]
    fn missing_days_are_zero() {
        let got = fill_days(d(1), d(4), &[(d(2), 5), (d(4), 1)], 0);
        assert_eq!(got, vec![(d(1), 0), (d(2), 5), (d(3), 0), (d(4), 1)]);
        assert_eq!(fill_days(d(3), d(3), &[], 0), vec![(d(3), 0)]);
        assert!(fill_days(d(4), d(3), &[(d(3), 1)], 0).is_empty());
    }
}
