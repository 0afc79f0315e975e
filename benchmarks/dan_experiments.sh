#!/usr/bin/env bash
# The DAN experiments of docs/dan.md, one training after the other, on the CPU.
# Usage: bash benchmarks/dan_experiments.sh [RUNS_DIR] [STEPS]   (results in RUNS_DIR/*/results.json)
# Each training is step-based (`--max-steps`, no time budget), so its RMSE does not depend on
# how loaded the machine is; its wall time does.
set -euo pipefail
RUNS="${1:-runs}"
STEPS="${2:-3000}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
train() {  # name, extra options
  local name="$1"; shift
  if [ -f "$RUNS/$name/results.json" ]; then echo "skip $name"; return; fi
  local resume=""; [ -f "$RUNS/$name/checkpoint.pt" ] && resume="--resume"
  danlab train --preset cpu --n-iter 8 --optimizer adam --max-steps "$STEPS" --time-budget 0 --out "$RUNS/$name" \
    --no-progress --json $resume "$@" > "$RUNS/$name.json"
  echo "$name: $(python3 -c "import json; print(round(json.load(open('$RUNS/$name.json'))['rmse'], 4))")"
}
mkdir -p "$RUNS"
train ablation-no-xf --variant no-xf
train ablation-linear --variant linear
train obs-alternate --obs alternate
train obs-random --obs random
train obs-random-half --obs random-half
train nx80 --nx 80
