#!/usr/bin/env bash
# hack/build-release.sh: the release build the benchmarks measure (log in
# hack/.cache/cargo-release.log; its last lines on failure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p hack/.cache
locked=() && [[ -f Cargo.lock ]] && locked=(--locked)
if ! cargo build --release "${locked[@]}" >hack/.cache/cargo-release.log 2>&1; then
  tail -n 20 hack/.cache/cargo-release.log >&2
  echo "the release build failed (hack/.cache/cargo-release.log)" >&2
  exit 1
fi
