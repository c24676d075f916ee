#!/usr/bin/env bash
# Runs the whole test suite (ctest over build/). Run scripts/setup.sh first.
#   scripts/test.sh [ctest arguments]
#   scripts/test.sh --sanitize address,undefined [ctest arguments]   (or thread)
# --sanitize builds forkjoin instrumented into build-sanitize-<list>/ (libllama stays as setup built it:
# uninstrumented) and runs the suite there; a sanitizer report fails the test it happened in.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="${FORKJOIN_JOBS:-$(nproc)}"
sanitize=""
args=()
while (($#)); do
  case "$1" in
    --sanitize) sanitize="$2"; shift 2 ;;
    --sanitize=*) sanitize="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
build="$root/build"
if [[ -n "$sanitize" ]]; then
  [[ "$sanitize" =~ ^(address|undefined|thread)(,(address|undefined|thread))*$ ]] || {
    echo "--sanitize: a comma-separated list of address, undefined, thread; got '$sanitize'" >&2; exit 2; }
  prefix=$(sed -n 's/^CMAKE_PREFIX_PATH:[A-Z]*=//p' "$root/build/CMakeCache.txt" 2>/dev/null || true)
  [[ -n "$prefix" ]] || { echo "run scripts/setup.sh first (build/ names the llama.cpp cache)" >&2; exit 2; }
  build="$root/build-sanitize-${sanitize//,/-}"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$prefix" \
    -DFORKJOIN_SANITIZE="$sanitize" >/dev/null
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
fi
cmake --build "$build" -j "$jobs"
[[ "$build" == "$root/build" || ! -x "$root/build/bin/llama-server" ]] || install -m 755 "$root/build/bin/llama-server" "$build/bin/llama-server"
ctest --test-dir "$build" --output-on-failure -j "$jobs" "${args[@]}"
