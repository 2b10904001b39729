//! The pure heart of scrap-pulse: everything in the contract (`docs/contract.md`) that needs no
//! I/O. [`parse`] turns a payload into a [`Reading`] (with its optional [`ReadingId`]) or a
//! [`Rejection`]; [`window`] keeps exact sliding-window sums per key; [`wire`] and [`topic`]
//! are what the services publish and where; [`trend`] and [`alarm`] are derived from the
//! windows, [`history`] from the readings they accept; [`partition`] says which ingest shard owns a machine;
//! [`sparkplug`] reads the Sparkplug B convention.
//!
//! Nothing here reads a clock, touches the network or the file system: callers pass the time
//! in, which keeps every rule testable without a runtime.
#![warn(missing_docs)]

pub mod alarm;
pub mod history;
pub mod parse;
pub mod partition;
pub mod plant_time;
pub mod reading_id;
pub mod rejection;
pub mod report;
pub mod sparkplug;
pub mod sum;
pub mod timestamp;
pub mod topic;
pub mod trend;
pub mod window;
pub mod wire;

pub use history::{HistoryAccumulator, HistoryConfig};
pub use parse::{ParseLimits, ParsedReading, Reading, parse_reading, parse_reading_with_id};
pub use partition::shard_of;
pub use reading_id::ReadingId;
pub use rejection::{Rejection, RejectionReason};
pub use timestamp::Timestamp;
pub use window::{Accepted, Key, KeyId, WindowConfig, WindowStore, WindowTotals};
pub use wire::{Aggregate, DeadLetter, HistoryBucket, KeyRef};
