"""Fig. 1: the normalised mean marginal gain Omega_r of DANs trained at N_x = 40 and 80 (full
observation): the same local pattern, the same extent."""

from __future__ import annotations

from danlab.experiments import _omega

NAME = "fig1"
TITLE = "Mean marginal gain Omega_r at N_x = 40 and 80 (Fig. 1)"


def compute(scale: str, ctx):
    return _omega.panels(ctx, scale, {"N_x = 40": {"twin.nx": 40},
                                      "N_x = 80": {"twin.nx": 80}})


def plot(ds, stem):
    return _omega.plot(ds, stem, "each")
