#!/usr/bin/env bash
#
# Local stand-ins for the base images that deploy/Dockerfile and docker-compose.yml
# pull, for machines that reach no image registry (this project's CI and dev machines).
# TEST USE ONLY: users pull the real images and never need this.
#
#   debian:<release>-slim        debootstrap --variant=minbase + docker import, with the
#                                host's extra CA certificates (a TLS proxy's) so that apt,
#                                cargo and npm inside builds trust what the host trusts
#   rust:<ver>-slim-<release>    that base + gcc/libc6-dev + this machine's Rust toolchain
#                                (the one `rustc` on PATH runs; its version must match the
#                                Dockerfile's RUST_VERSION)
#   eclipse-mosquitto:2          that base + Debian's mosquitto and clients, laid out like
#                                the official image (/mosquitto/{config,data,log}), run as
#                                the non-root user mosquitto (uid/gid 1883)
#   nats:<tag>-alpine            that base + Debian's nats-server (2.9, whatever the tag
#                                says) and wget, laid out like the official alpine image:
#                                nats-server on PATH, /etc/nats/nats-server.conf, an
#                                entrypoint that puts `nats-server` before flags, root
#   postgres:15-<release>        that base + Debian's postgresql-15, behaving like the
#                                official image as far as the cluster stack uses it: on an
#                                empty /var/lib/postgresql/data POSTGRES_USER/PASSWORD/DB
#                                create the user (password auth over TCP) and database;
#                                the server runs as postgres (uid/gid 999) and listens on
#                                all addresses; pg_isready on PATH
#
# Tags and versions are read from the Dockerfile's ARG defaults and the compose files.
# Cached: an image under the tag is kept when it is a real one (no stand-in label) or a
# stand-in made from the same recipe (label org.scrap-pulse.standin-recipe, a hash of
# the recipe, its inputs and its base image); otherwise it is made again. Builds use the
# host network, since the engine here runs without a default bridge.
#
# Needs a running Docker engine and, for the Debian base, debootstrap (root).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dockerfile=$repo_root/deploy/Dockerfile
compose_file=$repo_root/docker-compose.yml
cluster_compose_file=$repo_root/docker-compose.cluster.yml
label=org.scrap-pulse.standin-recipe
# The legacy builder takes --network host and needs no buildx plugin.
export DOCKER_BUILDKIT=0

log() { printf '[standin] %s\n' "$*" >&2; }
die() {
  printf '[standin] ERROR: %s\n' "$*" >&2
  exit 1
}

arg_default() { # arg_default NAME: the default of `ARG NAME=...` in the Dockerfile
  sed -nE "s/^ARG $1=(.*)$/\1/p" "$dockerfile" | head -1
}
debian_release=$(arg_default DEBIAN_RELEASE)
rust_version=$(arg_default RUST_VERSION)
[[ -n "$debian_release" && -n "$rust_version" ]] || die "no DEBIAN_RELEASE/RUST_VERSION ARG in $dockerfile"
mosquitto_tag=$(sed -nE 's/^ *image: *(eclipse-mosquitto:[^ ]+).*/\1/p' "$compose_file" | head -1)
[[ -n "$mosquitto_tag" ]] || die "no eclipse-mosquitto image in $compose_file"
nats_tag=$(sed -nE 's/^ *image: *(nats:[^ ]+).*/\1/p' "$cluster_compose_file" | head -1)
[[ -n "$nats_tag" ]] || die "no nats image in $cluster_compose_file"
postgres_tag=$(sed -nE 's/^ *image: *(postgres:[^ ]+).*/\1/p' "$cluster_compose_file" | head -1)
[[ -n "$postgres_tag" ]] || die "no postgres image in $cluster_compose_file"
# The stand-in is the release's own PostgreSQL: 15 on bookworm.
[[ "$postgres_tag" == postgres:15* ]] \
  || die "$postgres_tag: the stand-in can only be Debian $debian_release's PostgreSQL 15; change the recipe with the tag"
debian_tag=debian:$debian_release-slim
rust_tag=rust:$rust_version-slim-$debian_release

work=$(mktemp -d "${TMPDIR:-/var/tmp}/scrap-pulse-standin.XXXXXX")
trap 'rm -rf "$work"' EXIT

hash_of() { sha256sum | cut -c1-16; }

