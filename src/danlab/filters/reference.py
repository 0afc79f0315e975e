"""Two reference schemes that bracket any useful filter: free run and observation only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.filters.base import SingleStateFilter


@dataclass
class FreeRun(SingleStateFilter):
    """No analysis: the model runs freely from the initial guess."""

    name = "free"

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model=None,
                 dt=None) -> Tensor:
        return state


@dataclass
class ObservationOnly(SingleStateFilter):
    """x^a = y where observed, x^f elsewhere (RMSE ~ sigma under full observation)."""

    name = "obs-only"

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model=None,
                 dt=None) -> Tensor:
        return torch.where(mask, y, state)
