//! One render module per pane, plus the small helpers they share. Panes
//! only read the [`App`](super::app::App) and the `now` they are handed.

pub(crate) mod cleanup;
pub(crate) mod clock;
pub(crate) mod entities;
pub(crate) mod footer;
pub(crate) mod help;
pub(crate) mod ingest;
pub(crate) mod monthly;
pub(crate) mod overflow;
pub(crate) mod queue;
pub(crate) mod relays;
pub(crate) mod status;
pub(crate) mod throughput;
pub(crate) mod windows;

use super::theme::Theme;
use chrono::{DateTime, Utc};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders};

/// A pane's frame; a stale source says so in the title, in words.
pub(crate) fn pane<'a>(title: &'a str, t: &Theme, stale: Option<DateTime<Utc>>) -> Block<'a> {
    let mut b = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(Span::styled(format!(" {title} "), t.title()));
    if let Some(since) = stale {
        b = b.title(
            Line::from(Span::styled(
                format!(" stale since {} ", since.format("%H:%M:%S")),
                t.error(),
            ))
            .right_aligned(),
        );
    }
    b
}

/// A `w`×`h` rectangle centred in `area` (clamped to it).
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// A 64-hex pubkey shortened for tables: `ab12cd…9f3e`.
pub(crate) fn short_id(id: &str) -> String {
    if id.len() <= 12 || !id.is_ascii() {
        return id.to_owned();
    }
    format!("{}…{}", &id[..6], &id[id.len() - 4..])
}

/// A compact rate or count: 950, 1.2k, 13k, 2.4M.
pub(crate) fn si(v: f64) -> String {
    let a = v.abs();
    if a < 1_000.0 {
        format!("{v:.0}")
    } else if a < 10_000.0 {
        format!("{:.1}k", v / 1_000.0)
    } else if a < 1_000_000.0 {
        format!("{:.0}k", v / 1_000.0)
    } else {
        format!("{:.1}M", v / 1_000_000.0)
    }
}

/// A duration in the two largest units: "45s", "12m", "3h 05m", "12d 4h",
/// "1y 283d".
pub(crate) fn human_secs(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3_600, s / 86_400);
    if s < 60 {
        format!("{s}s")
    } else if s < 3_600 {
        format!("{m}m")
    } else if s < 86_400 {
        format!("{h}h {:02}m", m % 60)
    } else if d < 365 {
        format!("{d}d {}h", h % 24)
    } else {
        format!("{}y {}d", d / 365, d % 365)
    }
}

/// A text gauge, readable without colour: `████░░░░░░`.
pub(crate) fn bar(ratio: f64, width: usize) -> String {
    let r = if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let full = (r * width as f64).round() as usize;
    let mut s = "█".repeat(full.min(width));
    s.push_str(&"░".repeat(width - full.min(width)));
    s
}

/// `label value` spans.
pub(crate) fn kv<'a>(t: &Theme, label: &'a str, value: String) -> Vec<Span<'a>> {
    vec![
        Span::styled(label, t.label()),
        Span::styled(value, t.value()),
    ]
}

/// How many leading columns of these widths fit in `avail` cells with one
/// space between columns (at least one). Tables list their columns by
/// importance and drop the rest on narrow terminals.
pub(crate) fn fit_columns(widths: &[u16], avail: u16) -> usize {
    let mut used = 0u16;
    for (i, w) in widths.iter().enumerate() {
        let need = if i == 0 { *w } else { w + 1 };
        if used + need > avail {
            return i.max(1);
        }
        used += need;
    }
    widths.len()
}

/// Keeps the first `n` cells of a row.
pub(crate) fn first<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    v.truncate(n);
    v
}

