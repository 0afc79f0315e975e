"""IEnKF-N: DAPPER iEnKS(Lag=1, xN=1) test vectors, batching, convergence, sparse masks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.filters import IEnKFN, make_filter

VECTORS = Path(__file__).parent / "data" / "dapper_analysis_steps.npz"  # must exist
CASES = [str(c) for c in np.load(VECTORS)["cases"] if str(c).startswith("ienks")]
MODEL = Lorenz96(inner_dt=0.05)


def _run(E0, y, mask, **kw):
    filt = IEnKFN(E0.shape[1], **kw)
    state = filt.forecast((E0, E0), MODEL, 0.05)
    return filt, state, filt.analysis(state, y, mask, 1.0, model=MODEL, dt=0.05)


@pytest.mark.parametrize("case", CASES)
def test_ienkf_n_reproduces_dapper(case):
    d = np.load(VECTORS)
    E0 = torch.as_tensor(d[case + "_E0"]).unsqueeze(0)
    y = torch.as_tensor(d[case + "_y"]).unsqueeze(0)
    mask = torch.ones(1, 40, dtype=torch.bool)
    _, state, (E_next, Ea) = _run(E0, y, mask, tol=0.0, max_iter=10)
    np.testing.assert_allclose(state[1][0].numpy(), d[case + "_Ef"], atol=1e-12)
    Ea = Ea[0].numpy()
    ref = d[case + "_Ea"]
    assert np.abs(Ea.mean(0) - ref.mean(0)).max() < 1e-10
    assert np.abs((Ea - Ea.mean(0)) - (ref - ref.mean(0))).max() < 1e-8
    assert torch.equal(E_next[0], torch.as_tensor(Ea))


def _problem(b=4, n=10, nx=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = MODEL.spinup(8 + torch.randn(b, nx, generator=g, dtype=torch.float64), 5.0)
    E0 = x.unsqueeze(1) + 0.5 * torch.randn(b, n, nx, generator=g, dtype=torch.float64)
    truth = MODEL.forecast(x, 0.05)
    y = truth + torch.randn(b, nx, generator=g, dtype=torch.float64)
    mask = torch.rand(b, nx, generator=g) < 0.5
    mask[0] = True
    mask[1] = False
    return E0, torch.where(mask, y, 0.0), mask


@pytest.mark.parametrize("variant", ["transform", "bundle"])
@pytest.mark.parametrize("tol", [0.0, 1e-3])
def test_batching_invariance_with_per_trajectory_convergence(variant, tol):
    E0, y, mask = _problem()
    filt, _, (Ea, _) = _run(E0, y, mask, tol=tol, variant=variant)
    iters = filt.last_iterations.clone()
    for i in range(E0.shape[0]):
        f1, _, (Ai, _) = _run(E0[i:i + 1], y[i:i + 1], mask[i:i + 1], tol=tol, variant=variant)
        torch.testing.assert_close(Ea[i:i + 1], Ai, rtol=0, atol=1e-10)
        assert int(f1.last_iterations[0]) == int(iters[i])
    if tol > 0:
        assert int(iters[1]) <= 2  # nothing observed: converges at once
        assert int(iters.max()) < 10


def test_bundle_close_to_transform():
    E0, y, mask = _problem()
    _, _, (Et, _) = _run(E0, y, mask, tol=0.0)
    _, _, (Eb, _) = _run(E0, y, mask, tol=0.0, variant="bundle")
    torch.testing.assert_close(Et.mean(1), Eb.mean(1), rtol=0, atol=2e-2)


def test_plain_ienkf_one_iteration_runs_and_leaves_unobserved_alone():
    """max_iter=1 and zeta = N-1 (no finite-size term): an unobserved trajectory is the forecast."""
    E0, y, mask = _problem()
    _, state, (Ea, _) = _run(E0, y, mask, max_iter=1, finite_size=False)
    assert torch.isfinite(Ea).all()
    # unobserved trajectory: nothing moves
    torch.testing.assert_close(Ea[1], state[1][1], rtol=0, atol=1e-12)


def test_non_finite_gives_nan_without_exception():
    E0, y, mask = _problem()
    E0[3, 2, 1] = float("inf")
    _, _, (Ea, _) = _run(E0, y, mask)
    assert torch.isnan(Ea[3]).all() and torch.isfinite(Ea[:3]).all()


def test_ienkf_n_short_run_in_cycle_engine():
    model = Lorenz96(inner_dt=0.05)
    twin = make_twin(model, ObservationConfig("random-half"), 40, 0.05, 3, 200, seed=5)
    res = run_filter(make_filter("ienkf-n", members=20), twin, model, spinup=50)
    assert res.n_diverged == 0 and res.rmse < 0.6


@pytest.mark.slow
def test_ienkf_n_beats_enkf_n_at_large_dt():
    model = Lorenz96(inner_dt=0.05)
    twin = make_twin(model, ObservationConfig(), 40, 0.3, 4, 1500, seed=2)
    r_i = run_filter(make_filter("ienkf-n", members=40), twin, model, spinup=300)
    r_e = run_filter(make_filter("enkf-n", members=40), twin, model, spinup=300)
    assert r_i.rmse < r_e.rmse
    assert abs(r_i.rmse - 0.364) < 0.04
