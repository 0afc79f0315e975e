"""Catch and replay a non-finite training step of the cpu preset.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/nonfinite_hunt.py train OUT 4200
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/nonfinite_hunt.py replay OUT/FILE.pt

`train` runs the cpu preset with its peak learning rate held (`decay=0.02`, where long runs met
non-finite losses) and, whenever a step's loss or gradient is non-finite, saves what the step
started from: weights, batch indices and states (analysis, truth), the observation-noise
generator's state, N_iter. `replay` runs that step again (deterministic on a CPU) and prints,
cycle by cycle, the largest analysis and the worst trajectory, then the loss and gradient norm.
"""

import copy
import sys

import torch

from danlab import training
from danlab.config import preset
from danlab.filters.dan import DANFilter
from danlab.nets import build_net
from danlab.train import train

CFG = dict(decay=0.02, s_b=32, val_every=1)  # the documented hunt's recipe, at any budget


def hunt(out: str, seconds: float) -> None:
    step = training.Session.step

    def step_keeping_its_start(self, elapsed):
        idx = self.data.batch(self.counters.pos)
        start = dict(xa=self.data.xa[idx].clone(), truth=self.data.truth[idx].clone(),
                     gen=self.data.gen.get_state().clone(), idx=idx, step=self.counters.step,
                     weights=copy.deepcopy(self.net.state_dict()),
                     n_iter=training.n_iter_at(self.cfg, self.progress(elapsed)))
        rollbacks = self.counters.rollbacks
        loss = step(self, elapsed)
        if self.counters.rollbacks > rollbacks:
            torch.save(start, f"{self.out}/nonfinite_step{start['step']}.pt")
        return loss

    training.Session.step = step_keeping_its_start
    train(preset("cpu", time_budget=seconds, **CFG), out, progress=False)


def replay(path: str) -> None:
    s = torch.load(path, weights_only=True)
    cfg = preset("cpu", **CFG)
    net = build_net(cfg)
    net.load_state_dict(s["weights"])
    data = training.TrainingData(cfg, cfg.twin.make_model(), torch.device("cpu"),
                                 training.Group())
    data.truth, data.xa = torch.zeros(cfg.n_r, cfg.twin.nx), torch.zeros(cfg.n_r, cfg.twin.nx)
    data.truth[s["idx"]], data.xa[s["idx"]] = s["truth"], s["xa"]
    data.gen.set_state(s["gen"])
    err = ((s["xa"] - s["truth"]) ** 2).mean(-1).sqrt()
    print(f"step {s['step']}, N_iter {s['n_iter']}: starting analysis RMSE per trajectory "
          f"median {float(err.median()):.3f}, worst {float(err.max()):.3f} (trajectory "
          f"{int(err.argmax())} of the batch)")
    loss = 0.0
    for k, (_, xa, truth) in enumerate(data.run(DANFilter(net), s["idx"], s["n_iter"])):
        e = ((xa - truth) ** 2).mean(-1)
        print(f"cycle {k}: largest |x^a| {float(xa.detach().abs().max()):.3g}, non-finite "
              f"trajectories {int((~torch.isfinite(e.detach())).sum())}")
        loss = loss + e.mean()
    loss.backward()
    g = torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf"))
    print(f"loss {float(loss.detach()):.4g}, gradient norm {float(g):.4g}")


if __name__ == "__main__":
    hunt(sys.argv[2], float(sys.argv[3])) if sys.argv[1] == "train" else replay(sys.argv[2])
