//! The drill-down views: pure `update` tests (sorting, filtering,
//! scrolling, drill-down, periods, loading and stale answers) and
//! whole-screen snapshots of each view and detail at 80×24 and 120×40.

use super::fixture::*;
use super::render::{draw, snap};
use crate::store::{
    DvmDetail, DvmRow, JobFigures, KindDetail, KindRow, Lifecycle, MonthRow, Profile,
};
use crate::tui::app::{App, Command, Msg, update};
use crate::tui::views::{Detail, LoadResult, Loaded, Period, Query, View};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

const NAMES: [&str; 6] = [
    "Translator",
    "Kind 5300 feeds",
    "Tabby summarizer",
    "Relay watcher",
    "Image maker",
    "Search bot",
];

/// `n` DVMs: every fifth without a profile name, varied figures.
pub(crate) fn dvm_rows(n: usize) -> Vec<DvmRow> {
    (0..n)
        .map(|i| {
            let h = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let id = format!("{h:016x}").repeat(4);
            let name = (i % 5 != 4).then(|| format!("{} {i}", NAMES[i % NAMES.len()]));
            DvmRow {
                id,
                name,
                responses: ((i * 7_919) % 5_003) as i64,
                feedback: ((i * 31) % 97) as i64,
                kinds: (0..(i % 4) as i32).map(|k| 5000 + k * 50).collect(),
                first_seen: Some(at(2023, 11, 1 + (i % 28) as u32, 0, 0, 0)),
                last_seen: Some(at(2024, 3, 1 + (i % 14) as u32, 12, 0, 0)),
                active: match i % 7 {
                    0 => Some(false),
                    6 => None,
                    _ => Some(true),
                },
                jobs: JobFigures {
                    answered: ((i * 5_501) % 4_001) as i64,
                    median_s: (i % 6 != 5).then_some((i * 13 % 400) as i64),
                    p90_s: (i % 6 != 5).then_some((i * 13 % 400 + i * 7 % 3_000) as i64),
                },
            }
        })
        .collect()
}

pub(crate) fn kind_rows() -> Vec<KindRow> {
    [
        (5300, 310_000, 290_500, 41),
        (5050, 4_100, 3_900, 12),
        (5100, 830, 120, 5),
        (5999, 3, 0, 0),
    ]
    .iter()
    .map(|&(kind, requests, responses, dvms)| KindRow {
        kind,
        requests,
        responses,
        dvms,
        top_dvm: (dvms > 0).then(|| dvm(kind as u8)),
        top_dvm_name: (kind == 5300).then(|| "Kind 5300 feeds".to_owned()),
        jobs: JobFigures {
            answered: responses * 9 / 10,
            median_s: (responses > 0).then_some(i64::from(kind) % 97),
            p90_s: None,
        },
    })
    .collect()
}

fn answer(app: &mut App, query: Query, result: Result<Loaded, String>) -> Vec<Command> {
    update(
        app,
        Msg::Loaded(Box::new(LoadResult {
            query,
            at: at(2025, 6, 1, 11, 59, 40),
            result,
        })),
    )
}

fn months_with_activity() -> Vec<MonthRow> {
    let mut a = month_row("2024-01", 281_000);
    a.dvm_activity = serde_json::json!({
        dvm(1): {"responses": 200_000, "feedback": 3_000},
        dvm(2): {"responses": 52_900, "feedback": 10},
    });
    a.kind_activity = serde_json::json!({
        "5300": {"requests": 270_000, "responses": 250_000},
        "5050": {"requests": 11_000, "responses": 2_900},
    });
    let mut b = month_row("2024-02", 302_118);
    b.dvm_activity = serde_json::json!({ dvm(1): {"responses": 271_906, "feedback": 4_400} });
    b.kind_activity = serde_json::json!({ "5300": {"requests": 302_118, "responses": 271_906} });
    let mut c = month_row("2023-12", 240_500);
    c.dvm_activity = serde_json::json!({});
    vec![c, a, b]
}

