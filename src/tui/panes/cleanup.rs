//! Cleanup history: the audited job runs (daily cleanups, rollovers,
//! backups), newest first.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::pane;
use dvmtop_core::{Job, Outcome};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

fn job_name(job: Job) -> &'static str {
    match job {
        Job::DailyCleanup => "cleanup",
        Job::MonthlyRollover => "rollover",
        Job::Backup => "backup",
    }
}

/// The largest non-zero row counts, shortest form first.
pub fn rows_text(rows: &std::collections::BTreeMap<String, i64>) -> String {
    let mut v: Vec<(&String, &i64)> = rows.iter().filter(|(_, n)| **n > 0).collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if v.is_empty() {
        return "nothing to do".into();
    }
    v.iter()
        .map(|(k, n)| format!("{k} {}", group(**n)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let block = pane("Cleanup history (job_runs, UTC)", t, app.db.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let jobs = app
        .db
        .data
        .as_ref()
        .map(|d| d.jobs.as_slice())
        .unwrap_or_default();
    if jobs.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled("no job has run yet", t.label())),
            inner,
        );
        return;
    }
    let rows = jobs.iter().map(|j| {
        let outcome = match j.outcome {
            Outcome::Ok => Cell::from(Line::styled("ok", t.ok())),
            Outcome::Running => Cell::from(Line::styled("running", t.warn())),
            other => Cell::from(Line::styled(format!("✖{other}"), t.error())),
        };
        Row::new(vec![
            Cell::from(j.started_at.format("%H:%M:%S").to_string()),
            Cell::from(job_name(j.job)),
            Cell::from(
                j.reference_time
                    .map_or("–".into(), |r| r.format("%Y-%m-%d").to_string()),
            ),
            Cell::from(
                Line::from(j.millis().map_or("–".into(), |m| format!("{m} ms"))).right_aligned(),
            ),
            outcome,
            Cell::from(rows_text(&j.rows)),
        ])
    });
    let header = Row::new(vec![
        Cell::from("started"),
        Cell::from("job"),
        Cell::from("for day"),
        Cell::from(Line::from("took").right_aligned()),
        Cell::from("outcome"),
        Cell::from("rows affected"),
    ])
    .style(t.label());
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(7),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(header)
        .column_spacing(1),
        inner,
    );
}
