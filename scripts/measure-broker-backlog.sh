#!/usr/bin/env bash
#
# Measures what the stack broker config costs when ingest is away and its
# persistent session fills up: broker memory with N queued readings, the size
# of the saved database, shutdown (save) and restart (load) times, and that
# all N are delivered after the restart. The figures quoted in
# mosquitto/config/mosquitto.conf come from this script.
#
# Usage: scripts/measure-broker-backlog.sh [N]     (default 600000: 1 min at 10 000/s)
# Takes about 2 minutes for the default; not part of CI.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/broker.sh
source "$repo_root/scripts/lib/broker.sh"
need_mosquitto

n=${1:-600000}
work=$(mktemp -d "${TMPDIR:-/tmp}/scrap-pulse-backlog.XXXXXX")
broker=
cleanup() {
  [[ -n "$broker" ]] && kill "$broker" 2>/dev/null && wait "$broker" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(free_port)
mkdir -p "$work/data"
render_mosquitto_conf "$repo_root/mosquitto/config/mosquitto.conf" "$work/mosquitto.conf" \
  "$port" "$(free_port)" "$work/data"
start() {
  "$(mosquitto_bin)" -c "$work/mosquitto.conf" >>"$work/mosquitto.log" 2>&1 &
  broker=$!
  wait_broker "$port" 60
}
rss_mb() { echo $(($(ps -o rss= -p "$broker") / 1024)); }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

start
echo "broker idle: $(rss_mb) MB"
# The session ingest holds: persistent, QoS 2, then offline.
mosquitto_sub -h 127.0.0.1 -p "$port" -c -i backlog-ingest -q 2 -t 'machines/+/scrap' -E
payload='{"maschinenId":"M042","scrapeIndex":"3","value":3.25,"zeitstempel":"2026-11-27T00:00:00.123Z"}'
t=$(now)
mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t machines/M042/scrap -m "$payload" --repeat "$n"
echo "queued $n readings of ${#payload} bytes in $(since "$t") s; broker: $(rss_mb) MB"

t=$(now)
kill -TERM "$broker"
wait "$broker" || true
broker=
echo "shutdown with save: $(since "$t") s; database: $(($(stat -c %s "$work/data/mosquitto.db") / 1024 / 1024)) MB"

t=$(now)
start
echo "restart until listening: $(since "$t") s; broker: $(rss_mb) MB"

t=$(now)
got=$(mosquitto_sub -h 127.0.0.1 -p "$port" -c -i backlog-ingest -q 2 -t 'machines/+/scrap' -C "$n" -W 300 | wc -l)
echo "delivered after restart: $got of $n in $(since "$t") s"
[[ "$got" -eq "$n" ]]
