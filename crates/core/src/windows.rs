//! Window stats (1 h, 24 h, 7 d, 30 d) on the processing clock (pure).
//!
//! An N-unit window is the current (partial) unit plus the N previous
//! whole units — hours for 1h/24h, days for 7d/30d — so on Jan 15 the
//! 30-day window is Dec 16 … Jan 15, as SPEC §6 pins it. Event time only,
//! never the wall clock (SPEC §7). All four windows are folded in one pass
//! over the activity cells, which the shell streams from `entity_activity`.

use crate::activity::Entry;
use crate::analyze::Counts;
use crate::jobs::{Scope, bucket_value, p90_index};
use crate::keys::{FastMap, FastSet, Pubkey, hex_of};
use crate::role::{EntityRole, JobKind};
use crate::time::day_start;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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
    /// Job analytics (README "Job analytics"): requests whose earliest
    /// result (any DVM) lies in the window; as a share of the window's
    /// requests, in percent (by result time over request time, so it can
    /// pass 100 % slightly when answers of older requests come in).
    pub answered: i64,
    pub answered_pct: Option<f64>,
    /// Lower median / nearest-rank p90 response time, seconds, from the
    /// log-bucket histograms: within 1 % of the exact figure.
    pub median_response_s: Option<i64>,
    pub p90_response_s: Option<i64>,
    /// The same per DVM (share of all the window's requests) and per
    /// request kind (share of that kind's requests), most answered first.
    pub dvm_jobs: Vec<ScopeJobs>,
    pub kind_jobs: Vec<ScopeJobs>,
}

/// A DVM's or a kind's job figures in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeJobs {
    /// DVM public key (hex) or kind.
    pub key: String,
    pub answered: i64,
    pub answered_pct: Option<f64>,
    pub median_response_s: Option<i64>,
    pub p90_response_s: Option<i64>,
}

/// A histogram of latency buckets ([`crate::jobs::bucket_of`]).
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets(BTreeMap<i16, i64>);

impl Buckets {
    fn add(&mut self, bucket: i16, n: i64) {
        *self.0.entry(bucket).or_default() += n;
    }

    fn len(&self) -> i64 {
        self.0.values().map(|n| (*n).max(0)).sum()
    }

    fn at(&self, i: i64) -> Option<i64> {
        let mut seen = 0;
        for (b, n) in &self.0 {
            seen += (*n).max(0);
            if seen > i {
                return Some(bucket_value(*b));
            }
        }
        None
    }

    fn figures(&self, key: String, of: i64) -> ScopeJobs {
        let n = self.len();
        ScopeJobs {
            key,
            answered: n,
            answered_pct: pct(n, of),
            median_response_s: (n > 0).then(|| self.at((n - 1) / 2)).flatten(),
            p90_response_s: (n > 0).then(|| self.at(p90_index(n))).flatten(),
        }
    }
}

/// Job figures of any hour range (the TUI's DVM and kind views): the
/// `job_day_stats` rows of the range folded per scope, with the same rank
/// rules and 1 % bound as the windows.
#[derive(Debug, Default)]
pub struct JobFold {
    by: FastMap<Scope, Buckets>,
}

impl JobFold {
    /// One row; only the cells whose hour `keep` accepts count.
    pub fn add(&mut self, scope: &Scope, cells: &[(u8, i16, i32)], keep: impl Fn(u8) -> bool) {
        let b = self.by.entry(*scope).or_default();
        for &(h, bucket, n) in cells {
            if keep(h) {
                b.add(bucket, i64::from(n));
            }
        }
    }

    /// (answered, median, p90) of a scope; zeros and nulls without samples.
    pub fn figures(&self, scope: &Scope) -> (i64, Option<i64>, Option<i64>) {
        self.by.get(scope).map_or((0, None, None), |b| {
            let f = b.figures(String::new(), 0);
            (f.answered, f.median_response_s, f.p90_response_s)
        })
    }
}

