//! Window stats (1 h, 24 h, 7 d, 30 d) on the processing clock (pure).
//!
//! An N-unit window is the current (partial) unit plus the N previous
//! whole units — hours for 1h/24h, days for 7d/30d — so on Jan 15 the
//! 30-day window is Dec 16 … Jan 15, as SPEC §6 pins it. Event time only,
//! never the wall clock (SPEC §7). All four windows are folded in one pass
//! over the activity cells, which the shell streams from `entity_activity`.

use crate::activity::Entry;
use crate::analyze::Counts;
use crate::keys::{FastMap, FastSet, Pubkey, hex_of};
use crate::role::{EntityRole, JobKind};
use crate::time::day_start;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    pub window: &'static str,
    pub requests: i64,
    pub responses: i64,
    pub feedback: i64,
    /// responses / requests, when there were requests.
    pub completion: Option<f64>,
    pub unique_users: i64,
    pub unique_dvms: i64,
    pub unique_kinds: i64,
    /// Most responses (ties: smallest id).
    pub popular_dvm: Option<String>,
    /// Most requests (ties: smallest kind).
    pub popular_kind: Option<JobKind>,
    /// Served by the most distinct DVMs (ties: smallest kind).
    pub competitive_kind: Option<JobKind>,
}

pub(crate) const NAMES: [&str; 4] = ["1h", "24h", "7d", "30d"];

/// Where each window starts for processing clock `t`.
pub fn window_starts(t: i64) -> [(&'static str, DateTime<Utc>); 4] {
    let now = DateTime::from_timestamp(t, 0).unwrap_or_default();
    let hour = DateTime::from_timestamp(t - t.rem_euclid(3600), 0).unwrap_or_default();
    let day: NaiveDate = now.date_naive();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    [
        (NAMES[0], hour - Duration::hours(1)),
        (NAMES[1], hour - Duration::hours(24)),
        (NAMES[2], midnight(day - Duration::days(7))),
        (NAMES[3], midnight(day - Duration::days(30))),
    ]
}

/// The days whose rows can hold cells of some window at clock `t`.
pub fn day_range(t: i64) -> (NaiveDate, NaiveDate) {
    let starts = window_starts(t);
    let upto = DateTime::from_timestamp(t, 0).unwrap_or_default();
    let first = starts.iter().map(|(_, s)| s.date_naive()).min();
    (first.unwrap_or(upto.date_naive()), upto.date_naive())
}

#[derive(Default)]
struct Acc {
    counts: Counts,
    users: FastSet<Pubkey>,
    dvms: FastSet<Pubkey>,
    kinds: BTreeSet<JobKind>,
    dvm_responses: FastMap<Pubkey, i64>,
    kind_requests: FastMap<JobKind, i64>,
    kind_dvms: FastMap<JobKind, FastSet<Pubkey>>,
}

impl Acc {
    fn add(&mut self, role: EntityRole, e: &Entry) {
        let job = e.kind.is_known();
        self.counts = self.counts.plus(e.counts);
        if job && e.counts.requests + e.counts.responses > 0 {
            self.kinds.insert(e.kind);
        }
        match role {
            EntityRole::User => {
                self.users.insert(e.entity);
            }
            EntityRole::Dvm => {
                self.dvms.insert(e.entity);
                *self.dvm_responses.entry(e.entity).or_default() += e.counts.responses;
                if job {
                    self.kind_dvms.entry(e.kind).or_default().insert(e.entity);
                }
            }
        }
        if job {
            *self.kind_requests.entry(e.kind).or_default() += e.counts.requests;
        }
    }

    fn stats(self, window: &'static str) -> WindowStats {
        let c = self.counts;
        // Highest value, ties to the smallest key.
        fn top<K: Ord + Copy>(it: impl Iterator<Item = (K, i64)>) -> Option<K> {
            it.max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(k, _)| k)
        }
        WindowStats {
            window,
            requests: c.requests,
            responses: c.responses,
            feedback: c.feedback,
            completion: (c.requests > 0).then(|| c.responses as f64 / c.requests as f64),
            unique_users: self.users.len() as i64,
            unique_dvms: self.dvms.len() as i64,
            unique_kinds: self.kinds.len() as i64,
            popular_dvm: top(self.dvm_responses.into_iter().filter(|(_, n)| *n > 0))
                .map(|pk| hex_of(&pk)),
            popular_kind: top(self.kind_requests.into_iter().filter(|(_, n)| *n > 0)),
            competitive_kind: top(self.kind_dvms.into_iter().map(|(k, s)| (k, s.len() as i64))),
        }
    }
}

