"""LETKF and local EnKF-N: DAPPER 1.8.1 test vectors, global limits, sparse masks, bad input."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from danlab import DanlabError, Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.filters import ETKF, EnKFN
from danlab.filters.letkf import LETKF, LocalEnKFN, gaspari_cohn, local_taper

VECTORS = Path(__file__).resolve().parent / "data" / "dapper_letkf_steps.npz"
CASES = [str(c) for c in np.load(VECTORS)["cases"]] if VECTORS.exists() else []


def test_test_vectors_are_in_the_repository():
    assert VECTORS.exists(), f"{VECTORS} is missing (see tests/data/README.md)"
    assert len(CASES) == 18


def _filter(case, n):
    radius = float(re.search(r"_r(\d+)_", case).group(1))
    if case.startswith("local_enkf_n"):
        return LocalEnKFN(n, loc_radius=radius, xN=1.0)
    return LETKF(n, loc_radius=radius, inflation=1.05 if "infl1.05" in case else 1.0)


def _case(d, c):
    Ef = torch.as_tensor(d[c + "_Ef"])
    y = torch.zeros(40, dtype=torch.float64)
    m = torch.zeros(40, dtype=torch.bool)
    sites = torch.as_tensor(d[c + "_obs_sites"]).long()
    y[sites] = torch.as_tensor(d[c + "_y"])
    m[sites] = True
    return Ef, y, m


def _compare(Ea, ref, mean_tol=1e-10, anom_tol=1e-8):
    assert np.abs(Ea.mean(0) - ref.mean(0)).max() < mean_tol
    assert np.abs((Ea - Ea.mean(0)) - (ref - ref.mean(0))).max() < anom_tol


@pytest.mark.parametrize("case", CASES or ["missing"])
def test_reproduces_dapper(case):
    d = np.load(VECTORS)  # fails (not skips) if the file is missing
    Ef, y, m = _case(d, case)
    Ea = _filter(case, Ef.shape[0]).analysis(Ef[None], y[None], m[None], 1.0)[0].numpy()
    _compare(Ea, d[case + "_Ea"])


@pytest.mark.parametrize("prefix", ["letkf_N20_r9_full", "letkf_N40", "local_enkf_n"])
def test_batch_of_test_vectors_equals_each_alone(prefix):
    """Cases with full and alternate masks in one batch: each row still equals DAPPER."""
    d = np.load(VECTORS)
    cases = [c for c in CASES if c.startswith(prefix)]
    Ef, y, m = (torch.stack(t) for t in zip(*[_case(d, c) for c in cases]))
    Ea = _filter(cases[0], Ef.shape[1]).analysis(Ef, y, m, 1.0).numpy()
    for i, c in enumerate(cases):
        _compare(Ea[i], d[c + "_Ea"])


def _ensemble(make):
    """Inputs with about half the sites observed; trajectory 2 observes only 3 neighbouring
    sites, so that most local domains are empty."""
    E, y, mask = make(nx=24, observed=0.5)
    mask[2] = False
    mask[2, :3] = True
    return E, torch.where(mask, y, 0.0), mask


@pytest.mark.parametrize("radius", [math.inf, 1e9])
def test_huge_radius_is_the_global_etkf(radius, forecast_ensemble):
    """At radius 1e9 the taper is 1 - O(1e-16): the ETKF to rounding."""
    E, y, mask = _ensemble(forecast_ensemble)
    for infl in (1.0, 1.04):
        Ea = LETKF(12, loc_radius=radius, inflation=infl).analysis(E, y, mask, 0.8)
        torch.testing.assert_close(Ea, ETKF(12, inflation=infl).analysis(E, y, mask, 0.8),
                                   rtol=0, atol=1e-11)


def test_local_enkf_n_with_infinite_radius_is_the_global_dual_enkf_n(forecast_ensemble):
    E, y, mask = _ensemble(forecast_ensemble)
    Ea = LocalEnKFN(12, loc_radius=math.inf).analysis(E, y, mask, 0.8)
    torch.testing.assert_close(Ea, EnKFN(12, dual=True, xN=3.0).analysis(E, y, mask, 0.8),
                               rtol=0, atol=1e-10)


def _numpy_letkf(E, y, sites, sigma, radius, infl):
    """A per-site loop with an explicit selection of the observed sites (no masks)."""
    n, nx = E.shape
    mu = E.mean(0)
    A = E - mu
    rho = local_taper(nx, radius).numpy()
    Ea = np.empty_like(E)
    for i in range(nx):
        jj = [j for j in sites if rho[i, j] > 0]
        t = np.sqrt(rho[i, jj])
        Y = A[:, jj] / sigma * t
        dy = (y[jj] - mu[jj]) / sigma * t
        lam, V = np.linalg.eigh(Y @ Y.T + (n - 1) * np.eye(n))
        w = V @ ((V.T @ (Y @ dy)) / lam)
        T = (V * lam**-0.5) @ V.T * np.sqrt(n - 1)
        Ea[:, i] = mu[i] + w @ A[:, i] + T @ A[:, i]
    return Ea.mean(0) + infl * (Ea - Ea.mean(0))


def test_sparse_masks_equal_the_reduced_problem_per_row(forecast_ensemble):
    """Rows with different site sets (all, none, a few) in one batch: each row equals an explicit
    per-site computation on its observed sites only."""
    E, y, mask = _ensemble(forecast_ensemble)
    Ea = LETKF(12, loc_radius=3.0, inflation=1.02).analysis(E, y, mask, 0.7).numpy()
    for i in range(E.shape[0]):
        sites = np.flatnonzero(mask[i].numpy())
        ref = _numpy_letkf(E[i].numpy(), y[i].numpy(), sites, 0.7, 3.0, 1.02)
        np.testing.assert_allclose(Ea[i], ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("filt", [LETKF(12, loc_radius=3.0),
                                  LETKF(12, loc_radius=2.0, inflation=1.05),
                                  LocalEnKFN(12, loc_radius=3.0),
                                  LocalEnKFN(12, loc_radius=2.5, xN=2.0)])
def test_batching_invariance_and_empty_sites(filt, forecast_ensemble):
    E, y, mask = _ensemble(forecast_ensemble)
    Ea = filt.analysis(E, y, mask, 0.7)
    for i in range(E.shape[0]):
        alone = filt.analysis(E[i:i + 1], y[i:i + 1], mask[i:i + 1], 0.7)
        torch.testing.assert_close(Ea[i:i + 1], alone, rtol=0, atol=1e-11)
    assert torch.isfinite(Ea).all()
    # no observations at all: only the fixed inflation acts (l1 = 1 for the local EnKF-N)
    mu = E[1].mean(0)
    torch.testing.assert_close(Ea[1], mu + filt.inflation * (E[1] - mu), rtol=0, atol=1e-12)
    # sites whose local domain holds no observed site are left alone the same way
    far = (local_taper(24, filt.loc_radius)[:, :3] == 0).all(-1)
    assert bool(far.any())
    mu2 = E[2].mean(0)
    torch.testing.assert_close(Ea[2][:, far], (mu2 + filt.inflation * (E[2] - mu2))[:, far],
                               rtol=0, atol=1e-12)


def test_non_finite_trajectory_gives_nan_without_exception(forecast_ensemble):
    E, y, mask = _ensemble(forecast_ensemble)
    E[3, 0, 5] = float("nan")
    for filt in (LETKF(12, loc_radius=3.0), LocalEnKFN(12, loc_radius=3.0)):
        Ea = filt.analysis(E, y, mask, 1.0)
        assert torch.isnan(Ea[3]).all()
        assert torch.isfinite(Ea[[0, 1, 2, 4]]).all()


def test_float32_and_new_keyword_interface(forecast_ensemble):
    E, y, mask = _ensemble(forecast_ensemble)
    filt = LocalEnKFN(12, loc_radius=3.0)
    Ea64 = filt.analysis(E, y, mask, 1.0, model=Lorenz96(), dt=0.05)
    Ea32 = filt.analysis(E.float(), y.float(), mask, 1.0)
    assert Ea32.dtype == torch.float32
    torch.testing.assert_close(Ea32.double(), Ea64, rtol=0, atol=1e-3)


def test_names():
    assert LETKF(10, loc_radius=4.0).name == "letkf"
    assert LocalEnKFN(10, loc_radius=4.0).name == "local-enkf-n"


def test_taper():
    r = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    gc = gaspari_cohn(r)
    assert gc[0] == 1 and gc[-2] == 0 and gc[-1] == 0
    assert (gc[:-2].diff() < 0).all()
    # c = 1.82 radius ~ sqrt(10/3) radius: the curvature at 0 of a Gaussian of std radius
    # (so the taper at d = radius is 0.63, near but not equal to e^{-1/2} = 0.61)
    assert abs(float(gaspari_cohn(torch.tensor(1 / 1.82))) - 0.6335) < 1e-3
    rho = local_taper(40, 9.0)
    assert torch.equal(rho, rho.T) and torch.equal(rho.diagonal(), torch.ones(40, dtype=rho.dtype))
    assert torch.equal(torch.roll(rho, (1, 1), (0, 1)), rho)  # periodic, circulant
    assert (rho[rho > 0] > 1e-3).all()
    assert (local_taper(40, 1.0)[0] > 0).sum() == 7  # |d| <= 3 for c = 1.82


@pytest.mark.parametrize("kwargs", [dict(loc_radius=0), dict(loc_radius=-1.0),
                                    dict(loc_radius=float("nan")), dict(loc_radius="far"),
                                    dict(loc_radius=4, inflation=0.0),
                                    dict(loc_radius=4, xN=0.0), dict(loc_radius=4, g=-1)])
def test_bad_input(kwargs):
    with pytest.raises(DanlabError):
        LETKF(10, **kwargs)
    with pytest.raises(DanlabError):
        LETKF(1, loc_radius=4.0)


def test_letkf_short_long_run_sanity():
    """4 trajectories x 400 cycles at dt = 0.05 (DAPPER step): near DAPPER's 0.179 (N = 20,
    radius 9, inflation 1.01)."""
    model = Lorenz96(inner_dt=0.05)
    twin = make_twin(model, ObservationConfig(), 40, 0.05, 4, 400, seed=3)
    res = run_filter(LETKF(20, loc_radius=9.0, inflation=1.01), twin, model, spinup=100)
    assert res.n_diverged == 0
    assert 0.15 < res.rmse < 0.21


@pytest.mark.slow
def test_letkf_long_run_matches_dapper():
    """The standard protocol (seed 1000003, 16 x 1500 cycles after 500, inner step 0.05): the
    median trajectory is near DAPPER's 0.179 (N = 20, radius 9, inflation 1.01). The mean is
    not used: with inflation 1.01 one of the 16 trajectories loses track for a while (DAPPER's
    LETKF does the same from the same initial ensemble)."""
    model = Lorenz96(inner_dt=0.05)
    twin = make_twin(model, ObservationConfig(), 40, 0.05, 16, 1500, seed=1_000_003)
    res = run_filter(LETKF(20, loc_radius=9.0, inflation=1.01), twin, model, spinup=500)
    assert res.n_diverged == 0
    assert 0.17 < float(res.rmse_per_trajectory.median()) < 0.19
