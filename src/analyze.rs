//! Pure analysis: one day slice of records → the rollup deltas to apply in
//! a single transaction. Aggregating here is what keeps the database work
//! proportional to distinct (entity, kind, hour) triples, not to events.

use crate::event::Role;
use crate::record::{Profile, Record};
use std::collections::{HashMap, HashSet};

/// The 128-bit prefix of an event id: the key of processing-side
/// deduplication (a collision needs ~2^64 events).
pub fn id_key(id: &str) -> u128 {
    id.get(..32)
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// Which entity an activity row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityRole {
    User = 0,
    Dvm = 1,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: i64,
    pub responses: i64,
    pub feedback: i64,
}

impl Counts {
    fn add(&mut self, role: Role) {
        match role {
            Role::Request => self.requests += 1,
            Role::Response => self.responses += 1,
            Role::Feedback => self.feedback += 1,
            Role::Announcement => {}
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
    fn at(ts: i64) -> Span {
        Span {
            first: ts,
            last: ts,
        }
    }
    fn widen(&mut self, ts: i64) {
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
    }
}

fn widen<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Span>, k: K, ts: i64) {
    m.entry(k)
        .and_modify(|s| s.widen(ts))
        .or_insert_with(|| Span::at(ts));
}

/// Kind 0 stands for "job kind unknown" (feedback without a `k` tag).
pub const UNKNOWN_KIND: u32 = 0;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delta {
    /// Ids (128-bit keys) accepted in this slice, in input order.
    pub new_ids: Vec<u128>,
    pub duplicates: u64,
    pub totals: Counts,
    pub max_ts: Option<i64>,
    /// (hour start, role, entity, kind) → counts: `entity_activity`.
    pub activity: HashMap<(i64, EntityRole, String, u32), Counts>,
    /// dvm → counts: `dvm_stats_rollups` for the day.
    pub dvm_day: HashMap<String, Counts>,
    /// kind → counts: `kind_stats_rollups` for the day.
    pub kind_day: HashMap<u32, Counts>,
    /// Entity → when it was active in the slice and what it did.
    pub users: HashMap<String, (Span, Counts)>,
    pub dvms: HashMap<String, (Span, Counts)>,
    /// (kind, dvm) → span of responses/feedback for that kind.
    pub support: HashMap<(u32, String), Span>,
    /// dvm → latest announcement.
    pub profiles: HashMap<String, (i64, Profile)>,
}

/// Analyses one slice. `seen` holds the keys of every event already
/// applied in the open window; duplicates (against it or within the
/// slice) are counted and skipped.
pub fn analyze<'a>(slice: impl IntoIterator<Item = &'a Record>, seen: &HashSet<u128>) -> Delta {
    let mut d = Delta::default();
    let mut fresh: HashSet<u128> = HashSet::new();
    let mut accepted: Vec<&Record> = Vec::new();
    for r in slice {
        let k = id_key(&r.id);
        if seen.contains(&k) || !fresh.insert(k) {
            d.duplicates += 1;
            continue;
        }
        d.new_ids.push(k);
        accepted.push(r);
    }
    for r in accepted {
        let ts = r.created_at;
        d.max_ts = d.max_ts.max(Some(ts));
        // Feedback without a `k` tag stays "unknown". Crediting it to its
        // request's kind would depend on whether the request happened to
        // be in the same slice, i.e. on batch boundaries (SPEC §3).
        let kind = r.credited_kind.unwrap_or(UNKNOWN_KIND);
        let who = match r.role {
            Role::Announcement => {
                if let Some(p) = &r.profile {
                    let newer = d.profiles.get(&r.pubkey).is_none_or(|(at, _)| *at <= ts);
                    if newer {
                        d.profiles.insert(r.pubkey.clone(), (ts, p.clone()));
                    }
                }
                continue;
            }
            Role::Request => EntityRole::User,
            Role::Response | Role::Feedback => EntityRole::Dvm,
        };
        d.totals.add(r.role);
        let hour = ts - ts.rem_euclid(3600);
        d.activity
            .entry((hour, who, r.pubkey.clone(), kind))
            .or_default()
            .add(r.role);
        d.kind_day.entry(kind).or_default().add(r.role);
        let entities = match who {
            EntityRole::User => &mut d.users,
            EntityRole::Dvm => &mut d.dvms,
        };
        let e = entities
            .entry(r.pubkey.clone())
            .or_insert_with(|| (Span::at(ts), Counts::default()));
        e.0.widen(ts);
        e.1.add(r.role);
        match who {
            EntityRole::User => {}
            EntityRole::Dvm => {
                d.dvm_day.entry(r.pubkey.clone()).or_default().add(r.role);
                if kind != UNKNOWN_KIND {
                    widen(&mut d.support, (kind, r.pubkey.clone()), ts);
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u8, who: u8, ts: i64, kind: i64) -> Record {
        let role = match kind {
            5000..=5999 => Role::Request,
            6000..=6999 => Role::Response,
            _ => Role::Feedback,
        };
        Record {
            id: format!("{id:02x}").repeat(32),
            pubkey: format!("{who:02x}").repeat(32),
            created_at: ts,
            kind,
            role,
            credited_kind: match role {
                Role::Request => Some(kind as u32),
                Role::Response => Some(kind as u32 - 1000),
                _ => None,
            },
            profile: None,
        }
    }

    #[test]
    fn counts_credit_and_dedup() {
        let slice = [
            rec(1, 9, 100, 5300),
            rec(2, 8, 200, 6300),
            rec(2, 8, 200, 6300),
            rec(3, 8, 4000, 7000),
        ];
        let mut seen = HashSet::new();
        seen.insert(id_key(&"07".repeat(32)));
        let d = analyze(&slice, &seen);
        assert_eq!(d.duplicates, 1);
        assert_eq!(
            d.totals,
            Counts {
                requests: 1,
                responses: 1,
                feedback: 1
            }
        );
        assert_eq!(
            d.kind_day[&5300],
            Counts {
                requests: 1,
                responses: 1,
                feedback: 0
            }
        );
        // Feedback without a `k` tag is never credited through its request.
        assert_eq!(
            d.kind_day[&UNKNOWN_KIND],
            Counts {
                requests: 0,
                responses: 0,
                feedback: 1
            }
        );
        assert_eq!(
            d.users[&"09".repeat(32)].0,
            Span {
                first: 100,
                last: 100
            }
        );
        let dvm = Counts {
            requests: 0,
            responses: 1,
            feedback: 1,
        };
        assert_eq!(
            d.dvms[&"08".repeat(32)],
            (
                Span {
                    first: 200,
                    last: 4000
                },
                dvm
            )
        );
        assert_eq!(d.activity.len(), 3);
        assert_eq!(d.max_ts, Some(4000));
        let again = analyze(&slice, &d.new_ids.iter().copied().collect());
        assert_eq!(again.duplicates, 4);
    }
}
