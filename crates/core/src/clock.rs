//! The pure heart of the pipeline: the processing clock, day batching, the
//! overflow buffer and the month-rollover state machine (SPEC §4–§5).
//!
//! No I/O here. The shell (`pipeline`) hands [`plan`] the `created_at` of
//! every pending event (overflow first, then the freshly peeked batch) and
//! carries out the one action it returns, each in its own transaction, then
//! asks again. Every action is idempotent against the committed state, so a
//! crash between any two of them replays to the same tables.

use crate::time::{MAX_TS, YearMonth, day_of, day_start};
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Roll over as soon as due (headless default).
    #[default]
    Auto,
    /// Wait for the operator's confirmation (TUI default).
    Manual,
}

/// What the clock has committed so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClockState {
    /// The open month; `None` until the first event.
    pub month: Option<YearMonth>,
    /// The current day: the latest day the clock has advanced to.
    pub day: Option<NaiveDate>,
    /// Largest `created_at` processed so far.
    pub clock: Option<i64>,
    /// Under `manual`, the month whose rollover the operator has confirmed.
    pub confirmed: Option<YearMonth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub buffer_days: u32,
    pub policy: Policy,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            buffer_days: 3,
            policy: Policy::Auto,
        }
    }
}

/// What the shell must do next. Indices refer to the `pending` slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing is pending.
    Idle,
    /// Open the first month (from the earliest pending day).
    Init(YearMonth),
    /// Roll up this month, close it and open the next; then plan again.
    Rollover(YearMonth),
    /// Run the daily cleanup with reference time = start of this day and
    /// make it the current day; then plan again.
    AdvanceDay(NaiveDate),
    /// Commit one slice: `take` (all of one day, or nothing), `ignore`
    /// (months already closed), `park` (everything else, to the overflow).
    Batch(Batch),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub day: Option<NaiveDate>,
    pub take: Vec<usize>,
    pub ignore: Vec<usize>,
    pub park: Vec<usize>,
    /// A rollover of this month is due but unconfirmed (manual policy).
    pub awaiting: Option<Awaiting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    pub month: YearMonth,
    /// The earliest pending day lies beyond the next month: nothing can be
    /// processed until the operator confirms.
    pub blocked: bool,
}

impl Params {
    /// The rollover of `m` is due once the day about to be processed is at
    /// least `start(m+1) + buffer`.
    pub(crate) fn due(&self, m: YearMonth, pending_day: NaiveDate) -> bool {
        pending_day >= m.end() + Days::new(self.buffer_days.into())
    }
}

/// Days since the epoch of a timestamp (clamped as [`day_of`] is): cheap
/// to compare, for the per-event loops of [`plan`].
fn day_number(ts: i64) -> i64 {
    ts.clamp(0, MAX_TS).div_euclid(86_400)
}

/// Decides the next action. Pure: same inputs, same plan.
pub fn plan(state: &ClockState, params: &Params, pending: &[i64]) -> Plan {
    let Some(earliest) = pending.iter().copied().min() else {
        return idle(state, params);
    };
    let Some(month) = state.month else {
        return Plan::Init(YearMonth::of(day_of(earliest)));
    };
    let month_start = day_number(day_start(month.start()));
    let mut batch = Batch::default();
    let mut day: Option<i64> = None;
    for (i, &ts) in pending.iter().enumerate() {
        let d = day_number(ts);
        if d < month_start {
            batch.ignore.push(i);
        } else if day.is_none_or(|cur| d < cur) {
            day = Some(d);
        }
    }
    let Some(dn) = day else {
        return Plan::Batch(batch);
    };
    let d = day_of(dn * 86_400);
    if params.due(month, d) {
        if params.policy == Policy::Auto || state.confirmed == Some(month) {
            return Plan::Rollover(month);
        }
        let blocked = YearMonth::of(d) > month.next();
        batch.awaiting = Some(Awaiting { month, blocked });
        if blocked {
            batch.park = pending
                .iter()
                .enumerate()
                .filter(|&(_, &ts)| day_number(ts) >= month_start)
                .map(|(i, _)| i)
                .collect();
            return Plan::Batch(batch);
        }
    }
    if state.day.is_none_or(|cur| d > cur) {
        return Plan::AdvanceDay(d);
    }
    batch.day = Some(d);
    for (i, &ts) in pending.iter().enumerate() {
        let e = day_number(ts);
        if e < month_start {
            continue;
        }
        if e == dn {
            batch.take.push(i);
        } else {
            batch.park.push(i);
        }
    }
    Plan::Batch(batch)
}

/// Nothing pending. A rollover that was already due on the current day
/// (manual policy: days of the next month were processed while it waited)
/// still waits for its confirmation, and runs once confirmed — so a
/// backtest that ends waiting can be confirmed and finish like a headless
/// run. (Under `auto` the clock never advances past a due rollover, so
/// nothing is due here.)
fn idle(state: &ClockState, params: &Params) -> Plan {
    match (state.month, state.day) {
        (Some(m), Some(d)) if params.due(m, d) => {
            if params.policy == Policy::Auto || state.confirmed == Some(m) {
                Plan::Rollover(m)
            } else {
                Plan::Batch(Batch {
                    awaiting: Some(Awaiting {
                        month: m,
                        blocked: false,
                    }),
                    ..Batch::default()
                })
            }
        }
        _ => Plan::Idle,
    }
}

