# shellcheck shell=bash
#
# The one build of the service binaries, shared by scripts/dev.sh and scripts/test.sh. Source
# it; it defines functions only.
#
# Cargo reuses a compiled crate only when it was built with the same features, and features
# are unified over the packages a command selects: `--bin ingest` in this workspace selects
# every member (test-support and loadtest too, whose dependencies turn on more features of
# libc, bitflags and others), `-p ingest` only the service. The two forms therefore compile
# some forty crates twice; every caller builds through this function so that the second
# command finds the first one's work.

# build_services PROFILE: builds ingest, historian, gateway and simulator with the cargo profile PROFILE
# (`dev` puts them in target/debug/), exactly as Cargo.lock pins the dependencies.
build_services() {
  cargo build --locked --profile "$1" -p ingest -p historian -p gateway -p simulator
}
