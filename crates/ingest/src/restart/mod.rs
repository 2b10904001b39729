//! What a previous run left on the broker: the retained aggregates, alarms and trends read
//! once at start ([`snapshot`]), and the keys among them this process does not track, emptied
//! and cleared on the window's schedule ([`orphans`]).

pub mod orphans;
pub mod snapshot;
