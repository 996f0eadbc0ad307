//! NIP-01 events: the wire model, validation (id and signature) and NIP-90
//! classification.
//!
//! Parsing is strict about the NIP-01 fields: any missing or ill-typed one
//! is `malformed`, so nothing downstream has to second-guess its input.
//! Unknown extra top-level fields (a MongoDB export's `_id`, a relay
//! dump's `seen_on`/`relays`) are ignored: real dumps carry them, and the id
//! is computed from the canonical fields only, so they cannot change what
//! the event says.

mod classify;
mod verify;

pub use classify::{Classification, KindPolicy, Role};
pub use verify::{compute_id, verify_signature};

use serde::Deserialize;

/// A Nostr event as it arrives on the wire (its NIP-01 fields; others are
/// ignored).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub pubkey: String,
    pub created_at: i64,
    pub kind: i64,
    pub tags: Vec<Vec<String>>,
    pub content: String,
    pub sig: String,
}

/// Why an input line was refused. The names are part of the public
/// contract (summaries, status, dead letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    Malformed,
    /// `created_at` before the configured epoch (`--min-created-at`).
    TooOld,
    IrrelevantKind,
    BadId,
    BadSig,
    Future,
    Duplicate,
}

impl Reject {
    /// In the order of the validation chain.
    pub const ALL: [Reject; 7] = [
        Reject::Malformed,
        Reject::TooOld,
        Reject::IrrelevantKind,
        Reject::BadId,
        Reject::BadSig,
        Reject::Future,
        Reject::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::TooOld => "too_old",
            Reject::IrrelevantKind => "irrelevant_kind",
            Reject::BadId => "bad_id",
            Reject::BadSig => "bad_sig",
            Reject::Future => "future",
            Reject::Duplicate => "duplicate",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Event {
    /// Parses one JSON object. Field shapes are checked too: `id` and
    /// `pubkey` are 64 lowercase hex characters, `sig` 128, `created_at`
    /// is not negative.
    pub fn parse(raw: &str) -> Result<Event, Reject> {
        let ev: Event = serde_json::from_str(raw).map_err(|_| Reject::Malformed)?;
        if !is_lower_hex(&ev.id, 64)
            || !is_lower_hex(&ev.pubkey, 64)
            || !is_lower_hex(&ev.sig, 128)
            || ev.created_at < 0
            || ev.kind < 0
        {
            return Err(Reject::Malformed);
        }
        Ok(ev)
    }

    /// First value of the first tag named `name`.
    pub(crate) fn tag_value(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.first().map(String::as_str) == Some(name))
            .and_then(|t| t.get(1))
            .map(String::as_str)
    }
}

/// 2023-01-01T00:00:00Z: NIP-90 (DVMs) dates from mid-2023, so anything
/// older is a bad clock or junk. One such event would otherwise open its
/// month — 1970-01 for `created_at = 0` — and roll over every month since.
pub(crate) const DEFAULT_MIN_CREATED_AT: i64 = 1_672_531_200;

/// Options of the validation chain.
#[derive(Debug, Clone)]
pub struct Validation {
    pub kinds: KindPolicy,
    pub verify_signatures: bool,
    /// Events more than this many seconds after the wall clock are `future`.
    pub max_future_secs: i64,
    /// Events created before this (unix seconds) are `too_old`.
    pub min_created_at: i64,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            kinds: KindPolicy::default(),
            verify_signatures: false,
            max_future_secs: 15 * 60,
            min_created_at: DEFAULT_MIN_CREATED_AT,
        }
    }
}

/// Runs the SPEC §2 chain up to (not including) deduplication, which needs
/// state: parse → date → kind → id → signature (optional) → future.
pub fn validate(
    raw: &str,
    v: &Validation,
    now_unix: i64,
) -> Result<(Event, Classification), Reject> {
    let ev = Event::parse(raw)?;
    if ev.created_at < v.min_created_at {
        return Err(Reject::TooOld);
    }
    let class = v.kinds.classify(&ev).ok_or(Reject::IrrelevantKind)?;
    if compute_id(&ev) != ev.id {
        return Err(Reject::BadId);
    }
    if v.verify_signatures && !verify_signature(&ev) {
        return Err(Reject::BadSig);
    }
    if ev.created_at > now_unix.saturating_add(v.max_future_secs) {
        return Err(Reject::Future);
    }
    Ok((ev, class))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(Event::parse("{"), Err(Reject::Malformed));
        assert_eq!(Event::parse("[]"), Err(Reject::Malformed));
        let ok = r#"{"id":"00000000000000000000000000000000000000000000000000000000000000aa","pubkey":"00000000000000000000000000000000000000000000000000000000000000bb","created_at":1,"kind":5000,"tags":[],"content":"","sig":"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}"#;
        assert!(Event::parse(ok).is_ok());
        assert_eq!(
            Event::parse(&ok.replace("\"kind\":5000", "\"kind\":\"5000\"")),
            Err(Reject::Malformed)
        );
        assert_eq!(
            Event::parse(&ok.replace("aa\"", "AA\"")),
            Err(Reject::Malformed)
        );
        assert_eq!(
            Event::parse(&ok.replace("\"created_at\":1", "\"created_at\":-1")),
            Err(Reject::Malformed)
        );
    }

    #[test]
    fn extra_fields_are_ignored_but_canonical_ones_stay_strict() {
        let ok = r#"{"id":"00000000000000000000000000000000000000000000000000000000000000aa","pubkey":"00000000000000000000000000000000000000000000000000000000000000bb","created_at":1,"kind":5000,"tags":[],"content":"","sig":"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}"#;
        let plain = Event::parse(ok).unwrap();
        let extra = format!(
            r#"{{"_id":{{"$oid":"65f0"}},{},"seen_on":["wss://a"],"relays":[[1,{{"x":null}}]]}}"#,
            &ok[1..ok.len() - 1]
        );
        assert_eq!(Event::parse(&extra), Ok(plain));
        // A repeated NIP-01 field is not an "extra" one: it is ambiguous.
        let twice = ok.replace("\"kind\":5000", "\"kind\":5000,\"kind\":6000");
        assert_eq!(Event::parse(&twice), Err(Reject::Malformed));
    }
}
