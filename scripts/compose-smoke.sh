#!/usr/bin/env bash
#
# `docker compose up` for real: the project's own docker-compose.yml on a real Docker engine,
# checked end to end. CI runs it (.ci/run); `just compose-smoke` runs it by hand.
#
#   1. installs what it needs when missing (as root, Debian packages): docker.io,
#      docker-compose, debootstrap, chromium; `npm ci --prefix frontend` for playwright-core
#   2. starts a Docker engine when none answers, ONLY as
#      `dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none`
#      (it must not change the machine's firewall or forwarding); it is left running
#   3. makes the base images that cannot be pulled here (scripts/make-standin-images.sh;
#      cached, and real images already present are kept)
#   4. builds the images and brings the stack up: docker-compose.yml plus the test-only
#      deploy/compose.smoke.yml (builds on the host network, a one-hour window), as its own
#      compose project on free host ports, with PLANT_TIMEZONE=Europe/Berlin, and waits
#      until every service is healthy (mosquitto, ingest, historian, gateway)
#   5. runs the simulator (`run simulator --count ... --print-expected`) and checks that
#      /api/aggregates shows exactly the sums and counts it sent, and that the shift totals
#      through the gateway do too once the historian has stored the buckets:
#      /api/history?step=shift over the shifts since the stack came up, and
#      /api/shifts/current (current and previous shift), in plant time, under the shift
#      names of deploy/historian.toml
#   6. checks in headless Chromium that the dashboard draws a card per key and the chart
#   7. restarts the historian and checks that the shift totals are still there: they were
#      in its SQLite file on the historian-data volume
#   8. restarts the ingest container, sends a second batch and checks that the aggregates
#      and the shift totals hold both batches: the window survived in ingest's data volume
#   9. stops the broker and checks its log: no line from the healthcheck's connections,
#      no warning about its configuration
#  10. `down -v` of the default stack, then the cluster stack, docker-compose.cluster.yml
#      plus the test-only deploy/compose.cluster.smoke.yml, as its own compose project on
#      free host ports, with the images just built (nothing is rebuilt) and stand-ins of
#      the nats and postgres images: waits until the three NATS nodes, PostgreSQL, three
#      ingest shards, two historians and two gateways are healthy
#  11. runs the simulator twice, through nats-2 and through nats-3, with machines of all
#      three shards; checks that both gateways' /api/aggregates show exactly the sums and
#      counts sent, both /api/health say 3/3 shards online, and each shard holds exactly
#      the keys of its own machines (FNV-1a 32 of the id mod 3)
#  12. checks the cluster's shift totals: through both gateways (gateway-1 asks
#      historian-1, gateway-2 historian-2) as in 5, in PostgreSQL itself (the minute
#      buckets and their hourly rollups added up per key), and that both historians
#      received and stored the buckets
#  13. always (trap): the services' logs on failure, then `down -v`; the images stay cached
#
# Exits non-zero with a "FAIL:" line naming the step on any failure.
# Settings: COMPOSE ("docker compose" or docker-compose; found when unset),
# COMPOSE_SMOKE_PROJECT (scrap-pulse-smoke; the cluster stack is <that>-cluster),
# COMPOSE_SMOKE_STACKS ("default cluster"; "default" or "cluster" runs one of them, the
# cluster alone building its images when they are missing), COMPOSE_SMOKE_TIMEZONE (the
# stacks' PLANT_TIMEZONE, Europe/Berlin: not UTC, so that plant time is seen to reach the
# historians), CHROMIUM_PATH
# (/usr/bin/chromium), COMPOSE_SMOKE_KEEP=1 (leave the stack up for a look; `down -v` it
# yourself).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=scripts/lib/broker.sh
source "$repo_root/scripts/lib/broker.sh"

project=${COMPOSE_SMOKE_PROJECT:-scrap-pulse-smoke}
stacks=" ${COMPOSE_SMOKE_STACKS:-default cluster} "
[[ "$stacks" == *" default "* || "$stacks" == *" cluster "* ]] \
  || {
    echo "compose-smoke: COMPOSE_SMOKE_STACKS must name default and/or cluster, not '${COMPOSE_SMOKE_STACKS:-}'" >&2
    exit 2
  }
