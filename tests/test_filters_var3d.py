"""3D-Var, its tuning, the reference schemes and the filter registry."""

import numpy as np
import pytest
import torch

from danlab import DanlabError, Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.filters import (
    ETKF,
    METHODS,
    EnKFN,
    FreeRun,
    IEnKFN,
    ObservationOnly,
    Var3D,
    climatological_covariance,
    make_filter,
    tune_3dvar,
)


def _spd(nx=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(nx, nx, generator=g, dtype=torch.float64)
    return a @ a.T / nx + 0.1 * torch.eye(nx, dtype=torch.float64)


def test_var3d_matches_explicit_blue_with_masks():
    nx, b = 8, 4
    B = _spd(nx)
    g = torch.Generator().manual_seed(1)
    xf = torch.randn(b, nx, generator=g, dtype=torch.float64)
    y = torch.randn(b, nx, generator=g, dtype=torch.float64)
    mask = torch.rand(b, nx, generator=g) < 0.5
    mask[0] = True
    mask[1] = False
    xa = Var3D(B, scale=0.7).analysis(xf, torch.where(mask, y, 0.0), mask, 0.8)
    for i in range(b):
        s = mask[i].numpy()
        H = np.eye(nx)[s]
        Bn = 0.7 * B.numpy()
        K = Bn @ H.T @ np.linalg.inv(H @ Bn @ H.T + 0.64 * np.eye(s.sum())) if s.any() else 0 * H.T
        ref = xf[i].numpy() + (K @ (y[i].numpy()[s] - xf[i].numpy()[s]) if s.any() else 0)
        np.testing.assert_allclose(xa[i].numpy(), ref, atol=1e-12)
    # full-mask fast path equals the masked path
    full = torch.ones(b, nx, dtype=torch.bool)
    f = Var3D(B)
    xa_fast = f.analysis(xf, y, full, 1.0)
    xa_slow = f.analysis(xf, y, full.clone().index_fill_(1, torch.tensor([0]), True), 1.0)
    torch.testing.assert_close(xa_fast, xa_slow)


def test_var3d_bad_input():
    with pytest.raises(DanlabError, match="square"):
        Var3D(torch.ones(3, 4))
    with pytest.raises(DanlabError, match="scale"):
        Var3D(torch.eye(3), scale=0.0)


def test_climatological_covariance_and_tuning():
    model = Lorenz96(inner_dt=0.05)
    B = climatological_covariance(model, 40, n_trajectories=8, n_samples=50)
    assert B.shape == (40, 40)
    assert 10 < float(torch.diagonal(B).mean()) < 16  # climatological variance ~ 3.6^2
    best, table = tune_3dvar(model, nx=40, dt=0.05, scales=(0.02, 1.0), n_trajectories=2,
                             n_cycles=200, spinup=50, B=B)
    assert [s for s, _ in table] == [0.02, 1.0]
    assert best == 0.02 and table[0][1] < table[1][1]


def test_registry_builds_every_method_and_runs_sparse_and_nx80():
    model = Lorenz96(inner_dt=0.05)
    for obs, nx in (("random", 40), ("full", 80)):
        twin = make_twin(model, ObservationConfig(obs), nx, 0.05, 2, 30, seed=1)
        for method in METHODS:
            opts = {"nx": nx} if method == "3dvar" else {}
            res = run_filter(make_filter(method, 20, **opts), twin, model, spinup=5)
            assert np.isfinite(res.rmse), (method, obs)


def test_registry_types_and_errors():
    assert isinstance(make_filter("enkf-n", 5, dirac=True), EnKFN)
    assert isinstance(make_filter("ienkf-n", 5, variant="bundle"), IEnKFN)
    assert isinstance(make_filter("etkf", 5, inflation=1.02), ETKF)
    assert isinstance(make_filter("obs-only", 5), ObservationOnly)
    assert isinstance(make_filter("free", 5), FreeRun)
    assert isinstance(make_filter("3dvar", 1, B=torch.eye(6)), Var3D)
    with pytest.raises(DanlabError, match="method='enkf' is not allowed"):
        make_filter("enkf", 5)
    with pytest.raises(DanlabError, match="members=1"):
        make_filter("enkf-n", 1)
    with pytest.raises(DanlabError, match="variant"):
        make_filter("ienkf-n", 5, variant="newton")
    with pytest.raises(DanlabError):
        make_filter("etkf", 5, bogus=3)
    with pytest.raises(DanlabError, match="3dvar needs"):
        make_filter("3dvar", 5)
