//! A bounded set of recently received event ids, per relay: a relay that
//! re-sends what it already sent (after a resubscription or a reconnect
//! with an overlap) is not counted again.

use std::collections::{HashSet, VecDeque};

#[derive(Debug, Clone)]
pub(crate) struct RecentIds {
    cap: usize,
    order: VecDeque<u128>,
    set: HashSet<u128>,
}

/// The first 128 bits of a hex id (collisions are negligible here), or
/// `None` when the text is no id at all.
fn key(id: &str) -> Option<u128> {
    u128::from_str_radix(id.get(..32)?, 16).ok()
}

impl RecentIds {
    pub(crate) fn new(cap: usize) -> RecentIds {
        RecentIds {
            cap: cap.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Remembers `id`; false when it was already remembered. Text that is
    /// not an id is never remembered (it is counted every time).
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        let Some(k) = key(id) else {
            return true;
        };
        if !self.set.insert(k) {
            return false;
        }
        self.order.push_back(k);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Forgets `id` (its event could not be written and will come again).
    pub(crate) fn remove(&mut self, id: &str) {
        if let Some(k) = key(id)
            && self.set.remove(&k)
        {
            self.order.retain(|o| *o != k);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_first_in_first_out() {
        let id = |n: u32| format!("{n:032x}{}", "f".repeat(32));
        let mut r = RecentIds::new(3);
        assert!(r.insert(&id(1)));
        assert!(!r.insert(&id(1)));
        assert!(r.insert(&id(2)) && r.insert(&id(3)) && r.insert(&id(4)));
        assert_eq!(r.len(), 3);
        // 1 was evicted, 2..4 are remembered.
        assert!(r.insert(&id(1)));
        assert!(!r.insert(&id(4)));
        r.remove(&id(4));
        assert!(r.insert(&id(4)));
        // Not ids: never remembered.
        assert!(r.insert("short") && r.insert("short"));
        assert!(r.insert(&"z".repeat(64)) && r.insert(&"z".repeat(64)));
    }
}