/// The DVMs view with `n` DVMs loaded for the default period.
pub(crate) fn dvms_app(n: usize) -> App {
    let mut app = busy_app();
    app.months = months_with_activity();
    update(&mut app, key('2'));
    assert_eq!(app.current_view(), View::Dvms);
    assert_eq!(app.wanted(), Some(Query::Dvms(Period::Last30d)));
    answer(
        &mut app,
        Query::Dvms(Period::Last30d),
        Ok(Loaded::Dvms(dvm_rows(n))),
    );
    app
}

fn kinds_app() -> App {
    let mut app = busy_app();
    update(&mut app, key('3'));
    answer(
        &mut app,
        Query::Kinds(Period::Last30d),
        Ok(Loaded::Kinds(kind_rows())),
    );
    app
}

fn months_app() -> App {
    let mut app = busy_app();
    app.months = months_with_activity();
    update(&mut app, key('4'));
    let open = app.current_month().unwrap();
    assert_eq!(app.wanted(), Some(Query::OpenMonth(open)));
    let mut running = month_row("2024-03", 150_321);
    running.year_month = open;
    answer(
        &mut app,
        Query::OpenMonth(open),
        Ok(Loaded::OpenMonth(Box::new(running))),
    );
    app
}

fn shown_ids(app: &App) -> Vec<String> {
    let rows = app.views.dvm_rows(app.views.period).unwrap();
    crate::tui::views::dvms::visible(rows, &app.views.dvms)
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

#[test]
fn dvms_sort_by_each_column_and_reverse() {
    let mut app = dvms_app(40);
    let rows = dvm_rows(40);
    let resp = |id: &String| rows.iter().find(|r| &r.id == id).unwrap().responses;
    // Default: most responses first.
    let ids = shown_ids(&app);
    assert_eq!(ids.len(), 40);
    assert!(ids.windows(2).all(|w| resp(&w[0]) >= resp(&w[1])));
    // → answered (largest first), → median (slowest first: no samples
    // last), ← ← back, ← name (A→Z).
    update(&mut app, code(KeyCode::Right));
    let ans = |id: &String| rows.iter().find(|r| &r.id == id).unwrap().jobs.answered;
    assert!(shown_ids(&app).windows(2).all(|w| ans(&w[0]) >= ans(&w[1])));
    update(&mut app, code(KeyCode::Right));
    let med = |id: &String| rows.iter().find(|r| &r.id == id).unwrap().jobs.median_s;
    let shown = shown_ids(&app);
    assert!(shown.windows(2).all(|w| med(&w[0]) >= med(&w[1])));
    assert_eq!(med(shown.last().unwrap()), None);
    update(&mut app, code(KeyCode::Left));
    update(&mut app, code(KeyCode::Left));
    update(&mut app, code(KeyCode::Left));
    let label = |id: &String| {
        let r = rows.iter().find(|r| &r.id == id).unwrap();
        crate::tui::views::dvms::label(&r.id, r.name.as_deref()).to_lowercase()
    };
    assert!(
        shown_ids(&app)
            .windows(2)
            .all(|w| label(&w[0]) <= label(&w[1]))
    );
    update(&mut app, key('i'));
    assert!(
        shown_ids(&app)
            .windows(2)
            .all(|w| label(&w[0]) >= label(&w[1]))
    );
    // Every column sorts: cycling through all returns to the first.
    for _ in 0..crate::tui::views::dvms::COLS.len() {
        update(&mut app, key('>'));
    }
    assert_eq!(app.views.dvms.sort, 0);
}

#[test]
fn dvms_filter_by_name_or_id_prefix() {
    let mut app = dvms_app(40);
    update(&mut app, key('/'));
    assert!(app.views.filtering);
    // Keys type into the filter, even q and s.
    for c in "tabby".chars() {
        assert_eq!(update(&mut app, key(c)), vec![Command::Redraw]);
    }
    assert!(!app.quitting);
    let ids = shown_ids(&app);
    assert!(!ids.is_empty());
    let rows = dvm_rows(40);
    for id in &ids {
        let r = rows.iter().find(|r| &r.id == id).unwrap();
        assert!(r.name.as_deref().unwrap().to_lowercase().contains("tabby"));
    }
    update(&mut app, code(KeyCode::Enter));
    assert!(
        !app.views.filtering,
        "Enter keeps the filter and stops typing"
    );
    assert_eq!(app.views.dvms.filter, "tabby");
    // An id prefix.
    update(&mut app, key('/'));
    for _ in 0..5 {
        update(&mut app, code(KeyCode::Backspace));
    }
    let prefix = rows[7].id[..6].to_owned();
    for c in prefix.chars() {
        update(&mut app, key(c));
    }
    assert_eq!(shown_ids(&app), vec![rows[7].id.clone()]);
    // Esc drops it.
    update(&mut app, code(KeyCode::Esc));
    assert!(!app.views.filtering);
    assert_eq!(shown_ids(&app).len(), 40);
    // q quits again once not typing.
    update(&mut app, key('q'));
    assert!(app.quitting);
}

#[test]
fn lists_scroll_within_their_rows() {
    let mut app = dvms_app(25);
    update(&mut app, code(KeyCode::Up));
    assert_eq!(app.views.dvms.selected, 0);
    update(&mut app, key('j'));
    update(&mut app, code(KeyCode::Down));
    assert_eq!(app.views.dvms.selected, 2);
    update(&mut app, code(KeyCode::PageDown));
    assert_eq!(app.views.dvms.selected, 12);
    update(&mut app, code(KeyCode::PageDown));
    update(&mut app, code(KeyCode::PageDown));
    assert_eq!(app.views.dvms.selected, 24, "stops at the last row");
    update(&mut app, code(KeyCode::Home));
    assert_eq!(app.views.dvms.selected, 0);
    update(&mut app, key('G'));
    assert_eq!(app.views.dvms.selected, 24);
    // The selected row is on screen, even at the bottom.
    let ids = shown_ids(&app);
    let r = dvm_rows(25).into_iter().find(|r| r.id == ids[24]).unwrap();
    let name = crate::tui::views::dvms::label(&r.id, r.name.as_deref());
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains(&name), "{name} not in\n{text}");
}

