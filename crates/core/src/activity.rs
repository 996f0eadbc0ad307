//! `entity_activity` day rows (pure): a day's cells per role, sorted by
//! (hour, entity, kind), merged with what a commit adds. One canonical row
//! per (day, role) — the same content whatever the batch size or commit
//! points — costs two rows a day instead of one per request.

use crate::analyze::{Cell, Counts};
use crate::keys::{FastMap, Pubkey};
use crate::role::{EntityRole, JobKind};
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One cell of a day row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub hour: u8,
    pub entity: Pubkey,
    pub kind: JobKind,
    pub counts: Counts,
}

impl Entry {
    fn key(&self) -> Cell {
        (self.hour, self.entity, self.kind)
    }
}

/// `base` (sorted) plus `add`, sorted.
pub fn merge(base: &[Entry], add: &FastMap<Cell, Counts>) -> Vec<Entry> {
    let mut new: Vec<Entry> = add
        .iter()
        .map(|(&(hour, entity, kind), &counts)| Entry {
            hour,
            entity,
            kind,
            counts,
        })
        .collect();
    new.sort_unstable_by_key(Entry::key);
    let mut out = Vec::with_capacity(base.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < base.len() && j < new.len() {
        match base[i].key().cmp(&new[j].key()) {
            std::cmp::Ordering::Less => {
                out.push(base[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(new[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(Entry {
                    counts: base[i].counts.plus(new[j].counts),
                    ..base[i]
                });
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&base[i..]);
    out.extend_from_slice(&new[j..]);
    out
}

/// The day rows written lately, so the next commit that touches the same
/// day (the day in progress, late events of the day before) merges without
/// reading the row back. Days older than the newest minus `keep_days` are
/// dropped.
#[derive(Debug, Default)]
pub struct RowCache {
    rows: BTreeMap<(NaiveDate, EntityRole), Arc<Vec<Entry>>>,
}

impl RowCache {
    pub(crate) const KEEP_DAYS: u64 = 3;

    pub fn get(&self, day: NaiveDate, role: EntityRole) -> Option<&[Entry]> {
        self.rows.get(&(day, role)).map(|r| r.as_slice())
    }

    pub fn put(&mut self, day: NaiveDate, role: EntityRole, entries: Arc<Vec<Entry>>) {
        self.rows.insert((day, role), entries);
        if let Some(&(newest, _)) = self.rows.keys().next_back()
            && let Some(oldest) = newest.checked_sub_days(chrono::Days::new(Self::KEEP_DAYS))
        {
            self.rows.retain(|(d, _), _| *d >= oldest);
        }
    }

    pub fn forget_before(&mut self, day: NaiveDate) {
        self.rows.retain(|(d, _), _| *d >= day);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: JobKind = JobKind(5300);

    fn c(requests: i64) -> Counts {
        Counts {
            requests,
            ..Counts::default()
        }
    }

    #[test]
    fn merge_adds_up_and_stays_sorted() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let first = merge(
            &[],
            &FastMap::from_iter([((5, b, K), c(1)), ((5, a, K), c(2))]),
        );
        assert_eq!(
            first.iter().map(|e| e.entity).collect::<Vec<_>>(),
            vec![a, b]
        );
        let second = merge(
            &first,
            &FastMap::from_iter([((5, b, K), c(3)), ((1, b, K), c(1))]),
        );
        assert_eq!(
            second
                .iter()
                .map(|e| (e.hour, e.entity, e.counts.requests))
                .collect::<Vec<_>>(),
            vec![(1, b, 1), (5, a, 2), (5, b, 4)]
        );
        // Split or whole, the result is the same row.
        let whole = merge(
            &[],
            &FastMap::from_iter([((5, b, K), c(4)), ((1, b, K), c(1)), ((5, a, K), c(2))]),
        );
        assert_eq!(second, whole);
    }

    #[test]
    fn cache_keeps_recent_days() {
        let d = |n| NaiveDate::from_ymd_opt(2024, 1, n).unwrap();
        let mut cache = RowCache::default();
        cache.put(d(1), EntityRole::User, Arc::default());
        cache.put(d(4), EntityRole::User, Arc::default());
        assert!(cache.get(d(1), EntityRole::User).is_some());
        cache.put(d(5), EntityRole::Dvm, Arc::default());
        assert!(cache.get(d(1), EntityRole::User).is_none());
        assert!(cache.get(d(4), EntityRole::User).is_some());
    }
}
