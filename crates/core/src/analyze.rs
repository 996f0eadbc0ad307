//! Pure analysis: day slices of items → the aggregated changes of a
//! commit group. Aggregating here is what keeps the database work
//! proportional to distinct (entity, kind, hour) cells and entities, not to
//! events; a group may span many batches and days.

use crate::entities::Entities;
use crate::item::{Item, Profile};
use crate::jobs::{Jobs, encode_request, encode_result};
use crate::keys::{FastMap, FastSet, Pubkey};
use crate::month::MonthAcc;
use crate::role::{EntityRole, JobKind, Role};
use chrono::NaiveDate;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Counts {
    pub requests: i64,
    pub responses: i64,
    pub feedback: i64,
}

impl Counts {
    pub(crate) fn add(&mut self, role: Role) {
        match role {
            Role::Request => self.requests += 1,
            Role::Response => self.responses += 1,
            Role::Feedback => self.feedback += 1,
            Role::Announcement => {}
        }
    }

    pub fn plus(self, o: Counts) -> Counts {
        Counts {
            requests: self.requests + o.requests,
            responses: self.responses + o.responses,
            feedback: self.feedback + o.feedback,
        }
    }
}

/// First and last `created_at` seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: i64,
    pub last: i64,
}

impl Span {
    pub(crate) fn at(ts: i64) -> Span {
        Span {
            first: ts,
            last: ts,
        }
    }
    pub(crate) fn widen(&mut self, ts: i64) {
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
    }
}

/// One activity cell of a day: (UTC hour of the day, entity, credited kind).
pub(crate) type Cell = (u8, Pubkey, JobKind);

/// A day's activity cells, per role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayActivity {
    pub cells: [FastMap<Cell, Counts>; 2],
}

/// Everything processed since the last commit, aggregated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    /// Events applied (new ids), announcements included.
    pub processed: u64,
    pub duplicates: u64,
    pub totals: Counts,
    pub max_ts: Option<i64>,
    /// Ids (128-bit keys) applied, by day, in input order: `seen_ids`.
    pub new_ids: BTreeMap<NaiveDate, Vec<u128>>,
    /// `entity_activity` cells by day.
    pub activity: BTreeMap<NaiveDate, DayActivity>,
    /// (day, dvm) → counts: `dvm_stats_rollups`.
    pub dvm_day: FastMap<(NaiveDate, Pubkey), Counts>,
    /// (day, kind) → counts: `kind_stats_rollups`.
    pub kind_day: FastMap<(NaiveDate, JobKind), Counts>,
    /// (kind, dvm) → span of responses/feedback for that kind.
    pub support: FastMap<(JobKind, Pubkey), Span>,
    /// dvm → latest announcement.
    pub profiles: FastMap<Pubkey, (i64, Profile)>,
    /// (day, dvm) → feedback by `status` ([`FeedbackStatus`] order).
    pub dvm_status: FastMap<(NaiveDate, Pubkey), [i64; 5]>,
    /// Job facts applied, by day: requests and results as
    /// [`crate::jobs`] encodes them (`job_facts`).
    pub job_facts: BTreeMap<NaiveDate, JobFacts>,
}

/// One day's job facts, encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFacts {
    pub requests: Vec<u8>,
    pub results: Vec<u8>,
}

