#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a built forkjoin:
#   1. Debian packages (apt) the engine, its tests and its trainer need;
#   2. llama.cpp, pinned: the git bundle inside the npm package node-llama-cpp@3.21.1,
#      verified by sha256, cloned into third_party/llama.cpp (ignored by git);
#   3. libllama built once and installed into a cache outside the clone, keyed by the
#      llama.cpp commit and the build options, so a second run on this machine skips it;
#   4. llama-server from the same llama.cpp, cached the same way, copied to build/bin/llama-server
#      (the remote backend's tests and benchmarks run their threads on it);
#   5. forkjoin itself, configured against that cache, built into build/ (CLI at build/bin/forkjoin);
#   6. the server tests' client: the official `openai` npm package, pinned by server/test/package-lock.json.
# Environment: FORKJOIN_CACHE (default ~/.cache/forkjoin), FORKJOIN_JOBS (default nproc),
# FORKJOIN_SKIP_APT=1 to skip step 1 on a machine that already has the packages.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

LLAMA_NPM_PACKAGE="node-llama-cpp@3.21.1"
LLAMA_NPM_SHA256="7a231d6bafa14142a1cbed9893d4ec5bc6041b2a5f5939a623accaab4203c11f"
LLAMA_COMMIT="80fb11a"
cache="${FORKJOIN_CACHE:-$HOME/.cache/forkjoin}"
jobs="${FORKJOIN_JOBS:-$(nproc)}"

log() { printf '[setup] %s\n' "$*" >&2; }

# ---- 1. Debian packages ---------------------------------------------------------------------
apt_packages=(
  build-essential cmake ninja-build git ca-certificates pkg-config
  nlohmann-json3-dev libcpp-httplib-dev libcli11-dev libgtest-dev libbenchmark-dev libfmt-dev
  # The trainer: LibTorch, and OpenBLAS so it does not fall back to the 15x slower reference BLAS.
  libtorch-dev libopenblas0-openmp
  # libFuzzer and the sanitizers' runtimes (scripts/fuzz.sh; scripts/test.sh --sanitize).
  clang
)
if [[ "${FORKJOIN_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # npm fetches the pinned llama.cpp; a Node.js from another source may already carry it.
  command -v npm >/dev/null || missing+=(npm)
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# ---- 2. llama.cpp source -----------------------------------------------------------------------
# Options that change the built library are part of the cache key.
llama_cmake_options=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  -DGGML_NATIVE=ON
  -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_OPENSSL=OFF
)
options_key=$(printf '%s\n' "${llama_cmake_options[@]}" "$(c++ --version | head -1)" | sha256sum | cut -c1-12)
llama_prefix="$cache/llama.cpp-$LLAMA_COMMIT-$options_key"

fetch_llama_source() {
  local src="$root/third_party/llama.cpp"
  if [[ -d "$src/.git" ]] && [[ "$(git -C "$src" rev-parse --short=7 HEAD)" == "$LLAMA_COMMIT" ]]; then
    return
  fi
  local tarball="$cache/npm/node-llama-cpp-3.21.1.tgz"
  mkdir -p "$cache/npm"
  if [[ ! -f "$tarball" ]] || ! echo "$LLAMA_NPM_SHA256  $tarball" | sha256sum -c --quiet 2>/dev/null; then
    log "fetching $LLAMA_NPM_PACKAGE from the npm registry"
    rm -f "$tarball"
    (cd "$cache/npm" && npm pack --silent "$LLAMA_NPM_PACKAGE" >/dev/null)
  fi
  echo "$LLAMA_NPM_SHA256  $tarball" | sha256sum -c --quiet || {
    log "sha256 mismatch for $tarball: refusing to build an unverified llama.cpp"; exit 1; }
  local tmp; tmp=$(mktemp -d)
  tar -xzf "$tarball" -C "$tmp" package/llama/gitRelease.bundle
  rm -rf "$src"; mkdir -p "$root/third_party"
  git clone -q "$tmp/package/llama/gitRelease.bundle" "$src"
  rm -rf "$tmp"
  local head; head=$(git -C "$src" rev-parse --short=7 HEAD)
  [[ "$head" == "$LLAMA_COMMIT" ]] || { log "bundle holds llama.cpp $head, expected $LLAMA_COMMIT"; exit 1; }
}

# The source stays in the clone even when the builds below come from the cache: the fuzz targets
# compile ggml's GGUF reader from it (a few seconds from the cached npm package).
fetch_llama_source

# ---- 3. libllama, cached outside the clone ----------------------------------------------------
if [[ -f "$llama_prefix/.complete" ]]; then
  log "libllama $LLAMA_COMMIT found in cache: $llama_prefix"
else
  fetch_llama_source
  log "building libllama $LLAMA_COMMIT (cold build: about 10 minutes on 2 cores)"
  rm -rf "$llama_prefix" "$llama_prefix.build"
  cmake -S "$root/third_party/llama.cpp" -B "$llama_prefix.build" -G Ninja \
    "${llama_cmake_options[@]}" -DCMAKE_INSTALL_PREFIX="$llama_prefix" >/dev/null
  cmake --build "$llama_prefix.build" -j "$jobs" --target install >/dev/null
  echo "$LLAMA_COMMIT" > "$llama_prefix/.complete"
  rm -rf "$llama_prefix.build"
fi

# ---- 4. llama-server, cached outside the clone ---------------------------------------------------
# Its own build tree (common, mtmd and the server are not in libllama's); the web UI is left out (it
# would be fetched from Hugging Face or built with npm): the tests use the API only.
server_cmake_options=(
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON
  -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF
)
server_key=$(printf '%s\n' "${server_cmake_options[@]}" "$(c++ --version | head -1)" | sha256sum | cut -c1-12)
server_prefix="$cache/llama-server-$LLAMA_COMMIT-$server_key"
if [[ -x "$server_prefix/llama-server" ]]; then
  log "llama-server $LLAMA_COMMIT found in cache: $server_prefix"
else
  fetch_llama_source
  log "building llama-server $LLAMA_COMMIT (cold build: about 6 minutes on 2 cores)"
  rm -rf "$server_prefix" "$server_prefix.build"
  cmake -S "$root/third_party/llama.cpp" -B "$server_prefix.build" -G Ninja "${server_cmake_options[@]}" >/dev/null
  cmake --build "$server_prefix.build" -j "$jobs" --target llama-server >/dev/null
  mkdir -p "$server_prefix"
  cp "$server_prefix.build/bin/llama-server" "$server_prefix/llama-server"
  rm -rf "$server_prefix.build"
fi

# ---- 5. forkjoin --------------------------------------------------------------------------------
log "building forkjoin"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$llama_prefix" -DFORKJOIN_LLAMA_COMMIT="$LLAMA_COMMIT" >/dev/null
cmake --build "$root/build" -j "$jobs"
install -m 755 "$server_prefix/llama-server" "$root/build/bin/llama-server"
# ---- 6. the server tests' OpenAI client ----------------------------------------------------------
if [[ ! -d "$root/server/test/node_modules/openai" ]]; then
  log "installing the openai npm client for the server tests (server/test)"
  (cd "$root/server/test" && npm ci --silent --no-audit --no-fund)
fi
log "done: $root/build/bin/forkjoin"