# up_to_date TAG RECIPE_HASH: true when TAG needs no (re)build.
up_to_date() {
  local tag=$1 want=$2 have
  docker image inspect "$tag" >/dev/null 2>&1 || return 1
  have=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null || true)
  if [[ -z "$have" || "$have" == "<no value>" ]]; then
    log "$tag: a real image is present; kept"
    return 0
  fi
  [[ "$have" == "$want" ]] && log "$tag: cached stand-in ($want)"
}

image_id() { docker image inspect -f '{{ .Id }}' "$1"; }

# build_on_base TAG RECIPE_EXTRA DOCKERFILE_TEXT TAR_ARGS...: docker build of a context
# streamed as a tar (the Dockerfile plus the host files TAR_ARGS name, e.g. `-C dir file`).
build_on_base() {
  local tag=$1 extra=$2 text=$3 recipe
  shift 3
  recipe=$( (printf '%s\n%s\n%s\n' "$text" "$extra" "$(image_id "$debian_tag")") | hash_of)
  up_to_date "$tag" "$recipe" && return 0
  log "$tag: building the stand-in"
  mkdir -p "$work/$tag"
  printf '%s\nLABEL %s=%s\n' "$text" "$label" "$recipe" >"$work/$tag/Dockerfile"
  if ! tar -c -f - -C "$work/$tag" Dockerfile "$@" \
    | docker build --network host --force-rm -t "$tag" - >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log" >&2
    die "$tag: the stand-in build failed (last lines above)"
  fi
}

