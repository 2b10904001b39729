#!/usr/bin/env bash
#
# The whole stack on this machine, without Docker: Mosquitto (from PATH, with
# the project's config: ports and persistence rewritten to a temp dir), then
# ingest, the historian (a SQLite file in the temp dir), gateway and the simulator
# from this workspace. Prints the dashboard URL; Ctrl-C stops everything
# (simulator, gateway, historian, ingest, then the broker, so ingest can still
# publish its last aggregates and offline status).
#
# Usage: scripts/dev.sh [SIMULATOR FLAGS...]      (or `just dev ...`)
#   e.g. scripts/dev.sh --rate 500 --machines 20
#        INGEST_CONFIG=alarms.toml scripts/dev.sh
#
# Environment (defaults in brackets):
#   MQTT_PORT [1883]         broker port; set another one when a system Mosquitto owns 1883
#   MQTT_WS_PORT [9001]      broker WebSocket port
#   DEV_GATEWAY_PORT [8000]  dashboard and API, on 127.0.0.1
#   DEV_INGEST_PORT [9100]   ingest health and metrics, on 127.0.0.1
#   DEV_HISTORIAN_PORT [9102] historian health and metrics, on 127.0.0.1
#   INGEST_CONFIG [none]     ingest's settings file (alarm rules, shards, ...), given to it
#                            as --config; checked before anything starts
#   GATEWAY_CONFIG [none]    the gateway's settings file, likewise
#   DEV_PROFILE [dev]        cargo profile to build and run (e.g. release)
#   DEV_BUILD [1]            0: run the binaries already built for DEV_PROFILE, build nothing
#   DEV_SIMULATOR [1]        0: do not start the simulator
#   DEV_KEEP_DATA [0]        1: keep the temp dir (broker data, ingest data, history, logs)
#   RUST_LOG [info]          log filter of the services
#
# The broker address, the service ports above, ingest's data directory and the historian's
# store are set by this script and win over the same settings in a config file. None of the
# variables above but MQTT_PORT and RUST_LOG reach the services: a service may refuse a
# variable with its prefix (INGEST_, GATEWAY_, HISTORIAN_, SIMULATOR_) that is not one of its
# settings.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/broker.sh
source "$repo_root/scripts/lib/broker.sh"
# shellcheck source=scripts/lib/build.sh
source "$repo_root/scripts/lib/build.sh"

