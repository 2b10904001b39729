# scrap-pulse tasks. `just` lists them; `just --show RECIPE` shows one.
# Install just: `cargo install just --locked`, `pip install rust-just`,
# or your OS package manager (brew/apt/pacman/winget `just`).

set shell := ["bash", "-euo", "pipefail", "-c"]
# Recipe arguments reach the commands as "$@", each one intact (spaces, quotes).
set positional-arguments

# Docker Compose: the `docker compose` plugin when present, else docker-compose v1.
# Override with COMPOSE="..." if yours is elsewhere.
compose := env_var_or_default("COMPOSE", `if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi`)

# List the recipes.
default:
    @just --list

# Build the images and start broker, ingest, historian and gateway in Docker (dashboard on :8000).
up *ARGS:
    {{ compose }} up -d --build "$@"
    @echo "dashboard: http://localhost:${DASHBOARD_HOST_PORT:-8000}/   (logs: {{ compose }} logs -f)"

# Stop the Docker stack (`just down -v` also drops the broker's, ingest's and the historian's data).
down *ARGS:
    {{ compose }} down "$@"

# Both Docker stacks end to end on a real engine: build, up, simulator data, shift totals, dashboard, restarts, `down -v`.
compose-smoke:
    scripts/compose-smoke.sh

# Run the whole stack locally without Docker (Mosquitto from PATH); Ctrl-C stops it.
dev *SIM_ARGS:
    scripts/dev.sh "$@"

# Run the simulator against a running broker (MQTT_BROKER/MQTT_PORT, default localhost:1883).
sim *ARGS:
    cargo run --release -p simulator -- "$@"

# The README's test command: every Rust test, then the dashboard's browser tests.
test:
    scripts/test.sh

# Benchmarks: criterion (aggregator-core) plus the loadtest runs, printed as one markdown
# table (docs/performance.md). `just bench --quick` checks the harness in about a minute.
bench *ARGS:
    scripts/bench.sh "$@"

# Formatting, clippy with warnings as errors, and the deployment files.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    scripts/validate-deploy.sh
    scripts/check-mosquitto-config.sh

# Format the Rust code.
fmt:
    cargo fmt --all
