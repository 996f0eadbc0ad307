//! The drill-down views — DVMs, kinds, monthly history — and their
//! details. Their state (period, tables, what is drilled into, what
//! PostgreSQL answered) is data in the [`App`](super::app::App); keys
//! change it in [`Views::act`] (pure); the `loader` worker reads what
//! [`Views::wanted`] names in the background and answers with
//! [`Msg::Loaded`](super::app::Msg::Loaded).

pub(crate) mod chart;
pub(crate) mod detail;
pub(crate) mod dvms;
pub(crate) mod kinds;
pub mod loader;
pub(crate) mod months;
pub(crate) mod period;
pub(crate) mod table;

use crate::store::{DvmDetail, DvmRow, KindDetail, KindRow, MonthRow};
use chrono::{DateTime, Utc};
use dvmtop_core::YearMonth;
pub use period::Period;
use table::{PAGE, Table};

/// The views, in tab and number-key order (Overview stays 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Overview,
    Dvms,
    Kinds,
    Months,
    History,
    Ingest,
}

impl View {
    pub(crate) const ALL: [View; 6] = [
        View::Overview,
        View::Dvms,
        View::Kinds,
        View::Months,
        View::History,
        View::Ingest,
    ];

    /// Its tab index (its number key is one more).
    #[cfg(test)]
    pub(crate) fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// The view at tab index `i` (out of range: the last).
    pub(crate) fn of(i: usize) -> View {
        View::ALL[i.min(View::ALL.len() - 1)]
    }

    /// The drill-down views, which have their own keys.
    pub(crate) fn is_list(self) -> bool {
        matches!(self, View::Dvms | View::Kinds | View::Months)
    }
}

/// What a view needs read from PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Dvms(Period),
    Kinds(Period),
    Dvm(String, Period),
    Kind(i32, Period),
    /// The open month's running figures (the monthly history view).
    OpenMonth(YearMonth),
}

/// PostgreSQL's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    Dvms(Vec<DvmRow>),
    Kinds(Vec<KindRow>),
    Dvm(Box<DvmDetail>),
    Kind(Box<KindDetail>),
    OpenMonth(Box<MonthRow>),
}

/// One answer of the loader.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadResult {
    pub(crate) query: Query,
    pub(crate) at: DateTime<Utc>,
    pub(crate) result: Result<Loaded, String>,
}

/// Draws the current drill-down view (its detail when one is open).
pub(crate) fn render(
    f: &mut ratatui::Frame,
    area: ratatui::layout::Rect,
    app: &super::App,
    t: &super::theme::Theme,
) {
    match (app.current_view(), &app.views.detail) {
        (View::Dvms, Some(Detail::Dvm(id))) => detail::render_dvm(f, area, app, t, id),
        (View::Kinds, Some(Detail::Kind(k))) => detail::render_kind(f, area, app, t, *k),
        (View::Dvms, _) => dvms::render(f, area, app, t),
        (View::Kinds, _) => kinds::render(f, area, app, t),
        _ => months::render(f, area, app, t),
    }
}

/// What is drilled into on the current view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detail {
    Dvm(String),
    Kind(i32),
    Month(YearMonth),
}

/// The last answer for a query, and since when reading it fails.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) query: Query,
    pub(crate) data: Option<Loaded>,
    pub(crate) at: Option<DateTime<Utc>>,
    pub(crate) stale_since: Option<DateTime<Utc>>,
    pub(crate) error: Option<String>,
}

/// Answers kept (the list behind a detail, so going back shows it at once).
const KEPT: usize = 6;

/// A key's meaning on a drill-down view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    SortNext,
    SortPrev,
    Reverse,
    NextPeriod,
    PrevPeriod,
    Open,
    Back,
    Filter,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Views {
    pub(crate) period: Period,
    pub(crate) dvms: Table,
    pub(crate) kinds: Table,
    pub(crate) months: Table,
    /// The month breakdown's tables scroll together.
    pub(crate) breakdown: Table,
    /// The detail's list (its DVMs, months) scrolls.
    pub(crate) detail_table: Table,
    pub(crate) detail: Option<Detail>,
    /// `/` was pressed: keys type into the list's filter.
    pub(crate) filtering: bool,
    pub(crate) answers: Vec<Answer>,
}

