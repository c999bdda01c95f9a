#!/usr/bin/env bash
# `make demo`: the kernel example (examples/kernel-example) end to end. It builds the example's
# encrypted image, runs the container with `hydra up -d`, shows each part working (processes, IPC,
# the port mapping, connection counting, resource statistics) and takes it down again. Each step
# says what it shows and checks that it really happened: the script exits 0 only if every step did.
# The same flow, with assertions instead of narration, is tests/kernel_example.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# .cargo/config.toml builds for an explicit target (static linking), hence the triple.
hydra=${HYDRA:-$PWD/target/x86_64-unknown-linux-gnu/debug/hydra}
example=examples/kernel-example
name=my_application

step() { printf '\n== %s\n' "$*"; }
indent() { sed 's/^/  /'; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
expect() { grep -qE "$1" <<<"$out" || fail "no line matches /$1/"; }
# hyd ARGS...: show and run `hydra ARGS`, keep its output in $out.
hyd() {
  echo "\$ hydra $*"
  out=$("$hydra" "$@" 2>&1) || { indent <<<"$out"; fail "hydra $* failed"; }
  indent <<<"$out"
}
# sh_show CMD: show and run a shell command line, keep its output in $out.
sh_show() {
  echo "\$ $1"
  out=$(bash -c "$1" 2>&1) || { indent <<<"$out"; fail "$1 failed"; }
  indent <<<"$out"
}

[[ -x $hydra ]] || fail "no $hydra (make build)"
if "$hydra" ps 2>/dev/null | grep -q "^$name "; then
  fail "a container named $name is running already (sudo hydra down $name)"
fi

# The image cache of this run only, so that the demo leaves nothing behind: each run packs a new
# image with a new key, and hydra keeps every image it has verified until it is removed.
cache=$(mktemp -d /tmp/hydra-demo-cache.XXXXXX)
export HYDRA_IMAGE_CACHE=$cache
started=
cleanup() {
  [[ -n $started ]] && "$hydra" down "$name" >/dev/null 2>&1
  rm -rf --one-file-system "$cache"
}
trap cleanup EXIT

step "image: the example's programs in a busybox rootfs, packed into an image encrypted for a fresh kyber_aes key"
sh_show "$example/build.sh"
hyd image inspect "$example/app_container.hcon"
expect '^encryption: +kyber_aes$'

step "up: 8 virtual processes from the encrypted image, each in its own namespaces and cgroup"
echo "\$ cat $example/hydra.yaml   (without its opening comment)"
sed '1,/^$/d' "$example/hydra.yaml" | indent
hyd up -d -f "$example/hydra.yaml"
started=1
hyd ps
[[ $(grep -cE "^$name .* running " <<<"$out") -eq 8 ]] || fail "not all 8 processes are running"

step "IPC: each client asks the server over the declared channel 'requests' and gets its own answers"
for client in client.0 client.1; do
  for _ in $(seq 100); do
    [[ $("$hydra" logs "$name/$client" | grep -c ' = ') -ge 3 ]] && break
    sleep 0.1
  done
done
for client in client.0 client.1; do
  echo "\$ hydra logs $name/$client | sed -n 1,3p"
  out=$("$hydra" logs "$name/$client" | sed -n 1,3p)
  indent <<<"$out"
  [[ $(grep -c ' = ' <<<"$out") -eq 3 ]] || fail "$client got fewer than 3 answers"
  # Every answer must be right: the sum of 1..n is n(n+1)/2.
  while read -r _ _ _ _ range _ sum _; do
    n=${range#1..}
    [[ $sum -eq $((n * (n + 1) / 2)) ]] || fail "$client: wrong answer for 1..$n: $sum"
  done <<<"$out"
done
hyd ipc stats "$name"
expect '^requests +channel +64 '

step "port forwarding: the web server (partial isolation) answers at 127.0.0.1:18080 and tells what it sees"
sh_show "curl -sS --max-time 5 --retry 20 --retry-delay 0 --retry-connrefused http://127.0.0.1:18080/"
expect '^hostname: +web_server$'
expect '^interfaces: +lo eth0 *$'
seen=$(sed -n 's/^processes: *\([0-9]*\) visible.*/\1/p' <<<"$out")
host=$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)
echo "  (the host has $host processes; the web server sees ${seen:-?}: its own pid namespace)"
[[ -n $seen && $seen -lt 20 && $seen -lt $host ]] || fail "the web server sees the host's processes"

step "connection statistics: the mapping counted the connection, its packets and bytes"
hyd ports "$name"
expect '^18080/tcp +web_server +[0-9.]+:8080 +[1-9]'

step "resources: the workers' cgroups hold each to 0.1 CPU (container: 0.5), and stats counts it"
cgroup_quota() {
  local v1=/sys/fs/cgroup/cpu/hydra/$name${1:+/$1} v2=/sys/fs/cgroup/hydra/$name${1:+/$1}
  if [[ -e $v1/cpu.cfs_quota_us ]]; then
    echo "$v1/cpu.cfs_quota_us: $(cat "$v1/cpu.cfs_quota_us") µs per $(cat "$v1/cpu.cfs_period_us") µs"
  else
    echo "$v2/cpu.max: $(cat "$v2/cpu.max")"
  fi
}
out=$(cgroup_quota worker.0; cgroup_quota "")
indent <<<"$out"
expect '10000( µs per | )100000'
sleep 1  # a second of work to count
hyd stats --no-stream "$name"
for w in 0 1 2 3; do
  cpu=$(awk -v p="worker.$w" '$2 == p {sub(/%/, "", $3); print int($3)}' <<<"$out")
  [[ -n $cpu && $cpu -ge 1 && $cpu -le 15 ]] || fail "worker.$w uses ${cpu:-no}% CPU, expected about 10%"
done

step "down: every process stopped; its cgroups, links, firewall rules and state removed"
hyd down "$name"
started=
[[ ! -e /run/hydra/$name ]] || fail "state left in /run/hydra/$name"
[[ -z $(find /sys/fs/cgroup -maxdepth 3 -path "*/hydra/$name" 2>/dev/null) ]] || fail "cgroups left"
if nft list table inet hydra >/dev/null 2>&1; then
  ! nft list table inet hydra | grep -q "$name" || fail "firewall rules of $name left"
fi
echo "  no state, cgroup or firewall rule of $name remains"

printf '\ndemo: every step did what it says\n'
