"""Fig. 2: Omega_r for the four observation configurations (full, every other site, random
N_y in [0, N_x], random N_y in [N_x/2, N_x]), on a common scale."""

from __future__ import annotations

from danlab.experiments import _omega

NAME = "fig2"
TITLE = "Omega_r for the four observation configurations (Fig. 2)"
CONFIGS = ("full", "alternate", "random", "random-half")


def compute(scale: str, ctx):
    return _omega.panels(ctx, scale, {f"obs = {o}": {"twin.obs": o} for o in CONFIGS})


def plot(ds, stem):
    return _omega.plot(ds, stem, "common")
