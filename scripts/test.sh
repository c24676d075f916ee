#!/usr/bin/env bash
# Runs the whole test suite (ctest over build/). Run scripts/setup.sh first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmake --build "$root/build" -j "${FORKJOIN_JOBS:-$(nproc)}"
ctest --test-dir "$root/build" --output-on-failure -j "${FORKJOIN_JOBS:-$(nproc)}" "$@"
