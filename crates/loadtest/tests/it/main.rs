//! Every loadtest subcommand at a tiny scale against a real Mosquitto and the real `ingest`
//! and `gateway` binaries: proves the harness counts and checks correctly. No speed is
//! asserted here; the figures come from `scripts/bench.sh`.
//!
//! The service binaries are taken from this test's own profile directory (`target/debug`):
//! `scripts/test.sh` builds them first (`cargo build -p ingest -p gateway`).

mod harness;
