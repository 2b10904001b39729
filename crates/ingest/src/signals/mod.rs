//! What ingest derives from the windows besides aggregates: alarm state changes on every
//! change of a key ([`alarms`]) and the periodic trends ([`trends`]), both retained on the
//! broker (the rules themselves are `aggregator_core`'s).

pub mod alarms;
pub mod round;
pub mod trends;
