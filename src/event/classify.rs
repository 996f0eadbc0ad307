//! NIP-90 classification (SPEC §2 table).

use super::Event;
pub use dvmtop_core::Role;
use dvmtop_core::{JobKind, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub role: Role,
    /// The job kind (5000–5999) the event is credited to, when known.
    pub credited_kind: Option<JobKind>,
}

/// Which kinds are DVM events. The excluded list is configurable.
#[derive(Debug, Clone)]
pub struct KindPolicy {
    pub excluded: Vec<i64>,
}

impl Default for KindPolicy {
    fn default() -> Self {
        KindPolicy {
            excluded: vec![5666, 6666, 5969, 6969],
        }
    }
}

impl KindPolicy {
    /// `None` means "not a DVM event" (`irrelevant_kind`).
    pub fn classify(&self, ev: &Event) -> Option<Classification> {
        let kind = Kind(ev.kind);
        let role = self.role(kind)?;
        let credited_kind = match role {
            Role::Feedback => ev.tag_value("k").and_then(JobKind::parse),
            _ => kind.job_kind(),
        };
        Some(Classification {
            role,
            credited_kind,
        })
    }

    /// The role of a kind under this policy (the core's table minus the
    /// exclusions); `None`: not a DVM event.
    pub(crate) fn role(&self, kind: Kind) -> Option<Role> {
        if self.excluded.contains(&kind.0) {
            return None;
        }
        kind.role()
    }

    /// The Nostr `kinds` filter for relay subscriptions: every DVM kind but
    /// the excluded ones.
    pub fn subscription_kinds(&self) -> Vec<i64> {
        (5000..=6999)
            .chain([7000, 31990])
            .filter(|k| !self.excluded.contains(k))
            .collect()
    }
}
