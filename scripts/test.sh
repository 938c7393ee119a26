#!/usr/bin/env bash
# One command: install what the tests need, then check formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Scenario tests start the real rmds-agent binary: build it first.
cargo build --workspace --bins
cargo test --workspace
