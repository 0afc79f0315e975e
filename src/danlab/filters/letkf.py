"""Localised ensemble filters: the LETKF and the local EnKF-N, batched over trajectories and sites.

The local ensemble transform Kalman filter (Hunt, Kostelich & Szunyogh 2007) computes, for every
state site i, its own ensemble-space analysis with the observations near i, and keeps only
column i of the result. Implemented equations (notation of `_ensemble_space`; Y, dy normalised by
R^{-1/2} = 1/sigma, unobserved sites zeroed by the mask):

* taper rho_ij = GC(d_ij / c), Gaspari & Cohn (1999, Eq. 4.10) with half-width c = 1.82 x radius
  (~ sqrt(10/3) radius: near d = 0 the taper is a Gaussian of std radius; rho = 0.63 at
  d = radius), the convention of DAPPER 1.8.1, after Sakov & Bertino (2011);
  d_ij the periodic distance between sites i and j; rho_ij <= 1e-3 is set to 0 (site dropped);
* local problem at i: Y_i = Y diag(sqrt(rho_i)), dy_i = diag(sqrt(rho_i)) dy, i.e. R^{-1} tapered
  ("R-localisation"), so G_i = Y_i Y_i^T = sum_j rho_ij y_j y_j^T and
  Y_i dy_i = sum_j rho_ij y_j dy_j (y_j = column j of Y);
* symmetric square-root ETKF update of the (optionally l1_i-inflated) prior, column i only:

      d = l1^2 lam + (N-1),  u = l1 V^T Y_i dy_i / d,  T_i = sqrt(N-1) V diag(d^{-1/2}) V^T,
      E^a[:, i] = mean_i + l1 (u . V^T a_i + T_i a_i),   a_i = A[:, i]      (G_i = V diag(lam) V^T)

  (Hunt et al. 2007 Eq. 20-24), then multiplicative inflation of the analysis anomalies;
* local EnKF-N (xN given): l1_i from the dual EnKF-N problem (Bocquet 2011 Eq. 33 with the
  hyperprior of BRH15 Eq. 36, `hyperprior_coeffs`) solved on the *untapered* local observations
  (every site with rho_ij > 1e-3, weight 1), as DAPPER 1.8.1's ``LETKF(..., xN=...)`` does, then
  the tapered update above with the prior inflated by l1_i.

With these conventions the analysis reproduces DAPPER 1.8.1's ``LETKF(N, loc_rad, xN, infl)`` on
Lorenz-96 to rounding (tests/test_filters_letkf.py).

Layout and cost. All sites are solved at once as a batch of (B, N_x) N x N symmetric problems:
G (B, N_x, N, N) is formed as rho @ [y_j y_j^T]_j, one dense (N_x x N_x) @ (N_x x N^2) product
per trajectory (the taper is stored dense: at N_x = 160 the dense product costs ~2.6x the banded
one but is a single BLAS call and exact), then one batched ``eigh``. Memory is dominated by two
(B, N_x, N, N) tensors: 33 MB each in float64 at B = 16, N_x = 160, N = 40. The local EnKF-N needs
a second Gram and eigendecomposition (untapered), i.e. about twice the LETKF's cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from danlab.errors import check, check_positive
from danlab.filters._ensemble_space import (
    hyperprior_coeffs,
    newton_dual,
    normalised_obs,
    on_host,
)
from danlab.filters.base import EnsembleFilter
from danlab.spec import param

GC_WIDTH = 1.82  # c / radius: GC ~ a Gaussian of std radius near 0 (DAPPER 1.8.1's convention)
TAPER_CUTOFF = 1e-3  # observations whose taper is <= this are dropped from the local domain


def gaspari_cohn(r: Tensor) -> Tensor:
    """Gaspari & Cohn (1999) Eq. 4.10, the compactly supported 5th-order piecewise rational
    function of r = distance / c (1 at r = 0, 0 for r >= 2)."""
    r = r.abs()
    inner = 1 + r**2 * (-5 / 3 + r * (5 / 8 + r * (1 / 2 - r / 4)))
    rs = torch.where(r > 1, r, torch.ones_like(r))  # keeps 2/(3r) finite where unused
    outer = (4 + rs * (-5 + rs * (5 / 3 + rs * (5 / 8 + rs * (-1 / 2 + rs / 12))))
             - 2 / (3 * rs))
    return torch.where(r <= 1, inner, torch.where(r < 2, outer, torch.zeros_like(r)))


@lru_cache(maxsize=16)
def _taper64(nx: int, radius: float) -> Tensor:
    """Taper rho (N_x state sites, N_x obs sites), float64 on the CPU, cut off at TAPER_CUTOFF."""
    i = torch.arange(nx, dtype=torch.float64)
    d = (i[:, None] - i[None, :]).abs()
    d = torch.minimum(d, nx - d)  # periodic domain
    rho = gaspari_cohn(d / (GC_WIDTH * radius)) if math.isfinite(radius) else torch.ones_like(d)
    return torch.where(rho > TAPER_CUTOFF, rho, torch.zeros_like(rho))


def local_taper(nx: int, radius: float, dtype=torch.float64, device="cpu") -> Tensor:
    """The taper matrix rho (N_x, N_x): row i weighs the observation sites for state site i."""
    return _taper_on(int(nx), float(radius), dtype, torch.device(device))


@lru_cache(maxsize=32)
def _taper_on(nx: int, radius: float, dtype, device) -> Tensor:
    # cached per device and dtype: no host-to-device copy at every analysis on a GPU
    return _taper64(nx, radius).to(dtype=dtype, device=device)


def _local_gram(Y: Tensor, dy: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted local Grams and innovations for every state site.

    Y (B, N, N_x), dy (B, N_x), W (N_x, N_x) -> G (B, N_x, N, N) with
    G[b, i] = sum_j W_ij Y[b, :, j] Y[b, :, j]^T, and g (B, N_x, N) with
    g[b, i] = sum_j W_ij Y[b, :, j] dy[b, j].
    """
    b, n, nx = Y.shape
    Yt = Y.transpose(-1, -2)  # (B, N_x, N)
    P = (Yt.unsqueeze(-1) * Yt.unsqueeze(-2)).reshape(b, nx, n * n)
    G = (W @ P).reshape(b, nx, n, n)
    g = ((Y * dy.unsqueeze(-2)) @ W.transpose(-1, -2)).transpose(-1, -2)
    return G, g


