#!/usr/bin/env bash
# The cpu preset's learning curve beyond 10 minutes: annealed runs of 20 and 40 min,
# then one long run with weight snapshots at 2, 5, 10, 20, 40, 60 and 90 min, each scored on
# the baselines' 16 test trajectories. The 10-minute point and its 2- and 5-minute snapshots:
# `OMP_NUM_THREADS=1 bash benchmarks/cpu_preset_check.sh`. One thread per run, so that two runs
# can share a 2-core machine (one thread gives ~88% of two for this net: docs/performance.md).
# Wall-clock numbers: keep the machine otherwise quiet.
#   bash benchmarks/cpu_learning_curve.sh [RUNS_DIR] [LONG_SECONDS]
set -euo pipefail
RUNS="${1:-runs/curve}"
LONG="${2:-7200}"
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"
rmse() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['rmse']:.4f}\", r.get('steps', ''), round(r.get('seconds', 0), 1))" "$1"; }
for budget in 1200 2400; do
  danlab train --preset cpu --time-budget $budget --out "$RUNS/c$budget" --json --no-progress \
    > "$RUNS/c$budget.json"
  echo "cpu preset, $budget s: test RMSE, steps, training s = $(rmse "$RUNS/c$budget.json")"
done
danlab train --preset cpu --time-budget "$LONG" --out "$RUNS/long" --json --no-progress \
  --snapshots 120,300,600,1200,2400,3600,5400 > "$RUNS/long.json"
echo "cpu preset, $LONG s: $(rmse "$RUNS/long.json")"
for f in "$RUNS"/long/snapshots/t*.pt; do
  t=$(basename "$f" .pt)
  danlab evaluate "$RUNS/long" --checkpoint "snapshots/$t.pt" --json > "$RUNS/long-$t.json"
  echo "  snapshot $t (not annealed): $(rmse "$RUNS/long-$t.json")"
done
