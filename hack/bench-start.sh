#!/usr/bin/env bash
# Start-up benchmark (`make bench-start`): the wall time of `hydra run ... /bin/true` in the
# busybox rootfs next to its peers, all rows in ONE hyperfine invocation pinned to CPU 0 (spawn
# timings on these VMs are quantised to ~4 ms unpinned; rows from one run compare fairly).
# Results: hack/.cache/bench-start.{md,json} and the table in docs/benchmarks.md.
# A peer (or hydra) that cannot run here is skipped with its error; no number is ever made up.
# RUNS=20 WARMUP=2 hack/bench-start.sh gives a quick, rough run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
cache=$repo/hack/.cache
rootfs=$repo/rootfs/busybox
bundle=$cache/bundle
runs=${RUNS:-200} warmup=${WARMUP:-20}
[[ -x $rootfs/bin/busybox ]] || { echo "bench-start: no $rootfs; run make rootfs" >&2; exit 1; }
mkdir -p "$cache"

# --- cleanup: bundle, any container of ours a runtime still lists, their cgroups ---------------
cleanup() {
  local rt id
  for rt in runc crun; do
    command -v "$rt" >/dev/null || continue
    for id in $("$rt" list -q 2>/dev/null | grep '^hbench-' || true); do
      echo "bench-start: removing leftover $rt container $id"
      "$rt" delete -f "$id" || true
    done
  done
  find /sys/fs/cgroup -maxdepth 4 -depth -type d -name 'hbench-*' -exec rmdir {} + 2>/dev/null || true
  rm -rf "$bundle"
  rmdir /run/runc /run/crun 2>/dev/null || true  # their state roots, if we made them and they are empty
}
trap cleanup EXIT
hack/check-clean.sh snapshot "$cache/bench-host.snap"

# --- the rows ----------------------------------------------------------------------------------
names=() cmds=() notes=()
# hyperfine -N splits its command string like a shell does: quote each word.
quote() { local q; q=$(printf '%q ' "$@"); echo "${q% }"; }

# add NAME CMD...: run CMD once; benchmark it only if that worked, else note why not.
add() {
  local name=$1 err rc=0; shift
  err=$(timeout 60 "$@" 2>&1 >/dev/null </dev/null) || rc=$?
  if [[ $rc -eq 0 ]]; then
    names+=("$name") cmds+=("$(quote "$@")")
  else
    err=$(tail -n 3 <<<"$err" | tr '\n' ' ')
    echo "bench-start: skipping $name: exit $rc: $err" >&2
    notes+=("$name: not measured (exit $rc here: ${err:-no message})")
  fi
}

# hydra (release build). It is being written alongside: a binary that builds but does not yet
# run containers must not produce a number, so it first has to pass on an exit code it can only
# return by really running the command.
hydra=$repo/target/x86_64-unknown-linux-gnu/release/hydra
locked=() && [[ -f Cargo.lock ]] && locked=(--locked)
if cargo build --release "${locked[@]}" >"$cache/cargo-release.log" 2>&1; then
  rc=0
  timeout 30 "$hydra" run --rootfs "$rootfs" --memory 64M -- /bin/sh -c 'exit 42' \
    >/dev/null 2>&1 </dev/null || rc=$?
  if [[ $rc -eq 42 ]]; then
    add "hydra run" "$hydra" run --rootfs "$rootfs" --memory 64M -- /bin/true
  else
    notes+=("hydra: not measured (\`hydra run ... -- sh -c 'exit 42'\` exited $rc, not 42: not working yet)")
  fi
else
  tail -n 5 "$cache/cargo-release.log" >&2
  notes+=("hydra: not measured (the release build failed, see hack/.cache/cargo-release.log)")
