#!/usr/bin/env bash
# Installs what rmds needs at run and test time: nats-server (Debian package).
set -euo pipefail
if command -v nats-server >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing nats-server..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
nats-server --version
