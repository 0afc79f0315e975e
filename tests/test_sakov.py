"""Single-state filters with P^f(x^f) from the forecast state alone (Sakov A1, A2; Sect. 3.1.3)."""

import pytest
import torch

from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.errors import DanlabError
from danlab.filters.sakov import SakovFilter, backtrack, kalman_increment, sqrt_analysis
from danlab.tune import tune
from danlab.twin import TwinSpec

F64 = torch.float64
MODEL = Lorenz96()


@pytest.fixture(scope="module")
def states():
    g = torch.Generator().manual_seed(11)
    return MODEL.spinup(MODEL.random_state(3, 40, g), 5.0)


def test_tangent_rows_matches_autodiff(states):
    g = torch.Generator().manual_seed(0)
    e = torch.randn(3, 7, 40, generator=g, dtype=F64)
    xs = states.unsqueeze(-2).expand_as(e).contiguous()
    ref = MODEL.tangent_linear(xs, e, 0.05)[1]
    assert torch.allclose(MODEL.tangent_rows(states, e, 0.05), ref, rtol=0, atol=1e-12)


def test_backtrack_round_trip(states):
    x5 = MODEL.forecast(states, 5 * 0.05)
    xs, ok = backtrack(MODEL, x5, 0.05, 5)
    assert len(xs) == 6 and all(bool(o.all()) for o in ok)
    assert torch.allclose(xs[-1], states, atol=1e-5)
    assert torch.allclose(xs[2], MODEL.forecast(states, 3 * 0.05), atol=1e-5)


def test_backtrack_flags_blow_up(states):
    xs, ok = backtrack(MODEL, states, 0.05, 3, max_abs=5.0)  # every state exceeds 5
    assert not bool(ok[0].any()) and all(torch.isfinite(x).all() for x in xs)


def test_kalman_increment_matches_dense():
    g = torch.Generator().manual_seed(2)
    b, nx = 4, 12
    f = torch.randn(b, nx, nx, generator=g, dtype=F64)
    mask = torch.rand(b, nx, generator=g) < 0.6
    sigma = 0.7
    delta = torch.where(mask, torch.randn(b, nx, generator=g, dtype=F64), 0.0)
    inc = kalman_increment(f, mask.to(F64) / sigma**2, delta / sigma**2)
    for i in range(b):
        h = torch.eye(nx, dtype=F64)[mask[i]]
        p = f[i].T @ f[i]
        k = p @ h.T @ torch.linalg.inv(h @ p @ h.T + sigma**2 * torch.eye(h.shape[0], dtype=F64))
        assert torch.allclose(inc[i], k @ delta[i][mask[i]], atol=1e-10)


def test_sqrt_analysis_is_riccati_update():
    g = torch.Generator().manual_seed(3)
    e = torch.randn(2, 6, 6, generator=g, dtype=F64)
    d = torch.rand(2, 6, generator=g, dtype=F64)
    ea = sqrt_analysis(e, d)
    for i in range(2):
        p = e[i].T @ e[i]
        pa = torch.linalg.inv(torch.linalg.inv(p) + torch.diag(d[i]))
        assert torch.allclose(ea[i].T @ ea[i], pa, atol=1e-9)


def test_a1_is_propagated_identity(states):
    """T = 2: E_0 = M'(x_-1) M'(x_-2) eps I, i.e. eps * Jacobian of the 2-step forecast."""
    xf = states[:1]
    e = SakovFilter("A1", steps=2, eps=0.5).sqrt_pf(MODEL, xf, 0.05)
    x2 = backtrack(MODEL, xf, 0.05, 2)[0][-1]
    jac = torch.func.jacrev(lambda z: MODEL.forecast(z, 0.1))(x2[0])  # d x_0 / d x_-2
    assert torch.allclose(e[0].T, 0.5 * jac, atol=1e-5)


def test_a2_one_step(states):
    xf = states[:1]
    eps, sigma = 0.8, 1.3
    mask = torch.tensor([[i % 2 == 1 for i in range(40)]])
    e = SakovFilter("A2", steps=1, eps=eps).sqrt_pf(MODEL, xf, 0.05, mask, sigma)
    x1 = backtrack(MODEL, xf, 0.05, 1)[0][1]
    m = torch.func.jacrev(lambda z: MODEL.forecast(z, 0.05))(x1[0])
    eye = torch.eye(40, dtype=F64)
    pa = torch.linalg.inv(eye / eps**2 + torch.diag(mask[0].to(F64)) / sigma**2)
    assert torch.allclose(e[0].T @ e[0], m @ pa @ m.T, atol=1e-10)


@pytest.mark.parametrize("algorithm,steps,scale", [("A1", 4, 0.1), ("A2", 4, 1.0)])
def test_short_run_beats_observation_only(algorithm, steps, scale):
    twin = make_twin(MODEL, ObservationConfig("full", 1.0), 40, 0.05, 2, 30, seed=4)
    filt = SakovFilter(algorithm, steps=steps, eps=1.0, scale=scale)
    res = run_filter(filt, twin, MODEL, spinup=10)
    assert res.n_diverged == 0 and res.rmse < 0.7
    assert filt.stats["cycles"] == 60 and filt.stats["truncated"] == 0


def test_random_masks_per_trajectory():
    twin = make_twin(MODEL, ObservationConfig("random-half", 1.0), 40, 0.05, 3, 12, seed=5)
    res = run_filter(SakovFilter("A2", steps=2), twin, MODEL, spinup=2)
    assert res.n_diverged == 0 and torch.isfinite(res.rmse_per_trajectory).all()


def test_tune_picks_a_scale():
    twin = TwinSpec(trajectories=1, cycles=25, spinup=10, seed=6)
    t = tune("sakov-a1", "scale", (1e-4, 0.1), twin, rounds=0, steps=2)
    table = dict(t.table)
    assert t.best == 0.1 and table[0.1] < table[1e-4]
    assert t.parameters() == {"steps": 2, "scale": 0.1}


def test_a_model_without_backward_is_named():
    from danlab.dynamics import Model

    class OneWay(Model):
        name = "one-way"

        def forecast(self, x, dt):
            return x

        def random_state(self, n, nx, generator):
            return torch.randn(n, nx, generator=generator, dtype=F64)

    twin = make_twin(MODEL, ObservationConfig("full", 1.0), 40, 0.05, 1, 5, seed=6)
    with pytest.raises(DanlabError, match="needs a model with a backward step.*one-way"):
        run_filter(SakovFilter("A1"), twin, OneWay(), spinup=1)


def test_bad_input():
    with pytest.raises(DanlabError, match="algorithm"):
        SakovFilter("A3")
    with pytest.raises(DanlabError, match="steps"):
        SakovFilter("A1", steps=0)
    with pytest.raises(DanlabError, match="scale"):
        SakovFilter("A1", scale=-1.0)
    with pytest.raises(DanlabError, match="eps"):
        SakovFilter("A1", eps=float("nan"))
