"""3D-Var with a static (climatological) background covariance, and its tuning.

Analysis (Lorenc 1986; the BLUE with a static B): x^a = x^f + B H^T (H B H^T + R)^{-1}(y - H x^f),
R = sigma^2 I. With a site mask m per trajectory, H^T (H B H^T + R)^{-1} H is computed on the
full grid through C = D B D + diag(sigma^2 on observed sites, 1 elsewhere), D = diag(m): C is
block diagonal (observed block H B H^T + R, identity elsewhere) and SPD whenever B is PSD, so a
batched Cholesky solve of C z = m (y - x^f) gives z = H^T (H B H^T + R)^{-1} (y - H x^f) exactly,
with z = 0 at unobserved sites, and x^a = x^f + B z. For a batch where every site is observed
the gain B (B + sigma^2 I)^{-1} is computed once and cached.

Fallback: a trajectory whose C fails Cholesky (only possible with a non-finite forecast or a B
that is not PSD) gets NaN, which the cycle engine flags as diverged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from danlab.dynamics import Lorenz96
from danlab.errors import check, check_int_at_least, check_positive
from danlab.filters.base import SingleStateFilter

DEFAULT_SCALES = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.07, 0.1, 0.2, 0.5, 1.0)
DEFAULT_SCALE = 0.02  # tuned at N_x=40, F=8, dt=0.05, full obs, sigma=1 (docs/baselines.md)


class Var3D(SingleStateFilter):
    """3D-Var on a single state (B, N_x) with background covariance `scale * B` (N_x, N_x)."""

    name = "3dvar"

    def __init__(self, B: Tensor, scale: float = 1.0):
        B = torch.as_tensor(B)
        check(B.dim() == 2 and B.shape[0] == B.shape[1] and B.shape[0] >= 1,
              f"B of shape {tuple(B.shape)} is not allowed: it must be a square (N_x, N_x) matrix")
        check(bool(torch.isfinite(B).all()), "B is not allowed: it has non-finite entries")
        check_positive("scale", scale)
        self.B = 0.5 * (B + B.T) * float(scale)
        self.scale = float(scale)
        self._gain: dict = {}

    def _full_gain(self, sigma: float, like: Tensor) -> Tensor:
        key = (float(sigma), like.device, like.dtype)
        if key not in self._gain:
            B = self.B.to(device=like.device, dtype=torch.float64)
            C = B + sigma**2 * torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
            # K = B C^{-1} = (C^{-1} B)^T since both are symmetric
            self._gain[key] = torch.linalg.solve(C, B).T.to(like.dtype)
        return self._gain[key]

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float) -> Tensor:
        nx = state.shape[-1]
        check(self.B.shape[0] == nx, f"B of size {self.B.shape[0]} does not match N_x={nx}")
        d = torch.where(mask, y - state, torch.zeros_like(state))
        if bool(mask.all()):
            return state + d @ self._full_gain(sigma, state).T
        B = self.B.to(device=state.device, dtype=state.dtype)
        m = mask.to(state.dtype)
        C = m.unsqueeze(-1) * B * m.unsqueeze(-2)
        diag = torch.where(mask, torch.full_like(m, sigma**2), torch.ones_like(m))
        C = C + torch.diag_embed(diag)
        L, info = torch.linalg.cholesky_ex(C)
        ok = info == 0
        eye = torch.eye(nx, dtype=state.dtype, device=state.device)
        L = torch.where(ok[:, None, None], L, eye)
        z = torch.cholesky_solve(d.unsqueeze(-1), L).squeeze(-1) * m
        xa = state + z @ B
        return torch.where(ok.unsqueeze(-1), xa, torch.full_like(xa, float("nan")))


def climatological_covariance(
    model: Lorenz96, nx: int, n_trajectories: int = 32, n_samples: int = 200,
    interval: float = 0.2, seed: int = 12345, dtype=torch.float64,
) -> Tensor:
    """Covariance (N_x, N_x) of states on the attractor: n_trajectories independent truth runs
    (started by danlab.twin.attractor_states), each sampled n_samples times every `interval`."""
    from danlab.twin import attractor_states

    check_int_at_least("nx", nx, 4)
    check_int_at_least("n_trajectories", n_trajectories, 1)
    check_int_at_least("n_samples", n_samples, 2)
    check_positive("interval", interval)
    x = attractor_states(model, n_trajectories, nx, seed)
    samples = []
    with torch.no_grad():
        for _ in range(n_samples):
            x = model.forecast(x, interval)
            samples.append(x)
    X = torch.cat(samples)
    X = X - X.mean(0)
    return (X.T @ X / (X.shape[0] - 1)).to(dtype)


def tune_3dvar(
    model: Lorenz96, nx: int = 40, dt: float = 0.05, obs=None,
    scales: Sequence[float] = DEFAULT_SCALES, n_trajectories: int = 8, n_cycles: int = 1000,
    spinup: int = 200, seed: int = 0, B: Tensor | None = None, dtype=torch.float64,
) -> tuple[float, list[tuple[float, float]]]:
    """Scan the scale factor of the climatological B on a short twin run.

    Returns (best scale, [(scale, test RMSE), ...]); diverged runs count as RMSE inf. Every scale
    is scored on the same twin trajectories (paired comparison)."""
    from danlab.cycle import run_filter
    from danlab.observations import ObservationConfig
    from danlab.twin import make_twin

    check(len(scales) >= 1, "scales=() is not allowed: give at least one scale")
    for s in scales:
        check_positive("scale", s)
    obs = obs if obs is not None else ObservationConfig()
    B = climatological_covariance(model, nx) if B is None else torch.as_tensor(B)
    twin = make_twin(model, obs, nx, dt, n_trajectories, n_cycles, seed=seed, dtype=dtype)
    table = []
    for s in scales:
        res = run_filter(Var3D(B, s), twin, model, spinup=spinup, seed=seed)
        rmse = res.rmse if res.n_diverged == 0 and math.isfinite(res.rmse) else float("inf")
        table.append((float(s), float(rmse)))
    best = min(table, key=lambda t: t[1])[0]
    return best, table
