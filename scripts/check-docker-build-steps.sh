#!/usr/bin/env bash
#
# Replays the Rust stages of deploy/Dockerfile without a Docker engine, to
# show that the dependency caching works before anyone waits for an image:
#
#   1. a build context like Docker's (git's files minus .dockerignore)
#   2. planner:  cargo chef prepare            -> recipe.json
#   3. builder:  cargo chef cook --release --locked, from recipe.json alone
#                (run with --check: same resolution and skeleton, no codegen)
#   4. builder:  the Dockerfile's `cargo build --release --locked --bin ...`
#                (as `cargo check`) on the full context, which must compile
#                only the workspace's own crates: every dependency comes from
#                the cooked layer.
#
# Slow (a few minutes: cargo-chef is installed from crates.io if missing and
# every dependency is checked in release mode), so it is not part of CI;
# run it after changing Cargo.toml, Cargo.lock, .dockerignore or the Dockerfile.
# Ends with "N passed, N failed".
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

chef_version=$(sed -nE 's/.*cargo install cargo-chef --locked --version ([0-9.]+).*/\1/p' deploy/Dockerfile)
[[ -n "$chef_version" ]] || { echo "cannot find the cargo-chef version in deploy/Dockerfile" >&2; exit 1; }
if ! cargo chef --version 2>/dev/null | grep -qF "$chef_version"; then
  echo "installing cargo-chef $chef_version from crates.io"
  cargo install cargo-chef --locked --version "$chef_version"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/scrap-pulse-chef.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
pass() { echo "ok   - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }

# 1. The build context: the files git knows (tracked or not ignored), minus .dockerignore.
git ls-files -co --exclude-standard | python3 -c '
import fnmatch, sys
ignore = [l.strip().strip("/") for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
def ignored(path):  # as Docker does: a match on a parent counts, the last matching line wins
    parts, verdict = path.split("/"), False
    for line in ignore:
        p = line[1:].strip("/") if line.startswith("!") else line
        if any(fnmatch.fnmatch("/".join(parts[:i]), p) or fnmatch.fnmatch("/".join(parts[:i]), p.replace("**/", ""))
               for i in range(1, len(parts) + 1)):
            verdict = not line.startswith("!")
    return verdict
for line in sys.stdin:
    path = line.rstrip("\n")
    if not ignored(path):
        print(path)
' >"$work/files"
mkdir -p "$work/context" "$work/builder"
tar -cf - -T "$work/files" | tar -xf - -C "$work/context"
pass "build context: $(wc -l <"$work/files") files"

# 2. planner
if (cd "$work/context" && cargo chef prepare --recipe-path recipe.json >"$work/prepare.log" 2>&1); then
  pass "cargo chef prepare"
else
  fail "cargo chef prepare"
  cat "$work/prepare.log"
fi

# 3. builder, dependency layer: nothing but recipe.json and the build settings in the directory.
cp "$work/context/recipe.json" "$work/builder/"
cp -r "$work/context/.cargo" "$work/builder/"
export CARGO_TARGET_DIR=$work/target
if (cd "$work/builder" && cargo chef cook --release --locked --check --recipe-path recipe.json >"$work/cook.log" 2>&1); then
  pass "cargo chef cook --release --locked (from recipe.json alone)"
else
  fail "cargo chef cook --release --locked"
  tail -30 "$work/cook.log"
fi

# 4. builder, our code: only workspace crates may still need compiling.
bins=$(grep -oE -- "--bin [a-z-]+" deploy/Dockerfile | tr '\n' ' ')
# shellcheck disable=SC2086 # $bins is a list of flags
if (cd "$work/context" && cargo check --release --locked $bins >"$work/build.log" 2>&1); then
  pass "cargo build --release --locked $bins (checked) on the full context"
  members=$(cd "$work/context" && cargo metadata --no-deps --format-version 1 --offline \
    | python3 -c 'import json, sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
  rebuilt=$(sed -nE 's/^ *(Compiling|Checking) ([^ ]+) .*/\2/p' "$work/build.log" | grep -vxF "$members" || true)
  if [[ -z "$rebuilt" ]]; then
    pass "after the cooked layer only workspace crates are compiled"
  else
    fail "dependencies rebuilt after cook (the cache layer would miss): $(echo "$rebuilt" | tr '\n' ' ')"
  fi
else
  fail "cargo build --release --locked $bins"
  tail -30 "$work/build.log"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
