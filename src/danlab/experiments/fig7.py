"""Fig. 7: histograms of the projected innovations met in DA runs of DANs trained at dt from
0.05 to 1.5 (the range of zeta that matters in Fig. 6)."""

from __future__ import annotations

import xarray as xr

from danlab.experiments import _dt_diagnostics as D
from danlab.experiments import common as C

NAME = "fig7"
TITLE = "Projected-innovation histograms across dt (Fig. 7)"


def compute(scale: str, ctx):
    entries = D.diagnose(ctx, scale, "innovations", {"bins": 81 if scale != "smoke" else 21})
    parts = []
    for dt, path in entries:
        with xr.open_dataset(path) as ds:
            parts.append(ds.load().assign_coords(dt=[dt]))
    return xr.concat(parts, dim="dt")


def plot(ds, stem):
    from danlab.diagnostics.plots import plot_innovations

    fig = plot_innovations(ds)
    fig.axes[0].set_title(f"{ds.attrs.get('title', TITLE)} [{ds.attrs.get('scale', '')}]",
                          fontsize=9)
    return C.save(fig, stem)

