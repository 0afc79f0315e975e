"""The eigendecomposition-free linear algebra of the ensemble filters (`_ensemble_space`, Gram
route) against the eigenbasis route it replaces, and the device (GPU) code paths run on the CPU."""

import math

import pytest
import torch

import danlab.filters._ensemble_space as es
from danlab import Lorenz96
from danlab.filters import ETKF, LETKF, EnKFN, IEnKFN, make_filter


def _spd(b=6, n=40, scale=1.0, shift=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    Y = scale * torch.randn(b, n, n, generator=g, dtype=torch.float64)
    G = Y @ Y.mT
    z = shift * (0.5 + torch.rand(b, generator=g, dtype=torch.float64))
    return G.to(dtype), z.to(dtype)


def _eig_roots(M):
    lam, V = torch.linalg.eigh(M)
    return (V * lam.sqrt().unsqueeze(-2)) @ V.mT, (V * lam.rsqrt().unsqueeze(-2)) @ V.mT


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])  # condition bounds ~1.3 to ~1e4
def test_newton_schulz_roots_match_eigh_float64(scale):
    G, z = _spd(scale=scale, shift=30.0)
    S, Z = es.shifted_roots(G, z)
    S_ref, Z_ref = _eig_roots(es.shift(G, z))
    assert (S - S_ref).abs().max() / S_ref.abs().max() < 1e-12
    assert (Z - Z_ref).abs().max() / Z_ref.abs().max() < 1e-12
    torch.testing.assert_close(Z, Z.mT, rtol=0, atol=1e-14)  # symmetric roots
    _, Z2 = es.shifted_roots(G, z, want_sqrt=False)
    torch.testing.assert_close(Z2, Z, rtol=0, atol=0)


def test_newton_schulz_float32_and_iteration_count():
    G, z = _spd(scale=0.2, shift=30.0)
    S, Z = es.shifted_roots(G.float(), z.float())
    S_ref, Z_ref = _eig_roots(es.shift(G, z))
    assert (Z.double() - Z_ref).abs().max() / Z_ref.abs().max() < 1e-5
    assert (S.double() - S_ref).abs().max() / S_ref.abs().max() < 1e-5
    counts = [es.newton_schulz_iterations(k, 1e-13) for k in (1.0, 1.5, 2.0, 10.0, 1e4, 1e8)]
    assert counts[0] == 0 and counts == sorted(counts) and counts[-1] <= 15
    # the error bound is met in (float64) arithmetic on the whole interval, ends included:
    # scalar check of the map x -> x (a + b x)^2 on the eigenvalues x of Z_k Y_k
    for kappa in (1.5, 30.0, 1e6):
        x = torch.logspace(-math.log10(kappa), 0.0, 2001, dtype=torch.float64)
        for a, b in es.newton_schulz_coefficients(kappa, 1e-13):
            x = x * (a + b * x) ** 2
        assert (1 - x).abs().max() <= 1e-13


def test_scaled_newton_schulz_needs_fewer_steps_than_unscaled():
    # the unscaled step x -> x (3 - x)^2 / 4 after centring needs 16 steps for kappa = 1e4 at
    # 1e-12 and 21 for 1e6; the scaled steps grow small eigenvalues ~25x per step instead of 2.25x
    assert es.newton_schulz_iterations(1e4, 1e-12) <= 9
    assert es.newton_schulz_iterations(1e6, 1e-12) <= 12
    G, z = _spd(scale=10.0, shift=0.05)  # a bound hi / lo ~ 1e6
    S, Z = es.shifted_roots(G, z)
    S_ref, Z_ref = _eig_roots(es.shift(G, z))
    assert (S - S_ref).abs().max() / S_ref.abs().max() < 1e-11
    assert (Z - Z_ref).abs().max() / Z_ref.abs().max() < 1e-11


