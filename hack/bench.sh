#!/usr/bin/env bash
# All benchmarks (`make bench`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hack/bench-start.sh
hack/bench-up.sh
hack/bench-net.sh
hack/bench-ipc.sh
hack/bench-image.sh
