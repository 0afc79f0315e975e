#!/usr/bin/env bash
# One prepared call on a GPU machine (no network needed: torch, numpy, scipy, xarray, netCDF4,
# matplotlib, tqdm are enough; ray/submitit are not used). Writes under $OUT (or
# /tmp/danlab-gpu):
#   1. the GPU-marked tests (filters on CUDA, no host sync in the inner loop);
#   2. training throughput of the paper presets' networks on the GPU;
#   3. the casual preset trained for BUDGET seconds: throughput and test RMSE, and EnKF-N on
#      the same test trajectories on the GPU;
#   4. Fig. 3 at a reduced paper scale: dt = 0.05, 0.3, 1.0; every training capped at
#      STEPS steps of the paper's casual / boosted presets; the paper's 64-trajectory test set.
# Usage (device tool): BUDGET=120 STEPS=300 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/danlab-gpu}"
BUDGET="${BUDGET:-120}"
STEPS="${STEPS:-300}"
mkdir -p "$OUT"
python3 - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
echo "== 1. GPU tests"
python3 -m pytest -q -m gpu tests 2>&1 | tail -3 | tee "$OUT/gpu_tests.txt"
echo "== 2. training throughput of the presets' networks"
python3 benchmarks/bench_training.py --device cuda --presets casual,boosted --layouts "" \
  --batch 4096 | tee "$OUT/bench_training.md"
echo "== 3. casual preset, ${BUDGET} s of training, and EnKF-N on the same 64 trajectories"
python3 -m danlab train --preset casual --device cuda --time-budget "$BUDGET" \
  --trajectories 64 --out "$OUT/casual" --json --no-progress | tee "$OUT/casual.json" \
  | python3 -c "import json, sys; r = json.load(sys.stdin); print(f\"DAN {r['rmse_label']} \
after {r['steps']} steps, {r['throughput']:.0f} trajectory-cycles/s\")"
python3 -m danlab baseline --method enkf-n --device cuda --trajectories 64 --json \
  | tee "$OUT/enkf-n.json" | python3 -c "import json, sys; r = json.load(sys.stdin); \
print(f\"EnKF-N {r['rmse_label']} in {r['seconds_filter']:.1f} s\")"
echo "== 4. Fig. 3, reduced paper scale"
python3 -m danlab experiment run fig3 --scale paper --device cuda --executor inline \
  --grid dt=0.05,0.3,1.0 --set "max_steps=$STEPS" --out "$OUT/experiments" --no-progress \
  --json | tee "$OUT/fig3.json"
cp "$OUT/experiments/fig3/fig3.png" "$OUT/" 2>/dev/null || true
