#!/usr/bin/env bash
# The remote backend against the in-process one, and two replicas against one, side by side in one run
# (same problems, same model, greedy). Starts llama-servers on ephemeral 127.0.0.1 ports and stops them
# whatever the outcome. Prints one JSON line per run and the ratios.
#   scripts/bench_remote.sh [in-process-vs-remote|replicas|all]
# Environment: N4 (4-number problems, default 100), N3 (3-number problems, default 100).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fj="$root/build/bin/forkjoin"
ls_bin="$root/build/bin/llama-server"
model="$root/models/countdown.gguf"
what="${1:-all}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
# start_server CPUS THREADS SLOTS CTX_PER_SLOT -> prints the URL
start_server() {
  local cpus=$1 threads=$2 slots=$3 ctx=$4 port; port=$(free_port)
  taskset -c "$cpus" "$ls_bin" -m "$model" --host 127.0.0.1 --port "$port" -np "$slots" -kvu -c $((slots * ctx)) \
    -t "$threads" -tb "$threads" --no-webui --no-warmup >"/tmp/bench-remote-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { echo "http://127.0.0.1:$port"; return; }
    sleep 0.1
  done
  echo "llama-server on $port did not start" >&2; exit 1
}
stop_servers() { cleanup; pids=(); sleep 0.5; }
bench() { "$fj" bench countdown --json "$@"; }
field() { python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$1" "$2"; }

if [[ $what == all || $what == in-process-vs-remote ]]; then
  n=${N4:-100}
  echo "# Countdown native, first $n 4-number problems, window 1024, greedy, 16 problems in flight"
  args=(--problems "$root/models/countdown4-eval.jsonl" --limit "$n" --context 1024 --strategy native --concurrency 16)
  local_run=$(bench "${args[@]}" --threads 2); echo "in-process: $local_run"
  url=$(start_server 0-1 2 32 1024)
  remote_run=$(bench "${args[@]}" --backend remote --url "$url" --remote-parallel 32); echo "remote (1 llama-server, 2 threads): $remote_run"
  stop_servers
  echo "wall time remote / in-process: $(field "$remote_run" "j['run_wall_seconds_per_problem']/$(field "$local_run" "j['run_wall_seconds_per_problem']")")"
  echo "tokens/s in-process / remote: $(field "$local_run" "j['run_tokens_per_s']/$(field "$remote_run" "j['run_tokens_per_s']")")"
fi

if [[ $what == all || $what == replicas ]]; then
  n=${N3:-100}
  echo "# Countdown native, first $n 3-number problems, window 512, greedy, 16 problems in flight; each replica on 1 core"
  args=(--problems "$root/models/countdown-eval.jsonl" --limit "$n" --context 512 --strategy native --concurrency 16 --remote-parallel 32)
  a=$(start_server 0 1 16 512)
  one=$(bench "${args[@]}" --backend remote --url "$a"); echo "1 replica: $one"
  stop_servers
  a=$(start_server 0 1 16 512); b=$(start_server 1 1 16 512)
  two=$(bench "${args[@]}" --backend remote --url "$a" --url "$b"); echo "2 replicas, cache-aware: $two"
  stop_servers
  a=$(start_server 0 1 16 512); b=$(start_server 1 1 16 512)
  rr=$(bench "${args[@]}" --backend remote --url "$a" --url "$b" --routing round-robin); echo "2 replicas, round-robin: $rr"
  stop_servers
  echo "throughput 2 replicas / 1 (cache-aware): $(field "$one" "j['run_wall_seconds_per_problem']/$(field "$two" "j['run_wall_seconds_per_problem']")")"
  echo "throughput 2 replicas / 1 (round-robin): $(field "$one" "j['run_wall_seconds_per_problem']/$(field "$rr" "j['run_wall_seconds_per_problem']")")"
  for run in two rr; do
    echo "$run: resumed-request prefix hit $(field "${!run}" "round(100*j['remote']['resumed']['cached_tokens']/max(1,j['remote']['resumed']['prompt_tokens']),1)")%," \
         "first-request hit $(field "${!run}" "round(100*j['remote']['first']['cached_tokens']/max(1,j['remote']['first']['prompt_tokens']),1)")%"
  done
fi
