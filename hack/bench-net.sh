#!/usr/bin/env bash
# `make bench-net`: what a `partial` port mapping costs. In one run:
# - iperf3 single-stream TCP throughput (medians of ROUNDS=5 runs of 5 s per path, each round
#   every path in an order that turns from round to round) straight to a hydra process's own
#   address ("direct": into its namespace, bypassing the mapping); into a network namespace made
#   here with no container running (no netfilter hook on the host: the ceiling); into the same
#   hydra process through its mapping at 127.0.0.1 and at the host end of its veth (socket
#   redirect; and once more with HYDRA_SOCKET_REDIRECT=0, DNAT alone); through the kernel's own
#   DNAT with one bare rule in a table of its own (what any DNAT costs, hydra's rules aside);
#   through socat as a userspace proxy into the ceiling's namespace; and through a rootless
#   `hydra run -p` (hydra's own forwarder; a throw-away user runs it);
# - the start-up cost of `--net partial -p` over `--net complete`, with and without hydra's table
#   already in place (time until the process runs, and the whole run; pinned to one CPU).
# iperf3 runs inside hydra from a rootfs made here (busybox + iperf3 and its libraries).
# Raw output: hack/.cache/bench-net/; the table goes between the bench-net markers of
# docs/benchmarks.md. Every namespace, veth, proxy and container is removed, also on failure.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
cache=$repo/hack/.cache/bench-net
hydra=$repo/target/x86_64-unknown-linux-gnu/release/hydra
secs=${SECONDS_PER_CASE:-5}
[[ $(id -u) -eq 0 ]] || { echo "bench-net: run as root (veths, nftables)" >&2; exit 1; }
[[ -x rootfs/busybox/bin/busybox ]] || { echo "bench-net: no rootfs/busybox; run make rootfs" >&2; exit 1; }
mkdir -p "$cache"

ns=hybench$$ veth=hyb$$ name=bench-net-$$ socat_pid= server_pid= dnat_pid= user=hybench$$ rl_pid= rl_uid=
rl_dir=/tmp/hydra-bench-net-$$
cleanup() {
  set +e # every step runs, whatever failed before
  [[ -n $rl_pid ]] && kill "$rl_pid" 2>/dev/null && wait "$rl_pid" 2>/dev/null
  if id "$user" >/dev/null 2>&1; then
    pkill -KILL -u "$user" 2>/dev/null
    sleep 0.2
    userdel "$user" 2>/dev/null
  fi
  [[ -n $rl_uid ]] && rm -rf "/tmp/hydra-$rl_uid"
  rm -rf "$rl_dir"
  [[ -n $socat_pid ]] && kill "$socat_pid" 2>/dev/null
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [[ -n $dnat_pid ]] && kill "$dnat_pid" 2>/dev/null && wait "$dnat_pid" 2>/dev/null
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  ip link del "$veth" 2>/dev/null
  nft delete table ip "$ns" 2>/dev/null
  true
}
trap cleanup EXIT
hack/check-clean.sh snapshot "$cache/host.snap"

hack/build-release.sh

# --- a rootfs with iperf3 ----------------------------------------------------------------------
rootfs=$cache/rootfs
rm -rf "$rootfs" && cp -a rootfs/busybox "$rootfs"
for f in "$(command -v iperf3)" $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
  mkdir -p "$rootfs$(dirname "$f")" && cp -L "$f" "$rootfs$f"
done