#[test]
fn enter_drills_into_the_selected_dvm_and_esc_comes_back() {
    let mut app = dvms_app(10);
    update(&mut app, code(KeyCode::Down));
    let id = shown_ids(&app)[1].clone();
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.views.detail, Some(Detail::Dvm(id.clone())));
    assert_eq!(app.wanted(), Some(Query::Dvm(id.clone(), Period::Last30d)));
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains("loading…"), "{text}");
    update(&mut app, code(KeyCode::Esc));
    assert_eq!(app.views.detail, None);
    assert_eq!(app.wanted(), Some(Query::Dvms(Period::Last30d)));
    // Another view forgets the detail.
    update(&mut app, code(KeyCode::Enter));
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.current_view(), View::Kinds);
    assert_eq!(app.views.detail, None);
}

#[test]
fn kinds_sort_and_drill_down() {
    let mut app = kinds_app();
    let kinds = |app: &App| -> Vec<i32> {
        crate::tui::views::kinds::visible(
            app.views.kind_rows(Period::Last30d).unwrap(),
            &app.views.kinds,
        )
        .iter()
        .map(|r| r.kind)
        .collect()
    };
    assert_eq!(kinds(&app), vec![5300, 5050, 5100, 5999]);
    // ← kind number, ascending.
    update(&mut app, code(KeyCode::Left));
    assert_eq!(kinds(&app), vec![5050, 5100, 5300, 5999]);
    // → → → completion, highest first; no requests sorts last.
    for _ in 0..3 {
        update(&mut app, code(KeyCode::Right));
    }
    assert_eq!(kinds(&app), vec![5050, 5300, 5100, 5999]);
    update(&mut app, code(KeyCode::Down));
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.views.detail, Some(Detail::Kind(5300)));
    assert_eq!(app.wanted(), Some(Query::Kind(5300, Period::Last30d)));
}

#[test]
fn months_open_their_breakdown_newest_first() {
    let mut app = months_app();
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.views.detail, Some(Detail::Month(ym(2024, 2))));
    update(&mut app, code(KeyCode::Esc));
    update(&mut app, key('G'));
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.views.detail, Some(Detail::Month(ym(2023, 12))));
    assert_eq!(
        app.wanted(),
        None,
        "a breakdown is in monthly_activity already"
    );
    update(&mut app, code(KeyCode::Esc));
    update(&mut app, key('i'));
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(
        app.views.detail,
        Some(Detail::Month(ym(2023, 12))),
        "oldest first"
    );
}

