"""Lorenz-96 physics: Lyapunov exponent, climatology, RK4 order, tangent linear."""

import pytest
import torch

from danlab import Lorenz96
from danlab.dynamics import lyapunov_exponents
from danlab.errors import DanlabError
from danlab.twin import attractor_states


def test_leading_lyapunov_exponent():
    # QR method on 8 independent states x 15 time units each (120 in all): the finite-time
    # estimate fluctuates by ~0.03 (measured over seeds), so +-0.1 around the literature's
    # 1.69 (Lyapunov time 0.6) cannot be met by a wrong tangent linear or wrong dynamics.
    m = Lorenz96(8.0, 0.01)
    x = attractor_states(m, 8, 40, seed=11)
    le = lyapunov_exponents(m, x, 1, dt=0.05, n_steps=300, transient=0)
    assert abs(float(le[0]) - 1.69) < 0.1


def test_climatology():
    m = Lorenz96()
    x = attractor_states(m, 32, 40, seed=5)
    traj = [x]
    with torch.no_grad():
        for _ in range(300):
            x = m.forecast(x, 0.1)
            traj.append(x)
    traj = torch.stack(traj)
    assert abs(float(traj.mean()) - 2.35) < 0.1
    assert abs(float(traj.std()) - 3.63) < 0.1


def test_rk4_fourth_order():
    x0 = attractor_states(Lorenz96(), 4, 40, seed=2)
    ref = Lorenz96(inner_dt=0.0005).forecast(x0, 0.2)
    errs = [float((Lorenz96(inner_dt=h).forecast(x0, 0.2) - ref).abs().max())
            for h in (0.02, 0.01, 0.005)]
    for coarse, fine in zip(errs, errs[1:]):
        assert 12 < coarse / fine < 20  # 2^4 = 16 for a fourth-order scheme


def test_tangent_linear_matches_finite_differences():
    m = Lorenz96()
    x = attractor_states(m, 3, 40, seed=4)
    dx = torch.randn_like(x)
    _, tl = m.tangent_linear(x, dx, 0.1)
    eps = 1e-6
    fd = (m.forecast(x + eps * dx, 0.1) - m.forecast(x - eps * dx, 0.1)) / (2 * eps)
    assert torch.allclose(tl, fd, rtol=1e-7, atol=1e-7)
    _, tl2 = m.forecast_tangent(x, dx, 0.1)
    assert torch.allclose(tl, tl2, rtol=0, atol=1e-12)


def test_batched_and_any_nx():
    m = Lorenz96(forcing=5.0)
    x = torch.randn(2, 3, 17, dtype=torch.float64)
    out = m.forecast(x, 0.05)
    assert out.shape == x.shape
    assert torch.allclose(out[1, 2], m.forecast(x[1, 2], 0.05))
    assert m.forecast(x.float(), 0.05).dtype == torch.float32


@pytest.mark.parametrize("kw", [dict(inner_dt=0.0), dict(inner_dt=-1), dict(forcing=float("nan"))])
def test_bad_parameters(kw):
    with pytest.raises(DanlabError):
        Lorenz96(**kw)


def _roll_reference(x, forcing, h, n):
    """The textbook roll form of L96 + RK4 (DAPPER's order of operations)."""
    def f(z):
        r = torch.roll
        return (r(z, -1, -1) - r(z, 2, -1)) * r(z, 1, -1) - z + forcing

    for _ in range(n):
        k1 = f(x)
        k2 = f(x + (0.5 * h) * k1)
        k3 = f(x + (0.5 * h) * k2)
        k4 = f(x + h * k3)
        x = x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
    return x


@pytest.mark.parametrize("shape", [(3, 40), (700, 5, 40), (2, 3, 9)])
def test_forecast_bitwise_equal_to_roll_form_blocked_or_not(shape):
    """The padded tendency and the cache-blocked CPU integration (large batches without
    autograd) change no bit of the result; with autograd the unblocked path gives the same."""
    m = Lorenz96(8.0, 0.01)
    x = 8 + torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = _roll_reference(x, 8.0, 0.01, 5)
    with torch.no_grad():
        assert torch.equal(m.forecast(x, 0.05), ref)
    xg = x.clone().requires_grad_(True)
    out = m.forecast(xg, 0.05)
    assert torch.equal(out.detach(), ref)
    out.sum().backward()
    assert torch.isfinite(xg.grad).all()
    x32 = x.float()
    with torch.no_grad():
        assert torch.equal(m.forecast(x32, 0.05), _roll_reference(x32, 8.0, 0.01, 5))


@pytest.mark.slow
def test_compiled_forecast_is_bitwise_eager(monkeypatch):
    """DANLAB_COMPILE's torch.compile'd integration changes no bit (float64 and float32)."""
    import danlab.dynamics.lorenz96 as l96

    m = Lorenz96(8.0, 0.01)
    x = 8 + torch.randn(6, 5, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def run():  # forecasts of 5 and 100 steps (dt = 1: the loop is not unrolled) and a gradient
        with torch.no_grad():
            out = [m.forecast(x, 0.05), m.forecast(x.float(), 0.05), m.forecast(x, 1.0)]
        x32 = x.float().requires_grad_(True)
        (m.forecast(x32, 0.3) ** 2).sum().backward()
        return [*out, x32.grad]

    ref = run()
    monkeypatch.setattr(l96, "COMPILE", True)
    got = run()
    assert l96.COMPILE, "torch.compile failed here"
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
