//! Integration tests of the `simulator` binary against a real Mosquitto per test (two for
//! the spreading tests, a three-node NATS cluster for one of them); the Sparkplug tests read
//! what arrives with Eclipse Tahu's decoder under Node.

mod cli;
mod delivery;
mod determinism;
mod helpers;
mod invalid;
mod resilience;
mod security;
mod sparkplug;
mod spread;
