#!/usr/bin/env bash
# One command: install what the tests need, then check formatting, lints, every test,
# the whole outage-scenario catalogue and the chaos nemesis on fixed seeds on local
# processes, and the NATS-outage scenario
# on the docker-compose stack (images built locally; skipped only without Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# Incremental caches only help edit-compile loops; in a one-shot run they cost gigabytes.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The SDK's docs: every public item documented, no broken link.
RUSTDOCFLAGS="-D warnings" cargo doc -p rmds --no-deps
# Scenario tests start the real rmds-agent binary: build it first.
cargo build --workspace --bins
cargo test --workspace
echo "== the API document: every answer against its schema, then schemathesis =="
./scripts/schemathesis.sh
target/venv/bin/pip install -q jsonschema requests
target/venv/bin/python scripts/check_schemas.py --spawn
echo "== outage scenarios (processes) =="
./target/debug/rmds-scenarios run all --report target/scenarios-processes.md
echo "== chaos nemesis: fixed seeds, about a minute each (docs/chaos.md) =="
# Network faults run in a private network namespace and need root; without it, skip them.
CHAOS_NETNS=""
if [ "$(id -u)" != 0 ]; then CHAOS_NETNS="--no-netns"; fi
chaos_failed=""
for seed in 1 2 3; do
  ./target/debug/rmds-scenarios chaos --seed "$seed" --minutes 1 $CHAOS_NETNS \
    --report "target/chaos-seed-$seed.md" || chaos_failed="$chaos_failed $seed"
done
if [ -n "$chaos_failed" ]; then
  echo "chaos: seeds$chaos_failed failed (reports in target/chaos-seed-*.md)"
  exit 1
fi
if docker info >/dev/null 2>&1; then
  echo "== NATS-outage scenario (docker-compose) =="
  # The debug binaries are already built: no release compile (time and disk).
  RMDS_IMAGE_PROFILE=debug ./scripts/build-images.sh
  ./target/debug/rmds-scenarios run nats-outage --backend compose --report target/scenarios-compose.md
else
  echo "== docker-compose scenario skipped: no Docker Engine reachable =="
fi
