"""How far the cpu preset's training trajectories drift from their truths during a run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lost_trajectories.py OUT 7200 [600,1200]

Trains the cpu preset at S_b = 32 (the documented 2-hour row's, whatever the budget) for the
given seconds (optional snapshot times) and, at every epoch end, appends to OUT.lost.jsonl the
analysis RMSE of every training trajectory in climatological spreads: median, 90th and 99th
percentiles, the worst, how many exceed 0.25 / 0.5 / 0.75 / 0.9, and the run's rollbacks and
skipped steps so far (docs/dan.md, the 2-hour run).
"""

import json
import sys

import torch

from danlab import training
from danlab.config import preset
from danlab.train import train


def probe(out: str, seconds: float, snapshots: tuple[float, ...]) -> dict:
    log = open(f"{out}.lost.jsonl", "w")
    end_epoch = training.Session.end_epoch

    def end_epoch_probed(self, elapsed, train_rmse):
        d = self.data
        e = ((d.xa[:d.n_train] - d.truth[:d.n_train]) ** 2).mean(-1).sqrt() / d.std
        q = torch.quantile(e, torch.tensor([0.5, 0.9, 0.99]))
        record = dict(step=self.counters.step, t=round(elapsed, 1), med=float(q[0]),
                      q90=float(q[1]), q99=float(q[2]), worst=float(e.max()),
                      **{f"n{int(100 * c)}": int((e > c).sum()) for c in (0.25, 0.5, 0.75, 0.9)},
                      rollbacks=self.counters.rollbacks, skipped=self.counters.skipped)
        log.write(json.dumps(record) + "\n")
        log.flush()
        return end_epoch(self, elapsed, train_rmse)

    training.Session.end_epoch = end_epoch_probed
    cfg = preset("cpu", time_budget=seconds, s_b=32, val_every=1)
    return train(cfg, out, progress=False, snapshots=snapshots)


if __name__ == "__main__":
    snaps = tuple(float(t) for t in sys.argv[3].split(",")) if len(sys.argv) > 3 else ()
    r = probe(sys.argv[1], float(sys.argv[2]), snaps)
    print(f"test RMSE {r['rmse']:.4f}, {r['steps']} steps, {r['skipped']} skipped, "
          f"{r['rollbacks']} rollbacks")
