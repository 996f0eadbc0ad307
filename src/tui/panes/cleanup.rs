//! Cleanup history: the audited job runs (daily cleanups, rollovers,
//! backups), newest first.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{fit, fit_words, pane};
use crate::store::JobRun;
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

/// The non-zero row counts, largest first, in at most `room` characters:
/// the tables that do not fit yield whole (`entity_activity 1,872 …`);
/// where not even the first fits, the total (`1,884 rows`).
pub(crate) fn rows_text(rows: &std::collections::BTreeMap<String, i64>, room: usize) -> String {
    let mut v: Vec<(&String, &i64)> = rows.iter().filter(|(_, n)| **n > 0).collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if v.is_empty() {
        return fit_words("nothing to do", room);
    }
    let parts: Vec<String> = v
        .iter()
        .map(|(k, n)| format!("{k} {}", group(**n)))
        .collect();
    let more = if parts.len() > 1 { 2 } else { 0 };
    if parts[0].chars().count() + more > room {
        let total: i64 = v.iter().map(|(_, n)| **n).sum();
        let unit = if total == 1 { "row" } else { "rows" };
        return fit(&[format!("{} {unit}", group(total))], " ", room);
    }
    fit(&parts, ", ", room)
}

/// One line of the history: a run, or consecutive cleanups that had
/// nothing to do folded into one (`count` runs, days `oldest..=run's`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry<'a> {
    /// The newest run of the line.
    pub(crate) run: &'a JobRun,
    pub(crate) count: usize,
    /// The oldest folded run's day.
    pub(crate) oldest: Option<chrono::NaiveDate>,
}

fn no_op(j: &JobRun) -> bool {
    j.job == Job::DailyCleanup && j.outcome == Outcome::Ok && j.rows.values().all(|n| *n == 0)
}

/// Folds runs of consecutive no-op cleanups (newest first in, newest
/// first out), so rollovers, backups and failures stay in sight.
pub(crate) fn entries(jobs: &[JobRun]) -> Vec<Entry<'_>> {
    let mut out: Vec<Entry> = Vec::new();
    for j in jobs {
        let day = j.reference_time.map(|r| r.date_naive());
        match out.last_mut() {
            Some(e) if no_op(e.run) && no_op(j) => {
                e.count += 1;
                e.oldest = day;
            }
            _ => out.push(Entry {
                run: j,
                count: 1,
                oldest: day,
            }),
        }
    }
    out
}

/// The history's lines (runs, folded) as the App holds them.
pub(crate) fn count(app: &App) -> usize {
    app.db.data.as_ref().map_or(0, |d| entries(&d.jobs).len())
}

