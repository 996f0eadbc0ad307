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

pub fn title(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let i = &app.info;
    let mode = match i.mode {
        Mode::Serve => "service",
        Mode::Backtest => "backtest",
        Mode::Collect => "collector",
    };
    let policy = match i.policy {
        Policy::Manual => "manual rollover",
        Policy::Auto => "auto rollover",
    };
    let mut left = format!(
        " dvmtop · {} · {mode} · {policy} · batch {}",
        i.namespace,
        super::super::app::group(i.batch_size as i64)
    );
    if app.status.delay_ms > 0 {
        left.push_str(&format!(" · throttle {} ms", app.status.delay_ms));
    }
    if i.readonly {
        left.push_str(" · READ-ONLY");
    }
    let views: Vec<Span> = VIEWS
        .iter()
        .enumerate()
        .flat_map(|(n, v)| {
            let label = format!("{}:{v}", n + 1);
            let s = if n == app.view {
                Span::styled(
                    format!("[{label}]"),
                    t.bar().add_modifier(ratatui::style::Modifier::BOLD),
                )
            } else {
                Span::styled(format!(" {label} "), t.bar())
            };
            [s, Span::styled(" ", t.bar())]
        })
        .collect();
    let right_len: usize = views.iter().map(|s| s.content.chars().count()).sum();
    let room = (area.width as usize).saturating_sub(right_len);
    let left: String = if left.chars().count() > room {
        left.chars()
            .take(room.saturating_sub(1))
            .collect::<String>()
            + "…"
    } else {
        format!("{left:<room$}")
    };
    let mut spans = vec![Span::styled(left, t.bar())];
    if area.width as usize >= right_len + 20 {
        spans.extend(views);
    }
    f.render_widget(Paragraph::new(Line::from(spans)).style(t.bar()), area);
}

pub fn state(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let (level, word, why) = app.state_line();
    let line = Line::from(vec![
        Span::styled(
            format!(" {word} "),
            level_style(t, level).add_modifier(ratatui::style::Modifier::BOLD),
        ),
        Span::raw(" "),
        Span::styled(why, level_style(t, level)),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

/// The banner: one line per alert, the most severe first, then Redis
/// being unreachable (with since when).
pub fn banner_lines(app: &App) -> Vec<(Level, String)> {
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

pub fn banner(f: &mut Frame, area: Rect, lines: &[(Level, String)], t: &Theme) {
    let lines: Vec<Line> = lines
        .iter()
        .take(area.height as usize)
        .map(|(level, text)| {
            Line::from(vec![
                Span::styled(
                    " ▲ ",
                    level_style(t, *level).add_modifier(ratatui::style::Modifier::BOLD),
                ),
                Span::styled(text.clone(), level_style(t, *level)),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

pub fn note(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let Some(n) = &app.note else { return };
    let mark = match n.level {
        Level::Info => "·",
        Level::Warn => "!",
        Level::Error => "✖",
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {mark} "), level_style(t, n.level)),
            Span::styled(n.text.clone(), level_style(t, n.level)),
        ])),
        area,
    );
}
