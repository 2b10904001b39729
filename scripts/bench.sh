#!/usr/bin/env bash
#
# The performance figures of docs/performance.md: builds the release binaries, runs the
# criterion benches of aggregator-core, then every loadtest measurement, and prints one
# markdown table (also written to target/bench/table.md, or under $CARGO_TARGET_DIR).
#
# Usage: scripts/bench.sh [--quick]          (or `just bench [--quick]`)
#   --quick   small loads (seconds, not minutes), to check the harness, not for figures
#
# Needs mosquitto and mosquitto_sub on PATH (apt-get install mosquitto mosquitto-clients), and
# nats-server for the cluster and NATS latency rows (apt-get install nats-server).
# Every measurement starts its own Mosquitto (the cluster row also, the NATS latency rows
# instead, a three-node NATS cluster from deploy/nats) on free 127.0.0.1 ports and the
# release ingest/gateway binaries; all load stays on this machine and every run stops by itself.
# The Mosquitto is a stock one (loadtest's default `--broker stock`): plants connect us to their
# own broker, which keeps Mosquitto's defaults. Some latency rows and compare run again on the
# project's config (`--broker project`, set_tcp_nodelay true), each right after its stock row;
# the latency rows at 50 and 100 msg/s also on the three-node NATS cluster (`--broker nats`).
# The flood rows (throughput, cluster, memory of readings and keys) publish as fast as the
# broker acknowledges and run on the project's config only: a stock Mosquitto queues at most
# 1 000 QoS 1 messages per subscriber and drops the rest, so they would measure its queue
# limit (a bare mosquitto_sub loses messages there too), not ingest.
# The fan-out run opens 10 000 WebSocket connections: the hard RLIMIT_NOFILE must allow
# about 10 300 descriptors per process (`ulimit -Hn`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; fi

target_dir="${CARGO_TARGET_DIR:-target}"
out="$target_dir/bench"
mkdir -p "$out"
cargo build --release --locked -p loadtest -p ingest -p gateway -p historian

echo "== criterion: cargo bench -p aggregator-core (reports under target/criterion)" >&2
if ((quick)); then
    cargo bench --locked -p aggregator-core --bench core -- --quick >"$out/criterion.txt" 2>&1 || { cat "$out/criterion.txt" >&2; exit 1; }
else
    cargo bench --locked -p aggregator-core --bench core >"$out/criterion.txt" 2>&1 || { cat "$out/criterion.txt" >&2; exit 1; }
fi
# One row per criterion benchmark: median time per iteration and median throughput.
criterion_rows=$(awk '
    /^[a-z_]+\/[a-z_]+/ { name = $1 }
    /time:/ && !/%/ { t = $0; sub(/.*time: +\[/, "", t); split(t, a, " "); time = a[3] " " a[4]; want = 1 }
    /thrpt:/ && !/%/ && want {
        u = $0; sub(/.*thrpt: +\[/, "", u); split(u, b, " ")
        printf "| criterion %s | %s per iteration, %s %s | - | - | `cargo bench -p aggregator-core --bench core` | |\n", name, time, b[3], b[4]
        want = 0
    }' "$out/criterion.txt")
echo "$criterion_rows" >&2

lt="$target_dir/release/loadtest"
if ((quick)); then
    runs=(
        "throughput --messages 20000 --broker project"
        "throughput --messages 20000 --broker project --protocol sparkplug"
        "cluster --messages 6000 --broker project"
        "latency --rate 100 --machines 3 --indices 3 --duration-secs 3"
        "latency --rate 100 --machines 3 --indices 3 --duration-secs 3 --broker project"
        "latency --rate 5000 --machines 3 --indices 3 --duration-secs 3"
        "latency --rate 1000 --duration-secs 3 --publish-interval-ms 0"
        "cap --duration-secs 3"
        "compare --duration-secs 5"
        "compare --duration-secs 5 --broker project"
        "memory --scenario readings --readings 200000 --broker project"
        "memory --scenario keys --keys 10000 --broker project"
        "memory --scenario store --readings 600000"
        "memory --scenario clients --keys 10000 --clients 20 --broker project"
        "fanout --clients 500 --duration-secs 3"
        "history-keepup --rate 500 --keys 100 --duration-secs 20"
        "history-keepup --rate 500 --keys 100 --duration-secs 20 --store postgres"
        "history-query --days 2 --machines 10 --queries 5"
        "history-query --days 2 --machines 10 --queries 5 --store postgres"
    )
else
    runs=(
        "throughput --broker project"
        # The same readings as Sparkplug B DDATA by alias, through ingest's Sparkplug input.
        "throughput --broker project --protocol sparkplug"
        # Scale-out: 3 ingest shards on a 3-node NATS cluster, 30 QoS 1 connections, vs a bare
        # subscriber on the cluster; one ingest on one Mosquitto under the same load beside it.
        "cluster --broker project"
        # Latency targets: 9 keys (the original service's), 8 s runs, default settings; at 50,
        # 100 and 5000 msg/s also on the project's broker config, at 50 and 100 msg/s also on
        # the NATS cluster (one ingest, one gateway).
        "latency --rate 50 --machines 3 --indices 3 --duration-secs 8"
        "latency --rate 50 --machines 3 --indices 3 --duration-secs 8 --broker project"
        "latency --rate 50 --machines 3 --indices 3 --duration-secs 8 --broker nats"
        "latency --rate 100 --machines 3 --indices 3 --duration-secs 8"
        "latency --rate 100 --machines 3 --indices 3 --duration-secs 8 --broker project"
        "latency --rate 100 --machines 3 --indices 3 --duration-secs 8 --broker nats"
        "latency --rate 1000 --machines 3 --indices 3 --duration-secs 8"
        "latency --rate 5000 --machines 3 --indices 3 --duration-secs 8"
        "latency --rate 5000 --machines 3 --indices 3 --duration-secs 8 --broker project"
        "latency --rate 1000 --publish-interval-ms 0"
        # The per-key cap: one key changed 1000 times/s, --publish-interval-ms 100.
        "cap"
        "compare"
        "compare --broker project"
        "memory --scenario readings --broker project"
        "memory --scenario keys --broker project"
        "memory --scenario store"
        "memory --scenario clients --broker project"
        "fanout"
        # The historian: 5 000 readings/s over 1 000 keys for 10 min, and the shift totals of
        # 30 days x 500 keys of synthetic history, on each store.
        "history-keepup"
        "history-keepup --store postgres"
        "history-query"
        "history-query --store postgres"
    )
fi

table="$out/table.md"
"$lt" --help >/dev/null
{
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(rustc --version | cut -d' ' -f1-2), $(mosquitto -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//'), $(nats-server --version 2>/dev/null || echo "no nats-server"); $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "| figure | measured | target | verdict | command | load avg 1/5/15 min |"
    echo "|---|---|---|---|---|---|"
} >"$table"
echo "$criterion_rows" >>"$table"
status=0
for run in "${runs[@]}"; do
    echo "== loadtest $run" >&2
    # shellcheck disable=SC2086 # each run is a list of flags
    if row=$("$lt" $run); then
        echo "$row" >>"$table"
        echo "$row" >&2
    else
        echo "| loadtest $run | **failed** (see above) | | | | |" >>"$table"
        status=1
    fi
done
echo
cat "$table"
exit "$status"
