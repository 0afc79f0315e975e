"""The DAN's P^a(x) ~ grad_zeta a(x^f, 0) against the EnKF-N's ensemble P^a along the same
trajectory (Boc24: their dominant eigenvectors are close): spectra, principal angles between
the dominant eigenspaces, and the alignment of the leading eigenvectors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.cycle import run_filter
from danlab.diagnostics._common import Operator, check_operator, operator_device
from danlab.diagnostics.covariance import analysis_covariance
from danlab.errors import check, check_int_at_least
from danlab.twin import TwinSpec


class _Recorder:
    """Wraps an ensemble filter; keeps the forecast mean and the analysis ensemble covariance
    at every `every`-th analysis after `skip` cycles."""

    def __init__(self, inner, skip: int, every: int):
        self.inner, self.skip, self.every, self.count = inner, skip, every, 0
        self.name = getattr(inner, "name", "ensemble")
        self.xf, self.pa = [], []

    @property
    def requires(self):
        return self.inner.requires

    def parameters(self):
        return self.inner.parameters()

    def init(self, x0, streams):
        return self.inner.init(x0, streams)

    def forecast(self, state, model, dt):
        return self.inner.forecast(state, model, dt)

    def estimate(self, state):
        return self.inner.estimate(state)

    def analysis(self, state, y, mask, sigma, **kw):
        out = self.inner.analysis(state, y, mask, sigma, **kw)
        k = self.count - self.skip
        if k >= 0 and k % self.every == 0:
            self.xf.append(state.mean(-2).detach().clone())
            anom = out - out.mean(-2, keepdim=True)
            self.pa.append((anom.transpose(-1, -2) @ anom / (out.shape[-2] - 1)).detach().clone())
        self.count += 1
        return out


@dataclass
class EnKFComparison:
    """Per sampled analysis s (S of them): eig_dan, eig_enkf (S, N_x) descending spectra of
    the symmetrised DAN P^a and of the EnKF-N P^a; cosines (S, k) of the principal angles
    between their top-k eigenspaces; alignment (S, k) = |u_dan,i . u_enkf,i|; rel_diff (S,)
    ||P_dan - P_enkf||_F / ||P_enkf||_F; asymmetry (S,) ||P - P^T||_F / ||P||_F of the DAN's;
    random_cos2 = k / N_x, the mean squared cosine for unrelated subspaces."""

    eig_dan: Tensor
    eig_enkf: Tensor
    cosines: Tensor
    alignment: Tensor
    rel_diff: Tensor
    asymmetry: Tensor
    k: int
    random_cos2: float
    enkf_rmse: float

    def summary(self) -> dict:
        return {
            "samples": int(self.cosines.shape[0]), "k": self.k,
            "mean_cos2_principal": float((self.cosines**2).mean()),
            "random_cos2": self.random_cos2,
            "mean_alignment_leading": float(self.alignment[:, 0].mean()),
            "mean_rel_diff": float(self.rel_diff.mean()),
            "mean_asymmetry": float(self.asymmetry.mean()),
            "enkf_rmse": self.enkf_rmse,
        }


def compare_matrices(p_dan: Tensor, p_enkf: Tensor, k: int) -> dict:
    """The comparison metrics for batches of matrices (S, N, N)."""
    n = p_dan.shape[-1]
    check(1 <= k <= n, f"k={k!r} is out of range: it must be in [1, {n}]")
    sym = 0.5 * (p_dan + p_dan.transpose(-1, -2))
    asym = (p_dan - p_dan.transpose(-1, -2)).flatten(1).norm(dim=1) / p_dan.flatten(1).norm(dim=1)
    ed, ud = torch.linalg.eigh(sym)
    ee, ue = torch.linalg.eigh(0.5 * (p_enkf + p_enkf.transpose(-1, -2)))
    ed, ud, ee, ue = ed.flip(-1), ud.flip(-1), ee.flip(-1), ue.flip(-1)
    cos = torch.linalg.svdvals(ud[..., :k].transpose(-1, -2) @ ue[..., :k]).clamp(max=1.0)
    align = (ud[..., :k] * ue[..., :k]).sum(-2).abs()
    rel = (p_dan - p_enkf).flatten(1).norm(dim=1) / p_enkf.flatten(1).norm(dim=1)
    return {"eig_dan": ed, "eig_enkf": ee, "cosines": cos, "alignment": align,
            "rel_diff": rel, "asymmetry": asym}


COMPARE_TWIN = TwinSpec(trajectories=1, cycles=700, spinup=200, seed=2_000_003)


def compare_with_enkf(
    a: Operator, twin: TwinSpec = COMPARE_TWIN, enkf=None, members: int = 40, every: int = 10,
    k: int = 10, dtype: torch.dtype = torch.float64,
) -> EnKFComparison:
    """Run the EnKF-N (`enkf`, default danlab.filters.EnKFN(members)) through the cycle engine
    on the twin experiment `twin`; at every `every`-th analysis after its spin-up, compare its
    ensemble P^a with the DAN's grad_zeta a(x^f, 0) at the EnKF's forecast mean x^f (for
    H = R = I the DAN's Jacobian is its gain, i.e. its P^a)."""
    check_int_at_least("every", every, 1)
    check_int_at_least("k", k, 1)
    if enkf is None:
        from danlab.filters.enkf_n import EnKFN
        enkf = EnKFN(members)
    model, data = twin.build(dtype=dtype, device=operator_device(a))
    nx = twin.nx
    check_operator(a, data.x0)
    rec = _Recorder(enkf, twin.spinup, every)
    res = run_filter(rec, data, model)
    check(len(rec.xf) > 0, "no analyses were sampled: lower spinup or every")
    xf = torch.stack(rec.xf)                          # (S, B, N)
    p_enkf = torch.stack(rec.pa)                      # (S, B, N, N)
    ok = ~res.diverged
    xf, p_enkf = xf[:, ok].reshape(-1, nx), p_enkf[:, ok].reshape(-1, nx, nx)
    p_dan = analysis_covariance(a, xf)
    m = compare_matrices(p_dan, p_enkf, k)
    return EnKFComparison(**m, k=k, random_cos2=k / nx, enkf_rmse=res.rmse)
