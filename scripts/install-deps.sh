#!/usr/bin/env bash
# Installs what rmds needs at run and test time (Debian packages): nats-server for
# every test, and for `rmds-scenarios chaos` iptables (packet loss and blackholes inside
# the run's own network namespace), iproute2 (`ip`), util-linux (`unshare`),
# faketime (agents with a skewed clock) and prometheus (its `promtool` checks /metrics
# and docs/prometheus-alerts.yml in agent/tests/prometheus.rs), chromium and
# chromium-driver (the browser tests drive a headless Chromium). Each is checked on
# its own; only what is missing is installed.
set -euo pipefail
missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(faketime)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing ${missing[*]}..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
nats-server --version
