//! The open months' `monthly_activity` figures, kept up to date event by
//! event (pure), so a rollover is a lookup, not a scan of the month's
//! detail — and can commit together with the batches around it.
//!
//! At start-up the processor rebuilds the accumulators from the committed
//! detail rows of the months not yet rolled up (retention never deletes
//! those), then replays the queue; so the row is the same whether the
//! month ran in one go or across crashes.

use crate::jobs::{FeedbackStatus, Hist, MonthJobs};
use crate::keys::{FastMap, FastSet, Pubkey, hex_of};
use crate::role::{JobKind, Role};
use crate::time::YearMonth;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One `monthly_activity` row (SPEC §7); also the backup file's format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthRow {
    pub year_month: YearMonth,
    pub total_requests: i64,
    pub total_responses: i64,
    pub total_feedback: i64,
    pub unique_dvms: i64,
    pub unique_users: i64,
    pub unique_kinds: i64,
    pub most_popular_dvm: Option<String>,
    pub most_popular_kind: Option<JobKind>,
    /// Requests whose earliest result (any DVM) falls in the month.
    #[serde(default)]
    pub jobs_answered: i64,
    /// Lower median / nearest-rank p90 of their response times (seconds).
    #[serde(default)]
    pub median_response_s: Option<i64>,
    #[serde(default)]
    pub p90_response_s: Option<i64>,
    /// dvm (hex) → {responses, feedback, answered, median_response_s,
    /// p90_response_s, feedback_status}
    pub dvm_activity: Value,
    /// kind → {requests, responses, answered, median_response_s}
    pub kind_activity: Value,
    /// When the row was written (wall clock); absent in a preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// A DVM's month: responses, feedback, and feedback by `status`
/// ([`FeedbackStatus`] order).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DvmMonth {
    pub responses: i64,
    pub feedback: i64,
    pub status: [i64; 5],
}

/// What a month has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonthAcc {
    requests: i64,
    responses: i64,
    feedback: i64,
    users: FastSet<Pubkey>,
    /// dvm → (responses, feedback, feedback by status)
    dvms: FastMap<Pubkey, DvmMonth>,
    /// job kind (5000–5999) → (requests, responses); kinds credited only
    /// by feedback appear with zeros.
    kinds: FastMap<JobKind, (i64, i64)>,
}

impl MonthAcc {
    /// One applied event.
    pub(crate) fn add(
        &mut self,
        role: Role,
        who: &Pubkey,
        kind: JobKind,
        status: Option<FeedbackStatus>,
    ) {
        match role {
            Role::Request => {
                self.requests += 1;
                self.users.insert(*who);
            }
            Role::Response => {
                self.responses += 1;
                self.dvms.entry(*who).or_default().responses += 1;
            }
            Role::Feedback => {
                self.feedback += 1;
                let d = self.dvms.entry(*who).or_default();
                d.feedback += 1;
                if let Some(s) = status {
                    d.status[s as usize] += 1;
                }
            }
            Role::Announcement => return,
        }
        if kind.is_known() {
            let k = self.kinds.entry(kind).or_default();
            match role {
                Role::Request => k.0 += 1,
                Role::Response => k.1 += 1,
                _ => {}
            }
        }
    }

    /// Events applied so far (requests, responses, feedback): grows with
    /// every change, so it marks a figure computed from this month as fresh.
    pub fn events(&self) -> u64 {
        (self.requests + self.responses + self.feedback) as u64
    }

    /// Committed detail, when rebuilding: a user seen in the month.
    pub fn add_user(&mut self, who: Pubkey) {
        self.users.insert(who);
    }

    /// Committed detail: one `dvm_stats_rollups` row of the month.
    pub fn add_dvm_day(&mut self, who: Pubkey, responses: i64, feedback: i64, status: [i64; 5]) {
        self.responses += responses;
        self.feedback += feedback;
        let d = self.dvms.entry(who).or_default();
        d.responses += responses;
        d.feedback += feedback;
        for (a, b) in d.status.iter_mut().zip(status) {
            *a += b;
        }
    }

    /// Committed detail: one `kind_stats_rollups` row of the month.
    pub fn add_kind_day(&mut self, kind: JobKind, requests: i64, responses: i64) {
        if kind.is_known() {
            self.requests += requests;
            let k = self.kinds.entry(kind).or_default();
            k.0 += requests;
            k.1 += responses;
        }
    }

