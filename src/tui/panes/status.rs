//! The title bar, the pipeline state line and the note under it.

use super::super::app::{App, Level, Mode, VIEWS};
use super::super::theme::Theme;
use dvmtop_core::clock::Policy;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

fn level_style(t: &Theme, l: Level) -> Style {
    match l {
        Level::Info => t.ok(),
        Level::Warn => t.warn(),
        Level::Error => t.error(),
    }
}

/// The title's parts, most important first: what is watched or limited
/// (WATCHING, READ-ONLY, a throttle) before the run's fixed facts, so a
/// narrow terminal drops whole facts from the end, never the state.
pub(crate) fn title_parts(app: &App) -> Vec<String> {
    let i = &app.info;
    let mut parts = vec!["dvmtop".to_owned(), i.namespace.clone()];
    if let Some(w) = &app.watched {
        parts.push(match (&w.holder, w.holding) {
            (Some(h), true) => format!(
                "WATCHING {} on {} pid {} since {}",
                h.command,
                h.host,
                h.pid,
                h.since.format("%m-%d %H:%M")
            ),
            _ => "WATCHING (no holder)".to_owned(),
        });
    } else if i.readonly {
        parts.push("READ-ONLY".into());
    }
    if app.status.delay_ms > 0 {
        parts.push(format!("throttle {} ms", app.status.delay_ms));
    }
    if app.watched.is_none() {
        parts.push(
            match i.mode {
                Mode::Serve => "service",
                Mode::Backtest => "backtest",
                Mode::Collect => "collector",
            }
            .into(),
        );
        parts.push(
            match i.policy {
                Policy::Manual => "manual rollover",
                Policy::Auto => "auto rollover",
            }
            .into(),
        );
        parts.push(format!(
            "batch {}",
            super::super::app::group(i.batch_size as i64)
        ));
    }
    parts
}

/// Joins `parts` with " · " into at most `room` characters, dropping
/// whole parts from the end (an ellipsis says some were dropped).
pub(crate) fn fit_parts(parts: &[String], room: usize) -> String {
    format!(" {}", super::fit(parts, " · ", room.saturating_sub(1)))
}

pub(crate) fn title(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let i = &app.info;
    let parts = title_parts(app);
    // Six views do not fit beside the title at 80 columns in full: then
    // only the current one is named, the others by their number key.
    let tabs = |compact: bool| -> Vec<Span> {
        std::iter::once(Span::styled(" ", t.bar()))
            .chain(VIEWS.iter().enumerate().flat_map(|(n, v)| {
                let label = format!("{}:{v}", n + 1);
                let s = if n == app.view {
                    Span::styled(
                        format!("[{label}]"),
                        t.bar().add_modifier(ratatui::style::Modifier::BOLD),
                    )
                } else if compact {
                    Span::styled(format!("{}", n + 1), t.bar())
                } else {
                    Span::styled(format!(" {label} "), t.bar())
                };
                [s, Span::styled(" ", t.bar())]
            }))
            .collect()
    };
    let width = |v: &[Span]| v.iter().map(|s| s.content.chars().count()).sum::<usize>();
    let mut views = tabs(false);
    if (area.width as usize) < width(&views) + 40 {
        views = tabs(true);
    }
    let right_len: usize = views.iter().map(|s| s.content.chars().count()).sum();
    // The view tabs when the state parts (name, namespace, WATCHING /
    // READ-ONLY, throttle) still fit beside them; the fixed facts after
    // those yield first, whole.
    let state_parts =
        2 + usize::from(app.watched.is_some() || i.readonly) + usize::from(app.status.delay_ms > 0);
    let needed = fit_parts(&parts[..state_parts.min(parts.len())], usize::MAX)
        .chars()
        .count()
        + 2;
    let tabs = area.width as usize >= needed + right_len;
    let room = if tabs {
        (area.width as usize).saturating_sub(right_len)
    } else {
        area.width as usize
    };
    // A space between the facts and the tabs.
    let left = fit_parts(&parts, room.saturating_sub(usize::from(tabs)));
    let mut spans = vec![Span::styled(format!("{left:<room$}"), t.bar())];
    if tabs {
        spans.extend(views);
    }
    f.render_widget(Paragraph::new(Line::from(spans)).style(t.bar()), area);
}

pub(crate) fn state(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let (level, word, why) = app.state_line();
    let word = format!(" {word} ");
    let room = (area.width as usize).saturating_sub(word.chars().count() + 1);
    let line = Line::from(vec![
        Span::styled(
            word,
            level_style(t, level).add_modifier(ratatui::style::Modifier::BOLD),
        ),
        Span::raw(" "),
        Span::styled(super::fit_words(&why, room), level_style(t, level)),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

/// The banner: one line per alert, the most severe first, then Redis
/// being unreachable (with since when).
pub(crate) fn banner_lines(app: &App) -> Vec<(Level, String)> {
    let s = &app.status;
    let mut out: Vec<(Level, String)> = s
        .alerts
        .iter()
        .map(|a| {
            let level = match a.severity {
                dvmtop_core::Severity::Critical => Level::Error,
                dvmtop_core::Severity::Warning => Level::Warn,
            };
            (level, a.line())
        })
        .collect();
    // The alert monitor's (or, watching, the holder's) evaluated rules,
    // after the pipeline's own, one line per kind.
    for a in &app.alerts {
        if !s.alerts.iter().any(|b| b.kind == a.kind) {
            let level = match a.severity {
                dvmtop_core::Severity::Critical => Level::Error,
                dvmtop_core::Severity::Warning => Level::Warn,
            };
            out.push((level, format!("{}: {}", a.kind, a.message)));
        }
    }
    if let Some(o) = &s.redis_unreachable {
        out.insert(
            0,
            (
                Level::Error,
                format!(
                    "Redis unreachable since {}, retrying: {}",
                    o.since.format("%H:%M:%S UTC"),
                    o.error
                ),
            ),
        );
    }
    out
}

pub(crate) fn banner(f: &mut Frame, area: Rect, lines: &[(Level, String)], t: &Theme) {
    let room = (area.width as usize).saturating_sub(3);
    let lines: Vec<Line> = lines
        .iter()
        .take(area.height as usize)
        .map(|(level, text)| {
            Line::from(vec![
                Span::styled(
                    " ▲ ",
                    level_style(t, *level).add_modifier(ratatui::style::Modifier::BOLD),
                ),
                Span::styled(super::fit_words(text, room), level_style(t, *level)),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

pub(crate) fn note(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let Some(n) = &app.note else { return };
    let mark = match n.level {
        Level::Info => "·",
        Level::Warn => "!",
        Level::Error => "✖",
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {mark} "), level_style(t, n.level)),
            Span::styled(
                super::fit_words(&n.text, (area.width as usize).saturating_sub(3)),
                level_style(t, n.level),
            ),
        ])),
        area,
    );
}
