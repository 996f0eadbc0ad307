//! What an event is (SPEC §2): the NIP-90 role of its kind, the entity it
//! credits and the job kind it counts for. The kind → role table lives
//! here once; ingest, the queue codec and the analysis all ask it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The NIP-90 role of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// 5000–5999: the author is a user.
    Request,
    /// 6000–6999: the author is a DVM.
    Response,
    /// 7000: the author is a DVM.
    Feedback,
    /// 31990 (NIP-89): a DVM profile, not activity.
    Announcement,
}

/// An event kind (NIP-01 `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(pub i64);

impl Kind {
    /// The classification table (before the configurable exclusions):
    /// `None` means "not a DVM event".
    pub fn role(self) -> Option<Role> {
        match self.0 {
            5000..=5999 => Some(Role::Request),
            // 6999 included (DVMDash drops it by an off-by-one).
            6000..=6999 => Some(Role::Response),
            7000 => Some(Role::Feedback),
            31990 => Some(Role::Announcement),
            _ => None,
        }
    }

    /// The job kind a request or result counts for: the kind itself for a
    /// request, kind − 1000 for a result. Feedback names its job kind in a
    /// `k` tag (see [`JobKind::parse`]); announcements count for none.
    pub fn job_kind(self) -> Option<JobKind> {
        match self.role()? {
            Role::Request => JobKind::new(self.0),
            Role::Response => JobKind::new(self.0 - 1000),
            Role::Feedback | Role::Announcement => None,
        }
    }
}

/// A job (request) kind, 5000–5999, or [`JobKind::UNKNOWN`] for feedback
/// whose job kind is not known.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct JobKind(pub u32);

impl JobKind {
    /// "Job kind unknown" (feedback without a `k` tag): counts for totals
    /// and DVMs, never for kinds.
    pub(crate) const UNKNOWN: JobKind = JobKind(0);

    /// A request kind, if `k` is one.
    pub(crate) fn new(k: i64) -> Option<JobKind> {
        (5000..=5999).contains(&k).then_some(JobKind(k as u32))
    }

    /// A job kind written as text (a feedback's `k` tag).
    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::new(s.trim().parse().ok()?)
    }

    /// A real job kind (not [`JobKind::UNKNOWN`]).
    pub(crate) fn is_known(self) -> bool {
        (5000..=5999).contains(&self.0)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which entity an event credits: requests credit their author as a user,
/// responses and feedback as a DVM. The discriminant is the `role` column
/// of the activity tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityRole {
    User = 0,
    Dvm = 1,
}

impl EntityRole {
    pub const BOTH: [EntityRole; 2] = [EntityRole::User, EntityRole::Dvm];

    pub(crate) fn of(role: Role) -> Option<EntityRole> {
        match role {
            Role::Request => Some(EntityRole::User),
            Role::Response | Role::Feedback => Some(EntityRole::Dvm),
            Role::Announcement => None,
        }
    }

    /// The table its rows live in.
    pub fn table(self) -> &'static str {
        match self {
            EntityRole::User => "users",
            EntityRole::Dvm => "dvms",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classification_table() {
        assert_eq!(Kind(5000).role(), Some(Role::Request));
        assert_eq!(Kind(6999).role(), Some(Role::Response));
        assert_eq!(Kind(6999).job_kind(), Some(JobKind(5999)));
        assert_eq!(Kind(7000).role(), Some(Role::Feedback));
        assert_eq!(Kind(7000).job_kind(), None);
        assert_eq!(Kind(31990).role(), Some(Role::Announcement));
        for k in [0, 4999, 7001, 30023, -1] {
            assert_eq!(Kind(k).role(), None, "{k}");
        }
        assert_eq!(JobKind::parse(" 5300 "), Some(JobKind(5300)));
        assert_eq!(JobKind::parse("6300"), None);
        assert!(!JobKind::UNKNOWN.is_known());
    }
}
