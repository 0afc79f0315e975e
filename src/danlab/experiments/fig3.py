"""Fig. 3: test RMSE against the time between analyses for every method: EnKF-N and IEnKF-N
(Dirac-Jeffreys, N = 40), 3D-Var (B tuned per dt), the casual, boosted, no-x^f, linear,
linear-in-zeta DANs; Sakov's A1 / A2 and the hypernetwork DAN as extra curves. Every method
runs on the same test trajectories at each dt."""

from __future__ import annotations

from danlab.errors import check
from danlab.experiments import common as C
from danlab.experiments._table import Table
from danlab.sweep import Sweep

NAME = "fig3"
TITLE = "Test RMSE against dt (Fig. 3)"
DTS = {"smoke": [0.05, 0.3], "cpu": [0.05, 0.1, 0.3, 0.5, 1.0],
       "paper": [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.4]}
BASELINES = {"EnKF-N": {"method": "enkf-n", "dirac": True},
             "IEnKF-N": {"method": "ienkf-n", "dirac": True},
             "Sakov A1": {"method": "sakov-a1"}, "Sakov A2": {"method": "sakov-a2"}}
#: Sakov's filters backtrack x^f with the model run backward, which blows up beyond this
SAKOV_MAX_DT = 0.1


METHODS = [*BASELINES, "3D-Var", *C.DAN_VARIANTS]


def compute(scale: str, ctx):
    dts = ctx.values("dt", DTS[scale])
    methods = ctx.values("method", METHODS)
    unknown = [m for m in methods if m not in METHODS]
    check(not unknown, f"method={unknown} is not allowed: fig3's methods are {METHODS}")
    table = Table("dt")
    tw = C.twin(scale)
    for label, fields in BASELINES.items():
        if label not in methods:
            continue
        grid = [dt for dt in dts if dt <= SAKOV_MAX_DT] if label.startswith("Sakov") else dts
        ds = ctx.run(Sweep("baseline", {**fields, **tw}, {"twin.dt": grid},
                           name=label.replace(" ", "-")))
        table.add_sweep(label, ds, "twin.dt")
    best = C.tuned_3dvar(ctx, scale, dts) if "3D-Var" in methods else {}
    if best:
        ds = ctx.run(Sweep("baseline", {"method": "3dvar", **tw}, {},
                           [{"twin.dt": dt, "scale": s} for dt, s in best.items()],
                           name="3dvar"))
        for dt, s in best.items():
            table.add("3D-Var", dt, ds.sel({"twin.dt": dt, "scale": s}))
    for label, fields in C.DAN_VARIANTS.items():
        if label not in methods:
            continue
        train = ctx.training(C.training(scale, **fields))
        ds = ctx.run(Sweep("train", {**train, **tw}, {"twin.dt": dts},
                           name=label.replace(" ", "-")))
        table.add_sweep(label, ds, "twin.dt")
    out = table.dataset()
    out.attrs["3dvar_scales"] = str(best)
    return out


STYLE = {"EnKF-N": ("C0", "o-"), "IEnKF-N": ("C1", "s-"), "3D-Var": ("k", "^--"),
         "casual DAN": ("C2", "D-"), "boosted DAN": ("C3", "v-"), "no-xf DAN": ("C4", "x:"),
         "linear DAN": ("C5", "+:"), "linear-zeta DAN": ("C6", "*-"),
         "Sakov A1": ("C7", "<--"), "Sakov A2": ("C8", ">--"), "hypernetwork DAN": ("C9", "h:")}


def plot(ds, stem):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in ds["method"].values:
        cell = ds.sel({"method": m})
        if not (cell["rmse"].notnull().any() or (cell["diverged"] > 0).any()):
            continue  # no stored cell (a grid run in pieces, drawn by collect)
        color, fmt = STYLE.get(str(m), ("gray", "o-"))
        ax.plot(ds["dt"], cell["rmse"], fmt, color=color, label=str(m), ms=4, lw=1)
        C.mark_partial(ax, ds["dt"].values, cell["rmse"].values, cell["diverged"].values,
                       cell["trajectories"].values)
        C.mark_lost(ax, ds["dt"].values, cell["rmse"].values, cell["diverged"].values, color)
    ax.set(xlabel="time between analyses dt", ylabel="test RMSE", yscale="log",
           title=f"{ds.attrs.get('title', '')} [{ds.attrs.get('scale', '')} scale]")
    ax.axhline(1.0, color="gray", lw=0.5, ls=":")
    ax.legend(fontsize=7, ncol=2)
    ax.text(0.01, 0.01, C.LEGEND_NOTE, transform=ax.transAxes, fontsize=6)
    return C.save(fig, stem)
