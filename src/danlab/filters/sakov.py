"""Single-state Kalman filters whose P^f(x^f) is built from the forecast state alone (Sect. 3.1.3).

Both algorithms first *backtrack* the forecast x^f = x_0 by T analysis steps, integrating L96
backward in time (RK4 with step -dt): x_{-k} = M_{-k dt}(x^f), k = 1..T. Then

* A1: propagate E_{-T} = eps I with the tangent-linear model along x_{-T}, ..., x_{-1}:
  E_{-k+1} = M'(x_{-k}) E_{-k}; P^f = E_0 E_0^T, E_0 a square-root factor of P^f (for large T
  its columns span the backward Lyapunov vectors: the AUS connection of the paper).
* A2: run the covariance recursion of a square-root Kalman filter from P_{-T} = eps^2 I along the
  same trajectory: analysis P^a_{-k} = (P^f_{-k}^{-1} + H^T R^{-1} H)^{-1} (the Riccati update,
  which needs H and R but no observation values: the paper's "covariance propagation step of the
  degenerate Kalman filter"), forecast P^f_{-k+1} = M'(x_{-k}) P^a_{-k} M'(x_{-k})^T. Square-root
  form: E^a = L^{-1} E with L L^T = I + E D E^T, D = H^T R^{-1} H = diag(mask) / sigma^2.
  The intermediate analyses use the *current* cycle's observation sites with R = sigma^2 I (for
  `full` and `alternate` this is the fixed network; for the random configurations it is a
  stand-in for the unknown past sites). Sakov (2025) is not in our references: this is our
  reading of the paper's description.

Then one Kalman update at tau_0 with P = scale * E E^T, batched over trajectories, each with its
own mask (R = sigma^2 I), written in the square-root space so no N_x x N_x inverse is needed:

    x^a = x^f + P H^T (H P H^T + R)^{-1} delta = x^f + F^T (I + F D F^T)^{-1} F zeta

with F = sqrt(scale) E. E is stored as rows, shape (B, N_x, N_x): E[b, j] is the j-th
perturbation, and P = E^T E.
For A1, eps and scale are redundant (P scales with scale * eps^2); for A2 eps sets the prior
against R and matters.

Backward integration of L96 is unstable (backward in time the -x damping becomes growth and the
volume expands at rate N_x per time unit): a backtracked state leaves the attractor and can blow
up. A step whose state is non-finite or exceeds `max_abs` in magnitude is *not used*: for that
trajectory the propagation starts at the last good state (shorter effective T). `stats` counts
such truncations; docs/linear_zeta.md measures where it happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from danlab.errors import check_choice, check_int_at_least, check_positive
from danlab.filters.base import SingleStateFilter
from danlab.observations import projected_innovation
from danlab.spec import param

ALGORITHMS = ("A1", "A2")


def backtrack(model, x: Tensor, dt: float, steps: int,
              max_abs: float = 50.0) -> tuple[list[Tensor], list[Tensor]]:
    """[x_0, x_{-1}, ..., x_{-steps}] by integrating backward, and for each a (B,) flag that it
    and every later state are finite and bounded by max_abs. A bad state is replaced by its
    successor so the batch stays finite."""
    xs = [x]
    ok = [torch.isfinite(x).all(-1) & (x.abs().amax(-1) <= max_abs)]
    with torch.no_grad():
        for _ in range(steps):
            nxt = model.backward(xs[-1], dt)
            good = ok[-1] & torch.isfinite(nxt).all(-1) & (nxt.abs().amax(-1) <= max_abs)
            xs.append(torch.where(good.unsqueeze(-1), nxt, xs[-1]))
            ok.append(good)
    return xs, ok


def sqrt_analysis(e: Tensor, d: Tensor) -> Tensor:
    """Rows E^a with E^aT E^a = (P^-1 + D)^-1 for P = E^T E, D = diag(d) (B, N_x)."""
    n = e.shape[-2]
    a = torch.eye(n, dtype=e.dtype, device=e.device) + (e * d.unsqueeze(-2)) @ e.transpose(-1, -2)
    chol = torch.linalg.cholesky(a)
    return torch.linalg.solve_triangular(chol, e, upper=False)


def kalman_increment(f: Tensor, d: Tensor, zeta: Tensor) -> Tensor:
    """P H^T (H P H^T + R)^-1 delta = F^T (I + F D F^T)^-1 F zeta, P = F^T F, rows F (B, n, N_x)."""
    n = f.shape[-2]
    a = torch.eye(n, dtype=f.dtype, device=f.device) + (f * d.unsqueeze(-2)) @ f.transpose(-1, -2)
    rhs = (f @ zeta.unsqueeze(-1))
    c = torch.cholesky_solve(rhs, torch.linalg.cholesky(a))
    return (f.transpose(-1, -2) @ c).squeeze(-1)


@dataclass
class SakovFilter(SingleStateFilter):
    """Algorithm A1 or A2 of Sakov (2025) as described in Sect. 3.1.3 (see the module docstring).

    The state is x (B, N_x); `analysis` backtracks x^f with the model's backward step, builds
    P^f(x^f) and applies the Kalman update. Parameters: algorithm A1 | A2, steps T (analysis
    steps backtracked), eps, scale (multiplicative on P^f), max_abs (bound beyond which a
    backtracked state counts as blown up). The defaults of `SakovA1` / `SakovA2` are the values
    tuned at dt = 0.05 (docs/linear_zeta.md)."""

    name = "sakov"
    requires = ("backward",)
    algorithm: str = "A1"
    steps: int = param(10, "analysis steps T backtracked (keep T <~ 20 at dt = 0.05)")
    eps: float = param(1.0, "initial spread eps of the backtracked perturbations")
    scale: float = param(1.0, "multiplicative scale of P^f (tune it with `danlab tune-sakov`)")
    max_abs: float = param(50.0, "bound beyond which a backtracked state counts as blown up")
    #: trajectory-cycles run, and those whose backtrack blew up (shorter effective T)
    stats: dict = field(default_factory=lambda: dict(cycles=0, truncated=0), init=False,
                        repr=False, metadata={"record": False})

    def __post_init__(self):
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        check_int_at_least("steps", self.steps, 1)
        for name in ("eps", "scale", "max_abs"):
            check_positive(name, getattr(self, name))

    def sqrt_pf(self, model, xf: Tensor, dt: float, mask: Tensor | None = None,
                sigma: float = 1.0) -> Tensor:
        """Rows E (B, N_x, N_x) with P^f(x^f) = E^T E (before `scale`). A2's intermediate
        analyses observe the sites of `mask` (default: all) with R = sigma^2 I."""
        nx = xf.shape[-1]
        xs, ok = backtrack(model, xf, dt, self.steps, self.max_abs)
        eye = self.eps * torch.eye(nx, dtype=xf.dtype, device=xf.device).expand(
            *xf.shape[:-1], nx, nx)
        m = torch.ones_like(xf) if mask is None else mask.to(xf.dtype)
        d = m / sigma**2
        e = eye
        with torch.no_grad():
            for k in range(self.steps, 0, -1):  # from tau_{-T} to tau_{-1}, then to tau_0
                if self.algorithm == "A2":
                    e = sqrt_analysis(e, d)
                e = model.tangent_rows(xs[k], e, dt)
                e = torch.where(ok[k][..., None, None], e, eye)  # restart after a blow-up
        self.stats["cycles"] += int(ok[0].numel())
        self.stats["truncated"] += int((~ok[-1]).sum())
        return e

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model,
                 dt: float) -> Tensor:
        e = self.sqrt_pf(model, state, dt, mask, sigma)
        zeta = projected_innovation(y, mask, state, sigma)
        d = mask.to(state.dtype) / sigma**2
        return state + kalman_increment(math.sqrt(self.scale) * e, d, zeta)


@dataclass
class SakovA1(SakovFilter):
    """Sakov's A1: tangent-linear propagation of eps I; defaults tuned at dt = 0.05."""

    name = "sakov-a1"
    algorithm: str = field(default="A1", init=False)
    steps: int = param(5, "analysis steps T backtracked (keep T <~ 20 at dt = 0.05)")
    scale: float = param(0.03, "multiplicative scale of P^f (tune it with `danlab tune-sakov`)")


@dataclass
class SakovA2(SakovFilter):
    """Sakov's A2: a square-root Kalman covariance recursion; defaults tuned at dt = 0.05."""

    name = "sakov-a2"
    algorithm: str = field(default="A2", init=False)
    steps: int = param(10, "analysis steps T backtracked (keep T <~ 20 at dt = 0.05)")
    scale: float = param(0.5, "multiplicative scale of P^f (tune it with `danlab tune-sakov`)")


