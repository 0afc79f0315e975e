"""The N_x transfer of Sect. 2.3: a DAN trained at N_x = 40 run at N_x = 20, 40, 80 and 160
(its circular CNN does not depend on N_x), against the EnKF-N of matching dimension (N = 40)
and a localised filter (LETKF, N = 20) where one exists, on the same test trajectories."""

from __future__ import annotations

from danlab.experiments import common as C
from danlab.experiments._table import Table
from danlab.filters import METHODS
from danlab.sweep import Sweep

NAME = "nx-transfer"
TITLE = "A DAN trained at N_x = 40 run at other N_x (Sect. 2.3)"
NXS = {"smoke": [20, 40, 80], "cpu": [20, 40, 80, 160], "paper": [20, 40, 80, 160, 320]}
LOCAL = {"letkf": {"method": "letkf", "members": 20, "loc_radius": 9.0, "inflation": 1.01}}


def compute(scale: str, ctx):
    table, nxs = Table("nx"), ctx.values("nx", NXS[scale])
    tw = C.twin(scale)
    ds = ctx.run(Sweep("baseline", {"method": "enkf-n", "dirac": True, **tw}, {"twin.nx": nxs},
                       name="enkf-n"))
    table.add_sweep("EnKF-N (N = 40)", ds, "twin.nx")
    for name, fields in LOCAL.items():
        if name in METHODS:
            ds = ctx.run(Sweep("baseline", {**fields, **tw}, {"twin.nx": nxs}, name=name))
            table.add_sweep("LETKF (N = 20, r = 9)", ds, "twin.nx")
    train = C.as_training({**ctx.training(C.training(scale)), **tw})
    ds = ctx.run(Sweep("evaluate", {**train, **tw}, {"twin.nx": nxs}, name="dan"))
    table.add_sweep("DAN trained at N_x = 40", ds, "twin.nx")
    return table.dataset()


def plot(ds, stem):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m, fmt in zip(ds["method"].values, ("o-", "s-", "D-")):
        cell = ds.sel({"method": m})
        (line,) = ax.plot(ds["nx"], cell["rmse"], fmt, label=str(m), ms=4)
        C.mark_partial(ax, ds["nx"].values, cell["rmse"].values, cell["diverged"].values,
                       cell["trajectories"].values)
        C.mark_lost(ax, ds["nx"].values, cell["rmse"].values, cell["diverged"].values,
                    line.get_color())
    ax.set(xscale="log", xlabel="N_x", ylabel="test RMSE",
           title=f"{ds.attrs.get('title', '')} [{ds.attrs.get('scale', '')}]")
    ax.set_xticks(ds["nx"].values, [f"{v:g}" for v in ds["nx"].values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.legend(fontsize=8)
    ax.text(0.01, 0.01, C.LEGEND_NOTE, transform=ax.transAxes, fontsize=6)
    return C.save(fig, stem)
