#!/usr/bin/env bash
#
# Proves the project's Mosquitto configs do what they promise, with the real
# broker, on free ports, in a temp directory (never the broker on 1883):
#
#   mosquitto/config/mosquitto.conf (the compose stack's broker)
#     - starts; MQTT and WebSocket listeners answer
#     - a payload above ingest's 64 KiB limit still reaches a subscriber (so
#       ingest can reject it as too_large); one above 1 MiB does not
#     - an offline persistent QoS 1 session gets more than the default 1000
#       queued messages (max_queued_messages is raised)
#     - queued messages and retained messages survive a broker restart
#   mosquitto/config/secured/ (passwords + ACL)
#     - anonymous clients and wrong passwords are refused
#     - a machine publishes its own topic; it cannot publish another
#       machine's topic nor aggregates/#; gateway cannot publish aggregates;
#       ingest publishes aggregates and status, gateway reads them
#
# Denials are shown without timed waits: after a denied QoS 1 publish is
# acknowledged, an allowed "sentinel" message goes to the same subscriber;
# Mosquitto handles packets in order on one thread, so once the sentinel has
# arrived a message that was let through would have arrived before it.
#
# Exits non-zero when a check fails; ends with "N passed, N failed".
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/broker.sh
source "$repo_root/scripts/lib/broker.sh"
# shellcheck source=scripts/lib/checks.sh
source "$repo_root/scripts/lib/checks.sh"
need_mosquitto

