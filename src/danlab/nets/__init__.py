"""Learned analysis operators a_theta(x^f, zeta) -> increment, all (..., N_x) -> (..., N_x).

Each net module registers a builder with `@register_net(name)`; `build_net(cfg)` makes the
module named by `cfg.net` from a TrainConfig, its inputs normalised by the climatology of the
config's model. Every net is an nn.Module whose `forward(xf, zeta)` returns the whole increment
x^a - x^f (the alpha*zeta term included); they share the trunk of `nets.trunk`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from danlab.errors import check_choice

NET_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_net(name: str):
    def deco(builder):
        NET_BUILDERS[name] = builder
        return builder

    return deco


def build_net(cfg, climatology: tuple[float, float] | None = None) -> nn.Module:
    """The analysis operator of a TrainConfig; `climatology` (mean, std) defaults to the
    model's at the config's N_x."""
    check_choice("net", cfg.net, tuple(NET_BUILDERS))
    if climatology is None:
        clim = cfg.twin.make_model().climatology(cfg.twin.nx)
        climatology = (clim.mean, clim.std)
    return NET_BUILDERS[cfg.net](cfg, climatology)


# net modules register themselves on import
from danlab.nets import cnn  # noqa: E402,F401,I001
from danlab.nets import linear_zeta  # noqa: E402,F401,I001
from danlab.nets import hyper  # noqa: E402,F401,I001
