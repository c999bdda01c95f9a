#!/usr/bin/env bash
# `make bench-image`: what `.hcon` images cost. In one run, on a ~200 MB tree (the test rootfs plus
# files of random and of compressible bytes), single-threaded hydra (pack, and unpack = verify +
# decrypt + decompress + write) for `none` and `kyber_aes`, against `tar | zstd` and
# `tar | zstd | openssl enc -aes-256-ctr` (openssl enc has no GCM) and their reverse; the
# machine's AES-256-GCM ceiling (`openssl speed`); and the start-up of `hydra run --image`
# cold (first use: verify and unpack into the cache) and warm (cached) against `--rootfs`.
# Raw output in hack/.cache/bench-image/; the table goes between the bench-image markers of
# docs/benchmarks.md. Everything it makes is removed at the end, also on failure.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $(id -u) -eq 0 ]] || { echo "bench-image: run as root (device nodes, the image cache)" >&2; exit 1; }
cache=$PWD/hack/.cache/bench-image
hydra=$PWD/target/x86_64-unknown-linux-gnu/release/hydra
work=$(mktemp -d /tmp/hydra-bench-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"
hack/build-release.sh
export HYDRA_IMAGE_CACHE=$work/cache

# --- the tree: the rootfs, 100 MB of random bytes, 100 MB of text-like bytes ---------------------
tree=$work/tree
cp -a rootfs/busybox "$tree"
mkdir -p "$tree/data"
for i in $(seq 20); do
  head -c 5M /dev/urandom >"$tree/data/random-$i"
  head -c 3750K /dev/urandom | base64 -w 76 >"$tree/data/text-$i"
done
bytes=$(du -sb "$tree" | cut -f1)
mb() { awk -v b="$bytes" -v s="$1" 'BEGIN {printf "%.0f", b / s / 1e6}'; }
# seconds CMD...: wall seconds of one run (after one warm-up run of the same command).
seconds() {
  "$@" >/dev/null 2>&1 || { echo "bench-image: failed: $*" >&2; exit 1; }
  local t0 t1
  t0=${EPOCHREALTIME/./}
  "$@" >/dev/null 2>&1
  t1=${EPOCHREALTIME/./}
  awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f", d / 1e6}'
}
"$hydra" keygen -o "$work/k" >/dev/null
head -c 32 /dev/urandom >"$work/aes.key"
pass=$(head -c 32 /dev/urandom | base64)

pack_none() { rm -f "$work/none.hcon"; taskset -c 0 "$hydra" image pack "$tree" -o "$work/none.hcon"; }
pack_kyber() { rm -f "$work/k.hcon"; taskset -c 0 "$hydra" image pack "$tree" -o "$work/k.hcon" --recipient "$work/k.pub"; }
unpack_none() { rm -rf "$work/out"; taskset -c 0 "$hydra" image unpack "$work/none.hcon" -o "$work/out"; }
verify_kyber() { taskset -c 0 "$hydra" image verify "$work/k.hcon" --key "$work/k"; }
unpack_kyber() { rm -rf "$work/out"; taskset -c 0 "$hydra" image unpack "$work/k.hcon" -o "$work/out" --key "$work/k"; }
tar_zstd() { tar -C "$tree" -cf - . | taskset -c 0 zstd -q -3 -T1 -o "$work/t.tar.zst" -f; }
tar_zstd_enc() { tar -C "$tree" -cf - . | zstd -q -3 -T1 -c | taskset -c 0 openssl enc -aes-256-ctr -pbkdf2 -pass "pass:$pass" -out "$work/t.tar.zst.enc"; }
untar_zstd() { rm -rf "$work/out" && mkdir "$work/out" && taskset -c 0 zstd -q -d -c "$work/t.tar.zst" | tar -C "$work/out" -xf -; }
untar_zstd_dec() { rm -rf "$work/out" && mkdir "$work/out" && taskset -c 0 openssl enc -d -aes-256-ctr -pbkdf2 -pass "pass:$pass" -in "$work/t.tar.zst.enc" | zstd -q -d -c | tar -C "$work/out" -xf -; }

s_pack_none=$(seconds pack_none)
s_pack_kyber=$(seconds pack_kyber)
s_tar=$(seconds tar_zstd)
s_tar_enc=$(seconds tar_zstd_enc)
s_unpack_none=$(seconds unpack_none)
s_unpack_kyber=$(seconds unpack_kyber)
s_verify=$(seconds verify_kyber)
image_bytes=$(stat -c %s "$work/k.hcon")
verify_rate=$(awk -v b="$image_bytes" -v s="$s_verify" 'BEGIN {printf "%.0f", b / s / 1e6}')
s_untar=$(seconds untar_zstd)
s_untar_dec=$(seconds untar_zstd_dec)
gcm=$(openssl speed -evp aes-256-gcm -bytes 16384 -seconds 2 2>/dev/null | awk 'tolower($1) == "aes-256-gcm" {v = $NF} END {sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6}')

# --- start-up: --rootfs, --image cold (empty cache), --image warm ----------------------------------
runs=${RUNS:-20}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
startup() {
  local t0 started
  t0=${EPOCHREALTIME/./}
  started=$(taskset -c 0 "$hydra" run "$@" -- hydra-probe now)
  echo $((started - t0))
}
small=$work/small.hcon
"$hydra" image pack rootfs/busybox -o "$small" --recipient "$work/k.pub"
rm -f "$cache"/*.times
for ((i = 0; i < runs; i++)); do
  startup --rootfs rootfs/busybox >>"$cache/dir.times"
  rm -rf "$HYDRA_IMAGE_CACHE"
  startup --image "$small" --key "$work/k" >>"$cache/cold.times"
  startup --image "$small" --key "$work/k" >>"$cache/warm.times"
done
ms() { median <"$cache/$1.times" | awk '{printf "%.2f", $1 / 1000}'; }
dir_ms=$(ms dir) cold_ms=$(ms cold) warm_ms=$(ms warm)
extra=$(awk -v a="$warm_ms" -v b="$dir_ms" 'BEGIN {printf "%.2f", a - b}')
unpack_rate=$(mb "$s_unpack_kyber")

facts="Linux $(uname -r), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
facts+=" ($(nproc) CPUs), $(date -u '+%Y-%m-%d %H:%M UTC')"
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN {ok = (op == ">=") ? v >= lim : v < lim; print ok ? "met" : "MISSED"}'; }
block=$(
  echo "### Images: pack, verify and decrypt, and starting from an image"
  echo
  echo "$facts. One run of \`make bench-image\` (hack/bench-image.sh), release build, each tool pinned to CPU 0 (zstd -3 -T1 like hydra's default level); a tree of $((bytes / 1000000)) MB (the test rootfs, 100 MB of random bytes, 100 MB of base64 text) on $(df --output=fstype /tmp | tail -n 1); each figure is the second of two runs; MB/s of the tree's bytes."
  echo
  echo "| step | seconds | MB/s |"
  echo "|---|---:|---:|"
  echo "| \`hydra image pack\`, none | $s_pack_none | $(mb "$s_pack_none") |"
  echo "| \`hydra image pack\`, kyber_aes | $s_pack_kyber | $(mb "$s_pack_kyber") |"
  echo "| \`tar \\| zstd -3\` | $s_tar | $(mb "$s_tar") |"
  echo "| \`tar \\| zstd -3 \\| openssl enc -aes-256-ctr\` | $s_tar_enc | $(mb "$s_tar_enc") |"
  echo "| \`hydra image unpack\` (verify + decompress + write), none | $s_unpack_none | $(mb "$s_unpack_none") |"
  echo "| \`hydra image unpack\` (verify + decrypt + decompress + write), kyber_aes | $s_unpack_kyber | $unpack_rate |"
  echo "| \`hydra image verify\` (decrypt + verify every chunk, no writes), kyber_aes: MB/s of the $((image_bytes / 1000000)) MB image | $s_verify | $verify_rate |"
  echo "| \`zstd -d \\| tar -x\` | $s_untar | $(mb "$s_untar") |"
  echo "| \`openssl enc -d \\| zstd -d \\| tar -x\` | $s_untar_dec | $(mb "$s_untar_dec") |"
  echo "| AES-256-GCM alone (\`openssl speed -evp aes-256-gcm\`, 16 KiB blocks) | | $gcm |"
  echo
  echo "| \`hydra run\` start-up ($runs runs, medians, CPU 0; \`-- hydra-probe now\`) | ms |"
  echo "|---|---:|"
  echo "| \`--rootfs rootfs/busybox\` | $dir_ms |"
  echo "| \`--image\` (busybox, kyber_aes), cold: verify + decrypt + unpack into the cache | $cold_ms |"
  echo "| \`--image\`, warm: cached | $warm_ms |"
  echo
  echo "- Targets (issue 6): decrypt + verify ≥ 1 GB/s on one core: $verify_rate MB/s, $(verdict "$verify_rate" 1000 ">=") (a whole unpack, which also decompresses and writes every file, runs at $unpack_rate MB/s of the tree; AES-GCM itself at $gcm MB/s); warm start within 1 ms of a directory rootfs: +$extra ms, $(verdict "$extra" 1 "<")."
)
echo "$block"
hack/doc-section.sh bench-image "Images" "$block"