def test_resolvent_solve_and_prior_weight():
    G, z = _spd(scale=0.3)
    lam = torch.linalg.eigvalsh(G).clamp_min(0)
    Xs = es.scaled_resolvent(G, 39.0)
    torch.testing.assert_close(Xs, 39.0 * torch.linalg.inv(es.shift(G, torch.full_like(z, 39.0))),
                               rtol=0, atol=1e-14)
    for dirac in (False, True):
        torch.testing.assert_close(es.prior_weight_gram(G, 40, dirac),
                                   es.prior_weight(lam, 40, dirac), rtol=1e-13, atol=0)
    # from the resolvent when given, from the Cholesky factor's inverse alone when not
    torch.testing.assert_close(es.prior_weight_gram(G, 40, False, Xs),
                               es.prior_weight(lam, 40, False), rtol=1e-13, atol=0)
    bad = G.clone()
    bad[0, 3, 5] = bad[0, 5, 3] = float("nan")  # as a non-finite member makes it
    w = es.prior_weight_gram(bad, 40, False)
    assert w[0].isnan() and torch.isfinite(w[1:]).all()
    v = torch.randn(G.shape[0], 40, dtype=G.dtype)
    x = es.shifted_solve(G, z, v)
    torch.testing.assert_close(es.matvec(es.shift(G, z), x), v, rtol=0, atol=1e-12)
    m = es.krylov_moments(Xs, v, 3)
    assert m.shape == (G.shape[0], 7)
    m5 = (v * es.matvec(torch.linalg.matrix_power(Xs, 5), v)).sum(-1)
    torch.testing.assert_close(m[:, 5], m5, rtol=1e-13, atol=0)


def _ensembles(dt=0.05, obs="full", b=48, cycles=40, sigma=1.0, seed=3):
    """Realistic forecast ensembles: an EnKF-N run from a wide initial ensemble (large
    inflations early on, ordinary ones later)."""
    from danlab import rng
    from danlab.twin import TwinSpec

    model, twin = TwinSpec(dt=dt, obs=obs, sigma=sigma, trajectories=b, cycles=cycles,
                           spinup=0, seed=seed).build()
    f = make_filter("enkf-n", members=40)
    st = f.init(twin.x0, rng.TrajectoryStreams(twin.seed, rng.FILTER_INIT, b))
    out = []
    with torch.no_grad():
        for k, (y, m) in enumerate(twin.observations()):
            st = f.forecast(st, model, twin.dt)
            if k in (0, 2, cycles - 1):
                out.append((st.clone(), y, m, twin.sigma))
            st = f.analysis(st, y, m, twin.sigma)
    return out


def _spectral(E, y, m, sigma):
    mu, Y, dy = es.normalised_obs(E, y, m, sigma)
    lam, V, ok = es.eig_gram(Y)
    b = es.to_eig(V, es.matvec(Y, dy))
    G, _ = es.gram(Y)
    return mu, Y, dy, lam, V, b, G, es.matvec(Y, dy)


@pytest.mark.parametrize("setting", [dict(), dict(dt=0.3, obs="random-half")])
def test_newton_routes_match_the_eigenbasis(setting):
    """Moment route, Cholesky route and their combination give newton_primal's inflation, the
    dual by Cholesky newton_dual's, to rounding, on early (large inflation) and late ensembles."""
    n = 40
    redone = 0
    for E, y, m, sigma in _ensembles(**setting):
        mu, Y, dy, lam, V, b, G, gy = _spectral(E, y, m, sigma)
        for dirac in (False, True):
            eN, cL = es.hyperprior_coeffs(lam, n, 1.0, 0.0, dirac)
            ref = es.newton_primal(b, lam, eN, cL, n)
            l1g, zg = es.newton_primal_gram(G, gy, eN, cL, n)
            torch.testing.assert_close(l1g, ref, rtol=1e-12, atol=0)
            torch.testing.assert_close(zg, (n - 1) / ref**2, rtol=1e-12, atol=0)
            mom = es.krylov_moments(es.scaled_resolvent(G, n - 1), gy, 16)
            l1m, _, exact = es.newton_primal_moments(mom, n, eN, cL, 0.3)
            torch.testing.assert_close(l1m[exact], ref[exact], rtol=1e-12, atol=0)
            redone += int((~exact).sum())
            l1, _ = es.primal_inflation(G, gy, eN, cL, n)
            torch.testing.assert_close(l1, ref, rtol=1e-12, atol=0)
            torch.testing.assert_close(es.newton_dual_gram(G, gy, eN, cL, n),
                                       es.newton_dual(b * b, lam, eN, cL, n), rtol=1e-12, atol=0)
    assert redone > 0  # the wide initial ensembles exercise the Cholesky redo