/// Joins `parts` with `sep` into at most `room` characters, never cutting
/// one in the middle: whole parts are dropped from the end, and " …" says
/// some were. A first part that alone is too long loses whole words
/// instead; only a single word longer than `room` is cut, ending in "…".
/// The one shortening rule of the screen: the title's facts, the state
/// line, the alert banner, the notes and the cells that can outgrow
/// their column all go through it.
pub(crate) fn fit<S: AsRef<str>>(parts: &[S], sep: &str, room: usize) -> String {
    let len = |s: &str| s.chars().count();
    let mut out = String::new();
    for (n, p) in parts.iter().enumerate() {
        let p = p.as_ref();
        let s = if n == 0 { "" } else { sep };
        let more = if n + 1 < parts.len() { 2 } else { 0 };
        if len(&out) + len(s) + len(p) + more <= room {
            out.push_str(s);
            out.push_str(p);
            continue;
        }
        if n > 0 {
            // The " …" was reserved by the part before.
            out.push_str(" …");
            return out;
        }
        // The first part alone, without room for " …" after it.
        if len(p) < room && more > 0 {
            return format!("{p}…");
        }
        if len(p) <= room {
            return p.to_owned();
        }
        let words: Vec<&str> = p.split(' ').collect();
        if words.len() > 1 {
            return fit(&words, " ", room);
        }
        if room == 0 {
            return String::new();
        }
        return p.chars().take(room - 1).chain(['…']).collect();
    }
    out
}

/// A sentence in at most `room` characters, shortened word by word.
pub(crate) fn fit_words(text: &str, room: usize) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    fit(&words, " ", room)
}

/// The percentage `a / (a + b)`, or "–".
pub(crate) fn share(a: i64, b: i64) -> String {
    if a + b > 0 {
        format!("{:.0}%", a as f64 * 100.0 / (a + b) as f64)
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(human_secs(59), "59s");
        assert_eq!(human_secs(3_599), "59m");
        assert_eq!(human_secs(3_600 * 3 + 300), "3h 05m");
        assert_eq!(human_secs(86_400 * 12 + 3_600 * 4), "12d 4h");
        assert_eq!(human_secs(86_400 * 648), "1y 283d");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(1_234.0), "1.2k");
        assert_eq!(si(13_400.0), "13k");
        assert_eq!(si(2_400_000.0), "2.4M");
        assert_eq!(bar(0.25, 8), "██░░░░░░");
        assert_eq!(bar(2.0, 4), "████");
        assert_eq!(bar(f64::NAN, 3), "░░░");
        assert_eq!(short_id(&"ab".repeat(32)), "ababab…abab");
        assert_eq!(share(3, 1), "75%");
        assert_eq!(share(0, 0), "–");
        assert_eq!(fit_columns(&[3, 4, 5], 14), 3);
        assert_eq!(fit_columns(&[3, 4, 5], 13), 2);
        assert_eq!(fit_columns(&[30], 10), 1);
        assert_eq!(crate::tui::app::group(1_234_567), "1,234,567");
        assert_eq!(crate::tui::app::group(-1_000), "-1,000");
        assert_eq!(crate::tui::app::group(12), "12");
    }

    #[test]
    fn fit_drops_whole_parts_and_words_never_halves() {
        let parts = ["dvmtop", "sample", "backtest", "manual rollover"];
        assert_eq!(
            fit(&parts, " · ", 100),
            "dvmtop · sample · backtest · manual rollover"
        );
        // "dvmtop · sample · backtest" is 26, plus " …" is 28.
        assert_eq!(fit(&parts, " · ", 30), "dvmtop · sample · backtest …");
        assert_eq!(fit(&parts, " · ", 27), "dvmtop · sample …");
        let why = "rollover of 2024-02 due: waiting for confirmation; nothing moves until it is confirmed";
        let got = fit_words(why, 60);
        assert_eq!(
            got,
            "rollover of 2024-02 due: waiting for confirmation; nothing …"
        );
        assert!(got.chars().count() <= 60);
        assert_eq!(fit_words(why, 200), why);
        // Every shortening is a run of whole words and an ellipsis.
        for room in 9..why.len() {
            let got = fit_words(why, room);
            assert!(got.chars().count() <= room, "{room}: {got}");
            let kept = got.trim_end_matches('…').trim_end();
            assert!(
                why.starts_with(kept) && why[kept.len()..].starts_with(' '),
                "{room}: {got:?} cuts a word"
            );
        }
        // Only a word longer than the room is cut, and says so.
        assert_eq!(fit_words("wss://relay.example.com", 10), "wss://rel…");
        assert_eq!(fit(&["100%"], " ", 4), "100%");
        assert_eq!(fit::<&str>(&[], " ", 4), "");
    }
}
