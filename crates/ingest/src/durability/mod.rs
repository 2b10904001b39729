//! Exactly once through restarts: the window log of accepted readings
//! ([`window_log`]) and the recognition of messages the broker sends again although their
//! readings are already logged ([`redelivery`]). See the crate README for the guarantees.

pub mod redelivery;
pub mod window_log;