/// Folds activity rows into the four windows at clock `t`: feed every
/// row of [`day_range`], in any order.
pub struct Windows {
    upto: i64,
    from: [i64; 4],
    acc: [Acc; 4],
}

impl Windows {
    pub fn new(t: i64) -> Windows {
        Windows {
            upto: t,
            from: window_starts(t).map(|(_, s)| s.timestamp()),
            acc: Default::default(),
        }
    }

    /// One `entity_activity` row.
    pub fn add_row(&mut self, day: NaiveDate, role: EntityRole, entries: &[Entry]) {
        let base = day_start(day);
        for e in entries {
            let hour = base + i64::from(e.hour) * 3600;
            if hour > self.upto {
                continue;
            }
            for (acc, from) in self.acc.iter_mut().zip(self.from) {
                if hour >= from {
                    acc.add(role, e);
                }
            }
        }
    }

    pub fn finish(self) -> Vec<WindowStats> {
        self.acc
            .into_iter()
            .zip(NAMES)
            .map(|(a, name)| a.stats(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hour: u8, who: u8, kind: u32, counts: (i64, i64, i64)) -> Entry {
        Entry {
            hour,
            entity: [who; 32],
            kind: JobKind(kind),
            counts: Counts {
                requests: counts.0,
                responses: counts.1,
                feedback: counts.2,
            },
        }
    }

    #[test]
    fn windows_cut_at_their_starts_and_rank_with_ties() {
        let jan15 = NaiveDate::from_ymd_opt(2025, 1, 15).unwrap();
        let t = day_start(jan15) + 10 * 3600 + 60; // Jan 15 10:01
        let (first, last) = day_range(t);
        assert_eq!((first, last), (jan15 - Duration::days(30), jan15));
        let mut w = Windows::new(t);
        // Jan 15: requests at 09:00 (in 1h) and 08:00 (not in 1h).
        w.add_row(
            jan15,
            EntityRole::User,
            &[entry(8, 1, 5300, (1, 0, 0)), entry(9, 2, 5100, (2, 0, 0))],
        );
        // Two DVMs with equal responses: the smaller id wins; kind 5300 has
        // two DVMs, so it is the competitive one.
        w.add_row(
            jan15,
            EntityRole::Dvm,
            &[
                entry(9, 7, 5300, (0, 1, 0)),
                entry(9, 6, 5300, (0, 1, 1)),
                entry(11, 5, 5300, (0, 9, 0)),
            ],
        );
        // Dec 16 is in the 30-day window, Dec 15 is not.
        let dec16 = jan15 - Duration::days(30);
        w.add_row(dec16, EntityRole::User, &[entry(0, 3, 5300, (1, 0, 0))]);
        w.add_row(
            dec16 - Duration::days(1),
            EntityRole::User,
            &[entry(23, 4, 5300, (5, 0, 0))],
        );
        let s = w.finish();
        let h1 = &s[0];
        assert_eq!((h1.requests, h1.responses, h1.feedback), (2, 2, 1));
        assert_eq!(
            (h1.unique_users, h1.unique_dvms, h1.unique_kinds),
            (1, 2, 2)
        );
        assert_eq!(h1.popular_dvm, Some(hex_of(&[6; 32])));
        assert_eq!(h1.popular_kind, Some(JobKind(5100)));
        assert_eq!(h1.competitive_kind, Some(JobKind(5300)));
        assert_eq!(h1.completion, Some(1.0));
        let d30 = &s[3];
        assert_eq!(
            (d30.requests, d30.unique_users),
            (4, 3),
            "Dec 16 in, Dec 15 out, 11:00 not yet"
        );
        assert_eq!(d30.popular_kind, Some(JobKind(5100)));
        assert_eq!(s.iter().map(|w| w.window).collect::<Vec<_>>(), NAMES);
    }
}
