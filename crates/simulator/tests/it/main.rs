//! Integration tests of the `simulator` binary against a real Mosquitto per test.

mod cli;
mod delivery;
mod determinism;
mod helpers;
mod invalid;
mod resilience;
mod security;
