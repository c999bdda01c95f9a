#!/usr/bin/env bash
# Builds the kernel example's image: the busybox rootfs (rootfs/build.sh) with overlay/ (the
# example's programs and web page) copied over it, packed into OUT/app_container.hcon, encrypted
# with kyber_aes for a fresh key pair OUT/app_container.key{,.pub} made by `hydra keygen`.
#
#   examples/kernel-example/build.sh [OUT]      (OUT defaults to this directory)
#
# Needs root (the tree is root-owned, as in a real image) and hydra built (`make build`);
# HYDRA and HYDRA_ROOTFS override where they are.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$here}")
hydra=${HYDRA:-$repo/target/x86_64-unknown-linux-gnu/debug/hydra}
base=${HYDRA_ROOTFS:-$repo/rootfs/busybox}

fail() { echo "kernel-example: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "run as root (the image's files must be owned by root)"
[[ -x $hydra ]] || fail "no hydra at $hydra (make build)"
[[ -x $base/bin/busybox ]] || fail "no busybox rootfs at $base (make rootfs)"
mkdir -p "$out"

tmp=$(mktemp -d)
trap 'rm -rf --one-file-system "$tmp"' EXIT
cp -a "$base" "$tmp/rootfs"
# --no-preserve=ownership: a clone's files belong to whoever cloned it; in the image they are root's.
cp -r --no-preserve=ownership "$here/overlay/." "$tmp/rootfs/"
chmod 0755 "$tmp/rootfs"/bin/{server,answer,client,web_server,worker} "$tmp/rootfs/www/cgi-bin/index.cgi"

# A fresh key pair each time: keygen refuses to overwrite, so the old pair goes first.
rm -f "$out/app_container.key" "$out/app_container.key.pub"
"$hydra" keygen -o "$out/app_container.key"
"$hydra" image pack "$tmp/rootfs" -o "$out/app_container.hcon" --encrypt kyber_aes \
  --recipient "$out/app_container.key.pub"
