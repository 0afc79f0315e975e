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

from dataclasses import dataclass, field

import torch
from torch import Tensor

from danlab.errors import check, check_positive
from danlab.filters.base import SingleStateFilter
from danlab.spec import param

DEFAULT_SCALE = 0.02  # tuned at N_x=40, F=8, dt=0.05, full obs, sigma=1 (docs/baselines.md)


@dataclass
class Var3D(SingleStateFilter):
    """3D-Var on a single state (B, N_x) with background covariance `scale * B` (N_x, N_x);
    B defaults to the model's climatological covariance at the state's N_x."""

    name = "3dvar"
    scale: float = param(DEFAULT_SCALE, "scale of the climatological B (tune it with "
                                        "`danlab tune-3dvar`)")
    B: Tensor | None = field(default=None, repr=False, metadata={"record": False})
    _gain: dict = field(default_factory=dict, init=False, repr=False, metadata={"record": False})

    def __post_init__(self):
        check_positive("scale", self.scale)
        if self.B is not None:
            B = torch.as_tensor(self.B)
            check(B.dim() == 2 and B.shape[0] == B.shape[1] and B.shape[0] >= 1,
                  f"B of shape {tuple(B.shape)} is not allowed: it must be a square (N_x, N_x) "
                  "matrix")
            check(bool(torch.isfinite(B).all()), "B is not allowed: it has non-finite entries")
            self.B = 0.5 * (B + B.T)

    def background(self, model, nx: int) -> Tensor:
        """scale * B (N_x, N_x), float64 on the CPU."""
        if self.B is None:
            self.B = model.climatology(nx).covariance
        check(self.B.shape[0] == nx, f"B of size {self.B.shape[0]} does not match N_x={nx}")
        return self.scale * self.B.double()

    def _full_gain(self, B: Tensor, sigma: float, like: Tensor) -> Tensor:
        key = (float(sigma), like.device, like.dtype, B.shape[0])
        if key not in self._gain:
            C = B + sigma**2 * torch.eye(B.shape[0], dtype=B.dtype)
            # K = B C^{-1} = (C^{-1} B)^T since both are symmetric
            self._gain[key] = torch.linalg.solve(C, B).T.to(device=like.device, dtype=like.dtype)
        return self._gain[key]

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model=None,
                 dt=None) -> Tensor:
        nx = state.shape[-1]
        check(model is not None or self.B is not None,
              "3dvar needs B or the model (for its climatological covariance)")
        B64 = self.background(model, nx)
        d = torch.where(mask, y - state, torch.zeros_like(state))
        if bool(mask.all()):
            return state + d @ self._full_gain(B64, sigma, state).T
        B = B64.to(device=state.device, dtype=state.dtype)
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