fi
hydra_missing=
[[ ${#names[@]} -eq 1 ]] || hydra_missing=${notes[-1]}

add "/bin/true on the host" /bin/true

# The C floor: clone with 5 new namespaces + chroot + exec + wait, nothing else.
gcc -O2 -Wall -Wextra -o "$cache/clone-floor" hack/bench/clone-floor.c
add "C clone(5 ns)+chroot+exec" "$cache/clone-floor" "$rootfs"

add "bwrap --unshare-all" bwrap --unshare-all --die-with-parent --ro-bind "$rootfs" / \
  --proc /proc --dev /dev /bin/true

# OCI bundle from `runc spec` (its default namespaces incl. network), patched to run /bin/true
# from a read-only rootfs/busybox with a 64 MiB memory limit, like the hydra row.
rm -rf "$bundle" && mkdir -p "$bundle" && runc spec --bundle "$bundle"
python3 - "$bundle/config.json" "$rootfs" <<'PY'
import json, sys
path, rootfs = sys.argv[1:]
c = json.load(open(path))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["root"] = {"path": rootfs, "readonly": True}
c["linux"].setdefault("resources", {})["memory"] = {"limit": 64 * 1024 * 1024}
json.dump(c, open(path, "w"), indent=2)
PY
add "crun run (cgroup v1)" hack/bench/oci-run.sh crun "$bundle"
add "runc run (cgroup v1)" hack/bench/oci-run.sh runc "$bundle"

# --- measure -----------------------------------------------------------------------------------
hf=(taskset -c 0 hyperfine -N --warmup "$warmup" --runs "$runs"
    --export-json "$cache/bench-start.json" --export-markdown "$cache/bench-start.md")
for i in "${!names[@]}"; do hf+=(-n "${names[$i]}" "${cmds[$i]}"); done
# The command as one copy-pasteable line (single-quoting the words that need it).
shown=$(for w in "${hf[@]}"; do
  if [[ $w =~ ^[A-Za-z0-9_./=:+-]+$ ]]; then printf '%s ' "$w"; else printf "'%s' " "$w"; fi
done)
shown=${shown% }
echo "bench-start: $shown"
"${hf[@]}"

# --- docs/benchmarks.md ------------------------------------------------------------------------
facts="Linux $(uname -r), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
facts+=" ($(nproc) CPUs), $(date -u '+%Y-%m-%d %H:%M UTC'), $(hyperfine --version)"
printf '%s\n' "${notes[@]}" >"$cache/bench-start.notes"
python3 - "$cache/bench-start.json" docs/benchmarks.md "$repo/" "$facts" "$shown" \
  "$cache/bench-start.notes" <<'PY'
import json, os, sys
results, doc, repo, facts, command, notes = sys.argv[1:]
rows = json.load(open(results))["results"]
ms = lambda s: f"{s * 1000:.2f}"
hydra = next((r["median"] for r in rows if r["command"] == "hydra run"), None)
out = ["<!-- bench-start:begin -->",
       "### Start-up: `/bin/true` in the busybox rootfs",
       "",
       f"{facts}. Each row pinned to one CPU, one hyperfine invocation. "
       "Refresh with `make bench-start` (hack/bench-start.sh).",
       "",
       "| what | median ms | mean ms | min ms | median / hydra |",
       "|---|---:|---:|---:|---:|"]
for r in rows:
    ratio = f"{r['median'] / hydra:.2f}" if hydra else "n/a"
    out.append(f"| {r['command']} | {ms(r['median'])} | {ms(r['mean'])} | {ms(r['min'])} | {ratio} |")
out += [""] + [f"- {n}" for n in open(notes).read().splitlines() if n]
out += ["- crun/runc rows include a /bin/sh wrapper that picks a unique container id; crun runs in a "
        "private mount namespace that hides the cgroup2 mount (Debian's crun 1.8.1 refuses hybrid cgroups).",
        "", "Exact command:", "", "```", command.replace(repo, ""), "```", "<!-- bench-start:end -->"]
block = "\n".join(out)
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\n<!-- bench-start:begin -->\n<!-- bench-start:end -->\n"
begin, end = text.index("<!-- bench-start:begin -->"), text.index("<!-- bench-start:end -->")
text = text[:begin] + block + text[end + len("<!-- bench-start:end -->"):]
open(doc, "w").write(text)
print(block)
PY

# --- nothing may be left behind ----------------------------------------------------------------
cleanup
for rt in runc crun; do
  if "$rt" list -q 2>/dev/null | grep -q '^hbench-'; then echo "bench-start: $rt still lists containers" >&2; exit 1; fi
done
# Only a warning: on a shared machine someone else's container may have appeared meanwhile.
hack/check-clean.sh compare "$cache/bench-host.snap" || echo "bench-start: WARNING: see above" >&2
[[ -z $hydra_missing ]] || echo "bench-start: the hydra row is MISSING: $hydra_missing" >&2
