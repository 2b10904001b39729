# shellcheck shell=bash
#
# Helpers shared by scripts/dev.sh and scripts/check-mosquitto-config.sh:
# run the project's Mosquitto config outside Docker, on ports and a data
# directory of our choosing. Source it; it defines functions only.

# Prints a TCP port that nothing listens on right now.
free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! port_open "$port"; then
      echo "$port"
      return
    fi
  done
  echo "free_port: no free port found" >&2
  return 1
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# render_mosquitto_conf SRC DEST MQTT_PORT WS_PORT DATA_DIR [CONF_DIR]
# Copies a project config to DEST with the two listeners moved to the given
# ports, persistence in DATA_DIR and, when CONF_DIR is given, the container
# path /mosquitto/config/ replaced by CONF_DIR/. Fails when an expected line
# is missing, so a config edit that breaks the rewrite is noticed at once.
render_mosquitto_conf() {
  local src=$1 dest=$2 port=$3 ws_port=$4 data_dir=$5 conf_dir=${6:-}
  local pattern
  for pattern in '^listener 1883$' '^listener 9001$' '^persistence_location /mosquitto/data/$'; do
    if [[ $(grep -c -- "$pattern" "$src") -ne 1 ]]; then
      echo "render_mosquitto_conf: $src must contain exactly one line matching '$pattern'" >&2
      return 1
    fi
  done
  sed -e "s|^listener 1883\$|listener $port|" \
    -e "s|^listener 9001\$|listener $ws_port|" \
    -e "s|^persistence_location /mosquitto/data/\$|persistence_location $data_dir/|" \
    "$src" >"$dest"
  if [[ -n "$conf_dir" ]]; then
    sed -i -e "s|/mosquitto/config/|$conf_dir/|g" "$dest"
  fi
  # Started as root, Mosquitto drops to user `mosquitto`, which cannot write
  # a data directory made by root with mktemp. Stay the user we are.
  if [[ $EUID -eq 0 ]]; then
    printf '\n# Added for a local run as root: keep root instead of dropping to mosquitto.\nuser root\n' >>"$dest"
  fi
}

# wait_broker PORT TIMEOUT_SECONDS
# Waits until the broker accepts TCP connections on PORT. (Not an MQTT
# round trip: under the secured config nobody may read $SYS, and the callers
# make real MQTT requests right after anyway.)
wait_broker() {
  local port=$1 timeout=$2
  local deadline=$((SECONDS + timeout))
  until port_open "$port"; do
    if ((SECONDS >= deadline)); then
      echo "wait_broker: nothing listens on port $port after ${timeout}s" >&2
      return 1
    fi
    sleep 0.1 # poll interval of a condition wait
  done
}

# need_mosquitto: fails with an install hint when the Mosquitto tools are missing.
need_mosquitto() {
  local tool
  for tool in mosquitto mosquitto_pub mosquitto_sub mosquitto_passwd; do
    if ! command -v "$tool" >/dev/null && ! [[ -x "/usr/sbin/$tool" ]]; then
      echo "$tool not found: install Mosquitto 2 (Debian/Ubuntu: apt-get install mosquitto mosquitto-clients; macOS: brew install mosquitto)" >&2
      return 1
    fi
  done
}

# mosquitto_bin: the broker binary (Debian installs it in /usr/sbin, often not on a user's PATH).
mosquitto_bin() {
  if command -v mosquitto >/dev/null; then
    command -v mosquitto
  else
    echo /usr/sbin/mosquitto
  fi
}
