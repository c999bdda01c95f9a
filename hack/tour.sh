#!/usr/bin/env bash
# A short tour of what `hydra run` isolates and of `hydra up` (`make tour`). Each step says what it shows, runs it
# and checks that it really happened: the script exits 0 only if every step did what it says.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# .cargo/config.toml builds for an explicit target (static linking), hence the triple.
hydra=${HYDRA:-target/x86_64-unknown-linux-gnu/debug/hydra}
rootfs=${HYDRA_ROOTFS:-rootfs/busybox}

step() { printf '\n== %s\n' "$*"; }
# The command as one would type it: single-quote the words that need it.
shell_words() {
  local w q="'\\''" line=
  for w; do
    if [[ $w =~ ^[A-Za-z0-9_./=:+-]+$ ]]; then line+="$w "; else line+="'${w//\'/$q}' "; fi
  done
  echo "${line% }"
}
indent() { sed 's/^/  /'; }
fail() { echo "tour: FAILED: $*" >&2; exit 1; }
# run WANT_RC ARGS...: `hydra run --rootfs ROOTFS ARGS`, show its output (kept in $out) and check
# its exit code: some steps are about a command that must fail.
run() {
  local want=$1 rc=0; shift
  echo "\$ hydra run --rootfs $rootfs $(shell_words "$@")"
  out=$("$hydra" run --rootfs "$rootfs" "$@" 2>&1) || rc=$?
  indent <<<"$out"
  [[ $rc -eq $want ]] || fail "exit code $rc, expected $want"
}
expect() { grep -qE "$1" <<<"$out" || fail "no line matches /$1/"; }

[[ -x $hydra ]] || fail "no $hydra (make build)"
[[ -x $rootfs/usr/local/bin/hydra-probe ]] || fail "no $rootfs (make rootfs)"

step "pid namespace: the command is pid 1"
run 0 --no-init -- /bin/sh -c 'echo "my pid: $$"; ps'
expect '^my pid: 1$'
[[ $(grep -cE '^ *[0-9]+ ' <<<"$out") -eq 1 ]] || fail "ps sees other processes"

step "network: only lo"
run 0 --net complete -- ip -o link
expect '^1: lo:'
[[ $(wc -l <<<"$out") -eq 1 ]] || fail "more interfaces than lo"

step "filesystem: writes stay in the private layer"
run 0 -- /bin/sh -c 'echo hello >/etc/demo-file && cat /etc/demo-file'
expect '^hello$'
[[ ! -e $rootfs/etc/demo-file ]] || fail "the write reached $rootfs/etc/demo-file"
run 0 -- /bin/sh -c 'test ! -e /etc/demo-file && echo "a new run starts from the clean image"'

step "privileges: no CAP_SYS_ADMIN, seccomp on"
run 0 -- /usr/local/bin/hydra-probe caps
eff=$(sed -n 's/.*eff=\([0-9a-f]*\).*/\1/p' <<<"$out")
if (((0x${eff:-ffff} >> 21) & 1)); then fail "CAP_SYS_ADMIN (bit 21) is effective"; fi
expect ' nnp=1 seccomp=2$'
run 1 -- /usr/local/bin/hydra-probe mount
expect '^mount: Operation not permitted$'

step "limits: 32 MiB memory, an allocation of 100 MiB is OOM-killed"
run 137 --memory 32M -- /usr/local/bin/hydra-probe alloc 100
expect 'killed: out of memory \(limit 32 MiB\)'

step "ports: a partial process answers only through its mapping (-p 18480:8080)"
web_name=demo-web-$$
echo "\$ hydra run --rootfs $rootfs --name $web_name --hostname web -p 18480:8080 -- nc -ll -p 8080 -e hostname &"
"$hydra" run --rootfs "$rootfs" --name "$web_name" --hostname web -p 18480:8080 \
  -- nc -ll -p 8080 -e hostname >/dev/null 2>&1 &
web=$!
trap 'kill $web 2>/dev/null' EXIT
answer=
for _ in $(seq 100); do
  answer=$(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18480 && cat <&3' 2>/dev/null) || true
  [[ -n $answer ]] && break
  sleep 0.05
done
echo "\$ (a client connects to 127.0.0.1:18480)"
indent <<<"$answer"
[[ $answer == web ]] || fail "no answer through the mapping"
echo "\$ hydra ports $web_name"
"$hydra" ports "$web_name" | indent
kill -TERM "$web" && wait "$web" || true
trap - EXIT

# --- hydra up: a container of several processes from one file --------------------------------
app=$(mktemp -d /tmp/hydra-demo.XXXXXX)
name=demo-$$
cleanup() { "$hydra" down "$name" >/dev/null 2>&1 || true; rm -rf "$app"; }
trap cleanup EXIT
cat >"$app/hydra.yaml" <<YAML
version: '1.0'
container: {name: $name, rootfs: $PWD/$rootfs}
resources: {max_memory: 256MB, max_cpu: 0.5}
volumes: [{name: shared, size: 8MB}]
processes:
  - name: producer
    command: sh -c 'while :; do date > /data/now; sleep 0.2; done'
    volumes: ['shared:/data']
  - name: consumer
    command: [sh, -c, 'sleep 0.5; echo "producer wrote: \$(cat /in/now)"; exec sleep 1000']
    volumes: ['shared:/in:ro']
    depends_on: [producer]
  - {name: worker, command: sh -c 'while :; do :; done', count: 2, limits: {cpu: 0.2}}
YAML
# hyd CMD...: show and run a hydra command, keep its output in $out.
hyd() {
  echo "\$ hydra $(shell_words "$@")"
  out=$("$hydra" "$@" 2>&1) || fail "hydra $* failed: $out"
  indent <<<"$out"
}

step "hydra up: four isolated processes from one file, sharing only a named volume"
sed 's/^/  /' "$app/hydra.yaml"
hyd up -d -f "$app/hydra.yaml"
hyd ps
[[ $(grep -c ' running ' <<<"$out") -eq 4 ]] || fail "not all four processes run"
sleep 1
hyd logs "$name/consumer"
expect '^producer wrote: '

step "exec: a command inside the producer sees its files and only its own processes"
hyd exec "$name/producer" -- sh -c 'hostname; ls /data; ps -o pid,comm | grep -v -e ps -e grep'
expect '^producer$'
expect '^now$'

step "stats: the workers share the container's half CPU (cgroup limits)"
hyd stats --no-stream "$name"
expect 'worker.0'

step "down: every process stopped, every cgroup, volume and state file removed"
hyd down "$name"
[[ ! -e /run/hydra/$name ]] || fail "state left in /run/hydra/$name"

printf '\ntour: every step did what it says\n'
