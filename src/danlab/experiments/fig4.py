"""Fig. 4: test RMSE of DANs over (dt, N_iter), dt down to 0.01: the RMSE should depend mostly
on N_iter * dt (the memory of the cycle), so small dt needs large N_iter."""

from __future__ import annotations

import numpy as np

from danlab.experiments import common as C
from danlab.sweep import Sweep

NAME = "fig4"
TITLE = "Test RMSE over (dt, N_iter) (Fig. 4)"
DTS = {"smoke": [0.01, 0.05], "cpu": [0.01, 0.02, 0.05, 0.1, 0.3],
       "paper": [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0]}
N_ITER = {"smoke": [2, 4], "cpu": [2, 4, 8, 16, 32], "paper": [1, 2, 4, 8, 16, 32, 64]}
#: the paper's Fig. 4 trainings use N_r = 2^16, S_b = 2^7
PAPER = {"n_r": 2**16, "s_b": 128}


def compute(scale: str, ctx):
    train = ctx.training(C.training(scale, **(PAPER if scale == "paper" else {})))
    ds = ctx.run(Sweep("train", {**train, **C.twin(scale)},
                       {"twin.dt": ctx.values("dt", DTS[scale]),
                        "n_iter": ctx.values("n_iter", N_ITER[scale])}, name="grid"))
    out = C.scores(ds).rename({"twin.dt": "dt"})
    return out.transpose("dt", "n_iter")


def plot(ds, stem):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    r = ds["rmse"].values
    im = ax.imshow(np.log10(r), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(ds.sizes["n_iter"]), [str(v) for v in ds["n_iter"].values])
    ax.set_yticks(range(ds.sizes["dt"]), [f"{v:g}" for v in ds["dt"].values])
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            d = int(ds["diverged"].values[i, j]) if np.isfinite(ds["diverged"].values[i, j]) \
                else 0
            ax.text(j, i, f"{r[i, j]:.3f}" + (f"\n{d} div." if d else ""), ha="center",
                    va="center", fontsize=6, color="w")
    ax.set(xlabel="N_iter", ylabel="dt", title=f"{ds.attrs.get('title', '')} "
                                              f"[{ds.attrs.get('scale', '')}]")
    fig.colorbar(im, ax=ax, label="log10 test RMSE")
    return C.save(fig, stem)

