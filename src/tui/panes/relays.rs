//! Relays: per-relay state and figures from the Redis stats hashes (any
//! process feeding this namespace), in the ingest view.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{first, fit_columns, human_secs, pane};
use crate::relay::RelayStatus;
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

/// A glyph and a word, so the state reads without colour.
pub(crate) fn state<'a>(r: &RelayStatus, t: &Theme) -> (&'a str, Style) {
    match r.state.as_str() {
        "connected" => ("● up", t.ok()),
        "connecting" => ("… conn", t.warn()),
        "disconnected" => ("○ down", t.error()),
        "stopped" => ("■ stop", t.label()),
        _ => ("? stale", t.warn()),
    }
}

/// The address without its scheme (wss is the norm; ws is said).
fn short_url(url: &str) -> String {
    url.strip_prefix("wss://")
        .map(str::to_owned)
        .unwrap_or_else(|| url.to_owned())
}

fn ago(now: DateTime<Utc>, t: Option<i64>) -> String {
    t.map_or("–".into(), |t| human_secs(now.timestamp() - t))
}

pub(crate) fn render(f: &mut Frame, area: Rect, app: &App, t: &Theme, now: DateTime<Utc>) {
    let relays = app
        .redis
        .data
        .as_ref()
        .map(|d| d.relays.as_slice())
        .unwrap_or_default();
    let up = relays.iter().filter(|r| r.connected).count();
    let title = format!("Relays · {up}/{} connected", relays.len());
    let block = pane(&title, t, app.redis.stale_since);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if relays.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled(
                "no relays: dvmtop --relay wss://…, or relays = [\"wss://…\"] in the config file",
                t.label(),
            )),
            inner,
        );
        return;
    }
    // One row per relay (columns by importance: narrow panes drop the
    // trailing ones); under the table, the last error of every relay that
    // is not connected, on a line of its own so it can be read whole.
    let widths: &[u16] = &[24, 6, 7, 7, 7, 5, 7];
    let keep = fit_columns(widths, inner.width).max(1);
    let error_text = |r: &RelayStatus| {
        r.last_error.as_deref().map(|e| {
            let at = r
                .last_error_at
                .map(|a| format!("{} ago: ", human_secs(now.timestamp() - a)))
                .unwrap_or_default();
            format!("{at}{e}")
        })
    };
    let num = |v: u64| Cell::from(Line::from(group(v as i64)).right_aligned());
    let rows = relays.iter().map(|r| {
        let (word, style) = state(r, t);
        let rej = r.rejected_total();
        Row::new(first(
            vec![
                Cell::from(short_url(&r.url)),
                Cell::from(Line::styled(word, style)),
                num(r.events_received),
                num(r.accepted),
                num(r.duplicates),
                Cell::from(
                    Line::styled(
                        group(rej as i64),
                        if rej > 0 { t.warn() } else { t.value() },
                    )
                    .right_aligned(),
                ),
                Cell::from(Line::from(ago(now, r.last_event_at)).right_aligned()),
            ],
            keep,
        ))
    });
    let header = Row::new(first(
        vec![
            Cell::from("relay"),
            Cell::from("state"),
            Cell::from(Line::from("recv").right_aligned()),
            Cell::from(Line::from("queued").right_aligned()),
            Cell::from(Line::from("dup").right_aligned()),
            Cell::from(Line::from("rej").right_aligned()),
            Cell::from(Line::from("last ev").right_aligned()),
        ],
        keep,
    ))
    .style(t.label());
    let constraints: Vec<Constraint> = widths[..keep]
        .iter()
        .map(|w| Constraint::Length(*w))
        .collect();
    let errors: Vec<Line> = relays
        .iter()
        .filter(|r| !r.connected)
        .filter_map(|r| {
            error_text(r).map(|e| Line::styled(format!("✖ {} {e}", short_url(&r.url)), t.error()))
        })
        .collect();
    let table_h = (relays.len() as u16 + 1).min(inner.height);
    let [table_area, errors_area] =
        ratatui::layout::Layout::vertical([Constraint::Length(table_h), Constraint::Min(0)])
            .areas(inner);
    f.render_widget(Paragraph::new(errors), errors_area);
    f.render_widget(
        Table::new(rows, constraints)
            .header(header)
            .column_spacing(1),
        table_area,
    );
}
