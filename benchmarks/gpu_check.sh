#!/usr/bin/env bash
# One call on a GPU machine without network: trains the `casual` preset for a fixed budget and
# prints throughput and test RMSE, then the training/cycle benchmark and an EnKF-N reference on
# the same test trajectories. Needs only torch, numpy, scipy, xarray, matplotlib, tqdm (all in
# the GPU image); nothing is installed. Usage (device tool):
#   BUDGET=300 bash benchmarks/gpu_check.sh      # results under $OUT (or /tmp/danlab-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/danlab-gpu}"
BUDGET="${BUDGET:-300}"
mkdir -p "$OUT"
python3 - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
TEST="--test-trajectories 64 --test-cycles 2000 --test-spinup 500"
echo "== casual preset, ${BUDGET} s of training (float32)"
python3 -m danlab train --preset casual --device cuda --time-budget "$BUDGET" $TEST \
  --out "$OUT/casual" --json --no-progress | tee "$OUT/casual.json" | python3 -c "
import json, sys; r = json.load(sys.stdin)
print(f\"test RMSE {r['rmse']:.4f}  val {r['val_rmse']:.4f}  steps {r['steps']}  \"
      f\"{r['seconds']:.0f} s  throughput {r['throughput']:.0f} trajectory-cycles/s\")"
echo "== EnKF-N (N=40) on the same test trajectories"
python3 -m danlab baseline --method enkf-n --device cuda --trajectories 64 --cycles 2000 \
  --spinup 500 --json | tee "$OUT/enkf-n.json" | python3 -c "
import json, sys; r = json.load(sys.stdin); print(f\"EnKF-N test RMSE {r['rmse']:.4f}\")"
echo "== throughput of every preset's network"
python3 benchmarks/bench_training.py --device cuda --max-batch 4096 --batch 4096 | tee "$OUT/bench.md"
