"""Deviation from linearity in zeta: r(lambda) of Eq. 23 (Fig. 6), and the distribution of the
projected innovations met in a DA run (Fig. 7). Samples (x^f, zeta) come from the one cycle
engine (`danlab.run_filter` with a DANFilter that records its inputs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.cycle import run_filter
from danlab.diagnostics._common import (
    Operator,
    as_states,
    check_operator,
    operator_device,
    rows_per_call,
    safe,
)
from danlab.diagnostics.covariance import analysis_covariance
from danlab.errors import check, check_int_at_least, check_positive
from danlab.filters import DANFilter
from danlab.observations import projected_innovation
from danlab.twin import TwinSpec


class _RecordingDAN(DANFilter):
    """A DANFilter that keeps (x^f, zeta, mask) of the analyses after `skip` cycles."""

    def __init__(self, operator, skip: int):
        super().__init__(operator)
        self.skip, self.count, self.xf, self.zeta, self.mask = skip, 0, [], [], []

    def analysis(self, state, y, mask, sigma, **kw):
        if self.count >= self.skip:
            self.xf.append(state.detach().clone())
            self.zeta.append(projected_innovation(y, mask, state, sigma).detach().clone())
            self.mask.append(mask.clone())
        self.count += 1
        return super().analysis(state, y, mask, sigma, **kw)


@dataclass
class DASamples:
    """(x^f, zeta, mask) from a DA run, each (cycles * trajectories, N_x), with its test RMSE."""

    xf: Tensor
    zeta: Tensor
    mask: Tensor
    dt: float
    rmse: float
    n_diverged: int


DA_SAMPLES_TWIN = TwinSpec(trajectories=4, cycles=600, spinup=100, seed=2_000_003)


def da_samples(a: Operator, twin: TwinSpec = DA_SAMPLES_TWIN,
               dtype: torch.dtype = torch.float64) -> DASamples:
    """Run the DAN `a` through the cycle engine on the twin experiment `twin`; return the
    forecasts and projected innovations of the cycles after its spin-up (trajectories that
    diverged are dropped: their count is in the result)."""
    model, data = twin.build(dtype=dtype, device=operator_device(a))
    nx, dt = twin.nx, twin.dt
    check_operator(a, data.x0)
    filt = _RecordingDAN(a, twin.spinup)
    res = run_filter(filt, data, model)
    ok = ~res.diverged
    check(bool(ok.any()), f"every DA trajectory diverged at dt={dt}: no samples")
    xf, zeta, mask = (torch.stack(v)[:, ok].reshape(-1, nx)
                      for v in (filt.xf, filt.zeta, filt.mask))
    return DASamples(xf, zeta, mask, dt, res.rmse, res.n_diverged)


@dataclass
class NonlinearityRatio:
    """lambdas (L,); ratio r(lambda) (L,) of Eq. 23; stderr (L,) its standard error over the
    n_samples (x, zeta) pairs used."""

    lambdas: Tensor
    ratio: Tensor
    stderr: Tensor
    n_samples: int


def nonlinearity_ratio(
    a: Operator, xs: Tensor, zetas: Tensor, lambdas, *, pa: Tensor | None = None,
    rtol: float = 1e-8, standardise: bool = True, max_elements: int | None = None,
) -> NonlinearityRatio:
    """r(lambda) = E ||P^a(x)^+ (a(x, lambda zeta) - a(x, 0))|| / ||P^a(x)^+ (a(x, zeta) -
    a(x, 0))|| over pairs (x, zeta) (rows of xs, zetas (K, N_x)), P^a(x) the Jacobian at
    zeta = 0 (or `pa` (K, N_x, N_x) if given), applied through its pseudo-inverse (singular
    values below rtol * max dropped) for stability. Pairs with zeta = 0 are skipped.
    For an operator linear in zeta, r(lambda) = lambda. Caution: a trained DAN's P^a(x) can
    be ill-conditioned (condition numbers ~1e3 seen), and P^a+ then amplifies the small
    nonlinear residual along weak directions; raise rtol to truncate them, or
    standardise=False for the plain Euclidean ratio."""
    x, _ = as_states(xs, "xs")
    z, _ = as_states(zetas, "zetas")
    check(x.shape == z.shape, f"xs and zetas must have the same shape, got {tuple(x.shape)} "
                              f"and {tuple(z.shape)}")
    lam = torch.as_tensor(lambdas, dtype=torch.float64).reshape(-1)
    check(lam.numel() >= 1 and bool((lam > 0).all()) and bool(torch.isfinite(lam).all()),
          "lambdas must be finite numbers > 0")
    check_operator(a, x)
    keep = z.abs().amax(-1) > 0
    check(bool(keep.any()), "every zeta is zero: r(lambda) is undefined")
    x, z = x[keep], z[keep]
    if standardise:
        p = analysis_covariance(a, x, max_elements=max_elements) if pa is None else pa[keep]
        pinv = torch.linalg.pinv(p, rtol=rtol)
    else:
        pinv = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)
    chunk = rows_per_call(x.shape[-1], max_elements)

    def std_incr(scale):
        outs = []
        with torch.no_grad():
            for s in range(0, x.shape[0], chunk):
                xx, zz = x[s:s + chunk], z[s:s + chunk]
                d = a(xx, scale * zz) - a(xx, torch.zeros_like(zz))
                outs.append(torch.einsum("bij,bj->bi", pinv[s:s + chunk], d).norm(dim=-1))
        return torch.cat(outs)

    den = safe(lambda: std_incr(1.0), "evaluation")
    good = den > 0
    ratios = torch.stack([std_incr(float(v))[good] / den[good] for v in lam])  # (L, K)
    n = ratios.shape[1]
    return NonlinearityRatio(lam, ratios.mean(1).double(),
                             (ratios.std(1) / max(1, n) ** 0.5).double(), n)


def innovation_histogram(zetas: Tensor, mask: Tensor | None = None, bins: int = 81,
                         limit: float | None = None) -> tuple[Tensor, Tensor]:
    """Density histogram of projected innovations at observed sites: (edges (bins+1,),
    density (bins,)); `limit` sets the symmetric range (default: the largest |zeta|)."""
    check_int_at_least("bins", bins, 2)
    z = zetas[mask] if mask is not None else zetas.reshape(-1)
    check(z.numel() > 0, "no observed projected innovations to histogram")
    lim = float(z.abs().max()) if limit is None else float(limit)
    check_positive("limit", lim)
    dens = torch.histc(z.double(), bins=bins, min=-lim, max=lim)
    width = 2 * lim / bins
    dens = dens / (z.numel() * width)
    return torch.linspace(-lim, lim, bins + 1, dtype=torch.float64), dens
