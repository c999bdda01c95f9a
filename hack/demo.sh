#!/usr/bin/env bash
# A short tour of what `hydra run` isolates (`make demo`). Each step says what it shows, runs it
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
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
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

printf '\ndemo: every step did what it says\n'
