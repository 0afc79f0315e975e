"""The finite-size ensemble Kalman filter EnKF-N (Bocquet 2011; Bocquet, Raanes & Hannart 2015).

Implemented equations (notation of `_ensemble_space`):

* prior p(x | E) from the Jeffreys hyperprior (Bocquet 2011, Eq. 17-20) or the Dirac-Jeffreys
  hyperprior (Bocquet, Raanes & Hannart 2015: the mean known, eps_N = 1; derived in
  docs/dirac_jeffreys.md), with the mode correction of BRH15 Eq. 36 (Jeffreys: as in DAPPER
  1.8.1's ``hyperprior_coeffs``, g = 0; Dirac-Jeffreys: with the trace prior weight) and the
  certainty boost xN;
* the adaptive inflation l1 from either the dual scalar problem (Bocquet 2011 Eq. 33;
  BRH15 Eq. 27) or the linearised primal problem (Bocquet & Sakov 2012 Eq. 24-28, approximate
  Hessian without the radial-angular term), both by a batched Newton iteration;
* the symmetric square-root ETKF update of the prior inflated by l1 (no rotation).

With these defaults the analysis reproduces DAPPER 1.8.1's ``EnKF_N(N, xN, dual)`` to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from danlab.errors import check, check_positive
from danlab.filters._ensemble_space import (
    eig_gram,
    hyperprior_coeffs,
    newton_dual,
    newton_primal,
    normalised_obs,
    sqrt_update,
    to_eig,
)
from danlab.filters.base import EnsembleFilter
from danlab.spec import param


@dataclass(kw_only=True)
class EnKFN(EnsembleFilter):
    """EnKF-N with N = `members`; ``dirac=True`` selects the Dirac-Jeffreys hyperprior.

    dual: solve the scalar dual problem for the inflation instead of the linearised primal one;
    xN: hyperprior certainty boost (DAPPER's xN); g: nullity correction (DAPPER's g, default 0);
    mode_correction=False: the raw hyperprior, whose prior mode of the inflation is below 1
    (diagnostics: it loses track at F <= 7, docs/dirac_jeffreys.md).
    """

    name = "enkf-n"
    dirac: bool = param(False, "Dirac-Jeffreys hyperprior (Bocquet, Raanes & Hannart 2015)")
    dual: bool = param(False, "solve the scalar dual problem for the inflation")
    xN: float = param(1.0, "hyperprior certainty boost (DAPPER's xN)")
    g: float = param(0.0, "nullity correction of the hyperprior (DAPPER's g)")

    mode_correction: bool = param(True, "correct the hyperprior's mode of the inflation "
                                        "towards 1 where observations carry little weight")
    #: the inflation l1 (B,) of the last analysis (diagnostics)
    last_inflation: Tensor | None = field(default=None, init=False, repr=False,
                                          metadata={"record": False})

    def __post_init__(self):
        super().__post_init__()
        check_positive("xN", self.xN)
        check(isinstance(self.g, (int, float)) and self.g >= 0,
              f"g={self.g!r} is not allowed: it must be >= 0")

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model=None,
                 dt=None) -> Tensor:
        n = state.shape[-2]
        mu, Y, dy = normalised_obs(state, y, mask, sigma)
        A = state - mu.unsqueeze(-2)
        lam, V, ok = eig_gram(Y)
        b = to_eig(V, (Y @ dy.unsqueeze(-1)).squeeze(-1))
        eN, cL = hyperprior_coeffs(lam, n, self.xN, self.g, self.dirac, self.mode_correction)
        if self.dual:
            l1 = newton_dual(b * b, lam, eN, cL, n)
        else:
            l1 = newton_primal(b, lam, eN, cL, n)
        self.last_inflation = l1
        return sqrt_update(mu, A, V, lam, b, l1, ok)
