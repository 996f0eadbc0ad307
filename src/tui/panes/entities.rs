//! Active and inactive DVMs and users (the two-phase lifecycle, SPEC §6).

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{fit, share};
use ratatui::text::{Line, Span};

/// Two rows, `width` wide at most: counts right-aligned in columns as
/// wide as their figures; the active share (up to "100%") is never cut — when the
/// row is too wide its parts yield whole, from the end.
pub(crate) fn lines<'a>(app: &'a App, t: &Theme, width: u16) -> Vec<Line<'a>> {
    let Some(d) = &app.db.data else {
        return vec![Line::styled("DVMs/users –", t.label())];
    };
    // Columns as wide as the wider of the two rows' figures.
    let w = |a: i64, b: i64| group(a).len().max(group(b).len());
    let (on_w, off_w) = (
        w(d.dvms_active, d.users_active),
        w(d.dvms_inactive, d.users_inactive),
    );
    let row = |name: &'a str, on: i64, off: i64| {
        let parts = [
            format!("{name}{:>on_w$}", group(on)),
            "active".to_owned(),
            format!("{:>off_w$}", group(off)),
            "inactive".to_owned(),
            share(on, off),
        ];
        let text = fit(&parts, " ", width as usize);
        let kept = (0..=parts.len())
            .rev()
            .find(|&k| text.starts_with(&parts[..k].join(" ")))
            .unwrap_or(0);
        let mut spans = Vec::new();
        for (i, p) in parts[..kept].iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(" "));
            }
            match i {
                0 => {
                    spans.push(Span::styled(name, t.label()));
                    spans.push(Span::styled(p[name.len()..].to_owned(), t.value()));
                }
                1 | 3 => spans.push(Span::styled(p.clone(), t.label())),
                _ => spans.push(Span::styled(p.clone(), t.value())),
            }
        }
        let rest = &text[parts[..kept].join(" ").len()..];
        if !rest.is_empty() {
            spans.push(Span::styled(rest.to_owned(), t.label()));
        }
        Line::from(spans)
    };
    vec![
        row("DVMs  ", d.dvms_active, d.dvms_inactive),
        row("users ", d.users_active, d.users_inactive),
    ]
}
