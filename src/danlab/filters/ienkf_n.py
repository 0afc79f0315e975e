"""The finite-size iterative EnKF IEnKF-N (Sakov, Oliver & Bertino 2012; Bocquet & Sakov 2012).

Lag-1 iterative ensemble Kalman filter: the analysis at t_k is a Gauss-Newton minimisation in
the ensemble space of the ensemble at t_{k-1}, re-running the model from t_{k-1} at each
iteration, with the finite-size (N) prior term of the EnKF-N. Implemented equations
(Bocquet & Sakov 2012, Sect. 3-4, Algorithm 1; the same scheme as DAPPER 1.8.1's
``iEnKS('Sqrt', N, Lag=1, xN=1)``), per iteration j, with x0, X0 the mean and anomalies at
t_{k-1}:

    E_j = M(x0 + (w_j + eps T_j) X0)   (eps = 1: transform variant; eps = 1e-4: bundle variant,
                                         anomalies of E_j divided back by eps)
    Y_j = R^{-1/2} H anomalies(E_j);  Y0_j = T_j^{-1} Y_j   (de-conditioned sensitivities)
    zeta_j = (N-1) cL / (eN + |w_j|^2)  (finite-size prior, Eq. 27; eN, cL as in the EnKF-N)
    grad = Y0_j dy_j - zeta_j w_j,  Hess ~ Y0_j Y0_j^T + zeta_j I,  w_{j+1} = w_j + Hess^{-1} grad
    T_{j+1} = sqrt(N-1) Hess^{-1/2}  (symmetric root),  T_{j+1}^{-1} = Hess^{1/2} / sqrt(N-1)

Convergence per trajectory: it stops when mean(dw^2) < tol^2 (DAPPER's ``wtol`` = tol^2) or at
max_iter; trajectories still iterating are run on their own sub-batch. The analysis ensemble at
t_k is M(x0 + (w + T) X0), the smoothed ensemble at t_{k-1} propagated to t_k (Sakov et al. 2012,
Algorithm 1, last step); it also starts the next window. (DAPPER's own "a" statistic is a
linearisation of it, equal after convergence; the test vectors hold this propagated ensemble.)

Linear algebra without eigendecomposition (`_ensemble_space`, Gram route): H^{-1/2} and H^{1/2}
by one coupled Newton-Schulz iteration, the step as H^{-1/2} (H^{-1/2} grad), and the
hyperprior's weight from a Cholesky factorisation of Y0 Y0^T + (N-1) I.

Fallback: the Hessian is SPD by construction (zeta > 0); a trajectory whose sensitivities are
non-finite gets NaN (flagged as diverged by the cycle engine); Gauss-Newton that has not met the
tolerance after max_iter simply keeps its last iterate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from danlab.errors import check, check_choice, check_int_at_least, check_positive
from danlab.filters._ensemble_space import (
    centre,
    gram,
    hyperprior_from_weight,
    matvec,
    normalised_obs,
    on_host,
    prior_weight_gram,
    shifted_roots,
    sync_every,
    zeta_a,
)
from danlab.filters.base import EnsembleFilter
from danlab.spec import param

BUNDLE_EPS = 1e-4


@dataclass(kw_only=True)
class IEnKFN(EnsembleFilter):
    """IEnKF-N with N = `members`.

    State: a tuple (E0, E) of (B, N, N_x) tensors: E0 the analysis ensemble at the start of the
    window (t_{k-1}) and E = M(E0) the forecast at t_k; after the analysis both are the analysis
    ensemble at t_k (the start of the next window).
    `analysis` re-runs the model over the window (it gets the model and dt from the engine).
    tol: per-trajectory tolerance on the RMS Gauss-Newton increment (0 = always max_iter);
    variant: "transform" (T-IEnKF) or "bundle" (finite-difference sensitivities);
    dirac: Dirac-Jeffreys hyperprior (same eN, cL as the EnKF-N, from the eigenvalues of
    Y0 Y0^T at each iteration); xN: hyperprior boost; finite_size=False gives the plain
    IEnKF (zeta = N - 1, no inflation).
    """

    name = "ienkf-n"
    tol: float = param(1e-3, "Gauss-Newton tolerance on the RMS increment of w (0: always "
                             "max_iter)")
    max_iter: int = param(10, "Gauss-Newton iterations at most")
    variant: str = param("transform", "transform (T-IEnKF) or bundle (finite differences)",
                         choices=("transform", "bundle"))
    dirac: bool = param(False, "Dirac-Jeffreys hyperprior (Bocquet, Raanes & Hannart 2015)")
    xN: float = param(1.0, "hyperprior certainty boost (DAPPER's xN)")
    finite_size: bool = param(True, "finite-size (N) prior; false: the plain IEnKF")
    #: Gauss-Newton iterations of each trajectory at the last analysis (for diagnostics)
    last_iterations: Tensor | None = field(default=None, init=False, repr=False,
                                           metadata={"record": False})

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.tol, (int, float)) and self.tol == self.tol and self.tol >= 0,
              f"tol={self.tol!r} is not allowed: it must be a number >= 0")
        check_int_at_least("max_iter", self.max_iter, 1)
        check_choice("variant", self.variant, ("transform", "bundle"))
        check_positive("xN", self.xN)

    @property
    def eps(self) -> float:
        return BUNDLE_EPS if self.variant == "bundle" else 1.0

    def init(self, x0: Tensor, streams) -> tuple[Tensor, Tensor]:
        E = super().init(x0, streams)
        return E, E

    def forecast(self, state, model, dt: float) -> tuple[Tensor, Tensor]:
        E0 = state[0]
        return E0, model.forecast(E0, dt)

    def estimate(self, state) -> Tensor:
        return state[1].mean(-2)

    def _za(self, G: Tensor, w: Tensor) -> Tensor:
        """zeta_a (B,) at w from G = Y0 Y0^T (the hyperprior's weight without eigenvalues)."""
        n = w.shape[-1]
        if not self.finite_size:
            return torch.full(w.shape[:-1], float(n - 1), dtype=w.dtype, device=w.device)
        i_kh = prior_weight_gram(G, n, self.dirac)
        eN, cL = hyperprior_from_weight(i_kh, w[..., 0], n, self.xN, 0.0, self.dirac)
        return zeta_a(eN, cL, (w * w).sum(-1), n)

    def analysis(self, state, y: Tensor, mask: Tensor, sigma: float, *, model,
                 dt: float) -> tuple[Tensor, Tensor]:
        eps = self.eps
        E0, Ef = state
        b, n, _ = E0.shape
        n1 = n - 1
        x0, X0 = centre(E0)
        eye = torch.eye(n, dtype=E0.dtype, device=E0.device).expand(b, n, n)
        w = E0.new_zeros(b, n)
        T, Tinv = eye, eye
        ok_all = torch.ones(b, dtype=torch.bool, device=E0.device)
        iters = torch.zeros(b, dtype=torch.long, device=E0.device)
        idx = None  # rows still iterating; None = all rows (no gather/scatter needed)
        # CPU: converged rows leave the batch (a host sync per iteration, free there); other
        # devices: they stay, frozen by a mask, and the loop tests for the end every few
        # iterations only (same results, no per-iteration host sync)
        compact = on_host(E0)
        active = torch.ones(b, dtype=torch.bool, device=E0.device)
        for it in range(self.max_iter):
            def sub(t, idx=idx):
                return t if idx is None else t[idx]

            if it == 0 and eps == 1.0:
                E = Ef
            else:
                Ein = sub(x0).unsqueeze(-2) + (sub(w).unsqueeze(-2) + eps * sub(T)) @ sub(X0)
                E = model.forecast(Ein, dt)
            if eps != 1.0:
                mu_e, A_e = centre(E)
                E = mu_e.unsqueeze(-2) + A_e / eps
            _, Y, dy = normalised_obs(E, sub(y), sub(mask), sigma)
            Y0 = Y if it == 0 else sub(Tinv) @ Y
            # Hessian H = Y0 Y0^T + za I: step = H^{-1} grad, T = sqrt(N-1) H^{-1/2},
            # T^{-1} = H^{1/2} / sqrt(N-1), the roots by Newton-Schulz (no eigendecomposition)
            G, ok = gram(Y0)
            wi = sub(w)
            za = self._za(G, wi)
            grad = matvec(Y0, dy) - za.unsqueeze(-1) * wi
            H_sqrt, H_isqrt = shifted_roots(G, za)
            step = matvec(H_isqrt, matvec(H_isqrt, grad))
            T_new = math.sqrt(n1) * H_isqrt
            Tinv_new = H_sqrt / math.sqrt(n1)
            if idx is None and compact:
                T, Tinv, w = T_new, Tinv_new, wi + step
                ok_all = ok_all & ok
                iters = iters + 1
            elif idx is None:
                a2, a3 = active.unsqueeze(-1), active[:, None, None]
                T, Tinv = torch.where(a3, T_new, T), torch.where(a3, Tinv_new, Tinv)
                w = torch.where(a2, wi + step, w)
                ok_all = ok_all & (ok | ~active)
                iters = iters + active.long()
            else:
                T, Tinv, w = T.clone(), Tinv.clone(), w.clone()
                T[idx], Tinv[idx], w[idx] = T_new, Tinv_new, wi + step
                ok_all[idx] = ok_all[idx] & ok
                iters[idx] = it + 1
            if it + 1 == self.max_iter or self.tol == 0.0:
                continue
            keep = ~((step * step).mean(-1) < self.tol**2)
            if not compact:
                active = active & keep
                if (it + 1) % sync_every(active) == 0 and not bool(active.any()):
                    break
                continue
            if not bool(keep.all()):
                idx = (torch.nonzero(keep).squeeze(-1) if idx is None else idx[keep])
                if idx.numel() == 0:
                    break
        self.last_iterations = iters
        Ea = model.forecast(x0.unsqueeze(-2) + (w.unsqueeze(-2) + T) @ X0, dt)
        Ea = torch.where(ok_all[:, None, None], Ea, torch.full_like(Ea, float("nan")))
        return Ea, Ea
