//! Ingest: events read and accepted, rejections by reason (at ingest and
//! in processing, for queues filled by other collectors), dead letters.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{kv, pane};
use crate::event::Reject;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

/// (reason, refused at ingest, refused in processing).
pub(crate) fn rejections(app: &App) -> Vec<(&'static str, u64, i64)> {
    Reject::ALL
        .iter()
        .map(|r| {
            let k = format!("rejected:{}", r.as_str());
            let at_ingest = app.redis.data.as_ref().map_or(0, |d| d.stat(&k));
            let mut in_proc = app.db.data.as_ref().map_or(0, |d| d.counter(&k));
            if *r == Reject::Duplicate {
                in_proc += app.db.data.as_ref().map_or(0, |d| d.counter("duplicate"));
            }
            (r.as_str(), at_ingest, in_proc)
        })
        .collect()
}

pub(crate) fn dead_letters(app: &App) -> u64 {
    app.redis.data.as_ref().map_or(0, |d| d.dead_letters)
        + app
            .db
            .data
            .as_ref()
            .map_or(0, |d| d.dead_letters.max(0) as u64)
}

/// Drops reasons with nothing to show (zero at ingest and in the
/// pipeline), last ones first, until `room` rows are left — so at 80×24
/// the rows that count stay visible.
fn fit_reasons(reasons: &mut Vec<(&'static str, u64, i64)>, room: usize) {
    while reasons.len() > room {
        match reasons.iter().rposition(|(_, a, b)| *a == 0 && *b == 0) {
            Some(i) => {
                reasons.remove(i);
            }
            None => break,
        }
    }
}

/// Two lines for the overview.
pub(crate) fn lines<'a>(app: &'a App, t: &Theme) -> Vec<Line<'a>> {
    let Some(r) = &app.redis.data else {
        return vec![Line::styled("ingest –", t.label())];
    };
    let rej = rejections(app);
    let total: u64 = rej.iter().map(|(_, a, b)| a + (*b).max(0) as u64).sum();
    let mut l1 = kv(t, "ingest ", group(r.stat("accepted") as i64));
    l1.extend(kv(t, " accepted of ", group(r.stat("events_read") as i64)));
    let mut l2 = kv(t, "rejected ", group(total as i64));
    l2.extend(kv(t, " · dead letters ", group(dead_letters(app) as i64)));
    vec![Line::from(l1), Line::from(l2)]
}

/// The full table (ingest view).
pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let stale = app.redis.stale_since.or(app.db.stale_since);
    let block = pane("Ingest rejections by reason", t, stale);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [summary, table] =
        ratatui::layout::Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    // Two rows follow the reasons, and the header comes first.
    let mut reasons = rejections(app);
    fit_reasons(&mut reasons, (table.height as usize).saturating_sub(3));
    let mut rows: Vec<Row> = reasons
        .into_iter()
        .map(|(why, a, b)| {
            Row::new(vec![
                Cell::from(why),
                Cell::from(Line::from(group(a as i64)).right_aligned()),
                Cell::from(Line::from(group(b)).right_aligned()),
            ])
        })
        .collect();
    let ignored = app
        .db
        .data
        .as_ref()
        .map_or(0, |d| d.counter("ignored_prior_month"));
    rows.push(Row::new(vec![
        Cell::from("old month ignored"),
        Cell::from(Line::from("").right_aligned()),
        Cell::from(Line::from(group(ignored)).right_aligned()),
    ]));
    rows.push(Row::new(vec![
        Cell::from("dead letters"),
        Cell::from(
            Line::from(group(
                app.redis.data.as_ref().map_or(0, |d| d.dead_letters) as i64
            ))
            .right_aligned(),
        ),
        Cell::from(
            Line::from(group(app.db.data.as_ref().map_or(0, |d| d.dead_letters))).right_aligned(),
        ),
    ]));
    let (read, accepted) = app
        .redis
        .data
        .as_ref()
        .map_or((0, 0), |r| (r.stat("events_read"), r.stat("accepted")));
    let header = Row::new(vec![
        Cell::from("reason"),
        Cell::from(Line::from("ingest").right_aligned()),
        Cell::from(Line::from("pipeline").right_aligned()),
    ])
    .style(t.label());
    let mut s = kv(t, "read ", group(read as i64));
    s.extend(kv(t, " · accepted ", group(accepted as i64)));
    let p = kv(
        t,
        "processed ",
        group(app.db.data.as_ref().map_or(0, |d| d.counter("processed"))),
    );
    f.render_widget(Paragraph::new(vec![Line::from(s), Line::from(p)]), summary);
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(20),
                Constraint::Length(11),
                Constraint::Length(11),
            ],
        )
        .header(header)
        .column_spacing(1),
        table,
    );
}
