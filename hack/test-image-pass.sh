#!/usr/bin/env bash
# The isolation suites again, with the test rootfs run from an encrypted `.hcon` image of it
# (`hydra run --image FILE --key KEY` instead of `--rootfs`; see Hydra::run_in): a process run
# from an image must behave as one run from the directory. The image, its key and its cache
# live in hack/.cache/test-image/ and are made afresh each time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=$PWD/hack/.cache/test-image
hydra=$PWD/target/x86_64-unknown-linux-gnu/debug/hydra
rm -rf "$dir" && mkdir -p "$dir"
"$hydra" keygen -o "$dir/k" >/dev/null
"$hydra" image pack rootfs/busybox -o "$dir/rootfs.hcon" --recipient "$dir/k.pub"
HYDRA_TEST_IMAGE=$dir/rootfs.hcon HYDRA_TEST_IMAGE_KEY=$dir/k HYDRA_IMAGE_CACHE=$dir/cache \
  HYDRA_ROOTFS=$PWD/rootfs/busybox cargo test --locked \
  --test run_namespaces --test run_privileges --test run_filesystem --test run_exit --test run_init
[[ -n $(ls "$dir/cache") ]] || { echo "test-image-pass: the image cache stayed empty: nothing ran from the image" >&2; exit 1; }
rm -rf "$dir"