# --- Debian base ---------------------------------------------------------------------
make_debian() {
  local mirror extra_cas=() recipe rootfs f
  mirror=$(sed -nE 's|^URIs: *(http[^ ]*/debian)$|\1|p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  if [[ -d /usr/local/share/ca-certificates ]]; then
    mapfile -t extra_cas < <(find /usr/local/share/ca-certificates -name '*.crt' -type f | sort)
  fi
  recipe=$( (
    echo "minbase $debian_release $mirror v1"
    ((${#extra_cas[@]})) && cat "${extra_cas[@]}"
  ) | hash_of)
  up_to_date "$debian_tag" "$recipe" && return 0
  command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
  log "$debian_tag: debootstrap --variant=minbase $debian_release from $mirror (a few minutes)"
  rootfs=$work/rootfs
  debootstrap --variant=minbase "$debian_release" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || {
      tail -20 "$work/debootstrap.log" >&2
      die "debootstrap failed (log above)"
    }
  # The sources of the official image: the release, its updates and security.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $debian_release $debian_release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $debian_release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # The host's extra CAs: picked up by update-ca-certificates when a build installs
  # ca-certificates, as on the host.
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  for f in "${extra_cas[@]}"; do
    cp "$f" "$rootfs/usr/local/share/ca-certificates/"
  done
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' \
    -c "LABEL $label=$recipe" \
    - "$debian_tag" >/dev/null || die "docker import of the Debian base failed"
  log "$debian_tag: made"
}

# --- Rust -----------------------------------------------------------------------------
make_rust() {
  local sysroot host_version text
  command -v rustc >/dev/null || die "rustc missing: the Rust stand-in copies this machine's toolchain (install rustup)"
  host_version=$(rustc --version | cut -d' ' -f2)
  [[ "$host_version" == "$rust_version" || "$host_version" == "$rust_version".* ]] \
    || die "this machine's rustc is $host_version, deploy/Dockerfile wants RUST_VERSION=$rust_version: rustup default $rust_version"
  sysroot=$(rustc --print sysroot)
  text="FROM $debian_tag
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY bin /usr/local/rust/bin
COPY lib /usr/local/rust/lib
COPY libexec /usr/local/rust/libexec
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$host_version
RUN mkdir -p /usr/local/cargo/bin && chmod -R a+w /usr/local/cargo && cargo --version && rustc --version"
  build_on_base "$rust_tag" "$(rustc -vV)" "$text" -C "$sysroot" bin lib libexec
}

# --- Mosquitto --------------------------------------------------------------------------
make_mosquitto() {
  local text
  text="FROM $debian_tag
RUN apt-get update \\
    && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \\
    && rm -rf /var/lib/apt/lists/* \\
    && groupmod --gid 1883 mosquitto \\
    && usermod --uid 1883 --gid 1883 mosquitto \\
    && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \\
    && echo '# stand-in: the defaults, as in the official image' >/mosquitto/config/mosquitto.conf \\
    && chown -R 1883:1883 /mosquitto
VOLUME [\"/mosquitto/data\", \"/mosquitto/log\"]
USER 1883:1883
EXPOSE 1883
CMD [\"/usr/sbin/mosquitto\", \"-c\", \"/mosquitto/config/mosquitto.conf\"]"
  build_on_base "$mosquitto_tag" "" "$text"
}

# --- NATS ---------------------------------------------------------------------------------
make_nats() {
  local text
  # The official alpine image's conventions, which docker-compose.cluster.yml relies on:
  # ENTRYPOINT docker-entrypoint.sh runs `nats-server ARGS` when the first argument is a
  # flag (the compose file passes `--config ...`), anything else as given; the default
  # config is /etc/nats/nats-server.conf; it runs as root; wget serves the healthcheck.
  text="FROM $debian_tag
RUN apt-get update \\
    && apt-get install -y --no-install-recommends nats-server wget \\
    && rm -rf /var/lib/apt/lists/* \\
    && ln -s /usr/sbin/nats-server /usr/local/bin/nats-server \\
    && mkdir -p /etc/nats \\
    && printf '%s\\n' '# stand-in default: client port and monitoring, as in the official image' \\
        'port: 4222' 'http_port: 8222' >/etc/nats/nats-server.conf \\
    && printf '%s\\n' '#!/bin/sh' 'set -e' \\
        '# A first argument that is a flag (or none) means: run nats-server with these flags.' \\
        'case \"\${1:--}\" in -*) set -- nats-server \"\$@\" ;; esac' \\
        'exec \"\$@\"' >/usr/local/bin/docker-entrypoint.sh \\
    && chmod 755 /usr/local/bin/docker-entrypoint.sh \\
    && nats-server --version
EXPOSE 4222 6222 8222
ENTRYPOINT [\"docker-entrypoint.sh\"]
CMD [\"nats-server\", \"--config\", \"/etc/nats/nats-server.conf\"]"
  build_on_base "$nats_tag" "" "$text"
}

# --- PostgreSQL ---------------------------------------------------------------------------
make_postgres() {
  local text entrypoint
  # The official image's conventions that docker-compose.cluster.yml relies on: the entry
  # point starts as root, makes PGDATA the postgres user's and runs itself again as that
  # user; an empty PGDATA is initialised from POSTGRES_USER (default postgres),
  # POSTGRES_PASSWORD (required) and POSTGRES_DB (default the user's name), with trust on
  # the Unix socket and scram-sha-256 over TCP, the database created by a server listening
  # on the socket alone; then `postgres` runs on every address. Debian's postgresql-common
  # would make a cluster of its own at install; it is told not to.
  entrypoint=$(
    cat <<'SH'
#!/bin/sh
# Stand-in for the official postgres image's entry point (test use only).
set -eu
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${POSTGRES_PASSWORD:-}" ] || { echo "POSTGRES_PASSWORD must be set" >&2; exit 1; }
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA"
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
      -c "CREATE DATABASE \"$db\""
    pg_ctl -D "$PGDATA" -m fast -w stop
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
SH
  )
  text="FROM $debian_tag
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data
RUN groupadd --system --gid 999 postgres \\
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \\
    && mkdir -p /var/lib/postgresql \\
    && chown postgres:postgres /var/lib/postgresql \\
    && apt-get update \\
    && apt-get install -y --no-install-recommends postgresql-common \\
    && sed -ri 's/^#? *(create_main_cluster) .*$/\\1 = false/' /etc/postgresql-common/createcluster.conf \\
    && grep -qx 'create_main_cluster = false' /etc/postgresql-common/createcluster.conf \\
    && apt-get install -y --no-install-recommends postgresql-15 \\
    && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /var/run/postgresql \"\$PGDATA\" \\
    && chown postgres:postgres /var/run/postgresql \"\$PGDATA\" \\
    && chmod 3777 /var/run/postgresql \\
    && pg_isready --version
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME [\"/var/lib/postgresql/data\"]
EXPOSE 5432
# The official image's choice: SIGINT is PostgreSQL's fast shutdown.
STOPSIGNAL SIGINT
ENTRYPOINT [\"docker-entrypoint.sh\"]
CMD [\"postgres\"]"
  mkdir -p "$work/postgres-context"
  printf '%s\n' "$entrypoint" >"$work/postgres-context/docker-entrypoint.sh"
  chmod 755 "$work/postgres-context/docker-entrypoint.sh"
  build_on_base "$postgres_tag" "$entrypoint" "$text" -C "$work/postgres-context" docker-entrypoint.sh
}

docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"
make_debian
make_rust
make_mosquitto
make_nats
make_postgres
log "ready: $debian_tag $rust_tag $mosquitto_tag $nats_tag $postgres_tag"