def test_sqrt_update_gram_matches_eigenbasis():
    E, y, m, sigma = _ensembles(b=8, cycles=3)[-1]
    mu, Y, dy, lam, V, b, G, gy = _spectral(E, y, m, sigma)
    A = E - mu.unsqueeze(-2)
    l1 = 1.0 + 0.1 * torch.rand(E.shape[0], dtype=E.dtype)
    ok = torch.ones(E.shape[0], dtype=torch.bool)
    ref = es.sqrt_update(mu, A, V, lam, b, l1, ok)
    got = es.sqrt_update_gram(mu, A, G, gy, 39 / l1**2, ok)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def _ienkf_problem(b=5, n=12, nx=12, seed=0):
    model = Lorenz96(inner_dt=0.05)
    g = torch.Generator().manual_seed(seed)
    x = model.spinup(8 + torch.randn(b, nx, generator=g, dtype=torch.float64), 5.0)
    E0 = x.unsqueeze(1) + 0.5 * torch.randn(b, n, nx, generator=g, dtype=torch.float64)
    y = model.forecast(x, 0.05) + torch.randn(b, nx, generator=g, dtype=torch.float64)
    mask = torch.rand(b, nx, generator=g) < 0.6
    mask[1] = False
    E0[4, 0, 0] = float("nan")  # a diverged trajectory: NaN, no exception, others unaffected
    return model, E0, torch.where(mask, y, 0.0), mask


@pytest.mark.parametrize("filt", [EnKFN(12), EnKFN(12, dual=True), EnKFN(12, dirac=True),
                                  ETKF(12, inflation=1.02), IEnKFN(12), IEnKFN(12, tol=0.0),
                                  LETKF(12, loc_radius=2.0), LETKF(12, loc_radius=2.0, xN=2.0)])
def test_device_code_paths_on_the_cpu(filt, monkeypatch):
    """The GPU code paths (masks instead of compaction, Cholesky Newton, fixed Newton-Schulz
    count, stopping tests every SYNC_EVERY iterations) give the CPU paths' results."""
    model, E0, y, mask = _ienkf_problem()
    state = filt.forecast((E0, E0) if isinstance(filt, IEnKFN) else E0, model, 0.05)
    host = filt.analysis(state, y, mask, 0.8, model=model, dt=0.05)
    iters = getattr(filt, "last_iterations", None)
    iters = None if iters is None else iters.clone()
    monkeypatch.setattr(es, "HOST_SHORTCUTS", False)
    dev = filt.analysis(state, y, mask, 0.8, model=model, dt=0.05)
    a, b = (host[1], dev[1]) if isinstance(filt, IEnKFN) else (host, dev)
    assert torch.isnan(a[4]).all() and torch.isnan(b[4]).all()
    torch.testing.assert_close(b[:4], a[:4], rtol=0, atol=1e-11)
    if iters is not None:
        assert torch.equal(filt.last_iterations[:4], iters[:4])


def test_float32_enkf_n_close_to_float64():
    E, y, m, sigma = _ensembles(b=8, cycles=3)[-1]
    for filt in (EnKFN(40), IEnKFN(40)):
        model = Lorenz96(inner_dt=0.01)
        st64 = (E, E) if isinstance(filt, IEnKFN) else E
        st32 = (E.float(), E.float()) if isinstance(filt, IEnKFN) else E.float()
        a64 = filt.analysis(st64, y, m, sigma, model=model, dt=0.05)
        a32 = filt.analysis(st32, y.float(), m, sigma, model=model, dt=0.05)
        if isinstance(filt, IEnKFN):
            a64, a32 = a64[1], a32[1]
        assert a32.dtype == torch.float32
        assert float((a32.double() - a64).abs().max()) < 1e-3 * math.sqrt(E.shape[-1])