impl Default for Views {
    fn default() -> Self {
        Views {
            period: Period::default(),
            dvms: Table::new(dvms::Col::Responses as usize, true),
            kinds: Table::new(kinds::Col::Requests as usize, true),
            months: Table::new(0, true),
            breakdown: Table::new(0, true),
            detail_table: Table::new(0, true),
            detail: None,
            filtering: false,
            answers: Vec::new(),
        }
    }
}

impl Views {
    /// What `view` needs from PostgreSQL now; `open` is the open month.
    pub(crate) fn wanted(&self, view: View, open: Option<YearMonth>) -> Option<Query> {
        let p = self.period;
        match (view, &self.detail) {
            (View::Dvms, Some(Detail::Dvm(id))) => Some(Query::Dvm(id.clone(), p)),
            (View::Dvms, _) => Some(Query::Dvms(p)),
            (View::Kinds, Some(Detail::Kind(k))) => Some(Query::Kind(*k, p)),
            (View::Kinds, _) => Some(Query::Kinds(p)),
            (View::Months, None) => open.map(Query::OpenMonth),
            _ => None,
        }
    }

    pub(crate) fn answer(&self, q: &Query) -> Option<&Answer> {
        self.answers.iter().find(|a| &a.query == q)
    }

    /// Takes a loader answer; returns whether it changed anything.
    pub(crate) fn take(&mut self, r: LoadResult) -> bool {
        let i = match self.answers.iter().position(|a| a.query == r.query) {
            Some(i) => i,
            None => {
                if self.answers.len() == KEPT {
                    self.answers.remove(0);
                }
                self.answers.push(Answer {
                    query: r.query.clone(),
                    data: None,
                    at: None,
                    stale_since: None,
                    error: None,
                });
                self.answers.len() - 1
            }
        };
        let a = &mut self.answers[i];
        match r.result {
            Ok(d) => {
                let changed = a.data.as_ref() != Some(&d) || a.stale_since.is_some();
                a.data = Some(d);
                a.at = Some(r.at);
                a.stale_since = None;
                a.error = None;
                changed
            }
            Err(e) => {
                let changed = a.stale_since.is_none() || a.error.as_ref() != Some(&e);
                a.stale_since.get_or_insert(r.at);
                a.error = Some(e);
                changed
            }
        }
    }

    fn list_table(&mut self, view: View) -> &mut Table {
        match (view, &self.detail) {
            (View::Months, Some(Detail::Month(_))) => &mut self.breakdown,
            (_, Some(_)) => &mut self.detail_table,
            (View::Kinds, None) => &mut self.kinds,
            (View::Months, None) => &mut self.months,
            _ => &mut self.dvms,
        }
    }

