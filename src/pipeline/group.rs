//! What the processor holds between commits: the pending group and the
//! overflow's parked elements.

use chrono::NaiveDate;
use dvmtop_core::analyze::Pending;
use dvmtop_core::{Item, MonthRow};
use std::time::{Duration, Instant};

/// What the processor has done since its last commit.
#[derive(Default)]
pub(super) struct Group {
    pub(super) pending: Pending,
    /// Queue head elements consumed (they leave the queue at the commit).
    pub(super) consumed: i64,
    pub(super) ignored: i64,
    /// Refused elements: (reason, raw).
    pub(super) rejected: Vec<crate::queue::Refused>,
    pub(super) overflow_changed: bool,
    /// Months rolled over, with their rows.
    pub(super) rollovers: Vec<MonthRow>,
    /// When the first change happened.
    pub(super) since: Option<Instant>,
    /// The input sources' furthest positions among the consumed elements.
    pub(super) positions: dvmtop_core::source::Positions,
}

impl Group {
    pub(super) fn is_empty(&self) -> bool {
        self.consumed == 0
            && !self.overflow_changed
            && self.rejected.is_empty()
            && self.rollovers.is_empty()
    }

    pub(super) fn age(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Events it applied or found duplicate (what the commit policy counts).
    pub(super) fn events(&self) -> u64 {
        self.pending.processed + self.pending.duplicates
    }
}

/// A read-ahead element of a later day (SPEC §4).
pub(super) struct Parked {
    /// The queue element as it arrived (what the overflow stores).
    pub(super) payload: String,
    pub(super) day: NaiveDate,
    pub(super) item: Item,
}
