//! Integration tests of the `simulator` binary against a real Mosquitto per test (two for
//! the spreading tests, a three-node NATS cluster for one of them).

mod cli;
mod delivery;
mod determinism;
mod helpers;
mod invalid;
mod resilience;
mod security;
mod spread;
