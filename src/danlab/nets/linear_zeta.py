"""The linear-in-zeta DAN of App. B: increment = P^a(x^f) zeta (+ alpha zeta, Eq. 22).

    P^a(x^f) = rho o (X^a X^a^T)          X^a(x^f): N_x x n_cols, from a circular CNN on x^f

computed by Eq. B1 without ever forming an N_x x N_x matrix:

    P^a zeta = sum_l X_l o (rho (X_l o zeta))

where rho is the periodic Gaspari-Cohn taper of half-width c = loc_radius sites (support
|d| < 2c), applied as a circular convolution: cost O(n_cols * N_x * band), band = 2*ceil(2c)-1.
loc_radius = 0 gives the low-rank variant without localisation, X (X^T zeta), cost O(n_cols N_x).

Initialisation (our choice, see docs/linear_zeta.md): the head's bias makes every column of X
the same constant, so the initial P^a is about s0 * rho, a stationary localised covariance
(diag s0), and gradients reach the CNN at once (X = 0 would be a saddle); the head's weights
keep a small random init, because columns that start identical get identical gradients for ever
and X X^T stays rank one. With alpha (Eq. 22,
cnn.py's convention: alpha starts at sigma^2, x^a = y when H = I) s0 is 0.01 sigma^2, so the
start is the observation-only filter, as for the residual CNN; alpha is learnt in log scale
(trunk.AlphaTerm: positive, so alpha I + rho o X X^T stays a covariance, and fast enough to
leave sigma^2 within tens of steps, which a plain parameter takes hundreds for). Without alpha,
s0 = 0.9 sigma^2 / max_k rho_hat(k) (rho_hat: the taper's spectrum; N_x without localisation),
so the initial gain s0 rho_hat(k) / sigma^2 is about 0.9 at most when H = I: a stable,
smoothing 3D-Var-like start.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from danlab.errors import check, check_int_at_least
from danlab.nets import register_net
from danlab.nets.trunk import AlphaTerm, Normalise, Trunk, activation_class


def gaspari_cohn(r: Tensor) -> Tensor:
    """The Gaspari-Cohn (1999) fifth-order taper of r = |d| / c (0 for r >= 2)."""
    r = r.abs()
    inner = (((-0.25 * r + 0.5) * r + 0.625) * r - 5.0 / 3.0) * r**2 + 1.0
    outer = ((((r / 12.0 - 0.5) * r + 0.625) * r + 5.0 / 3.0) * r - 5.0) * r + 4.0 \
        - 2.0 / (3.0 * r.clamp_min(1e-12))
    out = torch.where(r <= 1.0, inner, outer)
    return torch.where(r < 2.0, out, torch.zeros_like(r))


def taper_kernel(nx: int, radius: float, dtype=torch.float64, device=None) -> tuple[Tensor, int]:
    """(weights, left) for the periodic GC localisation as a circular convolution.

    (rho v)_i = sum_j weights[j] v_{i + j - left}; the band holds the offsets with rho > 0, or
    every distinct offset on the circle when the band would wrap around (then rho is dense)."""
    check_int_at_least("nx", nx, 1)
    check(math.isfinite(radius) and radius > 0,
          f"loc_radius={radius!r} is not allowed: it must be a finite number > 0")
    half = math.ceil(2.0 * radius) - 1  # offsets |d| <= half have rho > 0
    if 2 * half + 1 <= nx:
        offsets = torch.arange(-half, half + 1, dtype=dtype, device=device)
        dist = offsets.abs()
        left = half
    else:  # the band covers the whole circle: one weight per distinct offset
        left = (nx - 1) // 2
        offsets = torch.arange(-left, nx - left, dtype=dtype, device=device)
        dist = torch.minimum(offsets.abs(), nx - offsets.abs())
    return gaspari_cohn(dist / radius), left


@functools.lru_cache(maxsize=64)
def _cached_kernel(nx: int, radius: float, dtype, device) -> tuple[Tensor, int]:
    return taper_kernel(nx, radius, dtype, device)


def apply_taper(v: Tensor, weights: Tensor, left: int) -> Tensor:
    """rho v for v (..., N_x), rho the circulant matrix of `taper_kernel`: O(N_x * band).

    Every row is a channel of one depthwise (grouped) convolution: on CPU this is linear in N_x
    where a single-channel conv1d over a large batch is not (benchmarks/bench_b1.py)."""
    nx = v.shape[-1]
    right = weights.shape[-1] - 1 - left
    flat = v.reshape(1, -1, nx)
    rows = flat.shape[1]
    padded = F.pad(flat, (left, right), mode="circular") if (left or right) else flat
    kernel = weights.to(v.dtype).reshape(1, 1, -1).expand(rows, 1, -1)
    return F.conv1d(padded, kernel, groups=rows).reshape(v.shape)


def taper_matrix(nx: int, radius: float, dtype=torch.float64, device=None) -> Tensor:
    """The dense N_x x N_x localisation matrix rho (for tests and small-N_x diagnostics only)."""
    i = torch.arange(nx, dtype=dtype, device=device)
    d = (i[:, None] - i[None, :]).abs()
    d = torch.minimum(d, nx - d)
    return gaspari_cohn(d / radius)


def localized_product(x: Tensor, zeta: Tensor, radius: float) -> Tensor:
    """Eq. B1: (rho o X X^T) zeta = sum_l X_l o (rho (X_l o zeta)), never forming N_x x N_x.

    x: (..., n_cols, N_x) the columns of X as rows; zeta: (..., N_x). radius = 0: X (X^T zeta)."""
    if radius == 0:
        return low_rank_product(x, zeta)
    weights, left = _cached_kernel(x.shape[-1], float(radius), x.dtype, x.device)
    return (x * apply_taper(x * zeta.unsqueeze(-2), weights, left)).sum(-2)


def low_rank_product(x: Tensor, zeta: Tensor) -> Tensor:
    """X (X^T zeta) for x (..., n_cols, N_x): cost 2 n_cols N_x."""
    coeff = (x * zeta.unsqueeze(-2)).sum(-1, keepdim=True)
    return (x * coeff).sum(-2)


def dense_covariance(x: Tensor, radius: float) -> Tensor:
    """rho o (X X^T) as a dense (..., N_x, N_x) matrix: reference for tests and diagnostics."""
    p = x.transpose(-1, -2) @ x
    if radius == 0:
        return p
    return taper_matrix(x.shape[-1], radius, x.dtype, x.device) * p


def taper_spectrum_max(nx: int, radius: float) -> float:
    """The largest eigenvalue of the circulant rho (its spectrum is the DFT of a row)."""
    if radius == 0:
        return float(nx)
    row = taper_matrix(nx, radius)[0]
    return float(torch.fft.fft(row).real.max())


X_VARIANCE = 0.1  # the unit of rho o X X^T, in sigma^2 (see LinearZetaDAN.__init__)
#: alpha = sigma^2 exp(u / ALPHA_LOG_UNIT): a few percent per Adam step (trunk.AlphaTerm)
ALPHA_LOG_UNIT = 0.1


class LinearZetaDAN(nn.Module):
    """increment = rho o (X X^T) zeta (+ alpha zeta); X(x^f) from a circular residual CNN."""

    def __init__(self, filters: int = 32, kernel: int = 5, blocks: int = 4,
                 activation: str = "gelu", columns: int = 8, loc_radius: float = 4.0,
                 alpha: bool = True, sigma: float = 1.0,
                 climatology: tuple[float, float] = (0.0, 1.0), nx_init: int = 40):
        super().__init__()
        act = activation_class(activation)
        check_int_at_least("columns", columns, 1)
        check(math.isfinite(loc_radius) and loc_radius >= 0,
              f"loc_radius={loc_radius!r} is not allowed: it must be a finite number >= 0")
        self.sigma = float(sigma)
        self.columns = columns
        self.loc_radius = float(loc_radius)
        self.norm = Normalise(*climatology)
        self.trunk = Trunk(1, filters, kernel, blocks, act)
        self.head = nn.Sequential(act(), nn.Conv1d(filters, columns, 1))
        # initial X: constant columns, P^a = s0 rho (see the module docstring)
        if alpha:
            s0 = 0.01 * self.sigma**2
        else:
            s0 = 0.9 * self.sigma**2 / taper_spectrum_max(nx_init, self.loc_radius)
        # X = sigma * x_unit * head: the head works at O(1) (x_unit^2 * columns = 0.1, a typical
        # analysis variance over sigma^2), so an Adam step moves X by a few percent, not by
        # half of it as when the head had to output X ~ 0.03 directly
        # a buffer, so checkpoints written before it existed are refused, not misread
        self.register_buffer("x_unit", torch.tensor(math.sqrt(X_VARIANCE / columns)))
        # The head's weights keep PyTorch's random init: with zero weights every column would
        # get the same gradient for ever (X X^T stuck at rank one); the constant bias makes the
        # start a stationary localised covariance plus a small random state dependence.
        nn.init.constant_(self.head[1].bias, math.sqrt(s0 / columns) / self.sigma
                          / float(self.x_unit))
        self.alpha_term = AlphaTerm(self.sigma, alpha, log_unit=ALPHA_LOG_UNIT)

    def anomalies(self, xf: Tensor) -> Tensor:
        """X^a(x^f): (..., n_cols, N_x), the columns of X as rows."""
        batch, nx = xf.shape[:-1], xf.shape[-1]
        h = self.head(self.trunk(self.norm(xf).reshape(-1, 1, nx)))
        return (self.sigma * self.x_unit * h).reshape(*batch, self.columns, nx)

    def covariance(self, xf: Tensor) -> Tensor:
        """The explicit P^a(x^f) = rho o X X^T (+ alpha I): dense, for diagnostics at small N_x."""
        p = dense_covariance(self.anomalies(xf), self.loc_radius)
        eye = torch.eye(xf.shape[-1], dtype=p.dtype, device=p.device)
        return self.alpha_term(p, eye)

    def forward(self, xf: Tensor, zeta: Tensor) -> Tensor:
        out = localized_product(self.anomalies(xf), zeta, self.loc_radius)
        return self.alpha_term(out, zeta)


@register_net("linear-zeta")
def build_linear_zeta(cfg, climatology) -> LinearZetaDAN:
    return LinearZetaDAN(cfg.filters, cfg.kernel, cfg.blocks, cfg.activation, cfg.columns,
                         cfg.loc_radius, cfg.alpha, cfg.twin.sigma, climatology,
                         nx_init=cfg.twin.nx)
