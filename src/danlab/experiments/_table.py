"""Building a figure's Dataset from sweep results: one (label, coordinate) cell at a time."""

from __future__ import annotations

import numpy as np
import xarray as xr


class Table:
    """Collects scores per (method, x) and turns them into a Dataset with dims (method, x)."""

    def __init__(self, x: str):
        self.x, self.cells = x, {}

    def add(self, method: str, x, ds_cell) -> None:
        self.cells[(method, float(x))] = {k: float(ds_cell[k]) for k in
                                          ("rmse", "diverged", "trajectories")}

    def add_sweep(self, method: str, ds: xr.Dataset, dim: str, **sel) -> None:
        for x in ds[dim].values:
            self.add(method, x, ds.sel({dim: x, **sel}))

    def dataset(self) -> xr.Dataset:
        methods = list(dict.fromkeys(m for m, _ in self.cells))
        xs = sorted({x for _, x in self.cells})
        out = {}
        for k in ("rmse", "diverged", "trajectories"):
            arr = np.full((len(methods), len(xs)), np.nan)
            for (m, x), v in self.cells.items():
                arr[methods.index(m), xs.index(x)] = v[k]
            out[k] = (("method", self.x), arr)
        return xr.Dataset(out, coords={"method": methods, self.x: xs},
                          attrs={"note": "rmse: mean over the trajectories that did not "
                                         "diverge; diverged: how many were left out"})