def _batched_eigh(G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """eigh of G (B, N_x, N, N): (lam >= 0, V, ok (B,)) with ok False for a trajectory whose G has
    a non-finite entry anywhere; its G is replaced by the identity (no exception from LAPACK)."""
    ok = torch.isfinite(G.sum((-3, -2, -1)))  # one reduction: NaN/inf anywhere propagate
    if not on_host(G) or not bool(ok.all()):  # the test is a host sync: CPU only
        eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
        G = torch.where(ok[:, None, None, None], G, eye)
    lam, V = torch.linalg.eigh(G)  # reads the lower triangle only
    return lam.clamp_min(0.0), V, ok


@dataclass(kw_only=True)
class LETKF(EnsembleFilter):
    """LETKF with N = `members`, Gaspari-Cohn localisation radius `loc_radius` (in grid sites;
    inf = no localisation, i.e. the global ETKF) and multiplicative `inflation` of the
    analysis anomalies.

    xN: if given, the local EnKF-N: the inflation of the prior estimated per local domain with
    hyperprior certainty xN (DAPPER's xN; g its nullity correction); `inflation` still applies
    afterwards (1 by default). See `LocalEnKFN`.
    """

    name = "letkf"
    loc_radius: float = param(9.0, "localisation radius in grid sites (Gaspari-Cohn half-width "
                                   "1.82 x radius, DAPPER's convention; inf: none)")
    inflation: float = param(1.0, "multiplicative inflation of the analysis anomalies")
    xN: float | None = None
    g: float = param(0.0, "nullity correction of the hyperprior (DAPPER's g)")

    def __post_init__(self):
        super().__post_init__()
        try:
            ok = float(self.loc_radius) > 0 and not math.isnan(float(self.loc_radius))
        except (TypeError, ValueError):
            ok = False
        check(ok, f"loc_radius={self.loc_radius!r} is not allowed: it must be a number > 0 "
                  "(grid sites; inf = no localisation)")
        check_positive("inflation", self.inflation)
        if self.xN is not None:
            check_positive("xN", self.xN)
        check(isinstance(self.g, (int, float)) and self.g >= 0,
              f"g={self.g!r} is not allowed: it must be >= 0")
        self.loc_radius = float(self.loc_radius)

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *,
                 model=None, dt=None) -> Tensor:
        """Local analyses of the ensemble state (B, N, N_x) given y (B, N_x) at sites mask."""
        n, nx = state.shape[-2], state.shape[-1]
        n1 = n - 1
        mu, Y, dy = normalised_obs(state, y, mask, sigma)
        A = state - mu.unsqueeze(-2)
        rho = local_taper(nx, self.loc_radius, state.dtype, state.device)

        if self.xN is None:
            l1 = torch.ones_like(mu)
            ok_u = torch.ones(mu.shape[0], dtype=torch.bool, device=mu.device)
        else:
            # finite-size inflation from the untapered local domain (weight 1 where rho > 0)
            Gu, gu = _local_gram(Y, dy, (rho > 0).to(state.dtype))
            lam_u, V_u, ok_u = _batched_eigh(Gu)
            bu = (V_u.transpose(-1, -2) @ gu.unsqueeze(-1)).squeeze(-1)
            eN, cL = hyperprior_coeffs(lam_u, n, self.xN, self.g)
            l1 = newton_dual(bu * bu, lam_u, eN, cL, n)
            del Gu, V_u

        G, gt = _local_gram(Y, dy, rho)
        lam, V, ok = _batched_eigh(G)
        Vt = V.transpose(-1, -2)
        b = (Vt @ gt.unsqueeze(-1)).squeeze(-1)  # (B, N_x, N)
        ae = (Vt @ A.transpose(-1, -2).unsqueeze(-1)).squeeze(-1)  # V^T a_i, (B, N_x, N)
        l1e = l1.unsqueeze(-1)
        d = l1e * l1e * lam + n1
        u = l1e * b / d
        Ta = (V @ (math.sqrt(n1) * d.rsqrt() * ae).unsqueeze(-1)).squeeze(-1)  # T_i a_i
        Xa = l1e * ((u * ae).sum(-1, keepdim=True) + Ta)  # (B, N_x, N): analysis anomaly + dmean
        Ea = mu.unsqueeze(-2) + Xa.transpose(-1, -2)
        if self.inflation != 1.0:
            ma = Ea.mean(-2, keepdim=True)
            Ea = ma + self.inflation * (Ea - ma)
        good = (ok & ok_u)[:, None, None]
        return torch.where(good, Ea, torch.full_like(Ea, float("nan")))



@dataclass(kw_only=True)
class LocalEnKFN(LETKF):
    """Local EnKF-N: the LETKF with the finite-size (EnKF-N dual) inflation estimated in each
    local domain, hyperprior certainty xN (DAPPER's ``LETKF(N, loc_rad, xN=xN)``); no fixed
    inflation by default. xN = 3 (not DAPPER's 1) was best after localisation in our scan
    (docs/baselines.md)."""

    name = "local-enkf-n"
    inflation: float = param(1.0, "multiplicative inflation of the analysis anomalies, after "
                                  "the estimated one")
    xN: float = param(3.0, "hyperprior certainty of the local inflation (DAPPER's xN)")

    def __post_init__(self):
        check(self.xN is not None, "xN=None is not allowed for local-enkf-n: use letkf")
        super().__post_init__()
