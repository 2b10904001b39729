//! The pure heart of scrap-pulse: everything in the contract (`docs/contract.md`) that needs no I/O.
//!
//! - [`parse`]: turns `(topic, payload)` from `machines/{id}/scrap` into a [`Reading`] or a
//!   [`Rejection`] with one variant per reason of the contract.
//! - [`window`]: the keyed sliding-window store with exact sums, expiry scheduling, idle-key
//!   forgetting and the `max_keys` cap.
//! - [`wire`]: the JSON the services publish (aggregates, dead letters, liveness).
//! - [`topic`]: topic names and topic-level validation.
//! - [`timestamp`]: the event/clock time type used throughout.
//!
//! Nothing here reads a clock, touches the network or the file system: callers pass the time
//! in, which keeps every rule testable without a runtime.
#![warn(missing_docs)]

pub mod parse;
pub mod rejection;
pub mod sum;
pub mod timestamp;
pub mod topic;
pub mod window;
pub mod wire;

pub use parse::{ParseLimits, Reading, parse_reading};
pub use rejection::{Rejection, RejectionReason};
pub use timestamp::Timestamp;
pub use window::{Key, KeyId, WindowConfig, WindowStore};
pub use wire::{Aggregate, DeadLetter, IngestStatus, KeyRef};
