# Sourced by the evaluation scripts: reads [MODEL] [NAME] from "$@" into $model and $name, then
# changes to the repository root. MODEL defaults to the shipped models/countdown.gguf (NAME
# "shipped"); for a training run's export NAME defaults to its folder, e.g. cd-v5 for
# ~/.cache/forkjoin/train/cd-v5/model.gguf. NAME prefixes the reports, so each stage keeps its own.
if [ $# -ge 1 ]; then
  model=$(realpath "$1")  # before the cd below, so a path relative to the caller's directory works
  name=${2:-$(basename "$(dirname "$model")")}
else
  model=models/countdown.gguf
  name=shipped
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
