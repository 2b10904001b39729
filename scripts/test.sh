#!/usr/bin/env bash
# The project's test command (README "Tests"): every Rust test, then the browser tests of the
# dashboard against the real stack. Needs mosquitto and chromium on PATH and
# `npm ci --prefix frontend` done once; .ci/run installs all of that.
set -euo pipefail
cd "$(dirname "$0")/.."

# The browser tests start the real ingest and gateway binaries from target/debug.
cargo build --locked -p ingest -p gateway -p simulator
cargo nextest run --locked --workspace --no-fail-fast
npm --prefix frontend test
