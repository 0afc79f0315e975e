"""Fig. A2: test RMSE against the batch size S_b for several N_r (a) and against N_r for
several S_b (b), several trainings per pair (mean +- std)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from danlab.experiments import common as C
from danlab.sweep import Sweep

NAME = "figA2"
TITLE = "Test RMSE against S_b and N_r (Fig. A2)"
S_B = {"smoke": [4, 8], "cpu": [8, 16, 32, 64], "paper": [8, 16, 32, 64, 128, 256]}
N_R = {"smoke": [48, 96], "cpu": [1024, 4096, 16384], "paper": [2**10, 2**12, 2**14, 2**16,
                                                                 2**18]}
SEEDS = {"smoke": 2, "cpu": 2, "paper": 3}
#: trajectory-cycles of training per run at cpu scale (equal for every pair: the budget
#: that a fixed wall-clock allows, not the paper's epochs)
CPU_BUDGET = 32 * 8 * 4000


def compute(scale: str, ctx):
    train = ctx.training(C.training(scale))
    points = []
    for n_r in N_R[scale]:
        for s_b in S_B[scale]:
            p = {"n_r": n_r, "s_b": s_b, "val_trajectories": min(256, n_r // 10)}
            if scale == "cpu":
                p["max_steps"] = CPU_BUDGET // (s_b * train.get("n_iter", 8))
            points.append(p)
    seeds = list(range(SEEDS[scale]))
    points = [{**p, "seed": s} for p in points for s in seeds]
    ds = ctx.run(Sweep("train", {**train, **C.twin(scale)}, {}, points, name="grid"))
    shape = (len(N_R[scale]), len(S_B[scale]), len(seeds))
    out = {k: np.full(shape, np.nan) for k in ("rmse", "diverged", "trajectories")}
    for i, n_r in enumerate(N_R[scale]):
        for j, s_b in enumerate(S_B[scale]):
            for k, s in enumerate(seeds):
                cell = ds.sel({"n_r": n_r, "s_b": s_b, "seed": s})
                for v in out:  # the other labels (max_steps...) have one finished value
                    vals = cell[v].values.ravel()
                    vals = vals[~np.isnan(vals)] if v != "diverged" else vals[
                        ~np.isnan(cell["rmse"].values.ravel())]
                    out[v][i, j, k] = vals[0] if len(vals) else np.nan
    return xr.Dataset({k: (("n_r", "s_b", "seed"), v) for k, v in out.items()},
                      coords={"n_r": N_R[scale], "s_b": S_B[scale], "seed": seeds})


def plot(ds, stem):
    import matplotlib.pyplot as plt

    mean, std = ds["rmse"].mean("seed"), ds["rmse"].std("seed")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for n_r in ds["n_r"].values:
        m, s = mean.sel(n_r=n_r), std.sel(n_r=n_r)
        axes[0].errorbar(ds["s_b"], m, s, fmt="o-", capsize=3, label=f"N_r = {n_r}")
    for s_b in ds["s_b"].values:
        m, s = mean.sel(s_b=s_b), std.sel(s_b=s_b)
        axes[1].errorbar(ds["n_r"], m, s, fmt="o-", capsize=3, label=f"S_b = {s_b}")
    axes[0].set(xscale="log", xlabel="S_b", ylabel="test RMSE", title="(a)")
    axes[1].set(xscale="log", xlabel="N_r", ylabel="test RMSE", title="(b)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"{ds.attrs.get('title', '')} [{ds.attrs.get('scale', '')}]")
    return C.save(fig, stem)
