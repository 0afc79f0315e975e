"""Shared by Fig. 6 and 7: DANs trained at each dt, and one diagnostic of each on DA samples
at its own dt (the same trainings serve both figures)."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from danlab.experiments import common as C
from danlab.sweep import Sweep

DTS = {"smoke": [0.05, 0.5], "cpu": [0.05, 0.1, 0.3, 0.5, 1.0, 1.5],
       "paper": [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.2, 1.5]}
SAMPLES = {"smoke": {"trajectories": 1, "cycles": 40, "spinup": 10},
           "cpu": {"trajectories": 4, "cycles": 600, "spinup": 100},
           "paper": {"trajectories": 16, "cycles": 2000, "spinup": 200}}


def diagnose(ctx, scale: str, diagnostic: str, options: dict,
             tag: str = "") -> list[tuple[float, Path]]:
    """(dt, diagnostic.nc) per dt; `tag` names the sweeps of a second set of options."""
    entries = []
    for dt in ctx.values("dt", DTS[scale]):
        train = C.as_training({**ctx.training(C.training(scale)), **C.twin(scale, dt=dt)})
        twin = {f"twin.{k}": v for k, v in {**SAMPLES[scale], "dt": dt}.items()}
        opts = {f"options.{k}": v for k, v in options.items()}
        s = Sweep("diagnose", {**train, **twin, "diagnostic": diagnostic, **opts}, {},
                  name=f"{diagnostic}{tag}-dt{dt:g}")
        ctx.run(s)
        entries.append((dt, ctx.results(s)[0]["dir"] / "diagnostic.nc"))
    return entries


def concat(entries) -> xr.Dataset:
    parts = []
    for _, path in entries:
        with xr.open_dataset(path) as ds:
            parts.append(ds.load())
    return xr.concat(parts, dim="dt")

