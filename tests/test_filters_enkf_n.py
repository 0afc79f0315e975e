"""EnKF-N and ETKF: DAPPER test vectors, batching invariance, sparse masks, degenerate input."""

from pathlib import Path

import numpy as np
import pytest
import torch

from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.filters import ETKF, EnKFN, make_filter

VECTORS = Path(__file__).parent / "data" / "dapper_analysis_steps.npz"  # must exist


def _cases(prefix):
    return [str(c) for c in np.load(VECTORS)["cases"] if str(c).startswith(prefix)]


def _obs(d, c):
    y = torch.zeros(1, 40, dtype=torch.float64)
    m = torch.zeros(1, 40, dtype=torch.bool)
    sites = torch.as_tensor(d[c + "_obs_sites"]).long()
    y[0, sites] = torch.as_tensor(d[c + "_y"])
    m[0, sites] = True
    return y, m


def _compare(Ea, ref, mean_tol=1e-10, anom_tol=1e-8):
    assert np.abs(Ea.mean(0) - ref.mean(0)).max() < mean_tol
    assert np.abs((Ea - Ea.mean(0)) - (ref - ref.mean(0))).max() < anom_tol


@pytest.mark.parametrize("case", _cases("enkf_n"))
def test_enkf_n_reproduces_dapper(case):
    d = np.load(VECTORS)
    Ef = torch.as_tensor(d[case + "_Ef"]).unsqueeze(0)
    y, m = _obs(d, case)
    filt = EnKFN(Ef.shape[1], xN=2.0 if "xN2" in case else 1.0, dual="dual" in case)
    Ea = filt.analysis(Ef, y, m, 1.0)[0].numpy()
    _compare(Ea, d[case + "_Ea"])


def test_enkf_n_batch_of_test_vectors_with_different_masks():
    """All N=40 primal cases (full and alternate masks) in one batch equal each alone."""
    d = np.load(VECTORS)
    cases = [c for c in _cases("enkf_n_N40") if "xN2" not in c and "dual" not in c]
    Ef = torch.stack([torch.as_tensor(d[c + "_Ef"]) for c in cases])
    obs = [_obs(d, c) for c in cases]
    y = torch.cat([o[0] for o in obs])
    m = torch.cat([o[1] for o in obs])
    assert not bool(m.all())
    Ea = EnKFN(40).analysis(Ef, y, m, 1.0).numpy()
    for i, c in enumerate(cases):
        _compare(Ea[i], d[c + "_Ea"])


@pytest.mark.parametrize("filt", [EnKFN(12), EnKFN(12, dual=True), EnKFN(12, dirac=True),
                                  ETKF(12, inflation=1.05)])
def test_batching_invariance_and_sparse_masks(filt, forecast_ensemble):
    E, y, mask = forecast_ensemble()
    Ea = filt.analysis(E, y, mask, 0.7)
    for i in range(E.shape[0]):
        alone = filt.analysis(E[i:i + 1], y[i:i + 1], mask[i:i + 1], 0.7)
        torch.testing.assert_close(Ea[i:i + 1], alone, rtol=0, atol=1e-11)
    assert torch.isfinite(Ea).all()


def test_sparse_mask_equals_reduced_problem(forecast_ensemble):
    """A masked analysis equals the analysis of the observed sites only (explicit H, numpy)."""
    E, y, mask = forecast_ensemble(b=3)
    Ea = ETKF(12).analysis(E, y, mask, 0.5)
    for i in range(3):
        Ei = E[i].numpy()
        sites = mask[i].numpy()
        n = Ei.shape[0]
        mu = Ei.mean(0)
        A = Ei - mu
        Y = A[:, sites] / 0.5
        dy = (y[i].numpy()[sites] - mu[sites]) / 0.5
        Pw = np.linalg.inv(Y @ Y.T + (n - 1) * np.eye(n))
        w = dy @ Y.T @ Pw
        lam, V = np.linalg.eigh(Y @ Y.T + (n - 1) * np.eye(n))
        T = (V * lam**-0.5) @ V.T * np.sqrt(n - 1)
        np.testing.assert_allclose(Ea[i].numpy(), mu + w @ A + T @ A, atol=1e-10)


def test_unobserved_trajectory_is_left_alone(forecast_ensemble):
    """N_y = 0: the mode-corrected Jeffreys and the Dirac-Jeffreys priors both give l1 = 1, so
    the ensemble is unchanged (not only its mean)."""
    E, y, mask = forecast_ensemble()
    for filt in (EnKFN(12), EnKFN(12, dirac=True), EnKFN(12, dual=True), ETKF(12)):
        Ea = filt.analysis(E, y, mask, 1.0)
        torch.testing.assert_close(Ea[1], E[1], rtol=0, atol=1e-12)


def test_non_finite_trajectory_gives_nan_without_exception(forecast_ensemble):
    E, y, mask = forecast_ensemble()
    E[2, 0, 0] = float("nan")
    Ea = EnKFN(12).analysis(E, y, mask, 1.0)
    assert torch.isnan(Ea[2]).all()
    assert torch.isfinite(Ea[[0, 1, 3, 4]]).all()


def test_float32_and_dtype_agnostic(forecast_ensemble):
    E, y, mask = forecast_ensemble()
    Ea64 = EnKFN(12).analysis(E, y, mask, 1.0)
    Ea32 = EnKFN(12).analysis(E.float(), y.float(), mask, 1.0)
    assert Ea32.dtype == torch.float32
    torch.testing.assert_close(Ea32.double(), Ea64, rtol=0, atol=1e-3)


def test_enkf_n_short_long_run_sanity():
    """4 trajectories x 600 cycles at dt=0.05 (DAPPER step): RMSE near DAPPER's 0.185."""
    model = Lorenz96(inner_dt=0.05)
    twin = make_twin(model, ObservationConfig(), 40, 0.05, 4, 600, seed=3)
    res = run_filter(make_filter("enkf-n", members=40), twin, model, spinup=150)
    assert res.n_diverged == 0
    assert 0.16 < res.rmse < 0.22
