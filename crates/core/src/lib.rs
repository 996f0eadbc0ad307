//! dvmtop's pure core: the vocabulary ([`time`], [`role`], [`job`],
//! [`item`]) and the logic that decides everything — the clock and its
//! rollover state machine ([`clock`]), the analysis of day slices
//! ([`analyze`]), the entity book ([`entities`]), the running month
//! figures ([`month`]), request → result matching ([`jobs`]), window
//! stats ([`windows`]), activity day rows ([`activity`]), the retention
//! policy ([`retention`]) and where an input source's ingest starts again
//! ([`source`]).
//!
//! No I/O here, and no way to add it by accident: this crate depends on
//! no database, queue, runtime or terminal crate. The shell (the `dvmtop`
//! crate) reads and writes; the core is tested exhaustively on its own.

pub mod activity;
pub mod alert;
pub mod alerts;
pub mod analyze;
pub mod clock;
pub mod entities;
pub(crate) mod item;
pub(crate) mod job;
pub mod jobs;
pub mod keys;
pub mod month;
pub mod namespace;
pub mod retention;
pub(crate) mod role;
pub mod source;
pub mod time;
pub mod windows;

pub use alert::{Alert, Severity};
pub use item::{Item, Profile};
pub use job::{Job, Outcome};
pub use keys::Pubkey;
pub use month::MonthRow;
pub use role::{EntityRole, JobKind, Kind, Role};
pub use time::{Day, YearMonth, day_of, day_start};
