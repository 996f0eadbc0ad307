//! The rollover confirmation dialog: it carries the pending action as data
//! (the month), defaults to "not yet", and says exactly what confirming
//! does, with the figures of the row it writes — the pipeline's own
//! preview in the published snapshot, computed as the rollover computes
//! it.

use super::app::{App, group};
use super::panes::{centered, short_id};
use super::theme::Theme;
use dvmtop_core::YearMonth;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    NotYet,
    RollOver,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dialog {
    /// The month whose rollover confirming performs.
    pub(crate) month: YearMonth,
    /// The selected button; "not yet" unless the operator moves it.
    pub(crate) choice: Choice,
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, d: &Dialog, t: &Theme) {
    let w = area.width.saturating_sub(4).min(66);
    let h = area.height.saturating_sub(2).min(19);
    let r = centered(area, w, h);
    f.render_widget(Clear, r);
    let m = d.month;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(t.warn())
        .title(Span::styled(format!(" Month rollover due: {m} "), t.warn()));
    let mut lines = vec![Line::from(format!(
        "{m} can be closed: processing has reached {} days into {}.",
        app.info.buffer_days,
        m.next()
    ))];
    let blocked = app
        .status
        .awaiting
        .as_ref()
        .is_some_and(|a| a.month == m && a.blocked);
    if blocked {
        lines.push(Line::styled(
            format!(
                "⚠ Events past {} are waiting: nothing moves until it is confirmed.",
                m.next()
            ),
            t.warn(),
        ));
    }
    lines.push(Line::default());
    let kv = |k: &str, v: String| {
        vec![
            Span::styled(format!("{k} "), t.label()),
            Span::styled(v, t.value()),
        ]
    };
    match app.dialog_preview() {
        None => lines.push(Line::styled(
            "loading the month's figures… (y waits for them)",
            t.label(),
        )),
        Some(row) => {
            let completion = if row.total_requests > 0 {
                format!(
                    "{:.1} %",
                    row.total_responses as f64 * 100.0 / row.total_requests as f64
                )
            } else {
                "–".into()
            };
            let mut l1 = kv("requests", group(row.total_requests));
            l1.extend(kv("   responses", group(row.total_responses)));
            l1.extend(kv("   completion", completion));
            let mut l2 = kv("feedback", group(row.total_feedback));
            l2.extend(kv("   users", group(row.unique_users)));
            l2.extend(kv("   DVMs", group(row.unique_dvms)));
            l2.extend(kv("   kinds", group(row.unique_kinds)));
            let mut l3 = kv(
                "top DVM",
                row.most_popular_dvm.as_deref().map_or("–".into(), short_id),
            );
            l3.extend(kv(
                "   top kind",
                row.most_popular_kind.map_or("–".into(), |k| k.to_string()),
            ));
            lines.extend([Line::from(l1), Line::from(l2), Line::from(l3)]);
        }
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::styled("y ", t.key()),
        Span::raw(format!(
            "rolls over now: writes this row to monthly_activity, closes {m} (its late events are ignored from then on), opens {} and writes a backup.",
            m.next()
        )),
    ]));
    lines.push(Line::from(vec![
        Span::styled("n ", t.key()),
        Span::raw(format!(
            "not yet: {} is still processed, {m} stays open; asked again on the next day.",
            m.next()
        )),
    ]));
    if let Some(w) = &app.watched {
        lines.push(Line::styled(
            format!("watching only: {} confirm it", w.who()),
            t.warn(),
        ));
    } else if app.info.readonly {
        lines.push(Line::styled(
            format!("read-only: confirming is disabled here (dvmtop confirm {m})"),
            t.warn(),
        ));
    }
    let inner = block.inner(r);
    f.render_widget(block, r);
    let [body, buttons] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Min(1),
        ratatui::layout::Constraint::Length(1),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), body);
    let button = |label: &str, on: bool| {
        if on {
            Span::styled(format!("▶[ {label} ]◀"), t.selected())
        } else {
            Span::raw(format!(" [ {label} ] "))
        }
    };
    let yes = if app.info.readonly {
        "Roll over (disabled)"
    } else {
        "Roll over (y)"
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            button("Not yet (n)", d.choice == Choice::NotYet),
            Span::raw("   "),
            button(yes, d.choice == Choice::RollOver),
        ]))
        .centered(),
        buttons,
    );
}
