#!/usr/bin/env bash
# Re-measures the figures in models/README.md (the model card) on this machine:
#   1. accuracy over per-thread context windows, sequential vs native vs self-consistency, on the
#      500 held-out problems of models/countdown-eval.jsonl (16 problems in flight: throughput);
#   2. latency with one problem at a time (what "equal wall time" compares), on the first 200.
# Usage: models/evaluate.sh [MODEL] [NAME] (see models/model-and-name.sh); reports go to
#   models/eval/NAME-3-number-{context,latency}-sweep.{md,svg}. The card's 3-number tables are stage
#   cd-v1's (`git show 81e1cc9:models/countdown.gguf > cd-v1.gguf; models/evaluate.sh cd-v1.gguf cd-v1`).
# Takes about 35 minutes on 2 cores; run it with the machine otherwise idle.
set -euo pipefail
source "$(dirname "$0")/model-and-name.sh"
bin=build/bin/forkjoin
out=models/eval
mkdir -p "$out"
problems=models/countdown-eval.jsonl

"$bin" bench countdown --model "$model" --problems "$problems" --sweep \
  --sweep-strategies sequential,native,self-consistency@0.8 --samples 4 \
  --sweep-contexts 128,160,192,256,320,384 --concurrency 16 \
  --report "$out/$name-3-number-context-sweep"

"$bin" bench countdown --model "$model" --problems "$problems" --limit 200 --sweep \
  --sweep-strategies sequential,native,self-consistency@0.8 --samples 4 \
  --sweep-contexts 192,256,384 --concurrency 1 \
  --report "$out/$name-3-number-latency-sweep"
