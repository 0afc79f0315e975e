"""r(lambda), innovation histograms, DA samples and the EnKF-N comparison."""

from __future__ import annotations

import pytest
import torch

from danlab.diagnostics import (
    compare_matrices,
    compare_with_enkf,
    da_samples,
    innovation_histogram,
    nonlinearity_ratio,
)
from danlab.errors import DanlabError
from danlab.twin import TwinSpec

torch.set_num_threads(1)
F64 = torch.float64


def linear_op(x, z):
    return 0.5 * z + 0.2 * torch.roll(z, 1, -1) + 0.1 * torch.sin(x)


def cubic_op(x, z):
    return 0.5 * z + 0.05 * z**3


def test_ratio_is_lambda_for_linear_and_steeper_for_cubic():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 8, generator=g, dtype=F64)
    z = torch.randn(30, 8, generator=g, dtype=F64)
    lam = [0.1, 1.0, 3.0, 10.0]
    lin = nonlinearity_ratio(linear_op, x, z, lam)
    assert torch.allclose(lin.ratio, torch.tensor(lam, dtype=F64), atol=1e-10)
    cub = nonlinearity_ratio(cubic_op, x, z, lam)
    assert abs(float(cub.ratio[1]) - 1.0) < 1e-12
    assert float(cub.ratio[3]) > 20.0 and float(cub.ratio[0]) < 0.11
    plain = nonlinearity_ratio(linear_op, x, z, lam, standardise=False)
    assert torch.allclose(plain.ratio, torch.tensor(lam, dtype=F64), atol=1e-10)


def test_ratio_bad_input():
    x = torch.randn(4, 8, dtype=F64)
    with pytest.raises(DanlabError, match="lambdas"):
        nonlinearity_ratio(linear_op, x, x, [0.0, 1.0])
    with pytest.raises(DanlabError, match="same shape"):
        nonlinearity_ratio(linear_op, x, x[:2], [1.0])
    with pytest.raises(DanlabError, match="zeta is zero"):
        nonlinearity_ratio(linear_op, x, torch.zeros_like(x), [1.0])


def test_histogram_is_a_density():
    z = torch.randn(5000, 4, dtype=F64)
    mask = torch.rand(5000, 4) < 0.5
    edges, dens = innovation_histogram(z, mask, bins=21, limit=5.0)
    assert edges.shape == (22,) and dens.shape == (21,)
    assert abs(float((dens * (edges[1] - edges[0])).sum()) - 1.0) < 1e-3


def test_da_samples_from_the_cycle_engine():
    s = da_samples(linear_op, TwinSpec(nx=10, cycles=30, spinup=10, trajectories=2))
    assert s.xf.shape == (40, 10) and s.zeta.shape == (40, 10) and bool(s.mask.all())
    assert torch.isfinite(torch.tensor(s.rmse))


def test_compare_matrices_identical_and_rotated():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 6, 6, generator=g, dtype=F64)
    p = a @ a.transpose(-1, -2)
    m = compare_matrices(p, p, 3)
    assert torch.allclose(m["cosines"], torch.ones(3, 3, dtype=F64), atol=1e-8)
    assert float(m["rel_diff"].abs().max()) < 1e-12
    assert float(m["asymmetry"].abs().max()) < 1e-12


def test_compare_with_enkf_runs():
    res = compare_with_enkf(linear_op, TwinSpec(nx=10, trajectories=1, cycles=40, spinup=10),
                            members=10, every=10, k=3)
    assert res.cosines.shape == (3, 3) and res.eig_dan.shape == (3, 10)
    s = res.summary()
    assert 0 <= s["mean_cos2_principal"] <= 1 and s["random_cos2"] == 0.3
