//! An accepted event as the analysis sees it: decoded once by the shell,
//! fixed-size keys, no per-event heap allocation (announcements aside).

use crate::jobs::FeedbackStatus;
use crate::keys::Pubkey;
use crate::role::{JobKind, Role};
use serde::{Deserialize, Serialize};

/// DVM profile fields from a NIP-89 announcement (kind 31990).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default)]
    pub kinds: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// [`crate::keys::id_key`] of the event id.
    pub key: u128,
    pub pubkey: Pubkey,
    pub created_at: i64,
    pub role: Role,
    /// The job kind it counts for, when known.
    pub credited_kind: Option<JobKind>,
    pub profile: Option<Box<Profile>>,
    /// Results and feedback: the id key of the request their first `e`
    /// tag names (when it is a 64-hex id).
    pub refers: Option<u128>,
    /// Feedback: its `status` tag, when it is one of the NIP-90 values.
    pub status: Option<FeedbackStatus>,
}
