#!/usr/bin/env bash
#
# The project's test command (README "Tests"): every Rust test, then the browser tests of the
# dashboard against the real stack.
#
# Usage: scripts/test.sh                  (or `just test`)
#
# It checks the tools the tests start (Mosquitto, Chromium, Node.js) before spending minutes
# on Rust, naming the command that installs a missing one, and installs the npm packages of
# frontend/ and interop/sparkplug-tahu/ itself when missing or older than their lock files.
# CHROMIUM_PATH points the browser tests at a Chromium other than /usr/bin/chromium.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=scripts/lib/broker.sh
source "$repo_root/scripts/lib/broker.sh"
# shellcheck source=scripts/lib/build.sh
source "$repo_root/scripts/lib/build.sh"
export PATH="$PATH:/usr/sbin" # Debian installs mosquitto there

say() { printf '[test] %s\n' "$*" >&2; }
missing=0
need() { # need WHAT HINT: reports a missing tool; the run stops after all checks
  say "missing: $1"
  say "  install: $2"
  missing=1
}

need_mosquitto 2>/dev/null ||
  need "Mosquitto 2 (the broker every integration test starts)" \
    "sudo apt-get install mosquitto mosquitto-clients   (macOS: brew install mosquitto)"
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null ||
  need "PostgreSQL server binaries (the historian's tests start a server of their own)" \
    "sudo apt-get install postgresql   (the tests use /usr/lib/postgresql/<version>/bin, not the system server)"
command -v nats-server >/dev/null ||
  need "nats-server (the partition test pins shard_of against NATS's own mapping)" \
    "sudo apt-get install nats-server   (macOS: brew install nats-server)"
chromium=${CHROMIUM_PATH:-/usr/bin/chromium}
if [[ ! -x "$chromium" ]]; then
  need "Chromium at $chromium (the dashboard's browser tests)" \
    "sudo apt-get install chromium   (Ubuntu, where that is a snap: sudo snap install chromium, then run with CHROMIUM_PATH=/snap/bin/chromium; or set CHROMIUM_PATH to any Chromium or Chrome)"
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  need "Node.js 20+ with npm (runs the browser tests)" "sudo apt-get install nodejs npm   (or https://nodejs.org)"
elif (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
  need "Node.js 20+ (found $(node --version))" "https://nodejs.org, or your distribution's nodejs 20 package"
fi
command -v cargo-nextest >/dev/null ||
  need "cargo-nextest (runs the Rust tests, one process per test)" "cargo install cargo-nextest --locked"
((missing == 0)) || exit 1

# npm packages: the dashboard's (its browser tests) and Eclipse Tahu's Sparkplug library (the
# independent encoder the Sparkplug tests decode). The lock file newer than npm's record of
# the installed tree means a pull changed it.
for dir in frontend interop/sparkplug-tahu; do
  if [[ ! -f $dir/node_modules/.package-lock.json ||
    $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    say "installing npm packages (npm ci --prefix $dir)"
    npm ci --prefix "$dir" --no-audit --no-fund
  fi
done

# The browser tests start the real ingest and gateway binaries from target/debug. Built as
# scripts/dev.sh builds them, so that after a dev.sh run this step compiles nothing.
build_services dev
cargo nextest run --locked --workspace --no-fail-fast
CHROMIUM_PATH=$chromium npm --prefix frontend test
