//! NIP-90 classification (SPEC §2 table).

use super::Event;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub role: Role,
    /// The job kind (5000–5999) the event is credited to, when known.
    pub credited_kind: Option<u32>,
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

fn job_kind(s: &str) -> Option<u32> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|k| (5000..=5999).contains(k))
}

impl KindPolicy {
    /// `None` means "not a DVM event" (`irrelevant_kind`).
    pub fn classify(&self, ev: &Event) -> Option<Classification> {
        if self.excluded.contains(&ev.kind) {
            return None;
        }
        let (role, credited_kind) = match ev.kind {
            5000..=5999 => (Role::Request, Some(ev.kind as u32)),
            6000..=6999 => (Role::Response, Some((ev.kind - 1000) as u32)),
            7000 => (Role::Feedback, ev.tag_value("k").and_then(job_kind)),
            31990 => (Role::Announcement, None),
            _ => return None,
        };
        Some(Classification {
            role,
            credited_kind,
        })
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