    /// The `monthly_activity` row (SPEC §7 definitions), with the job
    /// figures of `jobs` (the month's exact latency samples; none: no job
    /// was answered).
    pub fn row(&self, year_month: YearMonth, jobs: Option<&MonthJobs>) -> MonthRow {
        let none = MonthJobs::default();
        let jobs = jobs.unwrap_or(&none);
        let empty = Hist::default();
        // Highest count, ties to the smallest key.
        fn top<K: Ord + Copy>(it: impl Iterator<Item = (K, i64)>) -> Option<K> {
            it.filter(|(_, n)| *n > 0)
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(k, _)| k)
        }
        // A DVM with answered jobs always has responses in the month (the
        // samples belong to the month of the result); a kind answered may
        // have had no request or response of its own (a result may name a
        // request of another kind), and then gets an entry of zeros.
        let dvm_activity: Map<String, Value> = self
            .dvms
            .iter()
            .map(|(pk, d)| {
                let h = jobs.dvms.get(pk).unwrap_or(&empty);
                let status: Map<String, Value> = FeedbackStatus::ALL
                    .iter()
                    .map(|s| (s.as_str().to_owned(), json!(d.status[*s as usize])))
                    .collect();
                (
                    hex_of(pk),
                    json!({
                        "responses": d.responses,
                        "feedback": d.feedback,
                        "answered": h.len(),
                        "median_response_s": h.median(),
                        "p90_response_s": h.p90(),
                        "feedback_status": status,
                    }),
                )
            })
            .collect();
        let mut kinds: BTreeMap<JobKind, (i64, i64)> =
            self.kinds.iter().map(|(k, v)| (*k, *v)).collect();
        for (k, h) in &jobs.kinds {
            if !h.is_empty() && k.is_known() {
                kinds.entry(*k).or_default();
            }
        }
        let kind_activity: Map<String, Value> = kinds
            .iter()
            .map(|(k, (r, s))| {
                let h = jobs.kinds.get(k).unwrap_or(&empty);
                (
                    k.to_string(),
                    json!({
                        "requests": r,
                        "responses": s,
                        "answered": h.len(),
                        "median_response_s": h.median(),
                    }),
                )
            })
            .collect();
        MonthRow {
            year_month,
            total_requests: self.requests,
            total_responses: self.responses,
            total_feedback: self.feedback,
            unique_dvms: self
                .dvms
                .values()
                .filter(|d| d.responses + d.feedback > 0)
                .count() as i64,
            unique_users: self.users.len() as i64,
            unique_kinds: self.kinds.values().filter(|(r, s)| r + s > 0).count() as i64,
            most_popular_dvm: top(self.dvms.iter().map(|(pk, d)| (*pk, d.responses)))
                .map(|pk| hex_of(&pk)),
            most_popular_kind: top(self.kinds.iter().map(|(k, (r, _))| (*k, *r))),
            jobs_answered: jobs.all.len(),
            median_response_s: jobs.all.median(),
            p90_response_s: jobs.all.p90(),
            dvm_activity: Value::Object(dvm_activity),
            kind_activity: Value::Object(kind_activity),
            created_at: None,
        }
    }
}