chromium_path=${CHROMIUM_PATH:-/usr/bin/chromium}
work=$(mktemp -d "${TMPDIR:-/tmp}/scrap-pulse-compose-smoke.XXXXXX")
# Compose v1 builds through the engine's API (the legacy builder), which honours the
# override's `network: host`; DOCKER_BUILDKIT=0 keeps `docker build` on the same builder.
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0

step() { printf '\n== %s (%s, +%ss)\n' "$1" "$(date -u +%H:%M:%S)" "$SECONDS"; }
failed_step=
fail() {
  failed_step=$1
  echo "compose-smoke: FAIL: $*" >&2
  exit 1
}

# --- 1. tools --------------------------------------------------------------------------
step "tools"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
if [[ -z "${COMPOSE:-}" ]] && ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  missing+=(docker-compose)
fi
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
[[ "$stacks" != *" default "* || -x "$chromium_path" ]] || missing+=(chromium)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  [[ $EUID -eq 0 ]] || fail "tools" "missing ${missing[*]}: sudo apt-get install ${missing[*]}"
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"
if [[ "$stacks" == *" default "* ]]; then
  [[ -x "$chromium_path" ]] || fail "tools" "$chromium_path is missing: apt-get install chromium, or set CHROMIUM_PATH"
  command -v npm >/dev/null || fail "tools" "npm missing: install Node.js 20+ (the dashboard check uses playwright-core)"
  if [[ ! -d frontend/node_modules/playwright-core ]]; then
    npm ci --prefix frontend --no-audit --no-fund >/dev/null || fail "tools" "npm ci --prefix frontend failed"
  fi
fi
if [[ -n "${COMPOSE:-}" ]]; then
  read -r -a compose_cmd <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  compose_cmd=(docker-compose)
fi
echo "compose: ${compose_cmd[*]} ($("${compose_cmd[@]}" version 2>/dev/null | head -1))"

# --- 2. engine -------------------------------------------------------------------------
step "Docker engine"
if ! docker info >/dev/null 2>&1; then
  if ! pgrep -x dockerd >/dev/null; then
    [[ $EUID -eq 0 ]] || fail "engine" "no Docker engine answers; start one (as root: dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none)"
    dockerd_log=${TMPDIR:-/tmp}/scrap-pulse-dockerd.log
    echo "starting dockerd without firewall or forwarding changes (log: $dockerd_log)"
    setsid nohup dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
      >"$dockerd_log" 2>&1 </dev/null &
  fi
  deadline=$((SECONDS + 90))
  until docker info >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "engine" "the Docker engine did not answer within 90 s${dockerd_log:+ (see $dockerd_log)}"
    sleep 0.5 # poll interval of a condition wait
  done
fi
echo "engine: $(docker version -f '{{ .Server.Version }}')"

# --- 3. base images --------------------------------------------------------------------
step "base images (stand-ins where none can be pulled)"
scripts/make-standin-images.sh || fail "base images" "scripts/make-standin-images.sh failed"

# --- the stacks ----------------------------------------------------------------------------
# `compose` and `with_sim` are the compose command of the stack under test; the cluster
# part points them at its own project once the default stack is down, so that the helpers
# below and the cleanup work on whichever stack is up.
MQTT_HOST_PORT=$(free_port)
MQTT_WS_HOST_PORT=$(free_port)
DASHBOARD_HOST_PORT=$(free_port)
export MQTT_HOST_PORT MQTT_WS_HOST_PORT DASHBOARD_HOST_PORT
# The plant's zone for both stacks (compose passes it to ingest and the historians).
PLANT_TIMEZONE=${COMPOSE_SMOKE_TIMEZONE:-Europe/Berlin}
export PLANT_TIMEZONE
compose=("${compose_cmd[@]}" -p "$project" -f docker-compose.yml -f deploy/compose.smoke.yml)
# The simulator's profile only where the simulator is meant: build, run and down. With it,
# `up` would also start the profile's own simulator, whose data would spoil the exact sums.
with_sim=("${compose[@]}" --profile sim)
logged_services=(mosquitto ingest historian gateway)
base_url=http://127.0.0.1:$DASHBOARD_HOST_PORT