/// Fixed columns before "rows affected", with the spaces between them.
const FIXED_W: u16 = 8 + 10 + 10 + 7 + 8 + 5;

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let jobs = app
        .db
        .data
        .as_ref()
        .map(|d| d.jobs.as_slice())
        .unwrap_or_default();
    let all = entries(jobs);
    // Scrolled (↓/↑ on the overview and history views): the newest line
    // shown, and where that is when not every line fits.
    let first = app.cleanup_scroll.min(all.len().saturating_sub(1));
    let shown = (area.height as usize).saturating_sub(3);
    let title = if first > 0 || all.len() > shown {
        format!(
            "Cleanup history (job_runs, UTC) · {}–{} of {}",
            first + 1,
            (first + shown).min(all.len()),
            all.len()
        )
    } else {
        "Cleanup history (job_runs, UTC)".to_owned()
    };
    let block = pane(&title, t, app.db.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if jobs.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled("no job has run yet", t.label())),
            inner,
        );
        return;
    }
    // A narrow pane (half of 120 columns) drops the start time, the least
    // telling column, so what each run did keeps room for a table's name.
    let started = inner.width >= FIXED_W + 20;
    let room = (inner.width + if started { 0 } else { 9 }).saturating_sub(FIXED_W) as usize;
    let rows = all.into_iter().skip(first).map(|e| {
        let j = e.run;
        let outcome = match j.outcome {
            Outcome::Ok => Cell::from(Line::styled("ok", t.ok())),
            Outcome::Running => Cell::from(Line::styled("running", t.warn())),
            other => Cell::from(Line::styled(format!("✖{other}"), t.error())),
        };
        let when = started.then(|| Cell::from(j.started_at.format("%H:%M:%S").to_string()));
        Row::new(when.into_iter().chain([
            Cell::from(if e.count > 1 {
                format!("{}×{}", job_name(j.job), e.count)
            } else {
                job_name(j.job).to_owned()
            }),
            Cell::from(match (j.reference_time, e.oldest) {
                // At most 10 characters ("12-27…1-02"), the column's width.
                (Some(r), Some(o)) if e.count > 1 => {
                    format!("{}…{}", o.format("%-m-%d"), r.format("%-m-%d"))
                }
                (Some(r), _) => r.format("%Y-%m-%d").to_string(),
                (None, _) => "–".into(),
            }),
            Cell::from(
                Line::from(j.millis().map_or("–".into(), |m| format!("{m} ms"))).right_aligned(),
            ),
            outcome,
            Cell::from(rows_text(&j.rows, room)),
        ]))
    });
    let header = Row::new(started.then(|| Cell::from("started")).into_iter().chain([
        Cell::from("job"),
        Cell::from("for day"),
        Cell::from(Line::from("took").right_aligned()),
        Cell::from("outcome"),
        Cell::from(fit_words("rows affected", room)),
    ]))
    .style(t.label());
    let widths = [
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    f.render_widget(
        Table::new(rows, &widths[usize::from(!started)..])
            .header(header)
            .column_spacing(1),
        inner,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn run(id: i64, job: Job, day: u32, rows: i64, outcome: Outcome) -> JobRun {
        let t = Utc.with_ymd_and_hms(2024, 1, day, 0, 0, 0).unwrap();
        JobRun {
            id,
            job,
            reference_time: Some(t),
            year_month: None,
            started_at: t,
            finished_at: Some(t),
            rows: [("entity_activity".to_owned(), rows)].into(),
            outcome,
            attempts: 1,
            detail: None,
        }
    }

    #[test]
    fn consecutive_no_op_cleanups_fold_and_the_rest_stays() {
        use Job::*;
        let jobs = vec![
            run(9, DailyCleanup, 9, 0, Outcome::Ok),
            run(8, DailyCleanup, 8, 0, Outcome::Ok),
            run(7, DailyCleanup, 7, 0, Outcome::Ok),
            run(6, Backup, 6, 0, Outcome::Ok),
            run(5, DailyCleanup, 5, 0, Outcome::Ok),
            run(4, DailyCleanup, 4, 3, Outcome::Ok),
            run(3, DailyCleanup, 3, 0, Outcome::Failed),
            run(2, DailyCleanup, 2, 0, Outcome::Ok),
        ];
        let e = entries(&jobs);
        let got: Vec<(i64, usize)> = e.iter().map(|e| (e.run.id, e.count)).collect();
        assert_eq!(got, [(9, 3), (6, 1), (5, 1), (4, 1), (3, 1), (2, 1)]);
        assert_eq!(
            e[0].oldest.map(|d| d.to_string()).as_deref(),
            Some("2024-01-07")
        );
    }

    #[test]
    fn rows_affected_yield_whole_tables_then_become_a_total() {
        let rows = [
            ("entity_activity".to_owned(), 1_872),
            ("users_deactivated".to_owned(), 12),
            ("dvms_deleted".to_owned(), 0),
        ]
        .into();
        assert_eq!(
            rows_text(&rows, 60),
            "entity_activity 1,872, users_deactivated 12"
        );
        assert_eq!(rows_text(&rows, 30), "entity_activity 1,872 …");
        assert_eq!(rows_text(&rows, 10), "1,884 rows");
        assert_eq!(rows_text(&Default::default(), 20), "nothing to do");
        assert_eq!(rows_text(&Default::default(), 10), "nothing …");
    }
}
