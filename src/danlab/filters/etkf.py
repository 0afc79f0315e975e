"""The ensemble transform Kalman filter with multiplicative inflation.

Symmetric square-root ETKF (Bishop et al. 2001; Hunt et al. 2007, Eq. 20-24, no rotation):
Pw = (Y Y^T + (N-1) I)^{-1}, w = Pw Y dy, T = sqrt(N-1) Pw^{1/2}, E^a = mean + (w^T + T) A,
then the analysis anomalies are multiplied by `inflation` (as DAPPER's post-analysis inflation).
Computed without an eigendecomposition: Pw^{1/2} by Newton-Schulz (`_ensemble_space`, Gram route).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.errors import check_positive
from danlab.filters._ensemble_space import gram, matvec, normalised_obs, sqrt_update_gram
from danlab.filters.base import EnsembleFilter
from danlab.spec import param


@dataclass(kw_only=True)
class ETKF(EnsembleFilter):
    """ETKF with N = `members` and multiplicative inflation of the analysis anomalies."""

    name = "etkf"
    inflation: float = param(1.0, "multiplicative inflation of the analysis anomalies")

    def __post_init__(self):
        super().__post_init__()
        check_positive("inflation", self.inflation)

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model=None,
                 dt=None) -> Tensor:
        mu, Y, dy = normalised_obs(state, y, mask, sigma)
        A = state - mu.unsqueeze(-2)
        G, ok = gram(Y)
        n1 = torch.full_like(mu[..., 0], state.shape[-2] - 1)
        Ea = sqrt_update_gram(mu, A, G, matvec(Y, dy), n1, ok)
        if self.inflation != 1.0:
            ma = Ea.mean(-2, keepdim=True)
            Ea = ma + self.inflation * (Ea - ma)
        return Ea
