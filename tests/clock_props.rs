//! Property tests for the pure clock: a model of the shell (queue, overflow,
//! confirmations) driven by `clock::plan` over random event orders, batch
//! sizes and policies must never lose, duplicate or deadlock.

use dvmtop_core::clock::{self, ClockState, Params, Plan, Policy};
use dvmtop_core::{YearMonth, day_of};
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Default)]
struct Outcome {
    processed: Vec<usize>,
    ignored: Vec<usize>,
    rolled: Vec<YearMonth>,
}

/// Runs the plan loop to the end like `pipeline::Processor` does. The
/// operator confirms whenever the pipeline is blocked on a confirmation.
fn simulate(events: &[i64], batch: usize, params: Params) -> Outcome {
    let mut queue: VecDeque<usize> = (0..events.len()).collect();
    let mut overflow: Vec<usize> = Vec::new();
    let mut state = ClockState::default();
    let mut out = Outcome::default();
    let limit = 20 * events.len() + 1000;
    for _ in 0..limit {
        let room = batch - overflow.len();
        let fresh: Vec<usize> = queue.iter().take(room).copied().collect();
        let pending: Vec<usize> = overflow.iter().chain(&fresh).copied().collect();
        let ts: Vec<i64> = pending.iter().map(|&i| events[i]).collect();
        match clock::plan(&state, &params, &ts) {
            Plan::Idle => {
                assert!(pending.is_empty());
                return out;
            }
            Plan::Init(m) => {
                assert!(state.month.is_none());
                assert_eq!(m, YearMonth::of(day_of(*ts.iter().min().unwrap())));
                state.month = Some(m);
            }
            Plan::Rollover(m) => {
                assert_eq!(Some(m), state.month);
                if params.policy == Policy::Manual {
                    assert_eq!(
                        state.confirmed,
                        Some(m),
                        "manual rollovers need a confirmation"
                    );
                }
                out.rolled.push(m);
                state = clock::after_rollover(&state, m);
            }
            Plan::AdvanceDay(d) => {
                assert!(
                    state.day.is_none_or(|cur| d > cur),
                    "the day only moves forward"
                );
                state.day = Some(d);
            }
            Plan::Batch(b) => {
                let mut all: Vec<usize> = b
                    .take
                    .iter()
                    .chain(&b.ignore)
                    .chain(&b.park)
                    .copied()
                    .collect();
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..pending.len()).collect::<Vec<_>>(),
                    "take/ignore/park partition the pending set"
                );
                let month = state.month.unwrap();
                if let Some(day) = b.day {
                    assert!(
                        b.take.iter().all(|&i| day_of(ts[i]) == day),
                        "a slice never crosses a day"
                    );
                    assert!(YearMonth::of(day) >= month);
                    assert!(
                        state.day.is_some_and(|cur| day <= cur),
                        "the day was advanced first"
                    );
                    let max = b.take.iter().map(|&i| ts[i]).max();
                    state = clock::after_batch(&state, max);
                }
                assert!(
                    b.ignore
                        .iter()
                        .all(|&i| YearMonth::of(day_of(ts[i])) < month)
                );
                out.processed.extend(b.take.iter().map(|&i| pending[i]));
                out.ignored.extend(b.ignore.iter().map(|&i| pending[i]));
                overflow = b.park.iter().map(|&i| pending[i]).collect();
                assert!(
                    overflow.len() <= batch,
                    "the overflow never holds more than a batch"
                );
                queue.drain(..fresh.len());
                let moved = !b.take.is_empty() || !b.ignore.is_empty() || !fresh.is_empty();
                if !moved {
                    let a = b
                        .awaiting
                        .expect("no progress is only allowed while awaiting a confirmation");
                    // Blocked by a later month, or everything processed
                    // with the rollover due (it runs once confirmed).
                    assert!(params.policy == Policy::Manual && (a.blocked || pending.is_empty()));
                    state.confirmed = state.month;
                }
            }
        }
    }
    panic!("no end after {limit} steps: deadlock");
}

/// Timestamps over ~4 months from 2024-01-01, including empty gap months.
fn events(max: usize) -> impl Strategy<Value = Vec<i64>> {
    let base = 1_704_067_200i64; // 2024-01-01T00:00:00Z
    prop::collection::vec((0i64..130, 0i64..86_400), 0..max)
        .prop_map(move |v| v.into_iter().map(|(d, s)| base + d * 86_400 + s).collect())
}

/// Events arriving late by less than `buffer_days` (arrival order = time
/// plus a random delay).
fn late_within_buffer(max: usize) -> impl Strategy<Value = (Vec<i64>, Params)> {
    (
        events(max),
        prop::collection::vec(0.0f64..1.0, max),
        1u32..6,
        prop_oneof![Just(Policy::Auto), Just(Policy::Manual)],
    )
        .prop_map(|(ev, delays, buffer_days, policy)| {
            let limit = (buffer_days as f64) * 86_400.0 - 1.0;
            let mut v: Vec<(i64, i64)> = ev
                .iter()
                .zip(&delays)
                .map(|(&t, &d)| (t + (d * d * limit) as i64, t))
                .collect();
            v.sort_unstable();
            (
                v.into_iter().map(|(_, t)| t).collect(),
                Params {
                    buffer_days,
                    policy,
                },
            )
        })
}

fn params() -> impl Strategy<Value = Params> {
    (
        0u32..6,
        prop_oneof![Just(Policy::Auto), Just(Policy::Manual)],
    )
        .prop_map(|(buffer_days, policy)| Params {
            buffer_days,
            policy,
        })
}

fn check_conservation(events: &[i64], out: &Outcome) {
    let mut seen: Vec<usize> = out.processed.iter().chain(&out.ignored).copied().collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..events.len()).collect::<Vec<_>>(),
        "every event processed or ignored exactly once"
    );
    for w in out.rolled.windows(2) {
        assert_eq!(
            w[1],
            w[0].next(),
            "months roll one at a time, gaps included"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_order_any_batch_never_loses_duplicates_or_deadlocks(ev in events(300), batch in 1usize..40, p in params()) {
        let out = simulate(&ev, batch, p);
        check_conservation(&ev, &out);
    }

    #[test]
    fn lateness_within_the_buffer_is_batch_size_independent((ev, p) in late_within_buffer(300), b1 in 1usize..30, b2 in 30usize..400) {
        // Events late by less than the rollover buffer are never prior-month
        // stragglers, whatever the batch size: everything is processed and
        // the same months roll.
        let a = simulate(&ev, b1, p);
        let b = simulate(&ev, b2, p);
        check_conservation(&ev, &a);
        check_conservation(&ev, &b);
        prop_assert!(a.ignored.is_empty() && b.ignored.is_empty());
        prop_assert_eq!(a.rolled, b.rolled);
    }

    #[test]
    fn sorted_input_processes_days_in_order(mut ev in events(200), batch in 1usize..50, p in params()) {
        ev.sort_unstable();
        let out = simulate(&ev, batch, p);
        check_conservation(&ev, &out);
        prop_assert!(out.ignored.is_empty());
        let days: Vec<_> = out.processed.iter().map(|&i| day_of(ev[i])).collect();
        prop_assert!(days.windows(2).all(|w| w[0] <= w[1]));
    }
}