cleanup() {
  local status=$?
  trap - EXIT
  if ((status != 0)); then
    echo "--- compose ps" >&2
    "${compose[@]}" ps >&2 2>&1 || true
    for s in "${logged_services[@]}"; do
      echo "--- last log lines of $s" >&2
      "${compose[@]}" logs --no-color --tail 60 "$s" >&2 2>&1 || true
    done
    echo "compose-smoke: FAILED${failed_step:+ at: $failed_step} after ${SECONDS}s" >&2
  fi
  if [[ "${COMPOSE_SMOKE_KEEP:-}" == 1 ]]; then
    echo "COMPOSE_SMOKE_KEEP=1: the stack stays up: ${compose[*]} down -v" >&2
  else
    "${with_sim[@]}" down -v --remove-orphans >"$work/down.log" 2>&1 || cat "$work/down.log" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

build_flags=()
[[ "${compose_cmd[*]}" == docker-compose ]] && build_flags=(--force-rm) # v1 keeps failed builds' containers otherwise

container_of() { "${compose[@]}" ps -q "$1"; }
health_of() {
  local id
  id=$(container_of "$1")
  [[ -n "$id" ]] && docker inspect -f '{{ if .State.Health }}{{ .State.Health.Status }}{{ else }}none{{ end }}' "$id"
}
wait_healthy() { # wait_healthy TIMEOUT SERVICE...
  local timeout=$1 s deadline
  shift
  deadline=$((SECONDS + timeout))
  for s in "$@"; do
    until [[ "$(health_of "$s" 2>/dev/null)" == healthy ]]; do
      ((SECONDS < deadline)) || fail "healthy" "$s is '$(health_of "$s" 2>/dev/null || echo gone)', not healthy, after ${timeout}s"
      sleep 1 # poll interval of a condition wait
    done
    echo "$s: healthy"
  done
}

# send_batch SEED OUT [SIMULATOR FLAGS...]: one simulator run in the stack; its
# --print-expected summary in OUT.
send_batch() {
  local seed=$1 out=$2
  shift 2
  if ! "${with_sim[@]}" run --rm -T simulator --count 600 --rate 300 --qos 1 --seed "$seed" \
    --mqtt-client-id "scrap-pulse-smoke-$seed" --print-expected "$@" \
    >"$out" 2>"$out.log"; then
    cat "$out.log" >&2
    fail "simulator" "the simulator run (seed $seed) failed or lost messages"
  fi
  grep -q '^{' "$out" || fail "simulator" "no --print-expected summary from the simulator (seed $seed)"
}

# expected.json from the summaries: per key, sums and counts added up.
merge_expected() {
  python3 - "$work/expected.json" "$@" <<'PY'
import json, sys
keys = {}
for path in sys.argv[2:]:
    line = [l for l in open(path) if l.startswith("{")][-1]
    for k in json.loads(line)["keys"]:
        e = keys.setdefault((k["maschinenId"], k["scrapIndex"]), {"maschinenId": k["maschinenId"], "scrapIndex": k["scrapIndex"], "sum": 0, "count": 0})
        e["sum"] += k["sum"]
        e["count"] += k["count"]
json.dump(sorted(keys.values(), key=lambda e: (e["maschinenId"], e["scrapIndex"])), open(sys.argv[1], "w"))
PY
}

# aggregates_match URL: true when URL/api/aggregates holds exactly the keys of
# expected.json with their counts and sums (1e-9 relative); the difference is in
# $work/diff.txt otherwise.
aggregates_match() {
  curl -fsS --max-time 5 "$1/api/aggregates" >"$work/aggregates.json" 2>"$work/diff.txt" || return 1
  python3 - "$work/aggregates.json" "$work/expected.json" >"$work/diff.txt" <<'PY'
import json, sys
got = {(a["maschinenId"], a["scrapIndex"]): a for a in json.load(open(sys.argv[1]))}
want = {(e["maschinenId"], e["scrapIndex"]): e for e in json.load(open(sys.argv[2]))}
problems = [f"missing key {k}" for k in sorted(want.keys() - got.keys())]
problems += [f"unexpected key {k}: {got[k]}" for k in sorted(got.keys() - want.keys())]
for k in sorted(want.keys() & got.keys()):
    g, w = got[k], want[k]
    if g["count"] != w["count"] or abs(g["sumLast60s"] - w["sum"]) > 1e-9 * max(1.0, abs(w["sum"])):
        problems.append(f"{k}: count {g['count']} sum {g['sumLast60s']}, sent count {w['count']} sum {w['sum']}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

# aggregate_counters URL: what the gateway at URL and every ingest counted of the aggregates
# (received, refused as a late older copy, published once more after a key went quiet), so
# that a missing update can be told from a refused one.
aggregate_counters() {
  echo "--- aggregate counters"
  curl -fsS --max-time 5 "$1/metrics" 2>/dev/null \
    | grep -E '^gateway_(mqtt_messages_received|mqtt_messages_invalid|stale_messages)_total' || true
  local service
  for service in $("${compose[@]}" ps --services 2>/dev/null | grep '^ingest'); do
    "${compose[@]}" exec -T "$service" curl -fsS --max-time 5 localhost:9100/metrics 2>/dev/null \
      | grep -E '^ingest_aggregates_(published|republished)_total' | sed "s/^/$service: /" || true
  done
}

wait_aggregates() { # wait_aggregates WHAT [URL]
  local what=$1 url=${2:-$base_url} deadline=$((SECONDS + 90))
  until aggregates_match "$url"; do
    if ((SECONDS >= deadline)); then
      sed 's/^/  /' "$work/diff.txt" >&2
      aggregate_counters "$url" >&2
      fail "aggregates" "$what: $url/api/aggregates differs from what the simulator sent (above)"
    fi
    sleep 0.5 # poll interval of a condition wait
  done
  echo "$url/api/aggregates: $(python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print(len(e), "keys,", sum(k["count"] for k in e), "readings, exactly as sent")' "$work/expected.json")"
}

# shift_totals_match URL SINCE: true when, through the gateway at URL, the shift totals hold
# exactly the keys of expected.json with their counts and sums (1e-9 relative), both
# /api/history?step=shift (every shift overlapping SINCE..now, added up per key) and
# /api/shifts/current (the current and the previous shift, where it ended after SINCE);
# every row in the plant's zone and named by a rule of deploy/historian.toml. The
# difference is in $work/diff.txt otherwise.
shift_totals_match() {
  local url=$1 since=$2
  curl -fsS --max-time 10 "$url/api/history?step=shift&from=$since" >"$work/history.json" 2>"$work/diff.txt" \
    || return 1
  curl -fsS --max-time 10 "$url/api/shifts/current" >"$work/shifts.json" 2>"$work/diff.txt" || return 1
  python3 - "$work/history.json" "$work/shifts.json" "$work/expected.json" "$since" "$PLANT_TIMEZONE" \
    deploy/historian.toml >"$work/diff.txt" <<'PY'
import json, sys, tomllib
from datetime import datetime
from zoneinfo import ZoneInfo

history, shifts, expected = (json.load(open(p)) for p in sys.argv[1:4])
since, zone = datetime.fromisoformat(sys.argv[4]), ZoneInfo(sys.argv[5])
rules = {r["name"]: r["start"] for r in tomllib.load(open(sys.argv[6], "rb"))["shift"]}
want = {(e["maschinenId"], e["scrapIndex"]): e for e in expected}
problems = []

def check_row(where, row):
    """A row in plant time: its local start is its UTC start in the zone, at its rule's start."""
    start, start_utc = datetime.fromisoformat(row["start"]), datetime.fromisoformat(row["startUtc"])
    local = start_utc.astimezone(zone)
    if start != local or start.utcoffset() != local.utcoffset():
        problems.append(f"{where}: start {row['start']} is not {row['startUtc']} in {zone.key} ({local.isoformat()})")
    if rules.get(row["shift"]) != start.strftime("%H:%M"):
        problems.append(f"{where}: shift {row['shift']!r} starting {start:%H:%M} is no rule of deploy/historian.toml")

def compare(what, got):
    for k in sorted(want.keys() - got.keys()):
        problems.append(f"{what}: missing key {k}")
    for k in sorted(got.keys() - want.keys()):
        problems.append(f"{what}: unexpected key {k}: {got[k]}")
    for k in sorted(want.keys() & got.keys()):
        (gs, gc), w = got[k], want[k]
        if gc != w["count"] or abs(gs - w["sum"]) > 1e-9 * max(1.0, abs(w["sum"])):
            problems.append(f"{what} {k}: count {gc} sum {gs}, sent count {w['count']} sum {w['sum']}")

totals = {}
for row in history:
    check_row(f"/api/history {row['maschinenId']}/{row['scrapIndex']}", row)
    t = totals.setdefault((row["maschinenId"], row["scrapIndex"]), [0.0, 0])
    t[0] += row["sum"]
    t[1] += row["count"]
compare("/api/history?step=shift", {k: tuple(v) for k, v in totals.items()})

current = {}
for entry in shifts:
    key = (entry["maschinenId"], entry["scrapIndex"])
    rows = [r for r in (entry["current"], entry["previous"]) if r and datetime.fromisoformat(r["endUtc"]) > since]
    if not entry["current"]:
        problems.append(f"/api/shifts/current {key}: no current shift")
    for r in rows:
        check_row(f"/api/shifts/current {key}", r)
    current[key] = (sum(r["sum"] for r in rows), sum(r["count"] for r in rows))
compare("/api/shifts/current", current)
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

wait_shift_totals() { # wait_shift_totals WHAT SINCE [URL [TIMEOUT]]
  local what=$1 since=$2 url=${3:-$base_url} timeout=${4:-90} deadline
  deadline=$((SECONDS + timeout))
  until shift_totals_match "$url" "$since"; do
    if ((SECONDS >= deadline)); then
      sed 's/^/  /' "$work/diff.txt" >&2
      fail "shift totals" "$what: $url/api/history?step=shift and /api/shifts/current differ from what the simulator sent (above), ${timeout}s after it ended"
    fi
    sleep 1 # poll interval of a condition wait
  done
  echo "$url: shift totals exactly as sent ($(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); c=s[0]["current"]; print(len(s), "keys, current shift", c["shift"], c["start"], "to", c["end"])' "$work/shifts.json"))"
}

# A moment before the first reading, in UTC, for `from` of the shift totals.
now_utc() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# ===== The default stack: docker-compose.yml ===============================================
default_stack() {
  # --- 4. build and up --------------------------------------------------------------------
  step "build the images"
  local build_start=$SECONDS
  if ! "${with_sim[@]}" build "${build_flags[@]}" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    fail "build" "the image build failed (last lines above)"
  fi
  echo "built in $((SECONDS - build_start)) s"
  if grep -E '(useradd|groupadd) warning' "$work/build.log"; then
    fail "build" "the runtime stage's user creation warns (above)"
  fi
  docker image ls --format '{{ .Repository }}:{{ .Tag }} {{ .Size }}' | grep '^scrap-pulse/' | sed 's/^/image: /'

  step "up"
  "${compose[@]}" up -d >"$work/up.log" 2>&1 || {
    cat "$work/up.log" >&2
    fail "up" "compose up failed"
  }
  wait_healthy 180 mosquitto ingest historian gateway

  # --- 5. simulator -> /api/aggregates and the shift totals -------------------------------
  step "simulator -> /api/aggregates, shift totals"
  local since
  since=$(now_utc)
  send_batch 1 "$work/batch1.json"
  merge_expected "$work/batch1.json"
  wait_aggregates "first batch"
  wait_shift_totals "first batch" "$since"

  # --- 6. dashboard ---------------------------------------------------------------------
  step "dashboard in headless Chromium"
  CHROMIUM_PATH=$chromium_path node deploy/smoke-dashboard.mjs "$base_url/" "$work/expected.json" \
    || fail "dashboard" "the dashboard did not draw the cards and the chart"

  # --- 7. historian restart: the totals survive -----------------------------------------------
  step "restart the historian; the totals survive"
  "${compose[@]}" restart historian >"$work/restart.log" 2>&1 || {
    cat "$work/restart.log" >&2
    fail "restart" "compose restart historian failed"
  }
  wait_healthy 120 historian
  # Ingest sends a bucket again only when it changed, and nothing changed: the totals the
  # restarted historian answers come from its SQLite file on the volume.
  wait_shift_totals "after the historian restart" "$since" "$base_url" 30
  echo "historian after its restart: $(docker exec "$(container_of historian)" curl -fsS --max-time 5 http://127.0.0.1:9102/metrics \
    | grep -E '^historian_messages_received_total ' || echo 'no metrics')"

  # --- 8. ingest restart: the window survives -----------------------------------------------
  step "restart ingest; the window survives"
  "${compose[@]}" restart ingest >"$work/restart.log" 2>&1 || {
    cat "$work/restart.log" >&2
    fail "restart" "compose restart ingest failed"
  }
  wait_healthy 120 ingest
  # A second batch on the same keys: had ingest lost its window, the aggregates would hold
  # only this batch and differ from the sum of both. The shift totals must add up both
  # batches as well, across the restarts of both services.
  send_batch 2 "$work/batch2.json"
  merge_expected "$work/batch1.json" "$work/batch2.json"
  wait_aggregates "after the ingest restart, both batches"
  wait_shift_totals "after the ingest restart, both batches" "$since"

  # --- 9. broker log ----------------------------------------------------------------------
  step "broker log"
  # Read after the broker has stopped: Mosquitto's log to a non-terminal stdout is block-
  # buffered, so a running broker's `logs` can miss its last lines.
  "${compose[@]}" stop mosquitto >"$work/stop.log" 2>&1 || {
    cat "$work/stop.log" >&2
    fail "broker log" "compose stop mosquitto failed"
  }
  "${compose[@]}" logs --no-color mosquitto >"$work/mosquitto.log" 2>&1
  # The healthcheck runs inside the broker's container, so its connections come from 127.0.0.1;
  # the services connect over the compose network.
  if grep -F '127.0.0.1' "$work/mosquitto.log" | head -5 | grep .; then
    fail "broker log" "the broker logs the healthcheck's connections (above)"
  fi
  if grep -iE 'deprecated|recommended to replace|warning' "$work/mosquitto.log" | head -5 | grep .; then
    fail "broker log" "the broker warns about its configuration (above)"
  fi
  grep -q 'mosquitto version .* terminating' "$work/mosquitto.log" \
    || fail "broker log" "the broker's log is incomplete (no 'terminating' line): nothing to check"
  echo "broker log: $(wc -l <"$work/mosquitto.log") lines, none from the healthcheck, no warnings"
}

# ===== The cluster stack: docker-compose.cluster.yml =========================================
# health_matches URL: true when URL/api/health is 200, connected, with all 3 shards online.
health_matches() {
  curl -fsS --max-time 5 "$1/api/health" >"$work/health.json" 2>&1 || return 1
  python3 - "$work/health.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
ok = h.get("status") == "ok" and h.get("mqtt") == "connected" \
    and h.get("ingest") == {"online": True, "shardsOnline": 3, "shardCount": 3}
sys.exit(0 if ok else 1)
PY
}

# check_shard_keys: each shard tracks exactly the keys of its own machines, machine m on
# shard fnv1a32(m) mod 3, and no shard saw another shard's machine (the broker partitions).
check_shard_keys() {
  local k id
  for k in 0 1 2; do
    id=$(container_of "ingest-$k")
    docker exec "$id" curl -fsS --max-time 5 http://127.0.0.1:9100/metrics >"$work/metrics-$k.txt" \
      || fail "shards" "could not read ingest-$k's /metrics"
  done
  python3 - "$work/expected.json" "$work"/metrics-{0,1,2}.txt <<'PY' || fail "shards" "a shard holds keys that are not its own (above)"
import json, re, sys

def fnv1a32(text):
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h

def metric(text, name):
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None

want = [0, 0, 0]
for e in json.load(open(sys.argv[1])):
    want[fnv1a32(e["maschinenId"]) % 3] += 1
problems = []
for k, path in enumerate(sys.argv[2:]):
    text = open(path).read()
    keys, other = metric(text, "ingest_keys"), metric(text, "ingest_readings_other_shard_total")
    qos = metric(text, "ingest_subscription_qos")
    print(f"ingest-{k}: {keys:.0f} keys (expected {want[k]}), granted QoS {qos:.0f}")
    if keys != want[k]:
        problems.append(f"ingest-{k} tracks {keys} keys, its machines have {want[k]}")
    if other:
        problems.append(f"ingest-{k} dropped {other:.0f} readings of other shards: the broker did not partition")
    if not want[k]:
        problems.append(f"no machine of the batch falls on shard {k}: choose other machines")
if problems:
    print("\n".join(problems), file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

# check_postgres_totals: the database itself holds exactly what was sent, per key, in its
# minute buckets and again in their hourly rollups.
check_postgres_totals() {
  docker exec "$(container_of postgres)" psql -U scrap_pulse -d scrap_pulse -v ON_ERROR_STOP=1 -AtF '|' -c "
      SELECT 'minute_buckets', machine, scrap_index, SUM(sum), SUM(count) FROM minute_buckets GROUP BY machine, scrap_index
      UNION ALL
      SELECT 'hour_buckets', machine, scrap_index, SUM(sum), SUM(count) FROM hour_buckets GROUP BY machine, scrap_index" \
    >"$work/postgres.txt" 2>&1 || {
    cat "$work/postgres.txt" >&2
    fail "postgres totals" "could not read the buckets from PostgreSQL (above)"
  }
  python3 - "$work/postgres.txt" "$work/expected.json" <<'PY' || fail "postgres totals" "PostgreSQL's totals differ from what the simulator sent (above)"
import json, sys
want = {(e["maschinenId"], e["scrapIndex"]): e for e in json.load(open(sys.argv[2]))}
got = {"minute_buckets": {}, "hour_buckets": {}}
for line in open(sys.argv[1]).read().split("\n"):
    if line:
        table, machine, index, total, count = line.split("|")
        got[table][(machine, int(index))] = (float(total), int(count))
problems = []
for table, rows in got.items():
    problems += [f"{table}: missing key {k}" for k in sorted(want.keys() - rows.keys())]
    problems += [f"{table}: unexpected key {k}" for k in sorted(rows.keys() - want.keys())]
    for k in sorted(want.keys() & rows.keys()):
        (total, count), w = rows[k], want[k]
        if count != w["count"] or abs(total - w["sum"]) > 1e-9 * max(1.0, abs(w["sum"])):
            problems.append(f"{table} {k}: count {count} sum {total}, sent count {w['count']} sum {w['sum']}")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"PostgreSQL: {len(want)} keys, minute buckets and hourly rollups exactly as sent")
PY
}

# check_historians_stored SERVICE...: each historian received and stored buckets (each writes
# every bucket; the store's revision check makes the second write a no-op). Store errors are
# shown, not failed on: the historians retry a failed write, and the totals above are exact.
check_historians_stored() {
  local s
  for s in "$@"; do
    docker exec "$(container_of "$s")" curl -fsS --max-time 5 http://127.0.0.1:9102/metrics >"$work/metrics-$s.txt" \
      || fail "historians" "could not read $s's /metrics"
    python3 - "$s" "$work/metrics-$s.txt" <<'PY' || fail "historians" "$s stored no bucket (above)"
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
def metric(m):
    found = re.search(rf"^historian_{m}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0
received, stored, written, errors = (metric(m) for m in ("messages_received_total", "messages_stored_total", "minutes_written_total", "store_errors_total"))
print(f"{name}: {received:.0f} messages received, {stored:.0f} stored, {written:.0f} minute rows changed, {errors:.0f} store errors")
sys.exit(0 if received > 0 and stored > 0 else 1)
PY
    # A historian that stopped at start (a failed schema migration, say) was restarted by
    # the engine: shown with its first lines of complaint.
    echo "$s: restarted $(docker inspect -f '{{ .RestartCount }}' "$(container_of "$s")") times by the engine"
    if "${compose[@]}" logs --no-color "$s" 2>&1 | grep -E ' (WARN|ERROR) |^[^|]*\| *historian: ' | head -5 | grep .; then
      echo "$s logged the warnings or errors above (shown, not failed on)"
    fi
  done
}

cluster_stack() {
  local cluster_project=$project-cluster nodes=(nats-1 nats-2 nats-3)
  local gateway_1_url gateway_2_url url have_images=1 image since
  # --- 10. up -----------------------------------------------------------------------------
  NATS_1_MQTT_HOST_PORT=$(free_port)
  NATS_2_MQTT_HOST_PORT=$(free_port)
  NATS_3_MQTT_HOST_PORT=$(free_port)
  NATS_1_MONITOR_HOST_PORT=$(free_port)
  NATS_2_MONITOR_HOST_PORT=$(free_port)
  NATS_3_MONITOR_HOST_PORT=$(free_port)
  DASHBOARD_1_HOST_PORT=$(free_port)
  DASHBOARD_2_HOST_PORT=$(free_port)
  export NATS_1_MQTT_HOST_PORT NATS_2_MQTT_HOST_PORT NATS_3_MQTT_HOST_PORT \
    NATS_1_MONITOR_HOST_PORT NATS_2_MONITOR_HOST_PORT NATS_3_MONITOR_HOST_PORT \
    DASHBOARD_1_HOST_PORT DASHBOARD_2_HOST_PORT
  gateway_1_url=http://127.0.0.1:$DASHBOARD_1_HOST_PORT
  gateway_2_url=http://127.0.0.1:$DASHBOARD_2_HOST_PORT
  compose=("${compose_cmd[@]}" -p "$cluster_project" -f docker-compose.cluster.yml -f deploy/compose.cluster.smoke.yml)
  with_sim=("${compose[@]}" --profile sim)
  logged_services=("${nodes[@]}" mqtt-streams postgres ingest-0 ingest-1 ingest-2 historian-1 historian-2 gateway-1 gateway-2)

  for image in scrap-pulse/ingest:latest scrap-pulse/gateway:latest scrap-pulse/historian:latest \
    scrap-pulse/simulator:latest; do
    docker image inspect "$image" >/dev/null 2>&1 || have_images=
  done
  if [[ -z "$have_images" ]]; then
    # Only when the cluster runs alone: the default stack's run has just built them.
    step "cluster: build the images"
    "${with_sim[@]}" build "${build_flags[@]}" ingest-0 historian-1 gateway-1 simulator >"$work/build.log" 2>&1 || {
      tail -40 "$work/build.log" >&2
      fail "cluster build" "the image build failed (last lines above)"
    }
  fi

  step "cluster: up (3 NATS nodes, PostgreSQL, 3 ingest shards, 2 historians, 2 gateways)"
  "${compose[@]}" up -d >"$work/up.log" 2>&1 || {
    cat "$work/up.log" >&2
    fail "cluster up" "compose up of the cluster stack failed"
  }
  if grep -iE '^(Building|Step [0-9])' "$work/up.log" | head -3 | grep .; then
    fail "cluster up" "up rebuilt an image (above): the cluster stack must run the images just built"
  fi
  wait_healthy 240 "${nodes[@]}" postgres ingest-0 ingest-1 ingest-2 historian-1 historian-2 gateway-1 gateway-2
  echo "NATS: $(docker exec "$(container_of nats-1)" nats-server --version)"
  echo "PostgreSQL: $(docker exec "$(container_of postgres)" postgres --version)"

  # --- 11. readings through two nodes -> both gateways --------------------------------------
  step "cluster: simulator through nats-2 and nats-3 -> both gateways"
  # M1..M12 fall on all three shards (check_shard_keys says so when that changes).
  since=$(now_utc)
  send_batch 11 "$work/cluster1.json" --mqtt-host nats-2 --machines 12
  send_batch 12 "$work/cluster2.json" --mqtt-host nats-3 --machines 12
  merge_expected "$work/cluster1.json" "$work/cluster2.json"
  wait_aggregates "cluster, gateway-1" "$gateway_1_url"
  wait_aggregates "cluster, gateway-2" "$gateway_2_url"

  for url in "$gateway_1_url" "$gateway_2_url"; do
    local deadline=$((SECONDS + 60))
    until health_matches "$url"; do
      if ((SECONDS >= deadline)); then
        # The known cause: a node acknowledged a shard's retained status but failed to store it.
        "${compose[@]}" logs --no-color "${nodes[@]}" 2>&1 | grep -F 'unable to store retained message' | head -5 >&2 || true
        fail "cluster health" "$url/api/health is not ok with 3/3 shards: $(cat "$work/health.json")"
      fi
      sleep 0.5 # poll interval of a condition wait
    done
    echo "$url/api/health: $(cat "$work/health.json")"
  done
  check_shard_keys

  # --- 12. shift totals: both historians, one database -----------------------------------
  step "cluster: shift totals through both gateways and in PostgreSQL"
  wait_shift_totals "cluster, gateway-1 (historian-1)" "$since" "$gateway_1_url"
  wait_shift_totals "cluster, gateway-2 (historian-2)" "$since" "$gateway_2_url"
  check_postgres_totals
  check_historians_stored historian-1 historian-2
}

if [[ "$stacks" == *" default "* ]]; then
  default_stack
fi
if [[ "$stacks" == *" cluster "* ]]; then
  if [[ "$stacks" == *" default "* ]]; then
    # One stack at a time on this machine: less memory and CPU, and clear logs on failure.
    "${with_sim[@]}" down -v --remove-orphans >"$work/down.log" 2>&1 || {
      cat "$work/down.log" >&2
      fail "down" "down -v of the default stack failed"
    }
  fi
  cluster_stack
fi

step "done"
echo "compose-smoke: passed in ${SECONDS}s"
