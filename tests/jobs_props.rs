//! Property tests for the pure request → result matching
//! (`dvmtop_core::jobs`): over random requests and results — results
//! before their request, several results per DVM, several DVMs, results
//! outside the horizon, results naming requests that never come — every
//! arrival order gives the same month figures and the same window
//! histogram totals, and both equal a brute-force oracle.

use dvmtop_core::jobs::{Jobs, MonthJobs, Scope};
use dvmtop_core::{JobKind, YearMonth, day_of};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// 2024-01-30: months January to March are reachable.
const T0: i64 = 1_706_572_800;
const HORIZON: i64 = 3 * 86_400;

#[derive(Debug, Clone, Copy)]
enum Ev {
    Request { key: u8, t: i64, kind: u32 },
    Result { of: u8, dvm: u8, t: i64 },
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0u8..12, 0i64..5 * 86_400, 5000u32..5003).prop_map(|(key, dt, kind)| Ev::Request {
            key,
            t: T0 + dt,
            kind
        }),
        (0u8..14, 0u8..4, 0i64..9 * 86_400).prop_map(|(of, dvm, dt)| Ev::Result {
            of,
            dvm,
            t: T0 + dt
        }),
    ]
}

/// Distinct requests (an id is applied once) and any results.
fn events() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec(ev(), 0..60).prop_map(|v| {
        let mut seen = std::collections::HashSet::new();
        v.into_iter()
            .filter(|e| match e {
                Ev::Request { key, .. } => seen.insert(*key),
                Ev::Result { .. } => true,
            })
            .collect()
    })
}

type Windows = BTreeMap<(chrono::NaiveDate, Scope, i16), i64>;

fn months() -> Vec<YearMonth> {
    let jan = YearMonth::new(2024, 1).unwrap();
    vec![jan, jan.next(), jan.next().next()]
}

fn run(evs: &[Ev]) -> (Vec<MonthJobs>, Windows) {
    let mut jobs = Jobs::new(HORIZON, None);
    for e in evs {
        match *e {
            Ev::Request { key, t, kind } => jobs.request(u128::from(key), t, JobKind(kind)),
            Ev::Result { of, dvm, t } => jobs.result(u128::from(of), &[dvm; 32], t),
        }
    }
    // The window histogram rows, summed over hours.
    let mut windows = Windows::new();
    for ((day, scope), cells) in jobs.hist.rows() {
        for (_, bucket, n) in cells {
            *windows.entry((day, scope, bucket)).or_default() += i64::from(n);
        }
    }
    windows.retain(|_, n| *n != 0);
    let figures = months()
        .into_iter()
        .map(|m| jobs.month(m).cloned().unwrap_or_default())
        .map(|mut f| {
            // Empty sample sets are the same as absent ones.
            f.dvms.retain(|_, h| !h.is_empty());
            f.kinds.retain(|_, h| !h.is_empty());
            f
        })
        .collect();
    (figures, windows)
}

/// The contract, brute force: every (request, result) pair within the
/// horizon; earliest per (DVM, request) and per request.
fn oracle(evs: &[Ev]) -> Vec<MonthJobs> {
    let mut out: Vec<MonthJobs> = months().iter().map(|_| MonthJobs::default()).collect();
    let idx = |t: i64| {
        months()
            .iter()
            .position(|m| *m == YearMonth::of(day_of(t)))
            .unwrap()
    };
    for r in evs {
        let Ev::Request { key, t: q, kind } = *r else {
            continue;
        };
        let answers: Vec<(u8, i64)> = evs
            .iter()
            .filter_map(|e| match *e {
                Ev::Result { of, dvm, t } if of == key && (t - q).abs() <= HORIZON => {
                    Some((dvm, t))
                }
                _ => None,
            })
            .collect();
        for dvm in 0u8..4 {
            if let Some(t) = answers.iter().filter(|a| a.0 == dvm).map(|a| a.1).min() {
                out[idx(t)]
                    .dvms
                    .entry([dvm; 32])
                    .or_default()
                    .add((t - q).max(0), 1);
            }
        }
        if let Some(t) = answers.iter().map(|a| a.1).min() {
            out[idx(t)].all.add((t - q).max(0), 1);
            out[idx(t)]
                .kinds
                .entry(JobKind(kind))
                .or_default()
                .add((t - q).max(0), 1);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_order_gives_the_oracles_figures(evs in events(), seed in any::<u64>()) {
        let (figures, windows) = run(&evs);
        prop_assert_eq!(&figures, &oracle(&evs));
        // Another order: a seeded shuffle (Fisher–Yates with a small LCG).
        let mut shuffled = evs.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        let (f2, w2) = run(&shuffled);
        prop_assert_eq!(&figures, &f2);
        prop_assert_eq!(&windows, &w2);
        // Reversed: every result before its request.
        let reversed: Vec<Ev> = evs.iter().rev().copied().collect();
        let (f3, w3) = run(&reversed);
        prop_assert_eq!(&figures, &f3);
        prop_assert_eq!(&windows, &w3);
        // The window histograms hold one sample per figure sample.
        let total = |s: fn(&Scope) -> bool| windows.iter().filter(|((_, sc, _), _)| s(sc)).map(|(_, n)| *n).sum::<i64>();
        prop_assert_eq!(total(|s| *s == Scope::All), figures.iter().map(|f| f.all.len()).sum::<i64>());
        prop_assert!(windows.values().all(|n| *n > 0));
    }
}
