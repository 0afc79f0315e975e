"""Fig. 5: test RMSE against the forcing F (dt = 0.05): EnKF-N and IEnKF-N with the
Dirac-Jeffreys hyperprior, and the casual DAN; chaos sets in for F >~ 4 and the attractor
dimension grows with F up to about 30."""

from __future__ import annotations

from danlab.experiments import common as C
from danlab.experiments._table import Table
from danlab.sweep import Sweep

NAME = "fig5"
TITLE = "Test RMSE against the forcing F (Fig. 5)"
FORCINGS = {"smoke": [4.0, 8.0], "cpu": [4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0],
            "paper": [4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 16.0, 20.0, 25.0, 30.0]}
METHODS = {"EnKF-N": {"method": "enkf-n", "dirac": True},
           "IEnKF-N": {"method": "ienkf-n", "dirac": True}}


def compute(scale: str, ctx):
    table = Table("forcing")
    tw, fs = C.twin(scale), ctx.values("forcing", FORCINGS[scale])
    for label, fields in METHODS.items():
        ds = ctx.run(Sweep("baseline", {**fields, **tw}, {"twin.forcing": fs}, name=label))
        table.add_sweep(label, ds, "twin.forcing")
    train = ctx.training(C.training(scale))
    ds = ctx.run(Sweep("train", {**train, **tw}, {"twin.forcing": fs}, name="dan"))
    table.add_sweep("casual DAN", ds, "twin.forcing")
    return table.dataset()


def plot(ds, stem):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m, fmt in zip(ds["method"].values, ("o-", "s-", "D-")):
        cell = ds.sel({"method": m})
        (line,) = ax.plot(ds["forcing"], cell["rmse"], fmt, label=str(m), ms=4)
        C.mark_partial(ax, ds["forcing"].values, cell["rmse"].values, cell["diverged"].values,
                       cell["trajectories"].values)
        C.mark_lost(ax, ds["forcing"].values, cell["rmse"].values, cell["diverged"].values,
                    line.get_color())
    ax.set(xlabel="forcing F", ylabel="test RMSE",
           title=f"{ds.attrs.get('title', '')} [{ds.attrs.get('scale', '')}]")
    ax.legend(fontsize=8)
    ax.text(0.01, 0.01, C.LEGEND_NOTE, transform=ax.transAxes, fontsize=6)
    return C.save(fig, stem)
