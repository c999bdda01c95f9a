#!/usr/bin/env bash
# `make bench-up`: how long it takes to bring a container up with `hydra up -d` (until `hydra ps
# --json` shows every process running) and down again with `hydra down`, and the supervisor's
# memory (VmRSS of the `owner` pid in /run/hydra/NAME/state) while they run. Two containers: the
# example of DESIGN.md (web_server + 4 workers, limits) and N=100 virtual processes (`count: 100`
# of `sleep 1000`). Medians of ROUNDS=5 rounds, release build, unpinned.
# Raw rounds: hack/.cache/bench-up.txt; the table goes between the bench-up markers of
# docs/benchmarks.md. Every container it starts is brought down, also when a round fails.
# ROUNDS=2 N=20 hack/bench-up.sh gives a quick, rough run.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME with a '.' as the decimal point
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
cache=$repo/hack/.cache
rootfs=$repo/rootfs/busybox
hydra=$repo/target/x86_64-unknown-linux-gnu/release/hydra
rounds=${ROUNDS:-5} n=${N:-100}
[[ -x $rootfs/bin/busybox ]] || { echo "bench-up: no $rootfs; run make rootfs" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "bench-up: run as root (hydra up creates cgroups)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d /tmp/hydra-bench-up.XXXXXX)

# Names of the containers this run uses. Filled in this shell (never in a subshell), so that the
# trap sees every one of them.
names=()
cleanup() {
  local name
  for name in "${names[@]}"; do
    if [[ -e /run/hydra/$name ]]; then
      "$hydra" down "$name" >/dev/null 2>&1 || echo "bench-up: could not bring $name down" >&2
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
hack/check-clean.sh snapshot "$cache/bench-up-host.snap"

hack/build-release.sh

# --- the containers ----------------------------------------------------------------------------
# The example runs as DESIGN.md writes it (partial isolation, host port 80 mapped to the web
# server), except: its commands are busybox stand-ins (a TCP echo server on $PORT, `sleep 1000`)
# and the image is the rootfs directory, not an encrypted .hcon.
example_body="security: {encryption: none, security_level: standard}
isolation:
  mode: partial
  ports:
    - {internal: 8080, external: 80, protocol: tcp, process: web_server}
resources: {max_memory: 1GB, max_cpu: 0.5, max_files: 1000, max_file_size: 100MB}
processes:
  - name: web_server
    command: sh -c 'exec nc -ll -p \$PORT -e cat'
    env: {PORT: 8080}
    limits: {memory: 512MB, cpu: 0.3}
  - {name: worker, command: sleep 1000, count: 4, env: {WORKER_MODE: background}}
"
hundred_body="processes:
  - {name: s, command: sleep 1000, count: $n}
"

# yaml LABEL BODY: writes $work/LABEL.yaml for container bench-up-LABEL-<pid>.
yaml() {
  printf "version: '1.0'\ncontainer: {name: bench-up-%s-%s, rootfs: %s}\n%s" \
    "$1" "$$" "$rootfs" "$2" >"$work/$1.yaml"
}

# running NAME: how many of NAME's processes `hydra ps --json` shows running. The JSON is
# pretty-printed one field per line, "container" first; "  }" closes a process.
running() {
  "$hydra" ps --json | awk -v mine="\"container\": \"$1\"," '
    index($0, mine) { in_it = 1 }
    in_it && /"state": "running"/ { n++ }
    /^  }/ { in_it = 0 }
    END { print n + 0 }'
}

# wait_running NAME WANT: polls (no pause: each poll is a hydra process and a control-socket
# round trip) until WANT processes run; fails after 30 s.
wait_running() {
  local deadline=$((SECONDS + 30)) got
  while :; do
    got=$(running "$1")
    [[ $got -ge $2 ]] && return 0
    if ((SECONDS >= deadline)); then
      echo "bench-up: $1: only $got of $2 processes running after 30 s" >&2
      return 1
    fi
  done
}

# measure LABEL WANT: ROUNDS rounds of up / wait until running / read RSS / down. Appends one line
# per round to $work/LABEL.txt: "up_returned_us all_running_us down_us rss_kib hwm_kib".
measure() {
  local label=$1 want=$2 name="bench-up-$1-$$" i t0 t1 t2 t3 owner rss hwm
  names+=("$name")
  : >"$work/$label.txt"
  for ((i = 0; i < rounds; i++)); do
    t0=${EPOCHREALTIME/./}
    "$hydra" up -d -f "$work/$label.yaml" >/dev/null
    t1=${EPOCHREALTIME/./}
    wait_running "$name" "$want"
    t2=${EPOCHREALTIME/./}
    owner=$(sed -n 's/^owner //p' "/run/hydra/$name/state")
    read -r rss hwm < <(awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END {print r, h}' \
      "/proc/$owner/status")
    "$hydra" down "$name" >/dev/null
    t3=${EPOCHREALTIME/./}
    echo "$((t1 - t0)) $((t2 - t0)) $((t3 - t2)) $rss $hwm" >>"$work/$label.txt"
    echo "bench-up: $label round $((i + 1)): up -d $(((t1 - t0) / 1000)) ms, all $want running $(((t2 - t0) / 1000)) ms, down $(((t3 - t2) / 1000)) ms, supervisor RSS ${rss} KiB" >&2
  done
}

# median FILE COLUMN
median() {
  awk -v c="$2" '{print $c}' "$1" | sort -n |
    awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# row LABEL-TEXT LABEL: one markdown row of medians.
row() {
  local f=$work/$2.txt
  awk -v what="$1" -v up="$(median "$f" 1)" -v run="$(median "$f" 2)" -v down="$(median "$f" 3)" \
    -v rss="$(median "$f" 4)" -v hwm="$(median "$f" 5)" 'BEGIN {
      printf "| %s | %.0f | %.0f | %.0f | %.1f | %.1f |\n", what, up / 1000, run / 1000, down / 1000, rss / 1024, hwm / 1024
    }'
}

yaml example "$example_body"
yaml hundred "$hundred_body"
measure example 5
measure hundred "$n"
{
  echo "# bench-up $(date -u '+%Y-%m-%d %H:%M UTC'): up_returned_us all_running_us down_us rss_kib hwm_kib"
  for label in example hundred; do sed "s/^/$label /" "$work/$label.txt"; done
} >"$cache/bench-up.txt"

# --- docs/benchmarks.md ------------------------------------------------------------------------
up_ms=$(awk -v v="$(median "$work/hundred.txt" 2)" 'BEGIN {printf "%.0f", v / 1000}')
rss_mib=$(awk -v v="$(median "$work/hundred.txt" 4)" 'BEGIN {printf "%.1f", v / 1024}')
verdict() { awk -v v="$1" -v max="$2" 'BEGIN {print (v < max) ? "met" : "MISSED"}'; }
facts="Linux $(uname -r), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
facts+=" ($(nproc) CPUs), $(date -u '+%Y-%m-%d %H:%M UTC')"
rel=${hydra#"$repo"/}
rootfs_rel=${rootfs#"$repo"/}
block=$(
  echo "### Up and down: \`hydra up -d\` until every process runs, \`hydra down\` until all is removed"
  echo
  echo "$facts. Medians of $rounds rounds, release build, unpinned. Refresh with \`make bench-up\` (hack/bench-up.sh)."
  echo
  echo "| container | \`up -d\` returned ms | all running ms | down ms | supervisor RSS MiB | supervisor peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|"
  row "the example (web_server + 4 workers, limits)" example
  row "$n virtual processes (\`count: $n\` of \`sleep 1000\`)" hundred
  echo
  echo "- \"all running\" counts from the start of \`hydra up -d\` until \`hydra ps --json\` shows every process \`running\` (the polls are in it); \"down\" is \`hydra down\` until it returned (state directory gone, cgroups removed; it checks every 20 ms, so down times are quantised to 20 ms). RSS is VmRSS (peak: VmHWM) of the supervisor while every process runs."
  echo "- Targets (issue 3): $n processes up in under 1 s: $up_ms ms, $(verdict "$up_ms" 1000); supervisor under 20 MB RSS: $rss_mib MiB, $(verdict "$rss_mib" 20)."
  echo "- The example runs as DESIGN.md writes it (\`partial\`, host port 80 → web_server:8080, five veth links, the port mapping's nftables rules), with busybox stand-ins as its commands and the rootfs directory as its image."
  echo
  echo "Exact commands (each round; NAME is \`bench-up-<label>-<pid>\`):"
  echo
  echo '```'
  echo "$rel up -d -f FILE.yaml"
  echo "$rel ps --json     # repeated until every process of NAME is \"running\""
  echo "grep VmRSS /proc/\$(sed -n 's/^owner //p' /run/hydra/NAME/state)/status"
  echo "$rel down NAME"
  echo '```'
  echo
  echo "with FILE.yaml = \`version: '1.0'\`, \`container: {name: NAME, rootfs: $rootfs_rel}\` and"
  echo
  echo '```yaml'
  echo "# the example"
  printf '%s' "$example_body"
  echo "# $n virtual processes"
  printf '%s' "$hundred_body"
  echo '```'
)
echo "$block"

hack/doc-section.sh bench-up "Up and down" "$block"

# --- nothing may be left behind ----------------------------------------------------------------
cleanup
trap - EXIT
for name in "${names[@]}"; do
  if [[ -e /run/hydra/$name || -e /sys/fs/cgroup/hydra/$name ]] ||
    compgen -G "/sys/fs/cgroup/*/hydra/$name" >/dev/null; then
    echo "bench-up: $name left state or cgroups behind" >&2
    exit 1
  fi
done
# Only a warning: on a shared machine someone else's container may have appeared meanwhile.
hack/check-clean.sh compare "$cache/bench-up-host.snap" || echo "bench-up: WARNING: see above" >&2
