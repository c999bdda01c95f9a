#!/usr/bin/env bash
# Check that hydra (or its tests) left nothing behind on the host.
#
#   hack/check-clean.sh snapshot FILE   record the host state before a test run
#   hack/check-clean.sh compare FILE    exit 1 and list what appeared since the snapshot
#   hack/check-clean.sh compare         exit 1 if any hydra-specific object exists at all
#   hack/check-clean.sh clean           remove leftover hydra cgroups and state (make clean-host)
#
# Only objects that APPEARED count as leaks; ones that disappeared are listed for information
# (a test may legitimately garbage-collect something an earlier crash left).
set -euo pipefail

# Host objects whose name says they are hydra's (used when there is no snapshot).
hydra_re='hydra|^hy[-_]'

# Every cgroup directory below a `hydra` cgroup dir (the `hydra` dir itself may stay). The dir is
# searched a few levels deep so that `hydra` nested under the caller's own cgroup is found too.
hydra_cgroup_dirs() {
  find /sys/fs/cgroup -maxdepth 4 -type d -name hydra 2>/dev/null | while read -r top; do
    find "$top" -mindepth 1 -maxdepth 5 -type d 2>/dev/null
  done
}

# One "kind: item" line per object, sorted, so that two states compare with comm(1).
state() {
  ip netns list 2>/dev/null | awk '{print "netns: " $1}'
  ip -o link 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print "link: " $2}'
  if command -v nft >/dev/null; then nft list tables 2>/dev/null | sed 's/^/nft: /'; fi
  hydra_cgroup_dirs | sed 's/^/cgroup: /'
  awk '$2 ~ /hydra/ || $3 == "overlay" {print "mount: " $3 " " $2}' /proc/mounts
  local p comm cmd
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} == "$$" || ${p#/proc/} == "$BASHPID" ]] && continue
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    # A zombie is dead: it only waits for its parent (for a detached supervisor, the host's
    # init, which may reap lazily) and holds nothing.
    [[ $(awk '{print $3}' "$p/stat" 2>/dev/null) == Z ]] && continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    if [[ $comm == hydra || $cmd == *"hydra run"* ]]; then echo "process: ${p#/proc/} $cmd"; fi
  done
  if [[ -d /run/hydra ]]; then find /run/hydra -mindepth 1 -maxdepth 3 | sed 's/^/state: /'; fi
}

# Without a snapshot only hydra's own objects are looked at (netns/links/nft tables by name).
hydra_only() {
  awk -v re="$hydra_re" '
    /^(netns|link|nft):/ { name = $NF; if (name ~ re) print; next }
    { print }'
}

indent() { sed 's/^/  /'; }
usage() { echo "usage: $0 snapshot FILE | compare [FILE] | clean" >&2; exit 2; }

case ${1:-} in
  snapshot)
    [[ $# -eq 2 ]] || usage
    mkdir -p "$(dirname "$2")"
    state | LC_ALL=C sort >"$2"
    ;;
  compare)
    [[ $# -le 2 ]] || usage
    now=$(state | LC_ALL=C sort)
    if [[ $# -eq 2 ]]; then
      gone=$(LC_ALL=C comm -23 "$2" <(echo "$now"))
      new=$(LC_ALL=C comm -13 "$2" <(echo "$now"))
      if [[ -n $gone ]]; then
        echo "check-clean: gone since the snapshot (fine):"
        indent <<<"$gone"
      fi
    else
      new=$(echo "$now" | hydra_only | sed '/^$/d')
    fi
    if [[ -n $new ]]; then
      echo "check-clean: the host is NOT clean; left behind:"
      indent <<<"$new"
      exit 1
    fi
    echo "check-clean: host is clean"
    ;;
  clean)
    [[ $# -eq 1 ]] || usage
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    # A leftover `hydra gc` knows about (netns, veths, nft table) is best removed by hydra itself.
    for bin in "$repo"/target/*/debug/hydra "$repo"/target/*/release/hydra; do
      if [[ -x $bin ]] && "$bin" gc >/dev/null 2>&1; then break; fi
    done
    # Containers whose hydra is still running (the `owner PID` of their state file is alive and
    # named hydra) are left alone.
    live=()
    for dir in /run/hydra/*/; do
      pid=$(sed -n 's/^owner //p' "$dir/state" 2>/dev/null) || continue
      [[ $(cat "/proc/$pid/comm" 2>/dev/null) == hydra ]] && live+=("$(basename "$dir")")
    done
    is_live() { local n; for n in "${live[@]}"; do [[ $1 == "$n" ]] && return 0; done; return 1; }
    # cgroups (hydra/<container>/...): rmdir only, never rm -r on cgroupfs, deepest first. A
    # cgroup that still has processes cannot be removed and is reported; its processes are kept.
    hydra_cgroup_dirs | awk -F/ '{print NF " " $0}' | sort -rn | cut -d' ' -f2- |
      while read -r dir; do
        container=${dir#*/hydra/} container=${container%%/*}
        if is_live "$container"; then continue; fi
        if rmdir "$dir" 2>/dev/null; then
          echo "removed cgroup $dir"
        else
          echo "kept cgroup $dir (it still has processes or sub-cgroups)"
        fi
      done
    # State records: never delete through a mount point (it could be a bind mount of real data).
    if [[ -d /run/hydra ]]; then
      if awk '$2 ~ "^/run/hydra/" {found = 1} END {exit !found}' /proc/mounts; then
        echo "kept /run/hydra: mounts below it are still in use:"
        awk '$2 ~ "^/run/hydra/" {print "  " $2}' /proc/mounts
      else
        for entry in /run/hydra/* /run/hydra/.[!.]*; do
          [[ -e $entry ]] || continue
          if is_live "$(basename "$entry")"; then echo "kept $entry (its hydra is running)"; continue; fi
          rm -rf --one-file-system "$entry" && echo "removed $entry"
        done
      fi
    fi
    ;;
  *) usage ;;
esac
