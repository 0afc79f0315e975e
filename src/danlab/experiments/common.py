"""Sizes of the three scales and the building blocks the figure modules share: the test set,
the DAN training budgets and variants, the tuned 3D-Var, and the plotting style."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from danlab.sweep import Sweep
from danlab.twin import TUNING_SEED

#: the test set of every method of a figure (the same twin for all, so results pair)
TEST = {
    "smoke": {"trajectories": 2, "cycles": 80, "spinup": 20},
    "cpu": {"trajectories": 16, "cycles": 1500, "spinup": 500},
    "paper": {"trajectories": 64, "cycles": 5500, "spinup": 500},
}

#: DAN trainings: smoke is tiny; cpu is the cpu preset, step-bound (reproducible); paper is
#: the paper's casual preset (App. A)
TRAIN = {
    "smoke": {"preset": "smoke", "filters": 8, "blocks": 1, "n_r": 64, "s_b": 8, "n_iter": 4,
              "max_steps": 12, "time_budget": 0.0, "val_cycles": 8, "val_trajectories": 6},
    # pinned (not the preset's current values) so a cpu-scale run means the same thing later
    "cpu": {"preset": "cpu", "filters": 32, "blocks": 4, "kernel": 5, "n_r": 4096, "s_b": 32,
            "n_iter": 8, "epochs": 1000, "lr": 3e-3, "lr_min": 5e-5, "warmup": 0.0, "ema": 0.0,
            "n_iter_start": 0, "product": False, "optimizer": "adam", "max_steps": 3000,
            "time_budget": 0.0},
    "paper": {"preset": "casual"},
}

#: the DAN variants of Fig. 3 (fields on top of TRAIN)
DAN_VARIANTS = {
    "casual DAN": {},
    "boosted DAN": {"boosted": True},
    "no-xf DAN": {"variant": "no-xf"},
    "linear DAN": {"variant": "linear"},
    "linear-zeta DAN": {"net": "linear-zeta"},
    "hypernetwork DAN": {"net": "hyper"},
}


def twin(scale: str, **fields) -> dict:
    """Dotted twin fields of the scale's test set (plus `fields`)."""
    return {f"twin.{k}": v for k, v in {**TEST[scale], **fields}.items()}


def training(scale: str, boosted: bool = False, **fields) -> dict:
    """Fields of a DAN training at `scale` (a `train` run); boosted: the paper's boosted DAN
    (its preset at paper scale; below it, twice the width and 4/3 of the steps, about 4x the
    compute of the casual DAN)."""
    base = dict(TRAIN[scale])
    if boosted:
        if scale == "paper":
            base["preset"] = "boosted"
        else:  # twice the width, a third more steps: about 4x the compute of the casual DAN
            base["filters"] = 2 * (base.get("filters") or 32)
            base["max_steps"] = base["max_steps"] * 4 // 3
    return {**base, **fields}


def as_training(fields: dict) -> dict:
    """Train fields under 'train.' (for evaluate / diagnose runs)."""
    return {f"train.{k}": v for k, v in fields.items()}


#: scales of the climatological B scanned per dt (the best at dt = 0.5 is ~0.3 and grows with dt)
SCALES_3DVAR = {"smoke": (0.02, 0.16),
                "cpu": (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
                "paper": (0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32,
                          0.48, 0.64, 1.0, 1.5)}


def tuned_3dvar(ctx, scale: str, dts: list[float], extra_twin: dict | None = None
                ) -> dict[float, float]:
    """The 3D-Var scale of B per dt, tuned on a twin apart from the test set (its own seed)."""
    extra_twin = extra_twin or {}
    scales = SCALES_3DVAR[scale]
    size = {"smoke": 2, "cpu": 8, "paper": 16}[scale]
    tw = {f"twin.{k}": v for k, v in {"trajectories": size, "cycles": 4 * TEST[scale]["spinup"],
                                      "spinup": TEST[scale]["spinup"], "seed": TUNING_SEED,
                                      **extra_twin}.items()}
    ds = ctx.run(Sweep("baseline", {"method": "3dvar", **tw},
                       {"twin.dt": dts, "scale": list(scales)}, name="tune-3dvar"))
    best = {}
    for dt in dts:
        r = ds["rmse"].sel({"twin.dt": dt}).where(ds["diverged"].sel({"twin.dt": dt}) == 0)
        best[dt] = float(r["scale"][int(r.fillna(np.inf).argmin())]) if r.notnull().any() \
            else float(scales[len(scales) // 2])
    return best


def scores(ds: xr.Dataset, **sel) -> xr.Dataset:
    """rmse, diverged and trajectories of a sweep's results."""
    return ds[["rmse", "diverged", "trajectories"]].sel(sel) if sel else \
        ds[["rmse", "diverged", "trajectories"]]


def mark_partial(ax, x, y, diverged, trajectories) -> None:
    """Hollow markers where a mean leaves diverged trajectories out, with 'k/n' beside."""
    for xi, yi, d, n in zip(x, y, diverged, trajectories):
        if d and d > 0 and math.isfinite(yi):
            ax.plot(xi, yi, "o", mfc="none", mec="k", ms=9)
            ax.annotate(f"{int(d)}/{int(n)}", (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)


def mark_lost(ax, x, y, diverged, color) -> None:
    """An x at the top of the axes where every trajectory diverged (no mean to draw)."""
    for xi, yi, d in zip(x, y, diverged):
        if d and d > 0 and not math.isfinite(yi):
            ax.plot(xi, 0.97, "x", color=color, ms=8, transform=ax.get_xaxis_transform(),
                    clip_on=False)


LEGEND_NOTE = ("hollow circle: mean over the trajectories that did not diverge (k/n left out); "
               "x at the top: every trajectory diverged")


def save(fig, stem) -> list:
    from danlab import io
    from danlab.diagnostics.plots import close

    paths = io.save_figure(fig, stem)
    close(fig)
    return paths
