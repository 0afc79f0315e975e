"""Marginal gain Gamma(x) (Eq. 9-10), its mean over states (Eq. 11, G1) and the reduction
Omega_r (Eq. 21, G2, H5), by second-order autodiff or the composite route (App. G-H).

Index order is Eq. 10: Gamma[i, j, l] = d_{x_l} d_{zeta_j} a_i at zeta = 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.diagnostics._common import (
    Operator,
    ZetaSampler,
    as_states,
    check_operator,
    check_samples,
    check_site,
    make_generator,
    pinv_solve_right,
    rows_per_call,
    safe,
)
from danlab.diagnostics._rows import eval_rows
from danlab.errors import check, check_choice

GAIN_METHODS = ("autodiff", "composite")
REGRESSIONS = ("pooled", "per-state")


def marginal_gain(
    a: Operator, x: Tensor, method: str = "autodiff", n_samples: int = 256, *,
    obs=None, mask: Tensor | None = None, zeta_cov: Tensor | None = None,
    sigma: float | None = None, generator: torch.Generator | None = None,
    rtol: float = 1e-10, max_elements: int | None = None,
) -> Tensor:
    """Gamma(x) for states x (..., N_x): a tensor (..., N_x, N_x, N_x), [i, j, l] as Eq. 10.

    "autodiff": forward-over-forward derivatives at zeta = 0 (exact; N_x^2 directional
    derivatives per state). "composite": the Jacobians grad_x a(x, zeta_p) at `n_samples`
    draws zeta_p = H^T R^{-1/2} xi (App. H; obs / mask / zeta_cov / sigma as in
    analysis_covariance), then Gamma = C D^+ (Eq. H3-H4), D the empirical Cov(zeta).
    """
    check_choice("method", method, GAIN_METHODS)
    xs, lead = as_states(x)
    check_operator(a, xs)
    b, nx = xs.shape
    chunk = rows_per_call(nx, max_elements)
    if method == "autodiff":
        g = _gamma_autodiff(a, xs, chunk)
    else:
        n_p = check_samples(n_samples)
        z = ZetaSampler(nx, obs, mask, zeta_cov, sigma)(n_p, b, make_generator(generator), xs)
        c, d = _composite_cd(a, xs, z, chunk)
        g = _regress(c, d, rtol)
    return g.reshape(*lead, nx, nx, nx)


def _gamma_autodiff(a: Operator, xs: Tensor, chunk: int) -> Tensor:
    """(B, i, j, l) by second derivatives along e_l in x and e_j in zeta; rows (l, j, b)."""
    b, nx = xs.shape
    idx = torch.arange(nx * nx * b)
    out = safe(lambda: eval_rows(a, xs, idx % b, tz_site=(idx // b) % nx,
                                 tx_site=idx // (b * nx), chunk=chunk),
               "second derivative in x and zeta")
    return out.reshape(nx, nx, b, nx).permute(2, 3, 1, 0)


def _composite_cd(a: Operator, xs: Tensor, z: Tensor, chunk: int,
                  sites: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """C (B, i, m, l) = Cov(zeta_m, d_{x_l} a_i) and D (B, m, j) = Cov(zeta) from samples
    z (P, B, N) (Eq. H3, divided by P - 1); l runs over `sites` (default all)."""
    n_p, b, nx = z.shape
    sites = torch.arange(nx) if sites is None else sites
    n_l = sites.shape[0]
    idx = torch.arange(n_l * n_p * b)  # rows (l, p, b)
    pb = idx % (n_p * b)
    out = safe(lambda: eval_rows(a, xs, pb % b, z_table=z.reshape(-1, nx), z_idx=pb,
                                 tx_site=sites[idx // (n_p * b)], chunk=chunk),
               "Jacobian in x at sampled innovations")
    da = out.reshape(n_l, n_p, b, nx)
    dac = da - da.mean(1, keepdim=True)
    zc = z - z.mean(0)
    c = torch.einsum("lpbi,pbm->biml", dac, zc) / (n_p - 1)
    d = torch.einsum("pbm,pbj->bmj", zc, zc) / (n_p - 1)
    return c, d


def _regress(c: Tensor, d: Tensor, rtol: float) -> Tensor:
    """Gamma[..., i, j, l] = sum_m C[..., i, m, l] D^+[..., m, j] (Eq. H4)."""
    dinv = torch.linalg.pinv(d, rtol=rtol, hermitian=True)
    return torch.einsum("...iml,...mj->...ijl", c, dinv)


def omega_from_gamma(gamma: Tensor, r: int | None = None) -> Tensor:
    """The translation reduction of Eq. G2a: [Omega_r]_{ij} = (1/N) sum_l
    Gamma[(i + l - r) % N, (j + l - r) % N, l], for Gamma (..., N, N, N). For an invariant
    Gamma-bar it equals Gamma-bar[:, :, r] (Eq. 21)."""
    nx = gamma.shape[-1]
    r = nx // 2 if r is None else check_site("r", r, nx)
    i = torch.arange(nx)
    out = torch.zeros(gamma.shape[:-3] + (nx, nx), dtype=gamma.dtype, device=gamma.device)
    for l in range(nx):
        s = (i + l - r) % nx
        out = out + gamma[..., s[:, None], s[None, :], l]
    return out / nx


@dataclass
class MeanMarginalGain:
    """omega: Omega_r-bar (N_x, N_x); gamma: Gamma-bar (N_x, N_x, N_x) or None when only
    Omega_r was asked for; r: the reference site; n_states: states averaged."""

    omega: Tensor
    gamma: Tensor | None
    r: int
    n_states: int
    method: str
    shifts: int
    n_samples: int | None
    regression: str | None
    seconds: float


def mean_marginal_gain(
    a: Operator, states: Tensor, r: int | None = None, method: str = "autodiff", *,
    full: bool = False, shifts: int | str = 1, n_samples: int = 64, regression: str = "pooled",
    obs=None, mask: Tensor | None = None, zeta_cov: Tensor | None = None,
    sigma: float | None = None, generator: torch.Generator | None = None,
    antithetic: bool = False, batch: int | None = None, rtol: float = 1e-10,
    max_elements: int | None = None, progress: bool = False,
) -> MeanMarginalGain:
    """Gamma-bar over `states` (K, N_x) (Eq. 11, G1) as a streaming mean, and Omega_r-bar
    (Eq. 21, G2b), r = floor(N_x / 2) by default.

    full=True: Gamma(x_k) (N_x^3) for every state, summed as it goes; Omega_r is the G2a
    reduction of Gamma-bar (omega_from_gamma). Exact for any operator.

    full=False (the fast path): only the slice l = r is ever built. Each state x_k is rolled
    by `shifts` translations s (shifts=1: s = k mod N_x; an int n: n evenly cycled shifts;
    "all": every shift) and Gamma(roll(x_k, s))[:, :, r] is accumulated: one direction in x
    per rolled state, so N_x directional derivatives per rolled state (autodiff) or N_p
    (composite) instead of N_x^2 or N_x N_p. With n shifts, state k uses
    s = (k + t * (N_x // n)) mod N_x, t < n. For a translation-equivariant operator (Eq. 16,
    e.g. the circular CNN) shifts="all" gives exactly the G2a reduction per state; any shifts
    estimates Gamma-bar[:, :, r] (Eq. 21) since the attractor is translation invariant.

    Composite regression: "pooled" averages C and D over all states before the
    pseudo-inverse (Eq. H5; well conditioned even when N_p < N_x); "per-state" averages
    C_k D_k^+ (Eq. H4 then G1). antithetic=True draws the N_p samples as +/- pairs, which
    cancels the even-in-zeta part of grad_x a exactly (a variance reduction, not in the paper).
    """
    check_choice("method", method, GAIN_METHODS)
    check_choice("regression", regression, REGRESSIONS)
    xs, _ = as_states(states, "states")
    check_operator(a, xs)
    k_states, nx = xs.shape
    r = nx // 2 if r is None else check_site("r", r, nx)
    if shifts == "all":
        n_shift = nx
    else:
        check(isinstance(shifts, int) and not isinstance(shifts, bool) and 1 <= shifts <= nx,
              f"shifts={shifts!r} is not allowed: use 'all' or an integer in [1, {nx}]")
        n_shift = shifts
    check(mask is None or mask.dim() == 1,
          "mask must be one site mask (N_x,) here: use obs= for masks that vary")
    n_p = check_samples(n_samples) if method == "composite" else None
    sampler = ZetaSampler(nx, obs, mask, zeta_cov, sigma) if method == "composite" else None
    gen = make_generator(generator)
    chunk = rows_per_call(nx, max_elements)
    per_state_rows = (nx if method == "autodiff" else n_p) * (nx if full else n_shift)
    batch = batch or max(1, chunk // max(1, per_state_rows))
    start = time.perf_counter()
    dt = xs.dtype
    acc_g = torch.zeros((nx, nx, nx) if full else (nx, nx), dtype=torch.float64)
    acc_c = torch.zeros_like(acc_g)
    acc_d = torch.zeros((nx, nx), dtype=torch.float64)
    batches = range(0, k_states, batch)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc=f"Omega_r ({method})", leave=False)
    for s0 in batches:
        xb = xs[s0:s0 + batch]
        if not full:  # roll every state by its shifts: rows (state, shift)
            ks = torch.arange(s0, s0 + xb.shape[0])
            if n_shift == nx:
                sh = torch.arange(nx).repeat(xb.shape[0])
            else:
                t = torch.arange(n_shift)
                sh = ((ks[:, None] + t[None, :] * (nx // n_shift)) % nx).reshape(-1)
            src = ks.repeat_interleave(n_shift) - s0
            xb = _roll_rows(xb[src], sh)
        bb = xb.shape[0]
        if method == "autodiff":
            if full:
                acc_g += _gamma_autodiff(a, xb, chunk).sum(0).double()
            else:
                acc_g += _omega_slice_autodiff(a, xb, r, chunk).sum(0).double()
        else:
            z = sampler(n_p, bb, gen, xb, antithetic)
            sites = None if full else torch.tensor([r])
            c, d = _composite_cd(a, xb, z, chunk, sites)
            if not full:
                c = c[..., 0]
            if regression == "pooled":
                acc_c += c.sum(0).double()
                acc_d += d.sum(0).double()
            else:
                g = _regress(c, d, rtol) if full else pinv_solve_right(c, d, rtol)
                acc_g += g.sum(0).double()
    n_rows = k_states * (1 if full else n_shift)
    if method == "composite" and regression == "pooled":
        mean = (_regress(acc_c, acc_d, rtol) if full
                else pinv_solve_right(acc_c, acc_d, rtol))
    else:
        mean = acc_g / n_rows
    mean = mean.to(dt)
    gamma = mean if full else None
    omega = omega_from_gamma(mean, r) if full else mean
    return MeanMarginalGain(omega, gamma, r, k_states, method, nx if full else n_shift,
                            n_p, regression if method == "composite" else None,
                            time.perf_counter() - start)


def _omega_slice_autodiff(a: Operator, xs: Tensor, r: int, chunk: int) -> Tensor:
    """Gamma(x)[:, :, r] for states xs (B, N): (B, i, j); rows (j, b)."""
    b, nx = xs.shape
    idx = torch.arange(nx * b)
    out = safe(lambda: eval_rows(a, xs, idx % b, tz_site=idx // b,
                                 tx_site=torch.full_like(idx, r), chunk=chunk),
               "second derivative in x and zeta")
    return out.reshape(nx, b, nx).permute(1, 2, 0)


def _roll_rows(x: Tensor, shifts: Tensor) -> Tensor:
    """Row k rolled by shifts[k] (torch.roll convention: out[i] = x[i - s])."""
    nx = x.shape[-1]
    idx = (torch.arange(nx)[None, :] - shifts[:, None]) % nx
    return torch.gather(x, 1, idx.to(x.device))
