#!/usr/bin/env bash
# Builds the rmds-agent (with the rmds-chat demo) and nats images from locally produced binaries: each image is
# FROM scratch with the binary and exactly the shared libraries `ldd` lists for it, so
# nothing is pulled. Image names: RMDS_AGENT_IMAGE (rmds-agent:local) and
# RMDS_NATS_IMAGE (rmds-nats:local); point them at official images elsewhere instead.
# RMDS_IMAGE_PROFILE=debug packs the debug binaries the test command has already built
# (no second, release compile: faster, and half the disk); the default is release.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
profile=${RMDS_IMAGE_PROFILE:-release}
case "$profile" in
  release) cargo build --release -p rmds-agent -p rmds-chat ;;
  # The same command as the test command's build: with the workspace's feature set, so
  # it reuses those binaries instead of building the agent's dependencies again.
  debug) cargo build --workspace --bins ;;
  *) echo "RMDS_IMAGE_PROFILE must be release or debug, not '$profile'" >&2; exit 2 ;;
esac
agent_image=${RMDS_AGENT_IMAGE:-rmds-agent:local}
nats_image=${RMDS_NATS_IMAGE:-rmds-nats:local}
out=target/images
rm -rf "$out"
mkdir -p "$out/agent/rootfs" "$out/nats/rootfs"

# install BINARY ROOTFS DEST: the binary and its shared libraries.
with_libs() {
  local bin=$1 root=$2 dest=$3
  install -D -m 0755 "$bin" "$root$dest"
  if command -v strip >/dev/null; then strip "$root$dest"; fi
  ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

with_libs target/$profile/rmds-agent "$out/agent/rootfs" /usr/local/bin/rmds-agent
with_libs target/$profile/rmds-chat "$out/agent/rootfs" /usr/local/bin/rmds-chat
install -D -m 0644 docker/agent.toml "$out/agent/rootfs/etc/rmds/agent.toml"
mkdir -p "$out/agent/data" "$out/agent/rootfs/tmp"
echo "rmds-agent data directory" > "$out/agent/data/README"
chmod 1777 "$out/agent/rootfs/tmp"
printf 'hosts: files dns\n' > "$out/agent/rootfs/etc/nsswitch.conf"
cp docker/agent.Dockerfile "$out/agent/Dockerfile"

with_libs "$(command -v nats-server)" "$out/nats/rootfs" /usr/local/bin/nats-server
with_libs target/$profile/rmds-agent "$out/nats/rootfs" /usr/local/bin/rmds-agent
mkdir -p "$out/nats/rootfs/tmp"
chmod 1777 "$out/nats/rootfs/tmp"
cp docker/nats.Dockerfile "$out/nats/Dockerfile"

docker build -q -t "$agent_image" "$out/agent"
docker build -q -t "$nats_image" "$out/nats"
echo "built $agent_image and $nats_image"