impl MonthRow {
    /// Whether the row's values are possible: counts are never negative,
    /// the activity maps are objects of non-negative counts keyed by a
    /// 64-hex DVM or a job kind (5000–5999), the most popular DVM and kind
    /// are of that form too. A restore refuses a row that is not (a
    /// damaged or hand-edited backup); the first problem, in words.
    pub fn check(&self) -> Result<(), String> {
        let m = self.year_month;
        for (name, v) in [
            ("total_requests", self.total_requests),
            ("total_responses", self.total_responses),
            ("total_feedback", self.total_feedback),
            ("unique_dvms", self.unique_dvms),
            ("unique_users", self.unique_users),
            ("unique_kinds", self.unique_kinds),
        ] {
            if v < 0 {
                return Err(format!("{m}: {name} is negative ({v})"));
            }
        }
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let job_kind = |k: u32| (5000..=5999).contains(&k);
        if let Some(d) = &self.most_popular_dvm
            && !hex64(d)
        {
            return Err(format!("{m}: most_popular_dvm {d:?} is not a 64-hex key"));
        }
        if let Some(k) = self.most_popular_kind
            && !job_kind(k.0)
        {
            return Err(format!(
                "{m}: most_popular_kind {k} is not a job kind (5000–5999)"
            ));
        }
        let counts = |what: &str, key: &str, v: &Value, fields: [&str; 2]| -> Result<(), String> {
            let o = v
                .as_object()
                .ok_or_else(|| format!("{m}: {what}[{key}] is not an object"))?;
            for f in fields {
                match o.get(f).and_then(Value::as_i64) {
                    Some(n) if n >= 0 => {}
                    Some(n) => return Err(format!("{m}: {what}[{key}].{f} is negative ({n})")),
                    None => {
                        return Err(format!("{m}: {what}[{key}].{f} is missing or not a count"));
                    }
                }
            }
            Ok(())
        };
        let dvms = self
            .dvm_activity
            .as_object()
            .ok_or_else(|| format!("{m}: dvm_activity is not an object"))?;
        for (dvm, v) in dvms {
            if !hex64(dvm) {
                return Err(format!("{m}: dvm_activity key {dvm:?} is not a 64-hex key"));
            }
            counts("dvm_activity", dvm, v, ["responses", "feedback"])?;
        }
        let kinds = self
            .kind_activity
            .as_object()
            .ok_or_else(|| format!("{m}: kind_activity is not an object"))?;
        for (kind, v) in kinds {
            if !kind.parse::<u32>().is_ok_and(job_kind) {
                return Err(format!(
                    "{m}: kind_activity key {kind:?} is not a job kind (5000–5999)"
                ));
            }
            counts("kind_activity", kind, v, ["requests", "responses"])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_rebuilt_give_the_same_row() {
        let (u1, u2, d1, d2) = ([1; 32], [2; 32], [3; 32], [4; 32]);
        let mut live = MonthAcc::default();
        live.add(Role::Request, &u1, JobKind(5300), None);
        live.add(Role::Request, &u2, JobKind(5300), None);
        live.add(Role::Request, &u1, JobKind(5100), None);
        live.add(Role::Response, &d2, JobKind(5300), None);
        live.add(Role::Response, &d1, JobKind(5300), None);
        live.add(
            Role::Feedback,
            &d1,
            JobKind::UNKNOWN,
            Some(FeedbackStatus::Error),
        );
        live.add(Role::Feedback, &d2, JobKind(5050), None);
        let mut rebuilt = MonthAcc::default();
        rebuilt.add_user(u1);
        rebuilt.add_user(u2);
        rebuilt.add_dvm_day(d1, 1, 1, [0, 0, 1, 0, 0]);
        rebuilt.add_dvm_day(d2, 1, 1, [0; 5]);
        rebuilt.add_kind_day(JobKind(5300), 2, 2);
        rebuilt.add_kind_day(JobKind(5100), 1, 0);
        rebuilt.add_kind_day(JobKind(5050), 0, 0);
        rebuilt.add_kind_day(JobKind::UNKNOWN, 0, 0);
        let jan = YearMonth::new(2024, 1).unwrap();
        let row = live.row(jan, None);
        assert_eq!(row, rebuilt.row(jan, None));
        assert_eq!(row.dvm_activity[hex_of(&d1)]["feedback_status"]["error"], 1);
        assert_eq!(row.jobs_answered, 0);
        assert_eq!(row.median_response_s, None);
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
        assert_eq!(row.most_popular_kind, Some(JobKind(5300)));
        assert_eq!(
            row.kind_activity["5050"],
            json!({"requests": 0, "responses": 0, "answered": 0, "median_response_s": null})
        );
        assert_eq!(
            MonthAcc::default().row(jan.next(), None).most_popular_dvm,
            None
        );
    }

    #[test]
    fn check_accepts_real_rows_and_refuses_impossible_values() {
        let jan: YearMonth = "2024-01".parse().unwrap();
        let d = [7u8; 32];
        let mut acc = MonthAcc::default();
        acc.add(Role::Request, &d, JobKind(5300), None);
        acc.add(Role::Response, &d, JobKind(5300), None);
        let good = acc.row(jan, None);
        assert_eq!(good.check(), Ok(()));
        assert_eq!(MonthAcc::default().row(jan, None).check(), Ok(()));
        let bad = |f: &dyn Fn(&mut MonthRow)| {
            let mut r = good.clone();
            f(&mut r);
            r.check().expect_err("accepted")
        };
        assert!(bad(&|r| r.total_requests = -1).contains("total_requests is negative"));
        assert!(bad(&|r| r.unique_kinds = -3).contains("unique_kinds"));
        assert!(bad(&|r| r.most_popular_kind = Some(JobKind(7000))).contains("not a job kind"));
        assert!(bad(&|r| r.most_popular_dvm = Some("zz".into())).contains("64-hex"));
        assert!(bad(&|r| r.dvm_activity = json!([])).contains("not an object"));
        let dvm = hex_of(&d);
        assert!(bad(&|r| r.dvm_activity[&dvm]["responses"] = json!(-2)).contains("negative (-2)"));
        assert!(bad(&|r| r.kind_activity["5300"]["requests"] = json!("x")).contains("not a count"));
        assert!(
            bad(&|r| r.kind_activity["abc"] = json!({"requests": 0, "responses": 0}))
                .contains("not a job kind")
        );
    }
}
