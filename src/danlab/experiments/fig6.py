"""Fig. 6: the scaling r(lambda) of Eq. 23 of the DAN's increments with the projected
innovation, for DANs trained at dt from 0.05 to 1.5: r(lambda) = lambda for an operator linear
in zeta; steeper for the more nonlinear DA runs."""

from __future__ import annotations

from danlab.experiments import _dt_diagnostics as D
from danlab.experiments import common as C

NAME = "fig6"
TITLE = "r(lambda) of Eq. 23 across dt (Fig. 6)"
STATES = {"smoke": 4, "cpu": 200, "paper": 1000}


def compute(scale: str, ctx):
    entries = D.diagnose(ctx, scale, "nonlinearity", {"states": STATES[scale]})
    return D.concat(entries)


def plot(ds, stem):
    from danlab.diagnostics.plots import plot_nonlinearity

    return C.save(plot_nonlinearity(ds), stem)