# client ADDR PORT LABEL: one iperf3 run; its receiver rate (Gbit/s) is appended to LABEL.rates.
client() {
  iperf3 -c "$1" -p "$2" -t "$secs" -f g >"$cache/$3.txt" 2>&1 || { cat "$cache/$3.txt" >&2; exit 1; }
  awk '/receiver/ {print $(NF-2)}' "$cache/$3.txt" | tail -n 1 >>"$cache/$3.rates"
}
# gbits LABEL: the median of its rounds.
gbits() { sort -n "$cache/$1.rates" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
rounds=${ROUNDS:-5}
rm -f "$cache"/*.rates

# --- the peers: a namespace of our own on a veth, and socat into it -----------------------------
ip netns add "$ns"
ip link add "$veth" type veth peer name eth0 netns "$ns"
ip addr add 10.232.0.1/30 dev "$veth" && ip link set "$veth" up
ip -n "$ns" addr add 10.232.0.2/30 dev eth0
ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up
ip netns exec "$ns" iperf3 -s -p 5201 -D
socat TCP-LISTEN:15202,bind=127.0.0.1,fork,reuseaddr TCP:10.232.0.2:5201 &
socat_pid=$!
sleep 0.3
# guest NAME: the address of the process NAME's first mapping leads to.
guest() { "$hydra" ports "$1" --json | sed -n 's/.*"address": "\(.*\)".*/\1/p' | head -n 1; }
# host_end NAME: the host end of its link.
host_end() { guest "$1" | awk -F. -v OFS=. '{$4 = $4 - 1; print}'; }
# wait_ports NAME WHAT: until NAME's `hydra ports --json` shows WHAT.
wait_ports() {
  for _ in $(seq 200); do
    "$hydra" ports "$1" --json 2>/dev/null | grep -q "$2" && return 0
    sleep 0.05
  done
  echo "bench-net: $1 never showed $2" >&2
  exit 1
}
# bare_dnat: one run through the kernel's DNAT alone: one rule, no counters, in a table of its
# own that exists only for the run.
bare_dnat() {
  nft -f - <<NFT
table ip $ns {
  chain out { type nat hook output priority -100; ip daddr 10.232.0.1 tcp dport 15206 dnat to 10.232.0.2:5201; }
}
NFT
  client 10.232.0.1 15206 bare-dnat
  nft delete table ip "$ns"
}
# without_hydra R: the paths measured while no container runs (no netfilter hook on the host for
# the ceiling), in an order that turns with the round R.
without_hydra() {
  if (($1 % 2)); then bare_dnat; client 10.232.0.2 5201 ceiling; else client 10.232.0.2 5201 ceiling; bare_dnat; fi
}
# with_hydra R: two hydra servers, one through its mapping with the socket redirect, one with
# HYDRA_SOCKET_REDIRECT=0 (DNAT alone, what clients from other hosts and namespaces get); the
# paths through them, straight to the first one's address (into its namespace, bypassing the
# mapping), the bench's own namespace again while hydra's table makes the kernel track
# connections, and socat, in an order that turns with the round R.
with_hydra() {
  "$hydra" run --rootfs "$rootfs" --name "$name" -p 15201:5201 -- iperf3 -s -p 5201 >"$cache/server.txt" 2>&1 &
  server_pid=$!
  HYDRA_SOCKET_REDIRECT=0 "$hydra" run --rootfs "$rootfs" --name "$name-dnat" -p 15207:5201 -- \
    iperf3 -s -p 5201 >"$cache/server-dnat.txt" 2>&1 &
  dnat_pid=$!
  wait_ports "$name" '"redirected": true'
  wait_ports "$name-dnat" address
  local paths=(
    "127.0.0.1 15201 redirect-loopback"
    "$(host_end "$name") 15201 redirect-veth"
    "127.0.0.1 15207 dnat-loopback"
    "$(host_end "$name-dnat") 15207 dnat-veth"
    "$(guest "$name") 5201 direct"
    "10.232.0.2 5201 bare-tracked"
    "127.0.0.1 15202 socat"
  )
  sleep 0.3
  for ((k = 0; k < ${#paths[@]}; k++)); do
    # shellcheck disable=SC2086 # ADDR PORT LABEL
    client ${paths[($k + $1) % ${#paths[@]}]}
  done
  "$hydra" ports "$name" >"$cache/ports.txt"
  "$hydra" ports "$name-dnat" >>"$cache/ports.txt"
  kill "$server_pid" "$dnat_pid" && wait "$server_pid" "$dnat_pid" 2>/dev/null || true
  server_pid= dnat_pid=
}
# Each round measures every path once, in an order that turns from round to round, so neither a
# slow moment of the machine (the vCPUs' placement changes within minutes) nor a place in the
# order favours one path.
for ((r = 0; r < rounds; r++)); do
  if ((r % 2)); then with_hydra "$r"; without_hydra "$r"; else without_hydra "$r"; with_hydra "$r"; fi
done

# --- rootless: hydra's own forwarder (no veth, no nftables) ----------------------------------------
# A throw-away user runs the same iperf3 server through `hydra run -p` rootless.
useradd -M -s /bin/sh -d "$rl_dir/home" "$user"
rl_uid=$(id -u "$user")
mkdir -p "$rl_dir/home"
cp -a "$rootfs" "$rl_dir/rootfs" && cp "$hydra" "$rl_dir/hydra"
chown -R "$user:" "$rl_dir"
runuser -u "$user" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$rl_dir/home" \
  "$rl_dir/hydra" run --rootfs "$rl_dir/rootfs" --name "$name-rl" -p 15205:5201 -- iperf3 -s -p 5201 \
  >"$cache/server-rootless.txt" 2>&1 &
rl_pid=$!
sleep 1
for ((r = 0; r < rounds; r++)); do client 127.0.0.1 15205 rootless; done
kill "$rl_pid" && wait "$rl_pid" 2>/dev/null || true
rl_pid=

# --- start-up: partial with a mapping over complete ---------------------------------------------
# Start-up is the time from launching hydra until the process runs: the process prints the
# clock as its first act (`hydra-probe now`), compared with bash's clock just before the launch.
# The whole run (until hydra returned, link and rules removed) is reported beside it. Medians
# of RUNS runs, alternating the modes, pinned to CPU 0. "idle host": hydra's table does not
# exist yet, so the run also creates it (and its base chains) and deletes it again; "another
# container running": the table is there, as with every container after the first.
runs=${RUNS:-50}
# measure LABEL ARGS...: appends "startup_us total_us" lines to $cache/LABEL.times.
measure() {
  local label=$1 t0 t1 started
  shift
  t0=${EPOCHREALTIME/./}
  started=$(taskset -c 0 "$hydra" run --rootfs rootfs/busybox "$@" -- hydra-probe now)
  t1=${EPOCHREALTIME/./}
  echo "$((started - t0)) $((t1 - t0))" >>"$cache/$label.times"
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ms() { awk -v c="$2" '{print $c}' "$cache/$1.times" | median | awk '{printf "%.2f", $1 / 1000}'; }
series() {
  local suffix=$1 i
  rm -f "$cache"/{complete,partial}"$suffix".times
  for ((i = 0; i < runs + 5; i++)); do
    measure "complete$suffix" --name "$name-c"
    measure "partial$suffix" --name "$name-p" -p 15203:80
  done
  # The first five of each were warm-up.
  for m in complete partial; do sed -i '1,5d' "$cache/$m$suffix.times"; done
}
series -idle
# Another container keeps hydra's table in place.
"$hydra" run --rootfs rootfs/busybox --name "$name-keep" -p 15204:80 -- sleep 1000 >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do "$hydra" ports "$name-keep" --json 2>/dev/null | grep -q address && break; sleep 0.05; done
series -busy
kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
server_pid=

# --- docs/benchmarks.md ------------------------------------------------------------------------
direct=$(gbits direct) ceiling=$(gbits ceiling) tracked=$(gbits bare-tracked)
lo=$(gbits redirect-loopback) link=$(gbits redirect-veth) proxy=$(gbits socat) rootless=$(gbits rootless)
dnat_lo=$(gbits dnat-loopback) dnat_link=$(gbits dnat-veth)
bare=$(gbits bare-dnat)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }
extra_busy=$(minus "$(ms partial-busy 1)" "$(ms complete-busy 1)")
extra_idle=$(minus "$(ms partial-idle 1)" "$(ms complete-idle 1)")
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN {ok = (op == ">=") ? v >= lim : v < lim; print ok ? "met" : "MISSED"}'; }
worst=$(awk -v a="$(ratio "$lo" "$direct")" -v b="$(ratio "$link" "$direct")" 'BEGIN {print (a < b) ? a : b}')
worst_ceiling=$(awk -v a="$(ratio "$lo" "$ceiling")" -v b="$(ratio "$link" "$ceiling")" 'BEGIN {print (a < b) ? a : b}')
# row LABEL GBITS: a table row with its ratios to direct and to the ceiling.
row() { echo "| $1 | $2 | $(ratio "$2" "$direct") | $(ratio "$2" "$ceiling") |"; }
facts="Linux $(uname -r), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
facts+=" ($(nproc) CPUs), $(date -u '+%Y-%m-%d %H:%M UTC')"
block=$(
  echo "### Port forwarding: iperf3 through a mapping, and the start-up cost of \`partial\`"
  echo
  echo "$facts. One run of \`make bench-net\` (hack/bench-net.sh), release build; iperf3 $(iperf3 --version | head -n 1 | cut -d' ' -f2), one TCP stream, medians of $rounds rounds of $secs s per path, unpinned; each round runs every path once, in an order that turns from round to round (the ceiling and the bare DNAT rule while no container runs, the rest while the two hydra servers do)."
  echo
  echo "| path | Gbit/s | × direct | × ceiling |"
  echo "|---|---:|---:|---:|"
  row "direct: straight to the hydra process's own address (into its namespace, the mapping bypassed)" "$direct"
  row "ceiling: a namespace of the bench's own on a veth, no container running (no netfilter hook on the host)" "$ceiling"
  row "the ceiling's namespace while hydra runs (its NAT rules make the kernel track connections)" "$tracked"
  row "the kernel's DNAT alone (one bare rule to the ceiling's namespace, no counters, no container running)" "$bare"
  row "hydra mapping at 127.0.0.1 (socket redirect)" "$lo"
  row "hydra mapping at the veth's host address (socket redirect)" "$link"
  row "hydra mapping at 127.0.0.1, \`HYDRA_SOCKET_REDIRECT=0\` (DNAT + masquerade)" "$dnat_lo"
  row "hydra mapping at the veth's host address, \`HYDRA_SOCKET_REDIRECT=0\` (DNAT)" "$dnat_link"
  row "socat userspace proxy into the ceiling's namespace, while hydra runs" "$proxy"
  row "rootless \`hydra run -p\` (hydra's own forwarder, 127.0.0.1; no container running as root)" "$rootless"
  echo
  echo "| \`hydra run\` ($runs runs each, medians, pinned to CPU 0) | start-up ms | whole run ms |"
  echo "|---|---:|---:|"
  echo "| \`complete\`, idle host | $(ms complete-idle 1) | $(ms complete-idle 2) |"
  echo "| \`partial -p 15203:80\`, idle host (creates and deletes hydra's table) | $(ms partial-idle 1) | $(ms partial-idle 2) |"
  echo "| \`complete\`, another container running | $(ms complete-busy 1) | $(ms complete-busy 2) |"
  echo "| \`partial -p 15203:80\`, another container running | $(ms partial-busy 1) | $(ms partial-busy 2) |"
  echo
  echo "- Targets (issue 4): mapping throughput ≥ 0.95 × direct (into the process's namespace, measured in the same rounds): $worst (the worse of 127.0.0.1 and the veth address, through the socket redirect local TCP clients get), $(verdict "$worst" 0.95 ">="). Against the ceiling, a namespace on a host without any netfilter hook, the mapping reaches $worst_ceiling: no DNAT-based mapping can reach the ceiling, as DNAT makes the kernel run conntrack's hooks on every packet of the host, and the base chains that lead packets to the containers' chains run too (the third row against the second is what the hooks cost a tracked connection); the redirected mapping skips the translation and the tracking and pays only the hooks. Through DNAT alone (\`HYDRA_SOCKET_REDIRECT=0\`, and what clients from other hosts and namespaces get) hydra's mappings reach $(ratio "$dnat_lo" "$direct") (127.0.0.1) and $(ratio "$dnat_link" "$direct") (veth address) × direct, the kernel's bare DNAT rule $(ratio "$bare" "$ceiling") × the ceiling. \`partial\` adds under 3 ms to start-up: $extra_busy ms with hydra's table in place, $(verdict "$extra_busy" 3 "<"); $extra_idle ms on an idle host, $(verdict "$extra_idle" 3 "<")."
  echo "- Not used, though measured: handing a redirected connection's data from socket to socket (a sockmap whose sk_msg program puts each write straight into the peer's receive queue) skips the hooks and the TCP/IP stack, and carried 70 Gbit/s here (3 × the ceiling); but the kernel gives that queue no flow control: a reader that never read let a host client push 1.5 GB into it, until the kernel's TCP memory ran out and the host's TCP sockets got ENOMEM. A process could do that to the host by not reading, or by writing to a host client that does not read, so hydra keeps to TCP's own flow control (the patch and its commands: hack/experiments/README.md)."
  echo "- Start-up is from launching hydra until the process's first instruction (it prints the clock: \`hydra-probe now\`); the whole run adds the teardown. \`partial\` start-up is the subnet claim (a lock, one netlink address dump), one nf_tables transaction hydra sends over netlink itself (after asking whether the table exists) adding the container's chains, rules and map elements, and the veth (netlink requests: create the pair, an address and up for each end, no IPv6 address generation for the inner end, the default route); no \`nft\` process runs. On an idle host that transaction also creates the table and registers its base chains' netfilter hooks; the teardown (deleting the veth and the rules) waits for RCU grace periods. The socket redirect's programs are linked by a thread of their own once the process runs (on this cgroup v1 host the first mount of cgroup v2 takes ~12 ms); the whole run waits for it."
  echo
  echo "Exact commands: the server is \`iperf3 -s -p 5201\` (\`ip netns exec\` for the ceiling and socat, \`$(basename "$hydra") run --rootfs ROOTFS -p 15201:5201 -- iperf3 -s -p 5201\` for direct and the mappings, the same as a throw-away user through \`runuser\` with \`-p 15205:5201\` for rootless); the client \`iperf3 -c ADDR -p PORT -t $secs -f g\` (for direct, ADDR is the process's address from \`hydra ports NAME --json\` and PORT 5201); socat is \`socat TCP-LISTEN:15202,bind=127.0.0.1,fork,reuseaddr TCP:10.232.0.2:5201\`; start-up runs \`taskset -c 0 hydra run --rootfs rootfs/busybox --name N [-p 15203:80] -- hydra-probe now\`, alternating the modes."
)
echo "$block"

hack/doc-section.sh bench-net "Port forwarding" "$block"

# --- nothing may be left behind ----------------------------------------------------------------
cleanup
trap - EXIT
hack/check-clean.sh compare "$cache/host.snap"
