"""The EnKF-N hyperprior coefficients (eN, cL) pinned, and checked against a brute-force
marginalisation of the hierarchy (docs/dirac_jeffreys.md)."""

import math

import numpy as np
import pytest
import torch

from danlab.filters import EnKFN
from danlab.filters._ensemble_space import hyperprior_coeffs, newton_dual


def _lam(n=40, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, generator=g, dtype=torch.float64) * 30.0


@pytest.mark.parametrize("n", [5, 40])
@pytest.mark.parametrize("g", [0.0, 1.0])
def test_raw_coefficients_pinned(n, g):
    lam = _lam(n)
    for dirac, eps in ((False, (n + 1) / n), (True, 1.0)):
        eN, cL = hyperprior_coeffs(lam, n, 1.0, g, dirac, mode_correction=False)
        torch.testing.assert_close(eN, torch.full_like(eN, eps), rtol=0, atol=1e-15)
        torch.testing.assert_close(cL, torch.full_like(cL, (n + g) / (n - 1)), rtol=0,
                                   atol=1e-15)
        eN2, cL2 = hyperprior_coeffs(lam, n, 2.5, g, dirac, mode_correction=False)
        torch.testing.assert_close(eN2, 2.5 * eN, rtol=1e-15, atol=0)
        torch.testing.assert_close(cL2, 2.5 * cL, rtol=1e-15, atol=0)


def test_mode_correction_pinned():
    """Corrected coefficients: the product eN cL is kept, the prior mode eN/cL of l1^2 becomes
    (raw mode)^(1 - I_KH); Jeffreys with DAPPER's weight, Dirac-Jeffreys with the trace one."""
    n = 40
    lam = _lam(n)
    n1 = n - 1
    weights = {False: (n1 / (lam + n1)).mean(-1), True: 1 / (1 + lam.sum(-1) / n1)}
    for dirac in (False, True):
        e0, c0 = hyperprior_coeffs(lam, n, 1.0, 0.0, dirac, mode_correction=False)
        eN, cL = hyperprior_coeffs(lam, n, 1.0, 0.0, dirac)
        torch.testing.assert_close(eN * cL, e0 * c0, rtol=1e-14, atol=0)
        torch.testing.assert_close(eN / cL, (e0 / c0) ** (1 - weights[dirac]), rtol=1e-14,
                                   atol=0)
    # Dirac-Jeffreys, N = 40, one trajectory with tr(Y Y^T) = 39: I_KH = 1/2
    lam1 = torch.zeros(1, n, dtype=torch.float64)
    lam1[0, :3] = torch.tensor([20.0, 15.0, 4.0], dtype=torch.float64)
    eN, cL = hyperprior_coeffs(lam1, n, 1.0, 0.0, True)
    mc = math.sqrt((39 / 40) ** 0.5)
    assert abs(float(eN) - 1 / mc) < 1e-15 and abs(float(cL) - 40 / 39 * mc) < 1e-15


def test_no_information_means_prior_mode_one_only_with_correction():
    """lam = 0 (nothing observed): corrected coefficients have eN = cL (l1 = 1); the raw
    Dirac-Jeffreys prior deflates, l1 = sqrt((N-1)/N), and the raw Jeffreys by 1 - 1/N^2."""
    n = 40
    lam = torch.zeros(2, n, dtype=torch.float64)
    b2 = torch.zeros_like(lam)
    for dirac, raw_mode in ((False, (n + 1) * (n - 1) / n**2), (True, (n - 1) / n)):
        eN, cL = hyperprior_coeffs(lam, n, 1.0, 0.0, dirac)
        torch.testing.assert_close(eN, cL, rtol=1e-15, atol=0)
        torch.testing.assert_close(newton_dual(b2, lam, eN, cL, n), torch.ones(2, dtype=lam.dtype))
        eN, cL = hyperprior_coeffs(lam, n, 1.0, 0.0, dirac, mode_correction=False)
        l1 = newton_dual(b2, lam, eN, cL, n, xtol=1e-12, ytol=1e-14)
        torch.testing.assert_close(l1, torch.full_like(l1, math.sqrt(raw_mode)), rtol=1e-10,
                                   atol=0)