#[test]
fn w_cycles_the_period_through_closed_months() {
    let mut app = dvms_app(5);
    update(&mut app, key('w'));
    assert_eq!(app.wanted(), Some(Query::Dvms(Period::Last7d)));
    update(&mut app, key('w'));
    update(&mut app, key('w'));
    assert_eq!(app.wanted(), Some(Query::Dvms(Period::Month(ym(2024, 2)))));
    update(&mut app, key('W'));
    assert_eq!(app.wanted(), Some(Query::Dvms(Period::Last24h)));
    // A period never loaded: loading…, not the last period's rows.
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(
        text.contains("loading…") && text.contains("period 24 h"),
        "{text}"
    );
}

#[test]
fn a_failed_read_keeps_the_rows_and_says_stale_since() {
    let mut app = dvms_app(5);
    let cmds = answer(
        &mut app,
        Query::Dvms(Period::Last30d),
        Err("PostgreSQL did not answer within 5 s".into()),
    );
    assert_eq!(cmds, vec![Command::Redraw]);
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains("stale since 11:59:40"), "{text}");
    assert!(text.contains("5 DVMs"), "the last rows stay: {text}");
    // A read that fails before any answer says why.
    let mut app = busy_app();
    update(&mut app, key('3'));
    answer(
        &mut app,
        Query::Kinds(Period::Last30d),
        Err("connection refused".into()),
    );
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(
        text.contains("cannot read PostgreSQL: connection refused"),
        "{text}"
    );
    // The same answer twice changes nothing on screen.
    let mut app = dvms_app(5);
    assert!(
        answer(
            &mut app,
            Query::Dvms(Period::Last30d),
            Ok(Loaded::Dvms(dvm_rows(5)))
        )
        .is_empty()
    );
}

#[test]
fn shift_tab_goes_back_a_view() {
    let mut app = busy_app();
    let shift_tab = Msg::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    update(&mut app, shift_tab.clone());
    assert_eq!(app.current_view(), View::Ingest);
    update(&mut app, shift_tab);
    assert_eq!(app.current_view(), View::History);
}

#[test]
fn the_footer_says_more_when_keys_do_not_fit() {
    let app = dvms_app(5);
    let text = format!("{}", draw(&app, 80, 24).backend());
    let footer = text.lines().nth(23).unwrap_or_default();
    assert!(footer.contains("? more"), "{footer}");
    assert!(
        footer.contains("sort") && footer.contains("filter"),
        "{footer}"
    );
    let wide = format!("{}", draw(&app, 220, 40).backend());
    let footer = wide.lines().nth(39).unwrap_or_default();
    assert!(footer.contains("? help"), "{footer}");
}

#[test]
fn help_lists_the_view_keys_and_scrolls() {
    let mut app = dvms_app(5);
    update(&mut app, key('?'));
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains("↑↓ scroll"), "{text}");
    for _ in 0..60 {
        update(&mut app, code(KeyCode::Down));
    }
    let text = format!("{}", draw(&app, 80, 24).backend());
    assert!(text.contains("filter by name or id prefix"), "{text}");
    assert!(text.contains("rollover dialog"), "{text}");
}

