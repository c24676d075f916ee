#!/usr/bin/env bash
# libFuzzer targets (fuzz/): builds them with clang into build-fuzz/ (AddressSanitizer + UBSan) and runs
# one on its committed seed corpus (fuzz/corpus/TARGET, read only; new inputs go to a scratch copy).
#   scripts/fuzz.sh --list                 the targets
#   scripts/fuzz.sh TARGET SECONDS         run one; a crash is saved to build-fuzz/crashes/TARGET/ and
#                                          the exit status is non-zero
#   scripts/fuzz.sh --all SECONDS          every target in turn (CI: a short time each)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
targets=(dialect_parsers openai_request remote_stream countdown_text plan_outline gguf_file)
build="$root/build-fuzz"

if [[ "${1:-}" == "--list" ]]; then printf '%s\n' "${targets[@]}"; exit 0; fi
if [[ $# -ne 2 ]]; then echo "usage: scripts/fuzz.sh TARGET SECONDS | --all SECONDS | --list" >&2; exit 2; fi
command -v clang++ >/dev/null || { echo "clang++ is missing (apt install clang; scripts/setup.sh installs it)" >&2; exit 2; }

# A tree configured before the C sources (ggml's) joined is configured anew, with clang for both.
if [[ -f "$build/CMakeCache.txt" ]] && ! grep -q '^CMAKE_C_COMPILER:.*clang' "$build/CMakeCache.txt"; then rm -rf "$build"; fi
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi

run_one() {
  local target=$1 seconds=$2
  [[ " ${targets[*]} " == *" $target "* ]] || { echo "unknown target '$target' (scripts/fuzz.sh --list)" >&2; exit 2; }
  # Quiet when it builds; a failed build prints what ninja said (its errors go to stdout) and stops.
  local built
  if ! built=$(cmake --build "$build" --target "fuzz_$target" 2>&1); then
    echo "$built" | tail -40
    echo "[fuzz] $target: the build failed (above)"
    return 1
  fi
  local scratch; scratch=$(mktemp -d)
  cp -r "$root/fuzz/corpus/$target/." "$scratch/"
  mkdir -p "$build/crashes/$target"
  echo "[fuzz] $target for $seconds s"
  local rc=0
  local max_len=8192
  [[ "$target" == gguf_file ]] && max_len=65536  # a tokenizer's arrays alone take kilobytes
  "$build/fuzz_$target" "$scratch" -max_total_time="$seconds" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/crashes/$target/" -print_final_stats=1 2>"$build/$target.log" || rc=$?
  grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY" "$build/$target.log" | tail -4
  rm -rf "$scratch"
  if ((rc != 0)); then echo "[fuzz] $target FAILED (log: $build/$target.log, input: $build/crashes/$target/)"; return $rc; fi
}

if [[ "$1" == "--all" ]]; then
  for t in "${targets[@]}"; do run_one "$t" "$2"; done
else
  run_one "$1" "$2"
fi
