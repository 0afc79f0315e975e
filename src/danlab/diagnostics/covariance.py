"""Analysis error covariance P^a(x) ~ grad_zeta a(x, zeta)|_{zeta=0} (Sect. 2.3, Eq. 12-13)."""

from __future__ import annotations

import torch
from torch import Tensor

from danlab.diagnostics._common import (
    Operator,
    ZetaSampler,
    as_states,
    check_operator,
    check_samples,
    make_generator,
    pinv_solve_right,
    rows_per_call,
    safe,
)
from danlab.diagnostics._rows import eval_rows
from danlab.errors import check_choice

COVARIANCE_METHODS = ("jacobian", "stein")


def analysis_covariance(
    a: Operator, x: Tensor, method: str = "jacobian", n_samples: int = 1000, *,
    obs=None, mask: Tensor | None = None, zeta_cov: Tensor | None = None,
    sigma: float | None = None, generator: torch.Generator | None = None,
    rtol: float = 1e-10, max_elements: int | None = None,
) -> Tensor:
    """P^a(x) for states x (..., N_x): a tensor (..., N_x, N_x) with [i, j] = d a_i / d zeta_j.

    method "jacobian": the exact Jacobian at zeta = 0 by forward-mode autodiff.
    method "stein": the Stein regression Sigma^+ Cov(zeta, a(x, zeta)) (Eq. 12 / C4a) from
    `n_samples` draws zeta = H^T R^{-1/2} xi per state (full observation with sigma = 1 unless
    obs / mask / zeta_cov say otherwise); the Moore-Penrose inverse (eigenvalues below
    rtol * max dropped) handles a singular Sigma (sparse observations): the estimate is then
    tapered to zero outside the span of zeta (App. C).
    """
    check_choice("method", method, COVARIANCE_METHODS)
    xs, lead = as_states(x)
    check_operator(a, xs)
    b, nx = xs.shape
    chunk = rows_per_call(nx, max_elements)
    if method == "jacobian":
        # rows (j, b): tangent e_j in zeta for state b
        n = nx * b
        idx = torch.arange(n)
        out = safe(lambda: eval_rows(a, xs, idx % b, tz_site=idx // b, chunk=chunk),
                   "Jacobian in zeta")
        p = out.reshape(nx, b, nx).permute(1, 2, 0)
    else:
        n_p = check_samples(n_samples)
        sampler = ZetaSampler(nx, obs, mask, zeta_cov, sigma)
        z = sampler(n_p, b, make_generator(generator), xs)             # (P, B, N)
        idx = torch.arange(n_p * b)
        f = safe(lambda: eval_rows(a, xs, idx % b, z_table=z.reshape(-1, nx), z_idx=idx,
                                   chunk=chunk), "evaluation").reshape(n_p, b, nx)
        p = stein_regression(z, f, rtol)
    return p.reshape(*lead, nx, nx)


def stein_regression(z: Tensor, f: Tensor, rtol: float = 1e-10) -> Tensor:
    """Sigma^+ Cov(zeta, f) from samples z, f (P, B, N): returns (B, N_f, N_z) with
    [i, j] = E[d f_i / d zeta_j] (Eq. C3), the samples recentred as in Eq. H2."""
    zc = z - z.mean(0)
    fc = f - f.mean(0)
    denom = z.shape[0] - 1
    c = torch.einsum("pbi,pbm->bim", fc, zc) / denom
    d = torch.einsum("pbm,pbj->bmj", zc, zc) / denom
    return pinv_solve_right(c, d, rtol)
