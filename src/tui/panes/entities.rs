//! Active and inactive DVMs and users (the two-phase lifecycle, SPEC §6).

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{kv, share};
use ratatui::text::{Line, Span};

pub(crate) fn lines<'a>(app: &'a App, t: &Theme) -> Vec<Line<'a>> {
    let Some(d) = &app.db.data else {
        return vec![Line::styled("DVMs/users –", t.label())];
    };
    let row = |name: &'a str, on: i64, off: i64| {
        let mut s = kv(t, name, format!("{:>6}", group(on)));
        s.push(Span::styled(" active ", t.label()));
        s.push(Span::styled(format!("{:>5}", group(off)), t.value()));
        s.push(Span::styled(" inactive ", t.label()));
        s.push(Span::styled(share(on, off), t.value()));
        Line::from(s)
    };
    vec![
        row("DVMs  ", d.dvms_active, d.dvms_inactive),
        row("users ", d.users_active, d.users_inactive),
    ]
}
