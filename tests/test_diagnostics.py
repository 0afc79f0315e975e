"""Diagnostics P^a, Gamma, Omega_r against operators with known answers (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from danlab.diagnostics import (
    analysis_covariance,
    marginal_gain,
    mean_marginal_gain,
    omega_from_gamma,
)
from danlab.errors import DanlabError
from danlab.nets.cnn import ResidualCNN
from danlab.observations import ObservationConfig

torch.set_num_threads(1)
F64 = torch.float64
N = 6


class KnownOperator:
    """a(x, zeta) = K(x) zeta + eps * Q(x) (zeta * zeta), K(x)_ij = A_ij + sin(W_ij . x):
    grad_zeta a at 0 = K(x), Gamma[i, j, l] = cos(W_ij . x) W_ijl; the quadratic term
    leaves both unchanged but makes the Monte Carlo routes inexact."""

    def __init__(self, n=N, eps=0.0, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(n, n, generator=g, dtype=F64)
        self.W = 0.4 * torch.randn(n, n, n, generator=g, dtype=F64)
        self.Q = torch.randn(n, n, generator=g, dtype=F64)
        self.eps = eps

    def K(self, x):
        return self.A + torch.sin(torch.einsum("ijl,...l->...ij", self.W, x))

    def gamma(self, x):
        return torch.cos(torch.einsum("ijl,...l->...ij", self.W, x))[..., None] * self.W

    def __call__(self, x, z):
        out = torch.einsum("...ij,...j->...i", self.K(x), z)
        if self.eps:
            qx = self.Q * torch.cos(x).unsqueeze(-2)
            out = out + self.eps * torch.einsum("...ij,...j->...i", qx, z * z)
        return out


def states(k, n=N, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 2.0 + 3.0 * torch.randn(k, n, generator=g, dtype=F64)


def random_cnn(filters=8, blocks=2, seed=0):
    torch.manual_seed(seed)
    net = ResidualCNN(filters, 5, blocks).double()
    torch.nn.init.normal_(net.head[1].weight, std=0.3)  # the head starts at zero: randomise
    return net.eval()


# --- exact routes ----------------------------------------------------------------------

def test_jacobian_is_K():
    op, x = KnownOperator(eps=0.5), states(3)
    p = analysis_covariance(op, x)
    assert p.shape == (3, N, N)
    assert torch.allclose(p, op.K(x), atol=1e-10, rtol=0)


def test_jacobian_keeps_leading_shape():
    op, x = KnownOperator(), states(6).reshape(2, 3, N)
    assert analysis_covariance(op, x).shape == (2, 3, N, N)
    assert marginal_gain(op, x).shape == (2, 3, N, N, N)


def test_autodiff_gamma_is_dK_dx():
    op, x = KnownOperator(eps=0.5), states(3)
    g = marginal_gain(op, x)
    assert g.shape == (3, N, N, N)
    assert torch.allclose(g, op.gamma(x), atol=1e-10, rtol=0)


def test_chunking_does_not_change_results():
    op, x = KnownOperator(eps=0.5), states(3)
    g1 = marginal_gain(op, x)
    g2 = marginal_gain(op, x, max_elements=7 * N)
    assert torch.allclose(g1, g2, atol=1e-14, rtol=0)


# --- Monte Carlo routes ------------------------------------------------------------------

def test_stein_exact_for_linear_in_zeta():
    op, x = KnownOperator(), states(2)
    p = analysis_covariance(op, x, "stein", n_samples=50)
    assert torch.allclose(p, op.K(x), atol=1e-10, rtol=0)


def test_composite_exact_for_linear_in_zeta():
    op, x = KnownOperator(), states(2)
    g = marginal_gain(op, x, "composite", n_samples=50)
    assert torch.allclose(g, op.gamma(x), atol=1e-10, rtol=0)


def _rate(errors_by_np):
    nps = sorted(errors_by_np)
    slope = (math.log(errors_by_np[nps[-1]]) - math.log(errors_by_np[nps[0]])) \
        / (math.log(nps[-1]) - math.log(nps[0]))
    return slope


@pytest.mark.parametrize("route", ["stein", "composite"])
def test_monte_carlo_rate(route):
    """Error halves as N_p quadruples (slope -1/2 in log-log), averaged over 12 seeds."""
    op, x = KnownOperator(eps=1.0), states(1)
    truth = op.K(x) if route == "stein" else op.gamma(x)
    errs = {}
    for n_p in (64, 256, 1024):
        e = []
        for seed in range(12):
            g = torch.Generator().manual_seed(seed)
            if route == "stein":
                est = analysis_covariance(op, x, "stein", n_samples=n_p, generator=g)
            else:
                est = marginal_gain(op, x, "composite", n_samples=n_p, generator=g)
            e.append(float((est - truth).pow(2).mean().sqrt()))
        errs[n_p] = sum(e) / len(e)
    ratios = [errs[64] / errs[256], errs[256] / errs[1024]]
    assert all(1.5 < q < 2.8 for q in ratios), (errs, ratios)
    assert -0.65 < _rate(errs) < -0.35


def test_stein_pseudo_inverse_for_sparse_observations():
    """zeta lives on the observed sites: Stein returns K on those columns, zero elsewhere."""
    op, x = KnownOperator(), states(2)
    mask = torch.tensor([True, False] * (N // 2))
    p = analysis_covariance(op, x, "stein", n_samples=40, mask=mask, sigma=0.5)
    assert torch.allclose(p[..., mask], op.K(x)[..., mask], atol=1e-10, rtol=0)
    assert float(p[..., ~mask].abs().max()) < 1e-10
    g = marginal_gain(op, x, "composite", n_samples=40, mask=mask)
    assert torch.allclose(g[..., mask, :], op.gamma(x)[..., mask, :], atol=1e-10, rtol=0)
    assert float(g[..., ~mask, :].abs().max()) < 1e-10


def test_random_observation_configuration_sampling():
    op, x = KnownOperator(), states(1)
    obs = ObservationConfig("random-half", 1.0)
    p = analysis_covariance(op, x, "stein", n_samples=200, obs=obs)
    assert torch.allclose(p, op.K(x), atol=1e-10, rtol=0)


# --- symmetry: equivariance and Omega_r ---------------------------------------------------

def test_equivariance_of_gamma_on_circular_cnn():
    """Eq. 16: Gamma(roll(x, s))[i, j, l] = Gamma(x)[i - s, j - s, l - s]."""
    net, x = random_cnn(), states(1, 12)[0]
    g = marginal_gain(net, x)
    for s in (1, 5):
        gs = marginal_gain(net, torch.roll(x, s))
        rolled = torch.roll(g, (s, s, s), (0, 1, 2))
        assert torch.allclose(gs, rolled, atol=1e-12, rtol=0)
    assert float(g.abs().max()) > 1e-3  # not trivially zero


def test_omega_fast_path_equals_reduction_of_full_gamma():
    net, xs = random_cnn(), states(3, 12)
    full = mean_marginal_gain(net, xs, full=True)
    assert full.gamma.shape == (12, 12, 12) and full.r == 6
    direct = omega_from_gamma(marginal_gain(net, xs).mean(0), 6)
    assert torch.allclose(full.omega, direct, atol=1e-13, rtol=0)
    fast = mean_marginal_gain(net, xs, shifts="all")
    assert fast.gamma is None
    assert torch.allclose(fast.omega, full.omega, atol=1e-10, rtol=0)
    # one shift per state: the mean of Gamma(roll(x_k, k))[:, :, r]
    one = mean_marginal_gain(net, xs, shifts=1, r=4)
    manual = torch.stack([marginal_gain(net, torch.roll(xs[k], k))[:, :, 4]
                          for k in range(3)]).mean(0)
    assert torch.allclose(one.omega, manual, atol=1e-12, rtol=0)


def test_streaming_batches_do_not_change_omega():
    net, xs = random_cnn(), states(5, 10)
    a = mean_marginal_gain(net, xs, shifts=2)
    b = mean_marginal_gain(net, xs, shifts=2, batch=2)
    assert torch.allclose(a.omega, b.omega, atol=1e-13, rtol=0)


def test_composite_omega_matches_autodiff_for_linear_in_zeta():
    """For a linear-in-zeta operator the composite regression is exact: every route agrees."""
    op, xs = KnownOperator(), states(4)
    auto = mean_marginal_gain(op, xs, full=True)
    comp = mean_marginal_gain(op, xs, method="composite", full=True, n_samples=20,
                              regression="per-state")
    assert torch.allclose(comp.gamma, auto.gamma, atol=1e-10, rtol=0)
    fast = mean_marginal_gain(op, xs, method="composite", n_samples=20, shifts=1, r=2,
                              regression="per-state")
    slow = mean_marginal_gain(op, xs, shifts=1, r=2)
    assert torch.allclose(fast.omega, slow.omega, atol=1e-10, rtol=0)


def test_pooled_regression_is_consistent():
    """Eq. H5 pools C and D over states: exact only as D_k -> Sigma, so it converges."""
    op, xs = KnownOperator(), states(4)
    auto = mean_marginal_gain(op, xs, full=True)
    errs = []
    for n_p in (16, 1024):
        pooled = mean_marginal_gain(op, xs, method="composite", full=True, n_samples=n_p,
                                    generator=torch.Generator().manual_seed(3))
        errs.append(float((pooled.gamma - auto.gamma).abs().max()))
    assert errs[1] < 0.25 * errs[0] and errs[1] < 0.1 * float(auto.gamma.abs().max())


def test_composite_omega_close_to_autodiff_on_cnn():
    net, xs = random_cnn(), states(6, 10)
    auto = mean_marginal_gain(net, xs, shifts="all")
    comp = mean_marginal_gain(net, xs, method="composite", shifts="all", n_samples=256,
                              antithetic=True, generator=torch.Generator().manual_seed(0))
    scale = float(auto.omega.abs().max())
    assert float((comp.omega - auto.omega).abs().max()) < 0.15 * scale


# --- bad input ---------------------------------------------------------------------------

def test_wrong_output_shape():
    def bad(x, z):
        return x[..., :-1]

    with pytest.raises(DanlabError, match="returned shape"):
        analysis_covariance(bad, states(2))
    with pytest.raises(DanlabError, match="returned shape"):
        mean_marginal_gain(bad, states(2))


def test_operator_that_raises():
    def boom(x, z):
        raise RuntimeError("kaput\nmore")

    with pytest.raises(DanlabError, match="failed on a state.*kaput$"):
        marginal_gain(boom, states(1))


def test_operator_not_forward_differentiable():
    def numpyish(x, z):
        return torch.from_numpy(z.numpy() * 2.0) + 0 * x

    with pytest.raises(DanlabError, match="could not differentiate"):
        analysis_covariance(numpyish, states(1))


def test_bad_r_samples_states_method():
    op = KnownOperator()
    for r in (-1, N, 2.0, True):
        with pytest.raises(DanlabError, match="out of range"):
            mean_marginal_gain(op, states(2), r=r)
    for n_p in (1, 0, 1.5):
        with pytest.raises(DanlabError, match="N_p >= 2"):
            marginal_gain(op, states(1), "composite", n_samples=n_p)
        with pytest.raises(DanlabError, match="N_p >= 2"):
            analysis_covariance(op, states(1), "stein", n_samples=n_p)
    x = states(2)
    x[1, 3] = float("nan")
    with pytest.raises(DanlabError, match="non-finite"):
        mean_marginal_gain(op, x)
    with pytest.raises(DanlabError, match="non-finite"):
        analysis_covariance(op, torch.full((N,), float("inf"), dtype=F64))
    with pytest.raises(DanlabError, match="method"):
        marginal_gain(op, states(1), "finite-differences")
    with pytest.raises(DanlabError, match="shifts"):
        mean_marginal_gain(op, states(1), shifts=0)
    with pytest.raises(DanlabError, match="torch.Tensor"):
        analysis_covariance(op, [[1.0] * N])


def test_attractor_states_of_the_diagnostics_on_ks():
    # KS's step 0.5 cannot make L96's spacing 0.25: the states are one decorrelation time apart
    from danlab.diagnostics.report import attractor_trajectory
    from danlab.twin import TwinSpec

    twin = TwinSpec(model="ks", nx=128, dt=1.0)
    x = attractor_trajectory(twin, 10)
    model = twin.make_model()
    assert x.shape == (10, 128) and bool(torch.isfinite(x).all())
    assert torch.allclose(x[8], model.forecast(x[0], model.climatology_interval), atol=1e-12)
    l96 = attractor_trajectory(TwinSpec(), 9)  # L96 keeps 0.25
    assert torch.allclose(l96[8], TwinSpec().make_model().forecast(l96[0], 0.25), atol=1e-12)
