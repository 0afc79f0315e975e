#!/usr/bin/env bash
# The issue-3 wall-clock checks on a CPU: the smoke preset (target <= 0.32 in under 60 s), the
# cpu preset (target <= 0.23 within 10 minutes, with snapshots at 2 and 5 minutes), then the
# training/cycle benchmark. Run it on a quiet machine: its numbers are wall-clock.
#   bash benchmarks/cpu_preset_check.sh [RUNS_DIR]
set -euo pipefail
RUNS="${1:-runs/check}"
mkdir -p "$RUNS"
rmse() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['rmse']:.4f}\", r.get('steps', ''), round(r.get('seconds', 0), 1))" "$1"; }
nproc; python3 -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"
start=$(date +%s)
danlab train --preset smoke --out "$RUNS/smoke" --json > "$RUNS/smoke.json"
echo "smoke (process wall $(( $(date +%s) - start )) s): test RMSE, steps, training s = $(rmse "$RUNS/smoke.json")"
danlab train --preset cpu --out "$RUNS/cpu" --json --snapshots 120,300 > "$RUNS/cpu.json"
echo "cpu: test RMSE, steps, training s = $(rmse "$RUNS/cpu.json")"
for t in 120 300; do
  danlab evaluate "$RUNS/cpu" --checkpoint "snapshots/t$t.pt" --json > "$RUNS/cpu-t$t.json"
  echo "cpu snapshot at $t s (not annealed): test RMSE $(rmse "$RUNS/cpu-t$t.json")"
done
danlab evaluate "$RUNS/cpu" --nx 80 --json > "$RUNS/cpu-nx80.json"
echo "cpu net at N_x=80: test RMSE $(rmse "$RUNS/cpu-nx80.json")"
python3 benchmarks/bench_training.py --steps 20 | tee "$RUNS/bench_training.md"