def _log_marginals(xs, xq):
    """-> log p(x | E) (up to a constant) at the points xq, for M = 1 and N = len(xs) members,
    by brute-force quadrature over (x_b, log b): members and x iid N(x_b, b) given (x_b, b),
    Jeffreys hyperprior p(x_b, b) ~ 1/b. 'jeffreys': x_b integrated out; 'dirac': x ~ N(xbar, b)
    with b from its Jeffreys posterior p(b | E) (x_b integrated out of it)."""
    xbar = xs.mean()
    lb = np.linspace(-10.0, 8.0, 1501)
    xb = np.linspace(xbar - 15.0, xbar + 15.0, 1501)
    B, XB = np.exp(lb)[:, None], xb[None, :]

    def logn(z, m, v):
        return -0.5 * np.log(2 * np.pi * v) - 0.5 * (z - m) ** 2 / v

    def lse(a, axis=None):
        m = np.max(a, axis=axis, keepdims=True)
        return np.squeeze(m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True)))

    ens = sum(logn(xn, XB, B) for xn in xs)            # (log b, x_b); d(log b) = db / b
    post_b = lse(ens, axis=1)                          # p(b | E) on the log b grid
    post_b = post_b - lse(post_b)
    jeff = np.array([lse(ens + logn(x, XB, B)) for x in xq])
    dirac = np.array([lse(post_b + logn(x, xbar, np.exp(lb))) for x in xq])
    return jeff, dirac


def test_coefficients_match_brute_force_marginal_prior():
    """The ensemble-space prior (eps + |w|^2)^(-(N-1) cL / 2), |w|^2 = (x - xbar)^2 / S for
    M = 1, with (eps, cL) = the raw coefficients of the code (g = 0), equals the marginal
    p(x | E) computed by quadrature, for the Jeffreys and the Dirac-Jeffreys hyperpriors; a
    wrong coefficient (e.g. the former Dirac-Jeffreys reading eN = cL = 1) is far off."""
    n = 5
    xs = np.random.default_rng(0).normal(size=n) * 1.3 + 0.4
    xbar, S = xs.mean(), ((xs - xs.mean()) ** 2).sum()
    xq = xbar + np.array([0.0, 0.3, 1.0, 2.0, 4.0])
    w2 = (xq - xbar) ** 2 / S
    jeff, dirac = _log_marginals(xs, xq)
    lam = torch.zeros(1, n, dtype=torch.float64)

    def model(eps, cL):
        return -(n - 1) * cL / 2 * np.log(eps + w2)

    for logp, is_dirac in ((jeff, False), (dirac, True)):
        eN, cL = hyperprior_coeffs(lam, n, 1.0, 0.0, is_dirac, mode_correction=False)
        r = logp - model(float(eN), float(cL))
        assert np.ptp(r) < 1e-3
        assert np.ptp(logp - model(1.0, 1.0)) > 0.2


def test_dirac_dual_and_primal_agree():
    """The Dirac-Jeffreys EnKF-N: dual (scalar Newton on l1) and primal (Newton on w) reach the
    same analysis, with and without the mode correction."""
    g = torch.Generator().manual_seed(1)
    n, nx = 20, 40
    E = 8 + torch.randn(3, n, nx, generator=g, dtype=torch.float64) * 0.5
    y = E.mean(1) + torch.randn(3, nx, generator=g, dtype=torch.float64)
    mask = torch.ones(3, nx, dtype=torch.bool)
    for mc in (True, False):
        Ep = EnKFN(n, dirac=True, mode_correction=mc).analysis(E, y, mask, 1.0)
        Ed = EnKFN(n, dirac=True, dual=True, mode_correction=mc).analysis(E, y, mask, 1.0)
        torch.testing.assert_close(Ep, Ed, rtol=0, atol=1e-5)
