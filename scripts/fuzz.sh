#!/usr/bin/env bash
#
# Fuzzes the reading parser, the gateway's handling of WebSocket client messages and the
# Sparkplug decoder with an edge node's session (fuzz/fuzz_targets/) for a bounded time each,
# starting from the committed corpora; fails at the first crash and prints the command that
# reproduces it.
#
# Usage: scripts/fuzz.sh [SECONDS]     seconds per target, default 60
#
# cargo-fuzz (libFuzzer) needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the project's
# stable toolchain accept them. cargo-fuzz is installed (the pinned version) when missing.
# Builds skip AddressSanitizer: the project forbids unsafe code, so what the targets look for
# is panics and broken invariants, and without it the build is shorter and the runs faster.
#
# The committed corpus, fuzz/corpus/<target>/, is only read. New inputs a run finds go to
# fuzz/new-corpus/<target>/ (kept between local runs, ignored by git); to commit the useful
# ones, `cargo fuzz cmin` them into the corpus. Crashes are written to fuzz/artifacts/<target>/.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

seconds=${1:-60}
if [[ ! "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS]   (seconds per target, default 60)" >&2
  exit 2
fi
cargo_fuzz_version=0.13.2
targets=(parse_reading ws_client_message sparkplug_payload)
# The same flags for build and run, so a run never rebuilds.
flags=(--sanitizer none)

say() { printf '[fuzz] %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
export RUSTC_BOOTSTRAP=1

say "building ${targets[*]}"
cargo fuzz build "${flags[@]}"

for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  found=fuzz/new-corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$found" "$artifacts"
  marker=$(mktemp)
  say "$target: ${seconds}s from $corpus ($(find "$corpus" -type f | wc -l) inputs)"
  # libFuzzer adds what it finds to the first directory only. Its line per new input and its
  # dictionary are left out of the log; the start, the end and any crash report stay.
  set +e
  cargo fuzz run "${flags[@]}" "$target" "$found" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>&1 |
    sed -u -E -e '/^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse) /d' -e '/^[[:space:]]+NEW_FUNC/d' \
      -e '/Recommended dictionary/,/End of recommended dictionary/d'
  status=${PIPESTATUS[0]}
  set -e
  if ((status != 0)); then
    crash=$(find "$artifacts" -type f -newer "$marker" | head -n 1)
    rm -f "$marker"
    say "$target FAILED${crash:+ on $crash}"
    if [[ -n "$crash" ]]; then
      say "reproduce:  RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $target $crash"
      say "minimize:   RUSTC_BOOTSTRAP=1 cargo fuzz tmin ${flags[*]} $target $crash"
    fi
    exit 1
  fi
  rm -f "$marker"
done
say "no crash in ${seconds}s per target (${targets[*]})"
