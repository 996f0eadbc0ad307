//! The `users` and `dvms` tables, held in memory by the processor (pure).
//!
//! Every user seen in a month would otherwise cost an upsert per batch; in
//! memory the processor updates them per event and a commit writes each
//! changed entity once, with its absolute values. The two-phase lifecycle
//! (SPEC §6) is decided here too, on exactly these values, so the daily
//! cleanup never has to scan the tables. Loaded from PostgreSQL at start-up;
//! bounded by retention (entities silent for 60 days are deleted).

use crate::keys::{FastMap, Pubkey};
use crate::role::{EntityRole, Role};

/// One row of `users` or `dvms` (times in unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entity {
    pub first_seen: i64,
    pub last_seen: i64,
    pub is_active: bool,
    pub deactivated_at: Option<i64>,
    /// Users: requests. DVMs: responses and feedback.
    pub requests: i64,
    pub responses: i64,
    pub feedback: i64,
}

impl Entity {
    fn new(ts: i64) -> Entity {
        Entity {
            first_seen: ts,
            last_seen: ts,
            is_active: true,
            deactivated_at: None,
            requests: 0,
            responses: 0,
            feedback: 0,
        }
    }
}

/// What one daily cleanup does to the entities, decided before it is
/// carried out (so the shell can write it first, then apply it here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// Phase 1, per role: active and silent since before the inactive cut-off.
    pub deactivate: [Vec<Pubkey>; 2],
    /// Phase 2, per role: silent since before the delete cut-off and
    /// inactive (possibly just now).
    pub delete: [Vec<Pubkey>; 2],
}

/// An entity in the book, with what the next commit must know of it.
///
/// The marks live in the row rather than in sets of keys beside the map:
/// with 370 k users (10× DVMDash's peak month) two such sets took ~34 MB
/// for what fits in the row's padding.
#[derive(Debug, Clone, Copy)]
struct Row {
    entity: Entity,
    /// Changed since the last commit.
    dirty: bool,
    /// Not in the table when the group started: candidates for `ever_seen`.
    fresh: bool,
}

