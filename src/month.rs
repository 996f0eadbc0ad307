//! The open months' `monthly_activity` figures, kept up to date event by
//! event (pure), so a rollover is a lookup, not a scan of the month's
//! detail — and can commit together with the batches around it.
//!
//! At start-up the processor rebuilds the accumulators from the committed
//! detail rows of the months not yet rolled up (retention never deletes
//! those), then replays the queue; so the row is the same whether the
//! month ran in one go or across crashes.

use crate::analyze::UNKNOWN_KIND;
use crate::event::Role;
use crate::keys::{FastMap, FastSet, Pubkey, hex_of};
use crate::store::MonthRow;
use serde_json::{Map, Value, json};

/// What a month has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonthAcc {
    requests: i64,
    responses: i64,
    feedback: i64,
    users: FastSet<Pubkey>,
    /// dvm → (responses, feedback)
    dvms: FastMap<Pubkey, (i64, i64)>,
    /// job kind (5000–5999) → (requests, responses); kinds credited only
    /// by feedback appear with zeros.
    kinds: FastMap<u32, (i64, i64)>,
}

fn job_kind(kind: u32) -> bool {
    kind != UNKNOWN_KIND && (5000..=5999).contains(&kind)
}

impl MonthAcc {
    /// One applied event.
    pub fn add(&mut self, role: Role, who: &Pubkey, kind: u32) {
        match role {
            Role::Request => {
                self.requests += 1;
                self.users.insert(*who);
            }
            Role::Response => {
                self.responses += 1;
                self.dvms.entry(*who).or_default().0 += 1;
            }
            Role::Feedback => {
                self.feedback += 1;
                self.dvms.entry(*who).or_default().1 += 1;
            }
            Role::Announcement => return,
        }
        if job_kind(kind) {
            let k = self.kinds.entry(kind).or_default();
            match role {
                Role::Request => k.0 += 1,
                Role::Response => k.1 += 1,
                _ => {}
            }
        }
    }

    /// Committed detail, when rebuilding: a user seen in the month.
    pub fn add_user(&mut self, who: Pubkey) {
        self.users.insert(who);
    }

    /// Committed detail: one `dvm_stats_rollups` row of the month.
    pub fn add_dvm_day(&mut self, who: Pubkey, responses: i64, feedback: i64) {
        self.responses += responses;
        self.feedback += feedback;
        let d = self.dvms.entry(who).or_default();
        d.0 += responses;
        d.1 += feedback;
    }

    /// Committed detail: one `kind_stats_rollups` row of the month.
    pub fn add_kind_day(&mut self, kind: u32, requests: i64, responses: i64) {
        if job_kind(kind) {
            self.requests += requests;
            let k = self.kinds.entry(kind).or_default();
            k.0 += requests;
            k.1 += responses;
        }
    }

    /// The `monthly_activity` row (SPEC §7 definitions).
    pub fn row(&self, year_month: String) -> MonthRow {
        // Highest count, ties to the smallest key.
        fn top<K: Ord + Copy>(it: impl Iterator<Item = (K, i64)>) -> Option<K> {
            it.filter(|(_, n)| *n > 0)
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(k, _)| k)
        }
        let dvm_activity: Map<String, Value> = self
            .dvms
            .iter()
            .map(|(pk, (s, f))| (hex_of(pk), json!({"responses": s, "feedback": f})))
            .collect();
        let kind_activity: Map<String, Value> = self
            .kinds
            .iter()
            .map(|(k, (r, s))| (k.to_string(), json!({"requests": r, "responses": s})))
            .collect();
        MonthRow {
            year_month,
            total_requests: self.requests,
            total_responses: self.responses,
            total_feedback: self.feedback,
            unique_dvms: self.dvms.values().filter(|(s, f)| s + f > 0).count() as i64,
            unique_users: self.users.len() as i64,
            unique_kinds: self.kinds.values().filter(|(r, s)| r + s > 0).count() as i64,
            most_popular_dvm: top(self.dvms.iter().map(|(pk, (s, _))| (*pk, *s)))
                .map(|pk| hex_of(&pk)),
            most_popular_kind: top(self.kinds.iter().map(|(k, (r, _))| (*k, *r))).map(|k| k as i32),
            dvm_activity: Value::Object(dvm_activity),
            kind_activity: Value::Object(kind_activity),
            created_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_rebuilt_give_the_same_row() {
        let (u1, u2, d1, d2) = ([1; 32], [2; 32], [3; 32], [4; 32]);
        let mut live = MonthAcc::default();
        live.add(Role::Request, &u1, 5300);
        live.add(Role::Request, &u2, 5300);
        live.add(Role::Request, &u1, 5100);
        live.add(Role::Response, &d2, 5300);
        live.add(Role::Response, &d1, 5300);
        live.add(Role::Feedback, &d1, UNKNOWN_KIND);
        live.add(Role::Feedback, &d2, 5050);
        let mut rebuilt = MonthAcc::default();
        rebuilt.add_user(u1);
        rebuilt.add_user(u2);
        rebuilt.add_dvm_day(d1, 1, 1);
        rebuilt.add_dvm_day(d2, 1, 1);
        rebuilt.add_kind_day(5300, 2, 2);
        rebuilt.add_kind_day(5100, 1, 0);
        rebuilt.add_kind_day(5050, 0, 0);
        rebuilt.add_kind_day(UNKNOWN_KIND, 0, 0);
        let row = live.row("2024-01".into());
        assert_eq!(row, rebuilt.row("2024-01".into()));
        assert_eq!(
            (row.total_requests, row.total_responses, row.total_feedback),
            (3, 2, 2)
        );
        assert_eq!(
            (row.unique_users, row.unique_dvms, row.unique_kinds),
            (2, 2, 2)
        );
        // d1 and d2 tie on responses: the smaller id wins.
        assert_eq!(row.most_popular_dvm, Some(hex_of(&d1)));
        assert_eq!(row.most_popular_kind, Some(5300));
        assert_eq!(
            row.kind_activity["5050"],
            json!({"requests": 0, "responses": 0})
        );
        assert_eq!(
            MonthAcc::default().row("2024-02".into()).most_popular_dvm,
            None
        );
    }
}
