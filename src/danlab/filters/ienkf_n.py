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

Safeguard (safeguard=True, the default; our addition, not in DAPPER): each evaluated iterate has
the cost J_j = |dy_j|^2 / 2 + (N-1) cL / 2 ln(eN + |w_j|^2) (the negative log-posterior at the
mean of E_j, in nats). An iterate with J_j > J_acc + 1e-3 (J_acc: the last accepted iterate) is
retried once at half the step (w_acc + w_j) / 2 with the same T_j; if that also raises the cost,
the trajectory stops at the accepted iterate (w_acc, T_acc). Why: the transform variant's
sensitivities Y0 = T^{-1} Y are exact only if the anomalies at t_k scale linearly with T. With
sparse observations T contracts the observed directions of ensemble space by sqrt((N-1)/lam)
while the unobserved ones keep their (inflated) prior spread; at large dt that spread reaches the
observed sites through the nonlinear dynamics in a way that does not scale with T, and T^{-1}
multiplies it by sqrt(lam/(N-1)). The next Hessian then has a larger lam, the next T contracts
more, and the top eigenvalue grows geometrically over the iterations (x3 per iteration seen at
dt = 0.3, random sites, while the tangent-linear sensitivities at the same iterate stay put):
the analysis collapses in those directions, the filter loses track, and later overflows to NaN.
In the traced cases the cost stopped falling when the sensitivities went wrong, so stopping
there cuts the loop (with it, 0 of 16 trajectories lost at dt = 0.3, random sites). The same
test also catches plain Gauss-Newton overshooting, which hits the bundle variant too (at
dt = 0.5, alternate sites, it lost 4 of 4 trajectories without the safeguard, none with it). Where
the Gauss-Newton iterates lower the cost (all of DAPPER's test vectors, full or sparse
observations at dt = 0.05) nothing changes; the 1e-3 slack absorbs the small rises (<= 2e-4
measured) of Gauss-Newton with ensemble-estimated gradients near its fixed point.
safeguard=False is DAPPER's plain Gauss-Newton.

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
REJECT_ATOL = 1e-3  # nats: a smaller cost rise is Gauss-Newton's fixed-point wobble, not a failure


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
    IEnKF (zeta = N - 1, no inflation); safeguard: reject iterates that raise the cost (module
    docstring; False = DAPPER's plain Gauss-Newton).
    After each analysis, last_iterations (B,) is the number of iterates evaluated and
    last_rejected (B,) marks trajectories stopped by the safeguard.
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
    safeguard: bool = param(True, "reject Gauss-Newton iterates that raise the cost (false: "
                                  "DAPPER's plain Gauss-Newton)")
    #: Gauss-Newton iterations of each trajectory at the last analysis (for diagnostics)
    last_iterations: Tensor | None = field(default=None, init=False, repr=False,
                                           metadata={"record": False})
    #: trajectories stopped by the safeguard at the last analysis
    last_rejected: Tensor | None = field(default=None, init=False, repr=False,
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

    def _prior(self, G: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """(zeta_a (B,), prior cost (B,)) at w (B, N), G = Y0 Y0^T: the finite-size prior term
        of J is (N-1) cL / 2 * ln(eN + |w|^2), whose gradient is zeta_a w; the plain IEnKF's is
        (N-1) |w|^2 / 2 (zeta_a = N-1)."""
        n = w.shape[-1]
        w2 = (w * w).sum(-1)
        if not self.finite_size:
            return torch.full_like(w2, float(n - 1)), 0.5 * (n - 1) * w2
        i_kh = prior_weight_gram(G, n, self.dirac)
        eN, cL = hyperprior_from_weight(i_kh, w2, n, self.xN, 0.0, self.dirac)
        return zeta_a(eN, cL, w2, n), 0.5 * (n - 1) * cL * torch.log(eN + w2)

    def analysis(self, state, y: Tensor, mask: Tensor, sigma: float, *, model,
                 dt: float) -> tuple[Tensor, Tensor]:
        E0, Ef = state
        b, n, _ = E0.shape
        x0, X0 = centre(E0)
        eye = torch.eye(n, dtype=E0.dtype, device=E0.device).expand(b, n, n)
        dev = E0.device
        # per row: the iterate to evaluate (w, T, Tinv), the last accepted one (w_acc, T_acc,
        # J_acc), whether the current iterate is already a halved step (halved)
        st = dict(w=E0.new_zeros(b, n), T=eye, Tinv=eye, w_acc=E0.new_zeros(b, n), T_acc=eye,
                  J_acc=E0.new_full((b,), float("inf")),
                  halved=torch.zeros(b, dtype=torch.bool, device=dev),
                  rejected=torch.zeros(b, dtype=torch.bool, device=dev),
                  ok_all=torch.ones(b, dtype=torch.bool, device=dev),
                  iters=torch.zeros(b, dtype=torch.long, device=dev))
        data = dict(x0=x0, X0=X0, Ef=Ef, y=y, mask=mask)
        if on_host(E0):
            out = self._iterate_compact(st, data, sigma, model, dt)
        else:
            out = self._iterate_masked(st, data, sigma, model, dt)
        self.last_iterations, self.last_rejected = out["iters"], out["rejected"]
        w, T = out["w"], out["T"]
        Ea = model.forecast(x0.unsqueeze(-2) + (w.unsqueeze(-2) + T) @ X0, dt)
        Ea = torch.where(out["ok_all"][:, None, None], Ea, torch.full_like(Ea, float("nan")))
        return Ea, Ea

    def _iterate_compact(self, st: dict, data: dict, sigma: float, model, dt: float) -> dict:
        """The Gauss-Newton loop where a host sync is free (CPU): a finished row leaves the
        batch (its results written once, the state of the others re-indexed once), and an
        iteration where every row accepts its iterate skips the merges."""
        keys = ("w", "T", "rejected", "ok_all", "iters")
        out = {k: st[k].clone() if k != "T" else st[k].contiguous() for k in keys}
        rows = None  # the rows still iterating, None = all
        for it in range(self.max_iter):
            last = it + 1 == self.max_iter
            new, done = self._step(it, st, data, sigma, model, dt, last, fast=True)
            if last:
                done = torch.ones_like(done)
            elif not bool(done.any()):
                st.update(new)
                continue
            every = bool(done.all())
            if rows is None and every:
                out = {k: new[k] for k in keys}
                break
            where = done.nonzero().squeeze(-1) if rows is None else rows[done]
            for k in keys:
                out[k][where] = new[k] if every else new[k][done]
            if every:
                break
            keep = done.logical_not().nonzero().squeeze(-1)
            rows = keep if rows is None else rows[keep]
            st = {k: v[keep] for k, v in new.items()}
            data = {k: v[keep] for k, v in data.items() if k != "Ef"}  # Ef: iteration 0 only
        return out

    def _iterate_masked(self, st: dict, data: dict, sigma: float, model, dt: float) -> dict:
        """The Gauss-Newton loop on devices where a host sync stalls the queue: finished rows
        stay, frozen by a mask, and the loop tests for the end every few iterations only."""
        active = torch.ones_like(st["halved"])
        for it in range(self.max_iter):
            last = it + 1 == self.max_iter
            new, done = self._step(it, st, data, sigma, model, dt, last, fast=False)
            for k, v in new.items():
                m = active.view(-1, *([1] * (v.dim() - 1)))
                st[k] = torch.where(m, v, st[k])
            active = active & ~done
            if not last and (it + 1) % sync_every(active) == 0 and not bool(active.any()):
                break
        return st

    def _step(self, it: int, st: dict, data: dict, sigma: float, model, dt: float, last: bool,
              fast: bool) -> tuple[dict, Tensor]:
        """One Gauss-Newton iteration on the rows of st and data: (the new state, done (B,)).
        fast: if no row rejects its iterate, skip the merges (a host sync)."""
        eps = self.eps
        x0, X0 = data["x0"], data["X0"]
        n1 = X0.shape[-2] - 1
        if it == 0 and eps == 1.0:
            E = data["Ef"]
        else:
            E = model.forecast(x0.unsqueeze(-2) + (st["w"].unsqueeze(-2) + eps * st["T"]) @ X0,
                               dt)
        if eps != 1.0:
            mu_e, A_e = centre(E)
            E = mu_e.unsqueeze(-2) + A_e / eps
        _, Y, dy = normalised_obs(E, data["y"], data["mask"], sigma)
        Y0 = Y if it == 0 else st["Tinv"] @ Y
        G, ok = gram(Y0)
        wi, Ti, wa = st["w"], st["T"], st["w_acc"]
        za, prior = self._prior(G, wi)
        J = 0.5 * (dy * dy).sum(-1) + prior
        # Safeguard (module docstring): an iterate that raises the cost is retried once at
        # half the step, then rejected: the row stops at the last accepted iterate.
        worse = J > st["J_acc"] + REJECT_ATOL
        if not self.safeguard:
            worse = torch.zeros_like(worse)
        # Hessian H = Y0 Y0^T + za I: step = H^{-1} grad, T = sqrt(N-1) H^{-1/2},
        # T^{-1} = H^{1/2} / sqrt(N-1), the roots by Newton-Schulz (no eigendecomposition)
        grad = matvec(Y0, dy) - za.unsqueeze(-1) * wi
        H_sqrt, H_isqrt = shifted_roots(G, za)
        step = matvec(H_isqrt, matvec(H_isqrt, grad))
        iters = torch.full_like(st["iters"], it + 1)
        if fast and not bool(worse.any()):
            new = dict(w_acc=wi, T_acc=Ti, J_acc=J, w=wi + step, T=math.sqrt(n1) * H_isqrt,
                       Tinv=H_sqrt / math.sqrt(n1), halved=worse, rejected=worse,
                       ok_all=st["ok_all"] & ok, iters=iters)
            done = worse
        else:
            retry = worse & ~st["halved"] & (not last)
            stop = worse & ~retry
            acc = ~worse
            a2, a3 = acc.unsqueeze(-1), acc[:, None, None]
            s2, s3 = stop.unsqueeze(-1), stop[:, None, None]
            new = dict(
                w_acc=torch.where(a2, wi, wa),
                T_acc=torch.where(a3, Ti, st["T_acc"]),
                J_acc=torch.where(acc, J, st["J_acc"]),
                w=torch.where(a2, wi + step, torch.where(s2, wa, 0.5 * (wi + wa))),
                T=torch.where(a3, math.sqrt(n1) * H_isqrt, torch.where(s3, st["T_acc"], Ti)),
                Tinv=torch.where(a3, H_sqrt / math.sqrt(n1), st["Tinv"]),
                halved=retry, rejected=stop, ok_all=st["ok_all"] & ok, iters=iters,
            )
            done = stop
        if self.tol > 0.0:
            done = done | (~worse & ((step * step).mean(-1) < self.tol**2))
        return new, done
