#!/usr/bin/env bash
# `make bench-up`: how long `hydra up -d` takes to bring up (every process running) and `hydra
# down` to take down the example container (5 processes) and a container of 100 virtual
# processes, and the supervisor's RSS while they run. Medians of 5 rounds, release build.
# Results go between the bench-up markers of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
hydra=$repo/target/x86_64-unknown-linux-gnu/release/hydra
rootfs=$repo/rootfs/busybox
rounds=${ROUNDS:-5}
work=$(mktemp -d /tmp/hydra-bench-up.XXXXXX)
names=()
cleanup() {
  local n
  for n in "${names[@]}"; do "$hydra" down "$n" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --locked >/dev/null 2>&1 || cargo build --release >/dev/null

now_ms() { date +%s%N | awk '{printf "%.1f", $1 / 1000000}'; }
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# yaml NAME PROCESSES-BLOCK
write_yaml() {
  printf "version: '1.0'\ncontainer: {name: %s, rootfs: %s}\n%s" "$1" "$rootfs" "$2" >"$work/$1.yaml"
}

example="resources: {max_memory: 1GB, max_cpu: 0.5, max_files: 1000, max_file_size: 100MB}
processes:
  - {name: web_server, command: sleep 1000, env: {PORT: 8080}, limits: {memory: 512MB, cpu: 0.3}}
  - {name: worker, command: sleep 1000, count: 4, env: {WORKER_MODE: background}}
"
hundred="processes:
  - {name: s, command: sleep 1000, count: 100}
"

# measure LABEL YAML-BODY EXPECTED-PROCESSES -> "up_ms down_ms rss_kib" per round
measure() {
  local label=$1 body=$2 want=$3 name i t0 t1 t2 owner rss running
  name="bench-up-$label-$$"
  names+=("$name")
  write_yaml "$name" "$body"
  for ((i = 0; i < rounds; i++)); do
    t0=$(now_ms)
    "$hydra" up -d -f "$work/$name.yaml" >/dev/null
    t1=$(now_ms)
    running=$("$hydra" ps --json | grep -c '"state": "running"')
    [[ $running -ge $want ]] || { echo "bench-up: only $running of $want running" >&2; exit 1; }
    owner=$(sed -n 's/^owner //p' "/run/hydra/$name/state")
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$owner/status")
    "$hydra" down "$name" >/dev/null
    t2=$(now_ms)
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') $(awk -v a="$t1" -v b="$t2" 'BEGIN {print b - a}') $rss"
  done
}

row() {
  local label=$1 results=$2 up down rss
  up=$(awk '{print $1}' <<<"$results" | median)
  down=$(awk '{print $2}' <<<"$results" | median)
  rss=$(awk '{print $3}' <<<"$results" | median)
  printf '| %s | %.0f | %.0f | %.1f |\n' "$label" "$up" "$down" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')"
}

example_results=$(measure example "$example" 5)
hundred_results=$(measure hundred "$hundred" 100)

table=$(
  echo "### Up and down: \`hydra up -d\` until every process runs, \`hydra down\` until all is removed"
  echo
  echo "$(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(nproc) CPUs), $(date -u '+%Y-%m-%d %H:%M UTC'). Medians of $rounds rounds, release build, unpinned. Refresh with \`make bench-up\` (hack/bench-up.sh)."
  echo
  echo "| container | up ms | down ms | supervisor RSS MiB |"
  echo "|---|---:|---:|---:|"
  row "the example (web_server + 4 workers, limits)" "$example_results"
  row "100 virtual processes (\`count: 100\`)" "$hundred_results"
  echo
  echo "Targets (issue 3): 100 processes up in under 1 s, supervisor under 20 MB RSS."
)
echo "$table"

doc=docs/benchmarks.md
begin='<!-- bench-up:begin -->' end='<!-- bench-up:end -->'
if ! grep -q "$begin" "$doc"; then
  printf '\n## Up and down\n\n%s\n%s\n' "$begin" "$end" >>"$doc"
fi
python3 - "$doc" "$begin" "$end" "$table" <<'PY'
import sys
path, begin, end, table = sys.argv[1:]
text = open(path).read()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(f"{head}{begin}\n{table}\n{end}{tail}")
PY