/// State after a committed batch.
pub fn after_batch(state: &ClockState, batch_max_ts: Option<i64>) -> ClockState {
    ClockState {
        clock: state.clock.max(batch_max_ts),
        ..state.clone()
    }
}

/// State after a committed rollover of `m`.
pub fn after_rollover(state: &ClockState, m: YearMonth) -> ClockState {
    ClockState {
        month: Some(m.next()),
        confirmed: None,
        ..state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(y: i32, m: u32, d: u32, h: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }
    fn st(m: (i32, u32), day: (i32, u32, u32)) -> ClockState {
        ClockState {
            month: YearMonth::new(m.0, m.1),
            day: NaiveDate::from_ymd_opt(day.0, day.1, day.2),
            clock: None,
            confirmed: None,
        }
    }

    #[test]
    fn first_event_opens_its_month() {
        let p = plan(
            &ClockState::default(),
            &Params::default(),
            &[ts(2024, 3, 9, 1), ts(2024, 2, 29, 23)],
        );
        assert_eq!(p, Plan::Init(YearMonth::new(2024, 2).unwrap()));
    }

    #[test]
    fn earliest_day_is_taken_rest_parked_prior_ignored() {
        let s = st((2024, 3), (2024, 3, 10));
        let pending = [
            ts(2024, 3, 11, 5),
            ts(2024, 3, 10, 5),
            ts(2024, 2, 28, 1),
            ts(2024, 3, 10, 23),
        ];
        let Plan::Batch(b) = plan(&s, &Params::default(), &pending) else {
            panic!()
        };
        assert_eq!(b.day, NaiveDate::from_ymd_opt(2024, 3, 10));
        assert_eq!((b.take, b.park, b.ignore), (vec![1, 3], vec![0], vec![2]));
    }

    #[test]
    fn day_advance_comes_before_processing() {
        let s = st((2024, 3), (2024, 3, 10));
        let p = plan(&s, &Params::default(), &[ts(2024, 3, 12, 0)]);
        assert_eq!(
            p,
            Plan::AdvanceDay(NaiveDate::from_ymd_opt(2024, 3, 12).unwrap())
        );
    }

    #[test]
    fn rollover_due_exactly_at_buffer_edge() {
        let s = st((2024, 3), (2024, 4, 3));
        let before = plan(&s, &Params::default(), &[ts(2024, 4, 3, 23)]);
        assert!(matches!(before, Plan::Batch(ref b) if b.take == vec![0]));
        let at = plan(&s, &Params::default(), &[ts(2024, 4, 4, 0)]);
        assert_eq!(at, Plan::Rollover(YearMonth::new(2024, 3).unwrap()));
    }

    #[test]
    fn manual_processes_next_month_and_blocks_on_the_one_after() {
        let params = Params {
            buffer_days: 3,
            policy: Policy::Manual,
        };
        let s = st((2024, 3), (2024, 4, 10));
        let Plan::Batch(b) = plan(&s, &params, &[ts(2024, 4, 10, 1)]) else {
            panic!()
        };
        assert_eq!(b.take, vec![0]);
        assert_eq!(
            b.awaiting,
            Some(Awaiting {
                month: YearMonth::new(2024, 3).unwrap(),
                blocked: false
            })
        );
        let Plan::Batch(b) = plan(&s, &params, &[ts(2024, 5, 1, 1), ts(2024, 2, 1, 0)]) else {
            panic!()
        };
        assert!(b.take.is_empty());
        assert_eq!((b.park, b.ignore), (vec![0], vec![1]));
        assert!(b.awaiting.unwrap().blocked);
        let confirmed = ClockState {
            confirmed: s.month,
            ..s
        };
        assert_eq!(
            plan(&confirmed, &params, &[ts(2024, 5, 1, 1)]),
            Plan::Rollover(YearMonth::new(2024, 3).unwrap())
        );
    }

    #[test]
    fn a_due_rollover_waits_and_runs_when_nothing_is_pending() {
        let params = Params {
            buffer_days: 3,
            policy: Policy::Manual,
        };
        // March is open, April 10 processed while March waited.
        let s = st((2024, 3), (2024, 4, 10));
        let march = YearMonth::new(2024, 3).unwrap();
        let Plan::Batch(b) = plan(&s, &params, &[]) else {
            panic!()
        };
        assert!(b.take.is_empty() && b.park.is_empty());
        assert_eq!(
            b.awaiting,
            Some(Awaiting {
                month: march,
                blocked: false
            })
        );
        let confirmed = ClockState {
            confirmed: Some(march),
            ..s.clone()
        };
        assert_eq!(plan(&confirmed, &params, &[]), Plan::Rollover(march));
        // Not due yet (April 3 is inside the buffer): idle.
        let early = st((2024, 3), (2024, 4, 3));
        assert_eq!(plan(&early, &params, &[]), Plan::Idle);
        assert_eq!(plan(&ClockState::default(), &params, &[]), Plan::Idle);
    }

    #[test]
    fn gap_months_roll_one_after_another() {
        let params = Params::default();
        let mut s = st((2024, 1), (2024, 1, 20));
        let pending = [ts(2024, 4, 10, 0)];
        let mut rolled = vec![];
        while let Plan::Rollover(m) = plan(&s, &params, &pending) {
            rolled.push(m.to_string());
            s = after_rollover(&s, m);
        }
        assert_eq!(rolled, ["2024-01", "2024-02", "2024-03"]);
    }
}
