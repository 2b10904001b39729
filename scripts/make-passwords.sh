#!/usr/bin/env bash
#
# Creates the Mosquitto password file for the secured broker example
# (mosquitto/config/secured/) from passwords given in the environment, so no
# secret is ever written into the repository or onto a command line (where
# `ps` would show it).
#
# Usage: scripts/make-passwords.sh [OUTPUT]
#   OUTPUT defaults to mosquitto/config/secured/passwd (ignored by git).
#
# Environment:
#   MQTT_INGEST_PASSWORD            required: password of user `ingest`
#   MQTT_GATEWAY_PASSWORD           required: password of user `gateway`
#   MQTT_SIMULATOR_PASSWORD         optional: creates user `simulator` (test/demo only)
#   MQTT_HEALTHCHECK_PASSWORD       optional: creates user `healthcheck` (reads $SYS/broker/uptime)
#   MQTT_MACHINE_CREDENTIALS        optional: machine accounts, one `machineId:password`
#                                   per line; the username is the machine id
#   MQTT_MACHINE_CREDENTIALS_FILE   optional: the same lines read from a file
#   MOSQUITTO_FILE_OWNER            optional: chown the result, e.g. 1883:1883 for the
#                                   eclipse-mosquitto image's user (needs root)
#
# The file is written hashed (mosquitto_passwd -U), mode 0600, and replaced
# atomically. Running the script again rebuilds it from scratch.
set -euo pipefail

die() { echo "make-passwords: $*" >&2; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
output=${1:-"$repo_root/mosquitto/config/secured/passwd"}

command -v mosquitto_passwd >/dev/null \
  || die "mosquitto_passwd not found: install Mosquitto (Debian/Ubuntu: apt-get install mosquitto; macOS: brew install mosquitto)"

[[ -n "${MQTT_INGEST_PASSWORD:-}" ]] || die "MQTT_INGEST_PASSWORD is not set"
[[ -n "${MQTT_GATEWAY_PASSWORD:-}" ]] || die "MQTT_GATEWAY_PASSWORD is not set"

# A username becomes a topic level through the ACL's %u, so it must be a
# legal, wildcard-free level; ':' separates user and password in the file.
check_user() {
  local user=$1
  [[ -n "$user" ]] || die "empty username"
  [[ "$user" != *[:/+#[:space:]]* ]] || die "username '$user' must not contain ':', '/', '+', '#' or whitespace"
}

check_password() {
  local user=$1 password=$2
  [[ -n "$password" ]] || die "empty password for '$user'"
}

declare -A seen=()
entries=()
add() {
  local user=$1 password=$2
  check_user "$user"
  check_password "$user" "$password"
  [[ -z "${seen[$user]:-}" ]] || die "username '$user' given twice"
  seen[$user]=1
  entries+=("$user:$password")
}

add ingest "$MQTT_INGEST_PASSWORD"
add gateway "$MQTT_GATEWAY_PASSWORD"
if [[ -n "${MQTT_SIMULATOR_PASSWORD:-}" ]]; then
  add simulator "$MQTT_SIMULATOR_PASSWORD"
fi
if [[ -n "${MQTT_HEALTHCHECK_PASSWORD:-}" ]]; then
  add healthcheck "$MQTT_HEALTHCHECK_PASSWORD"
fi

add_machine_lines() {
  local line user
  while IFS= read -r line || [[ -n "$line" ]]; do
    line=${line%$'\r'}
    [[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue
    [[ "$line" == *:* ]] || die "machine credential line without ':' (expected machineId:password)"
    user=${line%%:*}
    add "$user" "${line#*:}"
  done
}

if [[ -n "${MQTT_MACHINE_CREDENTIALS:-}" ]]; then
  add_machine_lines <<<"$MQTT_MACHINE_CREDENTIALS"
fi
if [[ -n "${MQTT_MACHINE_CREDENTIALS_FILE:-}" ]]; then
  [[ -r "$MQTT_MACHINE_CREDENTIALS_FILE" ]] || die "cannot read MQTT_MACHINE_CREDENTIALS_FILE=$MQTT_MACHINE_CREDENTIALS_FILE"
  add_machine_lines <"$MQTT_MACHINE_CREDENTIALS_FILE"
fi

out_dir=$(dirname "$output")
mkdir -p "$out_dir"
umask 077
# The plain-text list exists only in a 0600 temp file next to the output,
# hashed in place, then renamed over the output in one step.
tmp=$(mktemp "$out_dir/.passwd.XXXXXX")
trap 'rm -f "$tmp"' EXIT
printf '%s\n' "${entries[@]}" >"$tmp"
mosquitto_passwd -U "$tmp" >/dev/null
if [[ -n "${MOSQUITTO_FILE_OWNER:-}" ]]; then
  chown "$MOSQUITTO_FILE_OWNER" "$tmp"
fi
mv -f "$tmp" "$output"
trap - EXIT
echo "make-passwords: wrote ${#entries[@]} users to $output"