fn dvm_detail(id: &str) -> DvmDetail {
    DvmDetail {
        id: id.to_owned(),
        profile: Some(Profile {
            name: Some("Translator 0".into()),
            about: Some("Translates notes into 40 languages".into()),
            kinds: vec![5002],
            announced_at: at(2023, 10, 2, 0, 0, 0),
        }),
        lifecycle: Some(Lifecycle {
            first_seen: at(2023, 11, 1, 9, 30, 0),
            last_seen: at(2024, 3, 14, 17, 0, 0),
            active: true,
            deactivated_at: None,
        }),
        kinds: vec![
            (5002, at(2023, 11, 1, 9, 30, 0), at(2024, 3, 14, 17, 0, 0)),
            (5300, at(2024, 1, 3, 0, 0, 0), at(2024, 3, 2, 0, 0, 0)),
        ],
        per_day: (0..30)
            .filter(|d| d % 6 != 5)
            .map(|d| {
                (
                    day(2024, 2, 14) + chrono::Duration::days(d),
                    100 + (d * 37 % 90),
                )
            })
            .collect(),
        months: vec![
            ("2024-01".into(), 200_000, 3_000),
            ("2024-02".into(), 271_906, 4_400),
        ],
        jobs: JobFigures {
            answered: 2_412,
            median_s: Some(14),
            p90_s: Some(312),
        },
        feedback_status: [120, 0, 31, 2_200, 0],
    }
}

fn kind_detail() -> KindDetail {
    KindDetail {
        kind: 5050,
        dvms: vec![
            (dvm(1), Some("Translator 0".into()), 3_000),
            (dvm(2), None, 900),
        ],
        per_day: (0..30)
            .map(|d| {
                (
                    day(2024, 2, 14) + chrono::Duration::days(d),
                    140 + d % 7 * 3,
                    130 + d % 5 * 2,
                )
            })
            .collect(),
        jobs: JobFigures {
            answered: 3_500,
            median_s: Some(75),
            p90_s: Some(1_900),
        },
    }
}

#[test]
fn snapshots_of_the_views() {
    let app = dvms_app(1_000);
    snap("dvms", &app, 80, 24);
    snap("dvms", &app, 120, 40);

    let mut app = dvms_app(12);
    update(&mut app, code(KeyCode::Enter));
    let id = match &app.views.detail {
        Some(Detail::Dvm(id)) => id.clone(),
        other => panic!("{other:?}"),
    };
    answer(
        &mut app,
        Query::Dvm(id.clone(), Period::Last30d),
        Ok(Loaded::Dvm(Box::new(dvm_detail(&id)))),
    );
    snap("dvm_detail", &app, 80, 24);
    snap("dvm_detail", &app, 120, 40);

    let mut app = kinds_app();
    snap("kinds", &app, 80, 24);
    snap("kinds", &app, 120, 40);
    update(&mut app, code(KeyCode::Down));
    update(&mut app, code(KeyCode::Enter));
    answer(
        &mut app,
        Query::Kind(5050, Period::Last30d),
        Ok(Loaded::Kind(Box::new(kind_detail()))),
    );
    snap("kind_detail", &app, 80, 24);
    snap("kind_detail", &app, 120, 40);

    let mut app = months_app();
    snap("months", &app, 80, 24);
    snap("months", &app, 120, 40);
    update(&mut app, code(KeyCode::Down));
    update(&mut app, code(KeyCode::Enter));
    snap("month_breakdown", &app, 80, 24);
    snap("month_breakdown", &app, 120, 40);

    let mut app = dvms_app(40);
    update(&mut app, key('/'));
    update(&mut app, key('t'));
    snap("dvms_filtering", &app, 80, 24);
}

/// Render time per frame of the DVMs view with 1,000 DVMs at 120×40 and
/// 80×24 (not a timed test: run it explicitly, in release, for the
/// README's figure):
/// `cargo nextest run --release --run-ignored only -E 'test(render_time_dvms_view)' --no-capture`
#[test]
#[ignore = "benchmark: run explicitly"]
fn render_time_dvms_view() {
    use crate::tui::render::render;
    use crate::tui::theme::{Palette, Theme};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let mut app = dvms_app(1_000);
    let theme = Theme::new(Palette::Indexed);
    for (w, h) in [(120, 40), (80, 24)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        let n = 500;
        let start = std::time::Instant::now();
        for i in 0..n {
            // Scrolling and re-sorting make every frame a different one.
            let step = if i % 50 == 49 {
                KeyCode::Right
            } else {
                KeyCode::Down
            };
            update(&mut app, code(step));
            t.draw(|f| render(f, &app, &theme, now())).unwrap();
        }
        let per = start.elapsed() / n;
        println!("render_time_dvms_view: {per:?} per frame at {w}x{h}, 1,000 DVMs ({n} frames)");
    }
}