    /// The rows of the list the selection moves in, as the view shows them.
    fn list_len(&self, view: View, months: &[MonthRow]) -> usize {
        let p = self.period;
        match (view, &self.detail) {
            (View::Dvms, None) => self
                .dvm_rows(p)
                .map_or(0, |r| dvms::visible(r, &self.dvms).len()),
            (View::Kinds, None) => self
                .kind_rows(p)
                .map_or(0, |r| kinds::visible(r, &self.kinds).len()),
            (View::Months, None) => months.len(),
            (View::Months, Some(Detail::Month(m))) => months
                .iter()
                .find(|r| r.year_month == *m)
                .map_or(0, months::breakdown_len),
            (_, Some(d)) => {
                let q = match d {
                    Detail::Dvm(id) => Query::Dvm(id.clone(), p),
                    Detail::Kind(k) => Query::Kind(*k, p),
                    Detail::Month(_) => return 0,
                };
                match self.answer(&q).and_then(|a| a.data.as_ref()) {
                    Some(Loaded::Dvm(d)) => d.months.len(),
                    Some(Loaded::Kind(k)) => k.dvms.len(),
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    pub(crate) fn dvm_rows(&self, p: Period) -> Option<&Vec<DvmRow>> {
        match self.answer(&Query::Dvms(p)).and_then(|a| a.data.as_ref()) {
            Some(Loaded::Dvms(r)) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn kind_rows(&self, p: Period) -> Option<&Vec<KindRow>> {
        match self.answer(&Query::Kinds(p)).and_then(|a| a.data.as_ref()) {
            Some(Loaded::Kinds(r)) => Some(r),
            _ => None,
        }
    }

    /// A key on a drill-down view. `months` are the closed months, oldest
    /// first (the history view lists them newest first). Esc closes the
    /// detail, else clears the filter.
    pub(crate) fn act(&mut self, view: View, m: Move, months: &[MonthRow]) {
        let len = self.list_len(view, months);
        let closed: Vec<YearMonth> = months.iter().map(|r| r.year_month).collect();
        match m {
            Move::Up => self.list_table(view).step(-1, len),
            Move::Down => self.list_table(view).step(1, len),
            Move::PageUp => self.list_table(view).step(-(PAGE as isize), len),
            Move::PageDown => self.list_table(view).step(PAGE as isize, len),
            Move::Top => self.list_table(view).top(),
            Move::Bottom => self.list_table(view).bottom(len),
            Move::SortNext | Move::SortPrev | Move::Reverse if self.detail.is_none() => {
                let fwd = m == Move::SortNext;
                match view {
                    View::Dvms if m == Move::Reverse => self.dvms.reverse(),
                    View::Kinds if m == Move::Reverse => self.kinds.reverse(),
                    View::Dvms => self
                        .dvms
                        .sort_by(dvms::COLS.len(), fwd, dvms::desc_by_default),
                    View::Kinds => {
                        self.kinds
                            .sort_by(kinds::COLS.len(), fwd, kinds::desc_by_default)
                    }
                    View::Months if m == Move::Reverse => self.months.reverse(),
                    _ => {}
                }
            }
            Move::NextPeriod | Move::PrevPeriod if matches!(view, View::Dvms | View::Kinds) => {
                self.period = self.period.cycle(&closed, m == Move::NextPeriod);
                self.dvms.top();
                self.kinds.top();
                self.detail_table.top();
            }
            Move::Filter if self.detail.is_none() && matches!(view, View::Dvms | View::Kinds) => {
                self.filtering = true;
            }
            Move::Open if self.detail.is_none() => {
                let p = self.period;
                self.detail = match view {
                    View::Dvms => self.dvm_rows(p).and_then(|rows| {
                        let v = dvms::visible(rows, &self.dvms);
                        let i = self.dvms.selection(v.len())?;
                        Some(Detail::Dvm(v[i].id.clone()))
                    }),
                    View::Kinds => self.kind_rows(p).and_then(|rows| {
                        let v = kinds::visible(rows, &self.kinds);
                        let i = self.kinds.selection(v.len())?;
                        Some(Detail::Kind(v[i].kind))
                    }),
                    View::Months => {
                        let newest_first: Vec<_> = months::ordered(months, &self.months);
                        let i = self.months.selection(newest_first.len());
                        i.map(|i| Detail::Month(newest_first[i].year_month))
                    }
                    _ => None,
                };
                self.detail_table.top();
                self.breakdown.top();
            }
            Move::Back => {
                if self.detail.is_some() {
                    self.detail = None;
                } else {
                    self.list_table(view).filter.clear();
                }
            }
            _ => {}
        }
    }

    /// A typed character or editing key while filtering.
    pub(crate) fn filter_key(&mut self, view: View, c: Option<char>, done: bool) {
        let t = self.list_table(view);
        match c {
            Some(c) => t.type_char(c),
            None if done => self.filtering = false,
            None => t.backspace(),
        }
    }

    /// Esc while filtering: the filter is dropped.
    pub(crate) fn filter_cancel(&mut self, view: View) {
        self.list_table(view).filter.clear();
        self.filtering = false;
    }
}
