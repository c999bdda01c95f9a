#!/usr/bin/env bash
# Install the Debian packages a profile needs, and only those that are missing.
# CI runs on a fresh Debian 12 machine where nothing installed by hand survives, so `make test`
# calls this every time: it must be a fast, quiet no-op when everything is already there.
#
#   hack/install-deps.sh test    what `make test` / `make demo` need
#   hack/install-deps.sh bench   the above plus the peers `make bench` compares hydra with
set -euo pipefail

profile=${1:-test}

# Each entry is PACKAGE or PACKAGE:COMMAND. With a command, the package also counts as present when
# that command is on PATH (python3 may come from elsewhere than Debian, e.g. pyenv).
test_pkgs=(
  uidmap            # newuidmap/newgidmap for rootless tests
  gcc libc6-dev     # static C helpers (rootfs/busybox/usr/local/bin/hydra-probe, bench floor)
  iproute2          # ip netns / ip link: tests and hack/check-clean.sh
  procps            # ps, pgrep
  nftables          # nft: the tests and make demo read hydra's rules back with it (hydra itself speaks netlink)
  curl              # make demo fetches the example's page through its port mapping
)
bench_pkgs=(
  hyperfine bubblewrap crun runc
  iperf3 socat      # make bench-net: throughput through a mapping and a userspace proxy
  zstd:zstd openssl:openssl  # make bench-image: the tar | zstd (| openssl) baselines
  util-linux        # taskset, unshare (Essential in Debian, listed to be explicit)
  python3:python3   # patches the OCI config.json and reads hyperfine's JSON
)

vm_pkgs=(
  qemu-system-x86   # the cgroup-v2 VM of `make vm-test` (software emulation)
  kmod              # depmod/modprobe resolve the guest kernel's module order
  cpio              # packs the guest's initramfs
)

case $profile in
  test)  wanted=("${test_pkgs[@]}") ;;
  bench) wanted=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  vm)    wanted=("${test_pkgs[@]}" "${vm_pkgs[@]}") ;;
  *)     echo "usage: $0 test|bench|vm" >&2; exit 2 ;;
esac

missing=()
for entry in "${wanted[@]}"; do
  pkg=${entry%%:*} cmd=
  [[ $entry == *:* ]] && cmd=${entry#*:}
  if [[ -n $cmd ]] && command -v "$cmd" >/dev/null; then continue; fi
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
