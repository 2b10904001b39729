//! The pure heart of scrap-pulse: everything in the contract (`docs/contract.md`) that needs no I/O.
//!
//! - [`parse`]: turns `(topic, payload)` from `[prefix/]machines/{id}/scrap` into a
//!   [`Reading`] (and its optional [`ReadingId`]) or a [`Rejection`] with one variant per
//!   reason of the contract.
//! - [`window`]: the keyed sliding-window store with exact sums, expiry scheduling, idle-key
//!   forgetting, the `max_keys` cap and duplicate detection by reading id.
//! - [`wire`]: the JSON the services publish (aggregates, dead letters, liveness).
//! - [`topic`]: topic names and topic-level validation.
//! - [`trend`]: the per-key ring of sampled sums, its message and the restart merge rule.
//! - [`alarm`]: threshold rules, their lookup, the per-key alarm state machine, its message.
//! - [`timestamp`]: the event/clock time type used throughout.
//! - [`reading_id`]: the optional `id` of a reading, for dropping resent copies.
//! - [`partition`]: which ingest shard owns a machine (FNV-1a mod N, as NATS partitions).
//!
//! Nothing here reads a clock, touches the network or the file system: callers pass the time
//! in, which keeps every rule testable without a runtime.
#![warn(missing_docs)]

pub mod alarm;
pub mod parse;
pub mod partition;
pub mod reading_id;
pub mod rejection;
pub mod sum;
pub mod timestamp;
pub mod topic;
pub mod trend;
pub mod window;
pub mod wire;

pub use parse::{ParseLimits, ParsedReading, Reading, parse_reading, parse_reading_with_id};
pub use partition::shard_of;
pub use reading_id::ReadingId;
pub use rejection::{Rejection, RejectionReason};
pub use timestamp::Timestamp;
pub use window::{Accepted, Key, KeyId, WindowConfig, WindowStore, WindowTotals};
pub use wire::{Aggregate, DeadLetter, IngestStatus, KeyRef};
