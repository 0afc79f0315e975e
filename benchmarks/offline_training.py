"""Offline training of the cpu preset's CNN on an EnKF-N's forecasts, against end-to-end training.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/offline_training.py --seconds 120 \
        [--run RUN_DIR]

The question a DA researcher asks first: an analysis operator is a regression from (x^f, y) to
the truth, so why cycle the network through N_iter forecasts at all, when a good filter gives
forecasts for free? Here the EnKF-N (N = 40) cycles `--trajectories` training trajectories
(its own seed, not the test set's) through the one cycle engine; its forecast means x^f after
`--spinup` cycles, with their observations y and truths, are the training pairs. The CNN is fit
by minimising |x^f + a(x^f, zeta) - x^t|^2 (Adam, cosine to 5e-5, --seconds of training), then:

* its one-step analysis RMSE on held-out EnKF-N forecasts (the regression it was fit on), and
* its test RMSE when it cycles on its own forecasts (the standard test set, as every DAN).

`--run RUN_DIR` also scores an end-to-end trained DAN on the same held-out EnKF-N forecasts, and
prints the forecast and analysis RMSEs of that DAN and of the EnKF-N each in its own cycle on
the test set.
L96 N_x = 40, F = 8, dt = 0.05, full observation, sigma = 1 (the default twin).
"""

import argparse
import math
import time

import torch

from danlab import make_filter, rng
from danlab.config import preset
from danlab.cycle import cycle
from danlab.filters.dan import DANFilter
from danlab.nets import build_net
from danlab.observations import projected_innovation
from danlab.runs import evaluate_run, load
from danlab.twin import TwinSpec


def enkf_forecasts(spec: TwinSpec, spinup: int, dtype=torch.float32):
    """(x^f, y, mask, truth, x^a), each (cycles - spinup, B, N_x): the EnKF-N's forecast and
    analysis means."""
    return forecasts_of(make_filter("enkf-n", members=40), spec, spinup, dtype)


def forecasts_of(filt, spec: TwinSpec, spinup: int, dtype=torch.float32):
    """(x^f, y, mask, truth, x^a) of `filt` cycling on the twin of `spec`, after `spinup`."""
    model, twin = spec.build(dtype=dtype)
    forecasts, analysis = [], filt.analysis

    def keep(state, y, mask, sigma, **kw):  # the forecast the engine hands to the analysis
        forecasts.append(filt.estimate(state))
        return analysis(state, y, mask, sigma, **kw)

    filt.analysis = keep
    state = filt.init(twin.x0, rng.TrajectoryStreams(twin.seed, rng.FILTER_INIT,
                                                     twin.n_trajectories))
    with torch.no_grad():
        analyses = [xa for _, xa in cycle(filt, state, model, twin.dt, twin.observations(),
                                          twin.sigma)]
    keep_from = slice(spinup, None)
    return (torch.stack(forecasts)[keep_from], twin.y[keep_from], twin.mask[keep_from],
            twin.truth[1:][keep_from], torch.stack(analyses)[keep_from])


def rmse(x, truth) -> float:
    """Mean over cycles and trajectories of the RMSE over N_x."""
    return float(((x - truth) ** 2).mean(-1).sqrt().mean())


def one_step_rmse(op, pairs, sigma: float) -> float:
    xf, y, mask, truth, _ = pairs
    with torch.no_grad():
        return rmse(xf + op(xf, projected_innovation(y, mask, xf, sigma)), truth)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trajectories", type=int, default=2048)
    p.add_argument("--cycles", type=int, default=300)
    p.add_argument("--spinup", type=int, default=100)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--run", default=None, help="an end-to-end trained run to compare")
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = preset("cpu")
    sigma = cfg.twin.sigma
    t0 = time.perf_counter()
    train = enkf_forecasts(cfg.twin.replace(trajectories=a.trajectories, cycles=a.cycles,
                                            spinup=a.spinup, seed=777), a.spinup)
    held = enkf_forecasts(cfg.twin.replace(trajectories=256, cycles=a.spinup + 100,
                                           spinup=a.spinup, seed=778), a.spinup)
    xf, y, mask, truth, _ = (t.reshape(-1, t.shape[-1]) for t in train)
    n = xf.shape[0]
    print(f"{n:,} EnKF-N forecasts in {time.perf_counter() - t0:.0f} s; on the held-out ones "
          f"the EnKF-N's forecast RMSE is {rmse(held[0], held[3]):.4f}, its analysis RMSE "
          f"{rmse(held[4], held[3]):.4f}")

    torch.manual_seed(a.train_seed)
    net = build_net(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(a.train_seed)
    t0, steps = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - t0) < a.seconds:
        lr = 5e-5 + 0.5 * (a.lr - 5e-5) * (1 + math.cos(math.pi * elapsed / a.seconds))
        for group in opt.param_groups:
            group["lr"] = lr
        i = torch.randint(n, (a.batch,), generator=gen)
        zeta = projected_innovation(y[i], mask[i], xf[i], sigma)
        loss = ((xf[i] + net(xf[i], zeta) - truth[i]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
        steps += 1
    net.eval()
    net.config = cfg
    test = evaluate_run(None, operator=net)
    print(f"offline CNN ({steps:,} steps of {a.batch} pairs in {a.seconds:.0f} s): one-step "
          f"RMSE on held-out EnKF-N forecasts {one_step_rmse(net, held, sigma):.4f}; cycled "
          f"on the test set {test.label()}")
    if a.run:
        op = load(a.run)
        print(f"end-to-end run {a.run}: one-step RMSE on held-out EnKF-N forecasts "
              f"{one_step_rmse(op, held, sigma):.4f}; cycled on the test set "
              f"{evaluate_run(a.run).label()}")
        # each in its own cycle on the test set: how far its forecasts are from the truth
        test = cfg.twin
        for name, filt, dtype in (("end-to-end DAN", DANFilter(op), torch.float32),
                                  ("EnKF-N", make_filter("enkf-n", members=40), torch.float64)):
            xf, _, _, truth, xa = forecasts_of(filt, test, test.spinup, dtype)
            print(f"{name} cycling on the test set (every trajectory): forecast RMSE "
                  f"{rmse(xf, truth):.4f}, analysis RMSE {rmse(xa, truth):.4f}")


if __name__ == "__main__":
    main()
