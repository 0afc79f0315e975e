#!/usr/bin/env bash
# The cpu preset's learning curve (issue 3): the official 10-minute run (snapshots at 2 and 5
# min), the same at N_x = 80, then one 2-hour run with weight snapshots at 2, 5, 10, 20, 40, 60
# and 90 min, each scored on the baselines' 16 test trajectories. One thread per run, so that a
# second experiment can use the other core of a 2-core machine (one thread is as fast as two for
# this net: docs/performance.md). Wall-clock numbers: keep the machine otherwise quiet.
#   bash benchmarks/cpu_learning_curve.sh [RUNS_DIR] [LONG_SECONDS]
set -euo pipefail
RUNS="${1:-runs/curve}"
LONG="${2:-7200}"
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"
rmse() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['rmse']:.4f}\", r.get('steps', ''), round(r.get('seconds', 0), 1))" "$1"; }
danlab train --preset cpu --out "$RUNS/c10" --json --no-progress --snapshots 120,300 > "$RUNS/c10.json"
echo "cpu preset, 10 min: test RMSE, steps, training s = $(rmse "$RUNS/c10.json")"
for t in 120 300; do
  danlab evaluate "$RUNS/c10" --checkpoint "snapshots/t$t.pt" --json > "$RUNS/c10-t$t.json"
  echo "  snapshot at $t s (not annealed): $(rmse "$RUNS/c10-t$t.json")"
done
danlab evaluate "$RUNS/c10" --nx 80 --json > "$RUNS/c10-nx80.json"
echo "  the same net at N_x = 80: $(rmse "$RUNS/c10-nx80.json")"
danlab train --preset cpu --time-budget "$LONG" --out "$RUNS/long" --json --no-progress \
  --snapshots 120,300,600,1200,2400,3600,5400 > "$RUNS/long.json"
echo "cpu preset, $LONG s: $(rmse "$RUNS/long.json")"
for f in "$RUNS"/long/snapshots/t*.pt; do
  t=$(basename "$f" .pt)
  danlab evaluate "$RUNS/long" --checkpoint "snapshots/$t.pt" --json > "$RUNS/long-$t.json"
  echo "  snapshot $t (not annealed): $(rmse "$RUNS/long-$t.json")"
done