if [[ -t 2 ]]; then tag=$'\033[1m[dev]\033[0m'; else tag='[dev]'; fi
say() { printf '%s %s\n' "$tag" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# The command as the user typed it, for hints: `just dev ...` when just ran us (directly, or
# through the recipe's shell), else this script's path as invoked.
invoked_as() {
  local parent grandparent
  parent=$(ps -o comm= -p "$PPID" 2>/dev/null || true)
  grandparent=$(ps -o comm= -p "$(ps -o ppid= -p "$PPID" 2>/dev/null | tr -d ' ')" 2>/dev/null || true)
  if [[ "$parent" == just || ( "$parent" == bash && "$grandparent" == just ) ]]; then
    printf 'just dev'
  else
    printf '%s' "$0"
  fi
  (($# == 0)) || printf ' %q' "$@"
}

# Earlier names of DEV_GATEWAY_PORT and DEV_INGEST_PORT. Each service takes every variable
# with its prefix as a setting of its own, so these would reach it as unknown settings.
for old in GATEWAY_PORT INGEST_PORT; do
  if [[ -n "${!old+set}" ]]; then
    service=${old%%_*}
    die "$old is now DEV_$old (${service,,} reads every ${service}_* variable as a setting of its own): DEV_$old=${!old} $(invoked_as "$@")"
  fi
done

# config_file NAME: the absolute path of the file named by variable NAME (nothing when it
# is unset or empty), resolved from where the script was started; fails naming NAME when
# there is no readable file.
config_file() {
  local name=$1 path=${!1:-}
  [[ -n "$path" ]] || return 0
  if [[ ! -f "$path" || ! -r "$path" ]]; then
    say "error: $name=$path: no readable file there (a relative path is taken from $PWD)"
    return 1
  fi
  printf '%s/%s' "$(cd "$(dirname "$path")" && pwd)" "$(basename "$path")"
}
ingest_config=$(config_file INGEST_CONFIG) || exit 1
gateway_config=$(config_file GATEWAY_CONFIG) || exit 1

mqtt_port=${MQTT_PORT:-1883}
ws_port=${MQTT_WS_PORT:-9001}
gateway_port=${DEV_GATEWAY_PORT:-8000}
ingest_port=${DEV_INGEST_PORT:-9100}
historian_port=${DEV_HISTORIAN_PORT:-9102}
profile=${DEV_PROFILE:-dev}
start_simulator=${DEV_SIMULATOR:-1}
keep_data=${DEV_KEEP_DATA:-0}
build=${DEV_BUILD:-1}
# Read once above; out of the environment so that no service inherits them. MQTT_PORT stays:
# the services read it with the same meaning (and get it below).
unset MQTT_WS_PORT DEV_GATEWAY_PORT DEV_INGEST_PORT DEV_HISTORIAN_PORT INGEST_CONFIG GATEWAY_CONFIG \
  DEV_PROFILE DEV_SIMULATOR DEV_KEEP_DATA DEV_BUILD
export RUST_LOG=${RUST_LOG:-info}
cd "$repo_root"

need_mosquitto || exit 1
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
command -v curl >/dev/null || die "curl not found: install it (Debian/Ubuntu: apt-get install curl; macOS ships it)"

for entry in "MQTT_PORT:$mqtt_port" "MQTT_WS_PORT:$ws_port" "DEV_GATEWAY_PORT:$gateway_port" "DEV_INGEST_PORT:$ingest_port" "DEV_HISTORIAN_PORT:$historian_port"; do
  if port_open "${entry#*:}"; then
    die "port ${entry#*:} is in use (${entry%%:*}); pick another, e.g. ${entry%%:*}=$((${entry#*:} + 10000)) $(invoked_as "$@")"
  fi
done

if [[ "$build" != 0 ]]; then
  say "building ingest, historian, gateway and simulator (profile $profile)"
  build_services "$profile"
fi
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
if [[ "$profile" == dev ]]; then bin_dir=$target_dir/debug; else bin_dir=$target_dir/$profile; fi

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/scrap-pulse-dev.XXXXXX")
mkdir -p "$run_dir/mosquitto-data" "$run_dir/ingest-data" "$run_dir/historian-data"

# Every child in its own process group (job control on): Ctrl-C reaches only
# this script, which then stops the children in a safe order.
set -m

declare -A pid_of=()
order=() # start order; stopped in reverse
stopping=

stop_one() {
  local name=$1 pid=${pid_of[$1]:-}
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do # up to 10 s for a clean shutdown
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop within 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  [[ -n "$stopping" ]] && return
  stopping=1
  # Finish the shutdown whatever happens around us: a second Ctrl-C, the
  # terminal closing (HUP), or a reader of our output that went away (PIPE).
  trap '' INT TERM HUP PIPE
  set +e
  say "stopping"
  local i
  for ((i = ${#order[@]} - 1; i >= 0; i--)); do
    stop_one "${order[i]}"
  done
  if [[ "$keep_data" == 1 ]]; then
    say "kept $run_dir"
  else
    rm -rf "$run_dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# start NAME COMMAND...: runs COMMAND in the background, output prefixed with [NAME].
start() {
  local name=$1
  shift
  "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
  pid_of[$name]=$!
  order+=("$name")
}

# wait_http NAME URL: waits up to 60 s for a 200 from URL while NAME runs.
wait_http() {
  local name=$1 url=$2 deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    kill -0 "${pid_of[$name]}" 2>/dev/null || die "$name exited during start-up (see its log above)"
    ((SECONDS < deadline)) || die "$name is not healthy at $url after 60 s"
    sleep 0.2
  done
}

render_mosquitto_conf mosquitto/config/mosquitto.conf "$run_dir/mosquitto.conf" \
  "$mqtt_port" "$ws_port" "$run_dir/mosquitto-data"
say "starting mosquitto on 127.0.0.1:$mqtt_port (WebSocket $ws_port), log: $run_dir/mosquitto.log"
"$(mosquitto_bin)" -c "$run_dir/mosquitto.conf" >"$run_dir/mosquitto.log" 2>&1 &
pid_of[mosquitto]=$!
order+=(mosquitto)
wait_broker "$mqtt_port" 10 || {
  cat "$run_dir/mosquitto.log" >&2
  die "mosquitto did not start"
}

export MQTT_BROKER=127.0.0.1 MQTT_PORT=$mqtt_port

say "starting ingest (health http://127.0.0.1:$ingest_port/health)"
start ingest env INGEST_LISTEN="127.0.0.1:$ingest_port" INGEST_DATA_DIR="$run_dir/ingest-data" \
  "$bin_dir/ingest" ${ingest_config:+--config "$ingest_config"}
wait_http ingest "http://127.0.0.1:$ingest_port/health"

say "starting historian (health http://127.0.0.1:$historian_port/health)"
start historian env HISTORIAN_LISTEN="127.0.0.1:$historian_port" \
  HISTORIAN_STORE_URL="sqlite://$run_dir/historian-data/historian.db" "$bin_dir/historian"
wait_http historian "http://127.0.0.1:$historian_port/health"

say "starting gateway"
# The dashboard from frontend/ on disk rather than the copy built into the binary, so that
# an edit there shows on reload (Chart.js from frontend/vendor/, no npm needed).
# History questions (/api/history, /api/shifts/current) go to the historian started above.
start gateway env GATEWAY_LISTEN="127.0.0.1:$gateway_port" GATEWAY_HTTP_STATIC_DIR="$repo_root/frontend" \
  GATEWAY_HISTORY_URL="http://127.0.0.1:$historian_port" \
  "$bin_dir/gateway" ${gateway_config:+--config "$gateway_config"}
wait_http gateway "http://127.0.0.1:$gateway_port/api/health"

if [[ "$start_simulator" != 0 ]]; then
  say "starting simulator $*"
  start simulator "$bin_dir/simulator" "$@"
fi

say "dashboard: http://localhost:$gateway_port/   (Ctrl-C stops everything)"

# Watch the children: the simulator may finish (--count, --duration) and the
# stack keeps running; any other exit stops the stack.
while true; do
  for name in "${order[@]}"; do
    pid=${pid_of[$name]}
    [[ -n "$pid" ]] || continue
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0
      wait "$pid" 2>/dev/null || rc=$?
      pid_of[$name]=
      if [[ "$name" == simulator ]]; then
        say "simulator finished (exit $rc); the stack keeps running"
      else
        say "$name exited (status $rc); stopping the stack"
        exit 1
      fi
    fi
  done
  sleep 1 &
  wait $! || true # interruptible: Ctrl-C runs the trap at once
done