/// What one slice did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceStats {
    pub processed: u64,
    pub duplicates: u64,
    pub max_ts: Option<i64>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.processed == 0 && self.duplicates == 0
    }

    /// Applies one day slice. `seen` holds the keys of every event already
    /// applied in the open window (committed or pending); duplicates
    /// (against it or within the slice) are counted and skipped. Entities
    /// are updated in `book`, which tracks what the commit must write.
    pub fn absorb<'a>(
        &mut self,
        day: NaiveDate,
        slice: impl IntoIterator<Item = &'a Item>,
        seen: &mut FastSet<u128>,
        book: &mut Entities,
        month: &mut MonthAcc,
        jobs: &mut Jobs,
    ) -> SliceStats {
        let mut stats = SliceStats::default();
        // The slice is one day: its id list and cells are taken out once
        // and put back after the loop (only when they hold something, as
        // if they had been created on the first event that needed them).
        let mut ids = self.new_ids.remove(&day).unwrap_or_default();
        let mut act = self.activity.remove(&day).unwrap_or_default();
        let mut facts = self.job_facts.remove(&day).unwrap_or_default();
        for it in slice {
            if !seen.insert(it.key) {
                stats.duplicates += 1;
                continue;
            }
            stats.processed += 1;
            ids.push(it.key);
            let ts = it.created_at;
            stats.max_ts = stats.max_ts.max(Some(ts));
            let Some(who) = EntityRole::of(it.role) else {
                if let Some(p) = &it.profile {
                    let newer = self
                        .profiles
                        .get(&it.pubkey)
                        .is_none_or(|(at, _)| *at <= ts);
                    if newer {
                        self.profiles.insert(it.pubkey, (ts, (**p).clone()));
                    }
                }
                continue;
            };
            // Feedback without a `k` tag stays "unknown". Crediting it to its
            // request's kind would depend on whether the request happened to
            // be in the same slice, i.e. on batch boundaries (SPEC §3).
            let kind = it.credited_kind.unwrap_or(JobKind::UNKNOWN);
            self.totals.add(it.role);
            let hour = day_of_hour(ts);
            act.cells[who as usize]
                .entry((hour, it.pubkey, kind))
                .or_default()
                .add(it.role);
            self.kind_day.entry((day, kind)).or_default().add(it.role);
            book.touch(who, &it.pubkey, ts, it.role);
            month.add(it.role, &it.pubkey, kind, it.status);
            match it.role {
                Role::Request => {
                    encode_request(&mut facts.requests, it.key, ts, kind);
                    jobs.request(it.key, ts, kind);
                }
                Role::Response => {
                    if let Some(of) = it.refers {
                        encode_result(&mut facts.results, of, &it.pubkey, ts);
                        jobs.result(of, &it.pubkey, ts);
                    }
                }
                Role::Feedback => {
                    if let Some(s) = it.status {
                        self.dvm_status.entry((day, it.pubkey)).or_default()[s as usize] += 1;
                    }
                }
                Role::Announcement => {}
            }
            if who == EntityRole::Dvm {
                self.dvm_day
                    .entry((day, it.pubkey))
                    .or_default()
                    .add(it.role);
                if kind.is_known() {
                    self.support
                        .entry((kind, it.pubkey))
                        .and_modify(|s| s.widen(ts))
                        .or_insert_with(|| Span::at(ts));
                }
            }
        }
        if !ids.is_empty() {
            self.new_ids.insert(day, ids);
        }
        if act.cells.iter().any(|c| !c.is_empty()) {
            self.activity.insert(day, act);
        }
        if !facts.requests.is_empty() || !facts.results.is_empty() {
            self.job_facts.insert(day, facts);
        }
        self.processed += stats.processed;
        self.duplicates += stats.duplicates;
        self.max_ts = self.max_ts.max(stats.max_ts);
        stats
    }

    /// Kinds (5000–5999) with a request or response in this group.
    pub fn job_kinds(&self) -> Vec<JobKind> {
        let mut kinds: Vec<JobKind> = self
            .kind_day
            .iter()
            .filter(|((_, k), c)| k.is_known() && c.requests + c.responses > 0)
            .map(|((_, k), _)| *k)
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }
}

/// UTC hour of the day of a timestamp.
fn day_of_hour(ts: i64) -> u8 {
    (ts.rem_euclid(86_400) / 3600) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hex32;
    use crate::time::day_of;

    fn item(id: u8, who: u8, ts: i64, kind: i64) -> Item {
        let role = match kind {
            5000..=5999 => Role::Request,
            6000..=6999 => Role::Response,
            _ => Role::Feedback,
        };
        Item {
            key: crate::keys::id_key(&format!("{id:02x}").repeat(32)).unwrap(),
            pubkey: hex32(&format!("{who:02x}").repeat(32)).unwrap(),
            created_at: ts,
            role,
            credited_kind: crate::role::Kind(kind).job_kind(),
            profile: None,
            refers: None,
            status: None,
        }
    }

    #[test]
    fn counts_credit_and_dedup() {
        let day = day_of(100);
        let slice = [
            item(1, 9, 100, 5300),
            item(2, 8, 200, 6300),
            item(2, 8, 200, 6300),
            item(3, 8, 4000, 7000),
        ];
        let mut seen = FastSet::default();
        seen.insert(7u128);
        let mut book = Entities::default();
        let mut p = Pending::default();
        let mut month = MonthAcc::default();
        let mut jobs = Jobs::default();
        let s = p.absorb(day, &slice, &mut seen, &mut book, &mut month, &mut jobs);
        assert_eq!(
            month
                .row(crate::time::YearMonth::of(day), None)
                .total_feedback,
            1
        );
        assert_eq!((s.processed, s.duplicates, s.max_ts), (3, 1, Some(4000)));
        assert_eq!(
            p.totals,
            Counts {
                requests: 1,
                responses: 1,
                feedback: 1
            }
        );
        assert_eq!(p.kind_day[&(day, JobKind(5300))].responses, 1);
        // Feedback without a `k` tag is never credited through its request.
        assert_eq!(p.kind_day[&(day, JobKind::UNKNOWN)].feedback, 1);
        let dvm = hex32(&"08".repeat(32)).unwrap();
        let e = book.get(EntityRole::Dvm, &dvm).unwrap();
        assert_eq!(
            (e.first_seen, e.last_seen, e.responses, e.feedback),
            (200, 4000, 1, 1)
        );
        let day_cells = &p.activity[&day].cells;
        assert_eq!(day_cells[0].len() + day_cells[1].len(), 3);
        assert_eq!(day_cells[1][&(1, dvm, JobKind::UNKNOWN)].feedback, 1);
        assert_eq!(p.job_kinds(), vec![JobKind(5300)]);
        // The same slice again: all duplicates, nothing changes.
        let before = p.clone();
        let again = p.absorb(day, &slice, &mut seen, &mut book, &mut month, &mut jobs);
        assert_eq!(again.duplicates, 4);
        assert_eq!(p.activity, before.activity);
    }
}
