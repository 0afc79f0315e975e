"""Fig. A1: test RMSE of the DAN against N_iter, the cycles of truncated backpropagation, with
several trainings (seeds) per value: mean and +- one standard deviation."""

from __future__ import annotations

import numpy as np
import xarray as xr

from danlab.experiments import common as C
from danlab.sweep import Sweep

NAME = "figA1"
TITLE = "Test RMSE against N_iter (Fig. A1)"
N_ITER = {"smoke": [1, 4], "cpu": [1, 2, 4, 8, 16, 32], "paper": list(range(1, 41))}
SEEDS = {"smoke": 2, "cpu": 3, "paper": 5}


def compute(scale: str, ctx):
    n_iter = ctx.values("n_iter", N_ITER[scale])
    seeds = ctx.values("seed", list(range(SEEDS[scale])))
    train = ctx.training(C.training(scale))
    steps = train.get("max_steps")
    grid = {"n_iter": n_iter, "seed": seeds}
    points = []
    if steps:  # equal trajectory-cycles per training: fewer steps for longer N_iter windows
        base_iter = 8
        grid = {"seed": seeds}
        points = [{"n_iter": k, "max_steps": max(1, steps * base_iter // k)} for k in n_iter]
    runs = [{**p, "seed": s} for p in points for s in seeds] if points else []
    ds = ctx.run(Sweep("train", {**train, **C.twin(scale)}, {} if points else grid, runs,
                       name="n_iter"))
    rmse = np.full((len(n_iter), len(seeds)), np.nan)
    div = np.zeros_like(rmse)
    traj = np.zeros_like(rmse)
    for i, k in enumerate(n_iter):
        for j, s in enumerate(seeds):
            sel = {"n_iter": k, "seed": s}
            if points:
                sel["max_steps"] = max(1, steps * 8 // k) if steps else None
            cell = ds.sel({key: v for key, v in sel.items() if key in ds.dims})
            rmse[i, j], div[i, j], traj[i, j] = (float(cell[v]) for v in
                                                 ("rmse", "diverged", "trajectories"))
    return xr.Dataset({"rmse": (("n_iter", "seed"), rmse), "diverged": (("n_iter", "seed"), div),
                       "trajectories": (("n_iter", "seed"), traj)},
                      coords={"n_iter": n_iter, "seed": seeds},
                      attrs={"note": "each training sees the same number of trajectory-cycles "
                                     "(max_steps x n_iter constant) where steps are capped"})


def plot(ds, stem):
    import matplotlib.pyplot as plt

    mean, std = ds["rmse"].mean("seed"), ds["rmse"].std("seed")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ds["n_iter"], mean, "o-", color="C2", label=f"DAN, mean of {ds.sizes['seed']} "
                                                          "trainings")
    ax.fill_between(ds["n_iter"], mean - std, mean + std, color="C2", alpha=0.25,
                    label="+- one std")
    n_div = int(ds["diverged"].sum())
    if n_div:
        ax.text(0.02, 0.02, f"{n_div} diverged test trajectories left out of some means",
                transform=ax.transAxes, fontsize=7)
    ax.set(xlabel="N_iter (cycles of truncated backpropagation)", ylabel="test RMSE",
           xscale="log", title=f"{ds.attrs.get('title', '')} [{ds.attrs.get('scale', '')}]")
    ax.legend(fontsize=8)
    return C.save(fig, stem)