fn pct(n: i64, of: i64) -> Option<f64> {
    (of > 0).then(|| n as f64 * 100.0 / of as f64)
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
    answered: Buckets,
    dvm_answered: BTreeMap<String, Buckets>,
    kind_answered: BTreeMap<JobKind, Buckets>,
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
        let all = self.answered.figures(String::new(), c.requests);
        let order = |v: &mut Vec<ScopeJobs>| {
            v.retain(|s| s.answered > 0);
            v.sort_by(|a, b| b.answered.cmp(&a.answered).then(a.key.cmp(&b.key)));
        };
        let mut dvm_jobs: Vec<ScopeJobs> = self
            .dvm_answered
            .iter()
            .map(|(k, b)| b.figures(k.clone(), c.requests))
            .collect();
        order(&mut dvm_jobs);
        let mut kind_jobs: Vec<ScopeJobs> = self
            .kind_answered
            .iter()
            .map(|(k, b)| {
                let of = self.kind_requests.get(k).copied().unwrap_or(0);
                b.figures(k.to_string(), of)
            })
            .collect();
        order(&mut kind_jobs);
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
            answered: all.answered,
            answered_pct: all.answered_pct,
            median_response_s: all.median_response_s,
            p90_response_s: all.p90_response_s,
            dvm_jobs,
            kind_jobs,
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

    /// One `job_day_stats` row: its scope and cells (UTC hour, bucket,
    /// count).
    pub fn add_job_row(&mut self, day: NaiveDate, scope: &Scope, cells: &[(u8, i16, i32)]) {
        let base = day_start(day);
        let dvm = match scope {
            Scope::Dvm(pk) => Some(hex_of(pk)),
            _ => None,
        };
        for &(h, b, n) in cells {
            let hour = base + i64::from(h) * 3600;
            if hour > self.upto {
                continue;
            }
            for (acc, from) in self.acc.iter_mut().zip(self.from) {
                if hour < from {
                    continue;
                }
                let n = i64::from(n);
                match scope {
                    Scope::All => acc.answered.add(b, n),
                    Scope::Dvm(_) => acc
                        .dvm_answered
                        .entry(dvm.clone().unwrap_or_default())
                        .or_default()
                        .add(b, n),
                    Scope::Kind(k) => acc.kind_answered.entry(*k).or_default().add(b, n),
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

    #[test]
    fn job_figures_fold_by_hour_within_the_bound() {
        use crate::jobs::bucket_of;
        let jan15 = NaiveDate::from_ymd_opt(2025, 1, 15).unwrap();
        let t = day_start(jan15) + 10 * 3600 + 60; // Jan 15 10:01
        let mut w = Windows::new(t);
        w.add_row(jan15, EntityRole::User, &[entry(9, 1, 5300, (4, 0, 0))]);
        // Latencies 10 s, 20 s and 1000 s at 09:00 (in 1h); 5000 s at 08:00.
        let b = |x| bucket_of(x);
        let cells = [
            (8, b(5000), 1),
            (9, b(10), 1),
            (9, b(20), 1),
            (9, b(1000), 1),
        ];
        w.add_job_row(jan15, &Scope::All, &cells);
        w.add_job_row(jan15, &Scope::Dvm([7; 32]), &cells[1..3]);
        w.add_job_row(jan15, &Scope::Kind(JobKind(5300)), &cells);
        // A later hour is beyond the clock.
        w.add_job_row(jan15, &Scope::All, &[(11, b(1), 5)]);
        let s = w.finish();
        let (h1, d1) = (&s[0], &s[2]);
        assert_eq!((h1.answered, h1.median_response_s), (3, Some(20)));
        assert_eq!(
            h1.p90_response_s.map(|v| (v - 1000).abs() <= 10),
            Some(true)
        );
        assert_eq!(h1.answered_pct, Some(75.0));
        assert_eq!(d1.answered, 4);
        assert_eq!(
            d1.p90_response_s.map(|v| (v - 5000).abs() <= 50),
            Some(true)
        );
        assert_eq!(d1.dvm_jobs.len(), 1);
        assert_eq!(d1.dvm_jobs[0].answered_pct, Some(50.0));
        assert_eq!(d1.kind_jobs[0].key, "5300");
        assert_eq!(d1.kind_jobs[0].answered, 4);
    }
}
