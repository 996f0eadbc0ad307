//! The compact, pre-validated form of an accepted event that travels through
//! our own queue and the overflow buffer.
//!
//! Ingest validates once (id, optional signature) and enqueues only what
//! the analysis needs, so processing never re-hashes or re-parses full
//! events. Raw NIP-01 JSON (a DVMDash collector's list) is accepted too and
//! goes through the full validation chain.

use crate::event::{self, Event, Reject, Validation};
use dvmtop_core::jobs::FeedbackStatus;
use dvmtop_core::keys::{hex32, id_key};
use dvmtop_core::{Item, JobKind, Kind, Profile, Role};

const TAG: &str = "dvm1\t";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) pubkey: String,
    pub(crate) created_at: i64,
    pub(crate) kind: i64,
    pub(crate) role: Role,
    pub(crate) credited_kind: Option<JobKind>,
    pub(crate) profile: Option<Profile>,
    /// Results and feedback: the first `e` tag's value, when it is an
    /// event id (64 lowercase hex) — the request the job analytics match.
    pub(crate) refers: Option<String>,
    /// Feedback: the `status` tag, when it is a NIP-90 status.
    pub(crate) status: Option<FeedbackStatus>,
}

fn profile_of(ev: &Event) -> Profile {
    let meta: serde_json::Value =
        serde_json::from_str(&ev.content).unwrap_or(serde_json::Value::Null);
    let text = |k: &str| meta.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let mut kinds: Vec<u32> = ev
        .tags
        .iter()
        .filter(|t| t.first().map(String::as_str) == Some("k"))
        .filter_map(|t| t.get(1)?.trim().parse().ok())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    Profile {
        name: text("name"),
        about: text("about"),
        picture: text("picture"),
        kinds,
    }
}

impl Record {
    pub(crate) fn from_event(ev: Event, class: event::Classification) -> Record {
        let profile = (class.role == Role::Announcement).then(|| profile_of(&ev));
        let job = matches!(class.role, Role::Response | Role::Feedback);
        let refers = job
            .then(|| ev.tag_value("e"))
            .flatten()
            .filter(|v| id_key(v).is_some())
            .map(str::to_ascii_lowercase);
        let status = (class.role == Role::Feedback)
            .then(|| ev.tag_value("status").and_then(FeedbackStatus::parse))
            .flatten();
        Record {
            id: ev.id,
            pubkey: ev.pubkey,
            created_at: ev.created_at,
            kind: ev.kind,
            role: class.role,
            credited_kind: class.credited_kind,
            profile,
            refers,
            status,
        }
    }

    /// One line, tab separated; the profile (if any) is JSON, which never
    /// contains a raw tab. The request a result names and a feedback's
    /// status come last, so records queued before they existed still
    /// decode (as naming nothing).
    pub(crate) fn encode(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        format!(
            "{TAG}{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.id,
            self.pubkey,
            self.created_at,
            self.kind,
            opt(self.credited_kind.map(|k| k.to_string())),
            opt(self
                .profile
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok())),
            opt(self.refers.clone()),
            opt(self.status.map(|s| s.as_str().to_owned())),
        )
    }

    /// The processing form: what the analysis needs, without allocations.
    pub(crate) fn item(&self) -> Item {
        Item {
            key: id_key(&self.id).unwrap_or(0),
            pubkey: hex32(&self.pubkey).unwrap_or([0; 32]),
            created_at: self.created_at,
            role: self.role,
            credited_kind: self.credited_kind,
            profile: self.profile.clone().map(Box::new),
            refers: self.refers.as_deref().and_then(id_key),
            status: self.status,
        }
    }
}

fn decode_compact(body: &str, v: &Validation) -> Option<Item> {
    let mut f = body.splitn(8, '\t');
    let id = f.next()?;
    let pubkey = f.next()?;
    let created_at = f.next()?.parse().ok()?;
    let kind: i64 = f.next()?.parse().ok()?;
    let credited_kind = match f.next()? {
        "-" => None,
        k => Some(JobKind(k.parse().ok()?)),
    };
    let profile = match f.next()? {
        "-" => None,
        p => Some(Box::new(serde_json::from_str(p).ok()?)),
    };
    // Absent in records queued by an older dvmtop.
    let refers = match f.next() {
        None | Some("-") => None,
        Some(e) => Some(id_key(e)?),
    };
    let status = match f.next() {
        None | Some("-") => None,
        Some(s) => Some(FeedbackStatus::parse(s)?),
    };
    // The role follows from the kind under the current policy.
    let role = v.kinds.role(Kind(kind))?;
    Some(Item {
        key: id_key(id)?,
        pubkey: hex32(pubkey)?,
        created_at,
        role,
        credited_kind,
        profile,
        refers,
        status,
    })
}

/// Reads a queue element: our compact form, or raw NIP-01 JSON (fully
/// validated, as from a DVMDash collector's list).
pub fn decode(payload: &str, v: &Validation, now_unix: i64) -> Result<Item, Reject> {
    match payload.strip_prefix(TAG) {
        // A file's element carries its source position at the end.
        Some(body) => {
            decode_compact(dvmtop_core::source::split(body).0, v).ok_or(Reject::Malformed)
        }
        None => {
            let (ev, class) = event::validate(payload, v, now_unix)?;
            Ok(Record::from_event(ev, class).item())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trip() {
        let r = Record {
            id: "a".repeat(64),
            pubkey: "b".repeat(64),
            created_at: 1_700_000_000,
            kind: 31990,
            role: Role::Announcement,
            credited_kind: None,
            profile: Some(Profile {
                name: Some("x\ty\n".into()),
                about: None,
                picture: None,
                kinds: vec![5300],
            }),
            refers: None,
            status: None,
        };
        let v = Validation::default();
        assert_eq!(decode(&r.encode(), &v, 0).unwrap(), r.item());
        let f = Record {
            kind: 7000,
            role: Role::Feedback,
            credited_kind: Some(JobKind(5300)),
            profile: None,
            refers: Some("c".repeat(64)),
            status: Some(FeedbackStatus::Error),
            ..r
        };
        assert_eq!(decode(&f.encode(), &v, 0).unwrap(), f.item());
        let mut tagged = f.encode();
        dvmtop_core::source::tag(&mut tagged, "0123456789abcdef", 7);
        assert_eq!(decode(&tagged, &v, 0).unwrap(), f.item());
        let item = decode(&f.encode(), &v, 0).unwrap();
        assert_eq!(item.refers, id_key(&"c".repeat(64)));
        assert_eq!(item.status, Some(FeedbackStatus::Error));
        // A record from before the job fields decodes as naming nothing.
        let old = f.encode().rsplitn(3, '\t').last().unwrap().to_owned();
        let item = decode(&old, &v, 0).unwrap();
        assert_eq!((item.refers, item.status), (None, None));
        assert_eq!(decode("dvm1\tgarbage", &v, 0), Err(Reject::Malformed));
        let bad_key = f.encode().replacen(&"b".repeat(64), &"x".repeat(64), 1);
        assert_eq!(decode(&bad_key, &v, 0), Err(Reject::Malformed));
    }
}