work=$(mktemp -d "${TMPDIR:-/tmp}/scrap-pulse-mqtt-check.XXXXXX")
pids=()
summary_printed=
cleanup() {
  local pid
  if [[ -z "$summary_printed" ]]; then
    echo "FAIL - aborted before the end (see the message above)"
    echo "$passed passed, $((failed + 1)) failed"
  fi
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# wait_for FILE FIXED_STRING TIMEOUT: true once FILE has a line containing the string.
wait_for() {
  local file=$1 needle=$2 timeout=$3
  local deadline=$((SECONDS + timeout))
  until grep -qF -- "$needle" "$file" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05 # poll interval of a condition wait
  done
}

# start_broker NAME CONF PORT: runs mosquitto in the background, log in $work/NAME.log.
broker_pid=
start_broker() {
  local name=$1 conf=$2 port=$3
  "$(mosquitto_bin)" -c "$conf" >>"$work/$name.log" 2>&1 &
  broker_pid=$!
  pids+=("$broker_pid")
  if ! wait_broker "$port" 10; then
    echo "--- $name broker log:" >&2
    cat "$work/$name.log" >&2
    return 1
  fi
}

stop_broker() {
  kill -TERM "$broker_pid"
  wait "$broker_pid" 2>/dev/null || true
}

# start_sub FILE mosquitto_sub-options...: a background subscriber writing
# "topic payload" lines to FILE.
start_sub() {
  local file=$1
  shift
  : >"$file"
  mosquitto_sub -h 127.0.0.1 "$@" -v >"$file" 2>&1 &
  pids+=("$!")
}

# sub_ready FILE TOPIC mosquitto_pub-options...: publishes probes on TOPIC
# until the subscriber writing FILE has a line for TOPIC, i.e. its
# subscription is active.
sub_ready() {
  local file=$1 topic=$2
  shift 2
  local deadline=$((SECONDS + 10)) n=0
  until grep -qF "$topic " "$file" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "subscriber never became ready; its output:" >&2
      cat "$file" >&2
      return 1
    fi
    n=$((n + 1))
    mosquitto_pub -h 127.0.0.1 "$@" -q 1 -t "$topic" -m "probe-$n" || true
    sleep 0.1 # poll interval of a condition wait
  done
}

# denied SUBFILE "PUBOPTS" TOPIC SENTINEL_TOPIC "SENTINEL_PUBOPTS": true when a
# QoS 1 publish with PUBOPTS on TOPIC never reaches the subscriber.
denied() {
  local file=$1 pub_opts=$2 topic=$3 sentinel_topic=$4 sentinel_opts=$5
  local marker="denied-$RANDOM$RANDOM" sentinel="sentinel-$RANDOM$RANDOM"
  # shellcheck disable=SC2086 # option strings are split on purpose
  mosquitto_pub -h 127.0.0.1 $pub_opts -q 1 -t "$topic" -m "$marker" 2>/dev/null || true
  # shellcheck disable=SC2086
  mosquitto_pub -h 127.0.0.1 $sentinel_opts -q 1 -t "$sentinel_topic" -m "$sentinel"
  if ! wait_for "$file" "$sentinel" 10; then
    echo "sentinel never arrived on $sentinel_topic" >&2
    return 1
  fi
  ! grep -qF -- "$marker" "$file"
}

# received SUBFILE "PUBOPTS" TOPIC: true when a QoS 1 publish arrives.
received() {
  local file=$1 pub_opts=$2 topic=$3
  local marker="allowed-$RANDOM$RANDOM"
  # shellcheck disable=SC2086
  mosquitto_pub -h 127.0.0.1 $pub_opts -q 1 -t "$topic" -m "$marker" && wait_for "$file" "$topic $marker" 10
}

count_lines() { wc -l <"$1" | tr -d ' '; }

# ---------------------------------------------------------------------------
echo "# stack config: mosquitto/config/mosquitto.conf"
port=$(free_port)
ws_port=$(free_port)
mkdir -p "$work/stack-data"
render_mosquitto_conf "$repo_root/mosquitto/config/mosquitto.conf" "$work/stack.conf" \
  "$port" "$ws_port" "$work/stack-data"
P=(-h 127.0.0.1 -p "$port")

if start_broker stack "$work/stack.conf" "$port"; then
  pass "stack broker starts (MQTT on $port)"
else
  fail "stack broker starts"
  exit 1
fi
check "no error in the stack broker's start-up log" bash -c "! grep -i 'error' '$work/stack.log'"
check "no deprecation or replacement note about the stack config in the start-up log" bash -c \
  "! grep -iE 'deprecated|recommended to replace' '$work/stack.log'"
# The compose healthcheck connects every 5 s with mosquitto_sub (as here): it must add no
# line to the broker's log. The probe's own client id shows up if any line about it does.
lines_before=$(count_lines "$work/stack.log")
mosquitto_sub "${P[@]}" -i healthcheck-probe -t "\$SYS/broker/uptime" -C 1 -W 5 >/dev/null
mosquitto_pub "${P[@]}" -i log-sentinel -q 1 -t log/sentinel -m x
check "a healthcheck-style connection adds no line to the broker's log" bash -c \
  "[[ \$(wc -l <'$work/stack.log') -eq $lines_before ]] && ! grep -qF healthcheck-probe '$work/stack.log'"
check "WebSocket listener completes an MQTT-over-WebSocket handshake" bash -c \
  "curl -s -i -N --max-time 5 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
     -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: c2NyYXAtcHVsc2UtY2hlY2s=' \
     -H 'Sec-WebSocket-Protocol: mqtt' http://127.0.0.1:$ws_port/mqtt 2>/dev/null | head -1 | grep -q ' 101 '"

# Payload sizes: one subscriber printing topic and payload length.
: >"$work/size.out"
mosquitto_sub "${P[@]}" -q 1 -t 'size/#' -F '%t %l' >"$work/size.out" 2>&1 &
pids+=("$!")
sub_ready "$work/size.out" size/probe -p "$port"
head -c 204800 /dev/zero | tr '\0' 'x' >"$work/200k"
head -c 2097152 /dev/zero | tr '\0' 'x' >"$work/2m"
mosquitto_pub "${P[@]}" -q 1 -t size/200k -f "$work/200k"
check "a 200 KiB payload (above ingest's 64 KiB) reaches subscribers" wait_for "$work/size.out" "size/200k 204800" 10
mosquitto_pub "${P[@]}" -q 1 -t size/2m -f "$work/2m" 2>/dev/null || true
mosquitto_pub "${P[@]}" -q 1 -t size/sentinel -m sentinel
wait_for "$work/size.out" "size/sentinel" 10 || true
check "a 2 MiB payload (above max_packet_size) is dropped by the broker" \
  bash -c "grep -qF 'size/sentinel' '$work/size.out' && ! grep -qF 'size/2m' '$work/size.out'"

# Offline persistent session: more than Mosquitto's default queue of 1000.
queued=5000
mosquitto_sub "${P[@]}" -c -i check-queue -q 1 -t 'queue/+/scrap' -E
# --repeat publishes each copy after the previous one is acknowledged; `-l`
# (one message per stdin line) may drop unacknowledged ones at end of input.
mosquitto_pub "${P[@]}" -q 1 -t queue/Q1/scrap -m '{"scrapIndex":1,"value":2}' --repeat "$queued"
mosquitto_sub "${P[@]}" -c -i check-queue -q 1 -t 'queue/+/scrap' -C "$queued" -W 30 >"$work/queue.out" 2>&1 || true
got=$(count_lines "$work/queue.out")
check "an offline persistent session receives all $queued queued QoS 1 messages (got $got)" test "$got" -eq "$queued"

# Broker restart: the queue of an offline session and retained messages survive.
restart_queued=2000
mosquitto_sub "${P[@]}" -c -i check-restart -q 1 -t 'restart/+/scrap' -E
mosquitto_pub "${P[@]}" -q 1 -t restart/R1/scrap -m '{"scrapIndex":1,"value":2}' --repeat "$restart_queued"
mosquitto_pub "${P[@]}" -q 1 -r -t aggregates/R1/1 -m retained-before-restart
stop_broker
check "the broker saved its database on shutdown" test -s "$work/stack-data/mosquitto.db"
if start_broker stack "$work/stack.conf" "$port"; then
  pass "stack broker restarts on the same data directory"
  mosquitto_sub "${P[@]}" -c -i check-restart -q 1 -t 'restart/+/scrap' -C "$restart_queued" -W 30 >"$work/restart.out" 2>&1 || true
  got=$(count_lines "$work/restart.out")
  check "$restart_queued queued messages survive a broker restart (got $got)" test "$got" -eq "$restart_queued"
  check "a retained aggregate survives a broker restart" bash -c \
    "mosquitto_sub -h 127.0.0.1 -p $port -t aggregates/R1/1 -C 1 -W 5 | grep -qx retained-before-restart"
else
  fail "stack broker restarts on the same data directory"
fi
stop_broker

# ---------------------------------------------------------------------------
echo "# secured config: mosquitto/config/secured/"
sport=$(free_port)
sws_port=$(free_port)
mkdir -p "$work/secured-conf/secured" "$work/secured-data"
cp "$repo_root/mosquitto/config/secured/acl" "$work/secured-conf/secured/acl"
# Throwaway passwords made here, through the same script users run.
pw() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ingest_pw=$(pw) gateway_pw=$(pw) sim_pw=$(pw) hc_pw=$(pw) a1_pw=$(pw) b1_pw=$(pw)
MQTT_INGEST_PASSWORD=$ingest_pw MQTT_GATEWAY_PASSWORD=$gateway_pw MQTT_SIMULATOR_PASSWORD=$sim_pw \
  MQTT_HEALTHCHECK_PASSWORD=$hc_pw \
  MQTT_MACHINE_CREDENTIALS=$'A1:'"$a1_pw"$'\nB1:'"$b1_pw" \
  "$repo_root/scripts/make-passwords.sh" "$work/secured-conf/secured/passwd" >/dev/null
check "make-passwords.sh writes a hashed password file with mode 600" bash -c \
  "[[ \$(stat -c %a '$work/secured-conf/secured/passwd') == 600 ]] && ! grep -qF '$a1_pw' '$work/secured-conf/secured/passwd' && [[ \$(wc -l <'$work/secured-conf/secured/passwd') -eq 6 ]]"
render_mosquitto_conf "$repo_root/mosquitto/config/secured/mosquitto.conf" "$work/secured.conf" \
  "$sport" "$sws_port" "$work/secured-data" "$work/secured-conf"

if start_broker secured "$work/secured.conf" "$sport"; then
  pass "secured broker starts (MQTT on $sport)"
else
  fail "secured broker starts"
  exit 1
fi
check "no error in the secured broker's start-up log" bash -c "! grep -i 'error' '$work/secured.log'"

S="-p $sport"
INGEST="$S -u ingest -P $ingest_pw"
GATEWAY="$S -u gateway -P $gateway_pw"
SIM="$S -u simulator -P $sim_pw"
A1="$S -u A1 -P $a1_pw"

check "an anonymous client is refused" bash -c "! mosquitto_pub -h 127.0.0.1 $S -t machines/A1/scrap -m x 2>/dev/null"
check "the healthcheck account reads \$SYS/broker/uptime (the secured compose healthcheck)" bash -c \
  "mosquitto_sub -h 127.0.0.1 $S -u healthcheck -P $hc_pw -t '\$SYS/broker/uptime' -C 1 -W 5 | grep -q seconds"
check "a wrong password is refused" bash -c "! mosquitto_pub -h 127.0.0.1 $S -u A1 -P not-$a1_pw -t machines/A1/scrap -m x 2>/dev/null"

# ingest's view of the input; readiness proves A1 -> machines/A1/scrap -> ingest.
# shellcheck disable=SC2086
start_sub "$work/ingest.out" $INGEST -q 1 -t 'machines/+/scrap'
# shellcheck disable=SC2086
if sub_ready "$work/ingest.out" machines/A1/scrap $A1; then
  pass "machine A1 publishes machines/A1/scrap and ingest receives it"
else
  fail "machine A1 publishes machines/A1/scrap and ingest receives it"
fi
check "machine A1 cannot publish machines/B1/scrap" \
  denied "$work/ingest.out" "$A1" machines/B1/scrap machines/A1/scrap "$A1"
check "the simulator account publishes for any machine" \
  received "$work/ingest.out" "$SIM" machines/C9/scrap

# gateway's view of the output; readiness proves ingest -> aggregates -> gateway.
# shellcheck disable=SC2086
start_sub "$work/gateway.out" $GATEWAY -q 1 -t 'aggregates/#' -t 'status/#'
# shellcheck disable=SC2086
if sub_ready "$work/gateway.out" aggregates/A1/1 $INGEST; then
  pass "ingest publishes aggregates/A1/1 and gateway receives it"
else
  fail "ingest publishes aggregates/A1/1 and gateway receives it"
fi
check "ingest publishes status/ingest and gateway receives it" \
  received "$work/gateway.out" "$INGEST" status/ingest
check "machine A1 cannot publish aggregates/A1/1" \
  denied "$work/gateway.out" "$A1" aggregates/A1/1 aggregates/A1/1 "$INGEST"
check "machine A1 cannot publish status/ingest" \
  denied "$work/gateway.out" "$A1" status/ingest aggregates/A1/1 "$INGEST"
check "gateway cannot publish aggregates/A1/1" \
  denied "$work/gateway.out" "$GATEWAY" aggregates/A1/1 aggregates/A1/1 "$INGEST"
check "ingest cannot publish machines/A1/scrap (no forged readings)" \
  denied "$work/ingest.out" "$INGEST" machines/A1/scrap machines/A1/scrap "$A1"
stop_broker

summary_printed=1
summary
