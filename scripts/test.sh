#!/usr/bin/env bash
# One command: install what the tests need, then check formatting, lints, every test,
# the whole outage-scenario catalogue on local processes, and the NATS-outage scenario
# on the docker-compose stack (images built locally; skipped only without Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Scenario tests start the real rmds-agent binary: build it first.
cargo build --workspace --bins
cargo test --workspace
echo "== outage scenarios (processes) =="
./target/debug/rmds-scenarios run all --report target/scenarios-processes.md
if docker info >/dev/null 2>&1; then
  echo "== NATS-outage scenario (docker-compose) =="
  ./scripts/build-images.sh
  ./target/debug/rmds-scenarios run nats-outage --backend compose --report target/scenarios-compose.md
else
  echo "== docker-compose scenario skipped: no Docker Engine reachable =="
fi
