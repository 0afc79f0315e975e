"""Shared by Fig. 1 and 2: trainings and the Omega_r panels of their mean marginal gain."""

from __future__ import annotations

import numpy as np
import xarray as xr

from danlab.experiments import common as C
from danlab.sweep import Sweep

STATES = {"smoke": 4, "cpu": 400, "paper": 2000}


def panels(ctx, scale: str, cases: dict[str, dict]) -> xr.Dataset:
    """One Omega_r panel per case (training fields on top of the scale's); composite route."""
    options = {"options.states": STATES[scale], "options.method": "composite",
               "options.samples": 64 if scale != "smoke" else 8}
    data, attrs = {}, {}
    for k, (label, fields) in enumerate(cases.items()):
        train = C.as_training({**ctx.training(C.training(scale, **fields)), **C.twin(scale)})
        twin = {k2: v for k2, v in C.twin(scale).items()}
        for key in list(fields):
            if key.startswith("twin."):
                twin[key] = fields[key]
        s = Sweep("diagnose", {**train, **twin, "diagnostic": "marginal-gain", **options}, {},
                  name=f"omega-{k}")
        ctx.run(s)
        run = ctx.results(s)[0]
        with xr.open_dataset(run["dir"] / "diagnostic.nc") as ds:
            om = ds["omega_0"].values
            err = ds["omega_stderr_0"].values
        data[f"omega_{k}"] = ((f"i_{k}", f"j_{k}"), om)
        data[f"omega_stderr_{k}"] = ((f"i_{k}", f"j_{k}"), err)
        attrs[f"label_{k}"] = label
        attrs[f"r_{k}"] = int(run["result"]["summary"]["panels"][0]["r"])
        attrs[f"locality_{k}"] = run["result"]["summary"]["panels"][0]["locality"]
    return xr.Dataset(data, attrs={**attrs, "panels": len(cases),
                                   "peak": float(max(np.abs(v[1]).max()
                                                     for k, v in data.items()
                                                     if k.startswith("omega_") and
                                                     "stderr" not in k))})


def plot(ds, stem, scale="common"):
    from danlab.diagnostics.plots import plot_omega
    from danlab.experiments.common import save

    return save(plot_omega(ds, scale), stem)
