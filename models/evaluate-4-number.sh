#!/usr/bin/env bash
# Re-measures the 4-number figures in models/README.md for a model trained past the 3-number stage:
#   1. sequential vs native at a 1,024-token per-thread window on all 500 problems of
#      models/countdown4-eval.jsonl (the window where 4-number sequential traces no longer fit);
#   2. the curve over windows 512..4096 on the first 50 (4,096 holds every sequential trace).
# Usage: models/evaluate-4-number.sh [MODEL] [NAME] (see models/model-and-name.sh); reports go to
#   models/eval/NAME-4-number-{1024,curve}.{md,svg}.
# Greedy, 16 problems in flight. Takes about 85 minutes on 2 cores (the first command 55-57); run it
# with the machine otherwise idle.
set -euo pipefail
source "$(dirname "$0")/model-and-name.sh"
bin=build/bin/forkjoin
out=models/eval
mkdir -p "$out"
problems=models/countdown4-eval.jsonl

"$bin" bench countdown --model "$model" --problems "$problems" --sweep \
  --sweep-strategies sequential,native --sweep-contexts 1024 \
  --report "$out/$name-4-number-1024"

"$bin" bench countdown --model "$model" --problems "$problems" --limit 50 --sweep \
  --sweep-strategies sequential,native --sweep-contexts 512,2048,4096 \
  --report "$out/$name-4-number-curve"
