//! Where an input source stands, and where its ingest starts again.
//!
//! A file's ingest position is the number of its elements (lines, or items
//! of a JSON array; of the decompressed stream for gzip) already handled.
//! Two copies of it exist: Redis's (moved with every enqueued chunk, lost
//! with the queue) and PostgreSQL's *committed* one — the position of the
//! last element a committed group consumed, written in that group's
//! transaction. Each queued element carries its source and position as a
//! tag at the end of its payload ([`tag`], [`split`]), so the processor
//! knows what it commits.
//!
//! Everything a source has before its committed position is in PostgreSQL
//! (applied, ignored, refused or parked) or was never queued (refused or a
//! duplicate at ingest). So after Redis lost the queue, ingest starts
//! enqueueing right after the committed position, and only *counts* the
//! elements before it that Redis's counters no longer hold ([`plan`]).

use std::collections::BTreeMap;

/// The short, stable id of a source (its resume key: path and size) that
/// queued elements carry: 16 hex digits of FNV-1a 64.
pub fn id(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Separates a payload's tag: a last tab-separated field `@<id>:<n>` (no
/// other field of our compact form starts with `@`).
const MARK: &str = "\t@";

/// Appends the tag of element `n` (1-based: `n` elements handled through
/// this one) of source `id` to `payload`.
pub fn tag(payload: &mut String, id: &str, n: u64) {
    use std::fmt::Write;
    let _ = write!(payload, "{MARK}{id}:{n}");
}

/// A payload without its tag, and the tag (source id, position) if any.
pub fn split(payload: &str) -> (&str, Option<(&str, u64)>) {
    // A tag is the payload's end, and neither its id nor its position
    // holds a tab: it starts at the last tab (found with memrchr — a
    // two-character pattern search cost ~5 % of processing).
    let Some(at) = payload
        .rfind('\t')
        .filter(|&i| payload[i..].starts_with(MARK))
    else {
        return (payload, None);
    };
    let Some((id, n)) = payload[at + MARK.len()..].split_once(':') else {
        return (payload, None);
    };
    match n.parse() {
        Ok(n) if !id.is_empty() && !id.contains(['\t', '"']) => (&payload[..at], Some((id, n))),
        _ => (payload, None),
    }
}

/// The furthest position of each source among elements consumed (by a
/// batch, a group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions(pub BTreeMap<String, u64>);

impl Positions {
    /// Notes the tag of a consumed payload (untagged ones: nothing).
    pub(crate) fn note(&mut self, payload: &str) {
        if let (_, Some((id, n))) = split(payload) {
            match self.0.get_mut(id) {
                Some(m) => *m = (*m).max(n),
                None => {
                    self.0.insert(id.to_owned(), n);
                }
            }
        }
    }

    /// Notes the tag of a consumed payload and removes it: what is stored
    /// of the element (parked, a dead letter) is as it was before tags.
    pub fn take(&mut self, payload: &mut String) {
        self.note(payload);
        let body = split(payload).0.len();
        payload.truncate(body);
    }

    pub fn merge(&mut self, other: Positions) {
        for (id, n) in other.0 {
            let m = self.0.entry(id).or_default();
            *m = (*m).max(n);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How an ingest of a source proceeds, from Redis's position and the
/// committed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Elements not read at all: Redis counted (and queued) them already.
    pub skip: u64,
    /// Elements up to this position (after `skip`) are validated, deduped
    /// and counted, but not queued again: PostgreSQL has them.
    pub count_until: u64,
}

impl Plan {
    /// Whether Redis is behind what PostgreSQL committed (the queue, or
    /// its state, was lost).
    pub fn recovers(&self) -> bool {
        self.count_until > self.skip
    }
}

/// Where ingest starts. `redis`: Redis's position (0 when it has none —
/// a new source, or a queue lost); `committed`: PostgreSQL's. While Redis
/// has the queue, its position is never behind the committed one (an
/// element is queued before it is consumed), and it alone decides — as
/// before committed positions existed. Behind it, the queue was lost.
pub fn plan(redis: u64, committed: u64) -> Plan {
    Plan {
        skip: redis,
        count_until: redis.max(committed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_leave_untagged_payloads_alone() {
        let id = id("/data/in.jsonl:123");
        assert_eq!(id.len(), 16);
        assert_ne!(id, super::id("/data/in.jsonl:124"));
        let body = "dvm1\taa\tbb\t1700000000\t5300\t-\t{\"name\":\"x@y:1\"}";
        let mut p = body.to_owned();
        tag(&mut p, &id, 42);
        assert_eq!(split(&p), (body, Some((id.as_str(), 42))));
        assert_eq!(split(body), (body, None));
        // Raw NIP-01 JSON (a DVMDash list) is never taken for a tag.
        let raw = r#"{"content":"a\t@b:1","id":"x"}"#;
        assert_eq!(split(raw).1, None);
        assert_eq!(split("dvm1\tx\t@:3").1, None);
        assert_eq!(split("dvm1\tx\t@a:b").1, None);
    }

    #[test]
    fn positions_keep_the_furthest_element_per_source() {
        let mut a = Positions::default();
        for (id, n) in [("a", 3), ("b", 1), ("a", 2), ("a", 7)] {
            let mut p = "dvm1\tx".to_owned();
            tag(&mut p, id, n);
            a.note(&p);
        }
        a.note("dvm1\tuntagged");
        let mut p = "dvm1\ty".to_owned();
        tag(&mut p, "d", 4);
        a.take(&mut p);
        assert_eq!(p, "dvm1\ty");
        let mut b = Positions::default();
        b.0.insert("b".into(), 9);
        b.0.insert("c".into(), 1);
        a.merge(b);
        let want: Vec<(&str, u64)> = vec![("a", 7), ("b", 9), ("c", 1), ("d", 4)];
        let got: Vec<(&str, u64)> = a.0.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn redis_decides_unless_it_is_behind_what_is_committed() {
        // A new source; an interrupted ingest (Redis ahead of processing).
        assert_eq!(
            plan(0, 0),
            Plan {
                skip: 0,
                count_until: 0
            }
        );
        assert_eq!(
            plan(500, 200),
            Plan {
                skip: 500,
                count_until: 500
            }
        );
        assert!(!plan(500, 500).recovers());
        // The queue was lost: count what is committed, queue the rest.
        let lost = plan(0, 300);
        assert_eq!(
            lost,
            Plan {
                skip: 0,
                count_until: 300
            }
        );
        assert!(lost.recovers());
        // Lost, then partly re-counted before another stop.
        assert_eq!(
            plan(100, 300),
            Plan {
                skip: 100,
                count_until: 300
            }
        );
    }
}