/// Rows as loaded from a table: nothing to write.
fn clean(rows: Vec<(Pubkey, Entity)>) -> FastMap<Pubkey, Row> {
    rows.into_iter()
        .map(|(pk, entity)| {
            (
                pk,
                Row {
                    entity,
                    dirty: false,
                    fresh: false,
                },
            )
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct Entities {
    rows: [FastMap<Pubkey, Row>; 2],
    /// Rows marked dirty since the last commit (a deleted row's mark still
    /// counts: only whether it is zero matters).
    marked: [usize; 2],
}

impl Entities {
    /// The book as loaded from the tables (nothing dirty).
    pub fn from_rows(users: Vec<(Pubkey, Entity)>, dvms: Vec<(Pubkey, Entity)>) -> Entities {
        Entities {
            rows: [clean(users), clean(dvms)],
            ..Entities::default()
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, role: EntityRole, pk: &Pubkey) -> Option<&Entity> {
        self.rows[role as usize].get(pk).map(|r| &r.entity)
    }

    pub(crate) fn len(&self, role: EntityRole) -> usize {
        self.rows[role as usize].len()
    }

    /// (active, inactive) of one role.
    pub fn activity(&self, role: EntityRole) -> (usize, usize) {
        let active = self.rows[role as usize]
            .values()
            .filter(|r| r.entity.is_active)
            .count();
        (active, self.len(role) - active)
    }

    /// An event by this entity: first/last seen widen, the count goes up,
    /// and new activity reactivates.
    pub(crate) fn touch(&mut self, role: EntityRole, pk: &Pubkey, ts: i64, what: Role) {
        let i = role as usize;
        let row = self.rows[i].entry(*pk).or_insert_with(|| Row {
            entity: Entity::new(ts),
            dirty: false,
            fresh: true,
        });
        if !row.dirty {
            row.dirty = true;
            self.marked[i] += 1;
        }
        let e = &mut row.entity;
        e.first_seen = e.first_seen.min(ts);
        e.last_seen = e.last_seen.max(ts);
        e.is_active = true;
        e.deactivated_at = None;
        match what {
            Role::Request => e.requests += 1,
            Role::Response => e.responses += 1,
            Role::Feedback => e.feedback += 1,
            Role::Announcement => {}
        }
    }

    /// Who the daily cleanup at reference time `r` deactivates
    /// (`last_seen < inactive_before`) and deletes (`last_seen <
    /// delete_before`, inactive before or by this run), sorted.
    pub fn lifecycle(&self, inactive_before: i64, delete_before: i64) -> Lifecycle {
        let mut l = Lifecycle::default();
        for role in EntityRole::BOTH {
            let i = role as usize;
            for (pk, Row { entity: e, .. }) in &self.rows[i] {
                let deactivated = e.is_active && e.last_seen < inactive_before;
                if deactivated {
                    l.deactivate[i].push(*pk);
                }
                if (deactivated || !e.is_active) && e.last_seen < delete_before {
                    l.delete[i].push(*pk);
                }
            }
            l.deactivate[i].sort_unstable();
            l.delete[i].sort_unstable();
        }
        l
    }

    /// Whether a deletion hits an entity the pending group has changed
    /// (only possible when a group spans the deletion period): then the
    /// group must be committed before the cleanup deletes it. (A
    /// deactivation needs no such care: the book holds it, and the
    /// group's commit writes the book's values.)
    pub fn deletes_dirty(&self, l: &Lifecycle) -> bool {
        (0..2).any(|i| {
            l.delete[i]
                .iter()
                .any(|pk| self.rows[i].get(pk).is_some_and(|r| r.dirty))
        })
    }

    /// Mirrors a lifecycle change the cleanup has committed.
    pub fn apply(&mut self, l: &Lifecycle, r: i64) {
        for i in 0..2 {
            for pk in &l.deactivate[i] {
                if let Some(row) = self.rows[i].get_mut(pk) {
                    row.entity.is_active = false;
                    row.entity.deactivated_at = Some(r);
                }
            }
            for pk in &l.delete[i] {
                self.rows[i].remove(pk);
            }
        }
    }

    /// What the next commit writes: changed rows, split into entities new
    /// to the table and those already in it (each sorted).
    pub fn changes(&self) -> Changes {
        let mut c = Changes {
            fresh: [Vec::new(), Vec::new()],
            changed: [Vec::new(), Vec::new()],
        };
        for i in 0..2 {
            for (pk, row) in self.rows[i].iter().filter(|(_, r)| r.dirty) {
                if row.fresh {
                    c.fresh[i].push((*pk, row.entity));
                } else {
                    c.changed[i].push((*pk, row.entity));
                }
            }
            c.fresh[i].sort_unstable_by_key(|(pk, _)| *pk);
            c.changed[i].sort_unstable_by_key(|(pk, _)| *pk);
        }
        c
    }

    /// After a commit: nothing is pending any more.
    pub fn committed(&mut self) {
        for i in 0..2 {
            if self.marked[i] > 0 {
                for row in self.rows[i].values_mut() {
                    row.dirty = false;
                    row.fresh = false;
                }
            }
            self.marked[i] = 0;
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.marked.iter().any(|&n| n > 0)
    }
}

/// Entity rows a commit writes, per role (copies: the commit runs while
/// the book goes on changing).
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Not in the table before this group (also new to `ever_seen`, maybe).
    pub fresh: [Vec<(Pubkey, Entity)>; 2],
    /// Already in the table.
    pub changed: [Vec<(Pubkey, Entity)>; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn lifecycle_edges_and_return() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let mut book = Entities::default();
        let r = 100 * DAY;
        book.touch(EntityRole::User, &a, r - 30 * DAY, Role::Request); // exactly 30 days: stays
        book.touch(EntityRole::User, &b, r - 30 * DAY - 1, Role::Request); // just over: inactive
        book.touch(EntityRole::Dvm, &c, r - 60 * DAY - 1, Role::Response); // over 60: deleted
        assert_eq!(book.changes().fresh[0].len(), 2);
        assert!(book.changes().changed[0].is_empty());
        book.committed();
        let l = book.lifecycle(r - 30 * DAY, r - 60 * DAY);
        assert_eq!(l.deactivate, [vec![b], vec![c]]);
        assert_eq!(l.delete, [vec![], vec![c]]);
        assert!(!book.deletes_dirty(&l));
        book.apply(&l, r);
        assert_eq!(
            book.get(EntityRole::User, &b).unwrap().deactivated_at,
            Some(r)
        );
        assert!(book.get(EntityRole::Dvm, &c).is_none());
        assert_eq!(book.activity(EntityRole::User), (1, 1));
        // b comes back: active again, and dirty, so a cleanup deleting it
        // would have to wait for the commit.
        book.touch(EntityRole::User, &b, r + 10, Role::Request);
        let e = book.get(EntityRole::User, &b).unwrap();
        assert!(e.is_active && e.deactivated_at.is_none() && e.requests == 2);
        let l = book.lifecycle(r + 100 * DAY, r + 100 * DAY);
        assert!(book.deletes_dirty(&l));
        assert_eq!(book.changes().changed[0].len(), 1);
        assert!(book.changes().fresh[0].is_empty());
    }
}
