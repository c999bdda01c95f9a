#!/usr/bin/env bash
# All benchmarks (`make bench`). For now only start-up; later benches are added here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hack/bench-start.sh
