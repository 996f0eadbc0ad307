//! dvmtop: a Nostr Data Vending Machine (NIP-90) analytics pipeline —
//! ingest → Redis queue → day-batched analysis → PostgreSQL rollups —
//! crash-safe and batch-size independent. See README.md for the picture.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod event;
pub mod generate;
pub mod ingest;
pub mod memory;
pub(crate) mod metrics;
pub mod pipeline;
pub mod queue;
pub mod record;
pub mod relay;
pub mod retention;
pub mod run;
pub mod status_table;
pub mod store;
pub(crate) mod tls;
pub mod tui;
