#!/usr/bin/env bash
# One command: install nats-server if needed, build, and run the local multi-node demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build -q -p rmds-agent -p rmds-scenarios --bins
exec ./target/debug/rmds-demo "$@"
