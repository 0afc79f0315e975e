"""Every baseline filter on CUDA against the CPU, and no host synchronisation inside the analyses
of the eigendecomposition-free filters (skipped without a CUDA device; `pytest -m gpu`,
run by benchmarks/gpu_check.sh)."""

import pytest
import torch

import danlab.filters._ensemble_space as es
from danlab import make_filter, run_filter
from danlab.twin import TwinSpec

pytestmark = pytest.mark.gpu

FILTERS = [("enkf-n", {}), ("enkf-n", {"dual": True}), ("enkf-n", {"dirac": True}),
           ("ienkf-n", {}), ("ienkf-n", {"tol": 0.0}), ("etkf", {"inflation": 1.02}),
           ("letkf", {"loc_radius": 4.0, "inflation": 1.02}), ("local-enkf-n", {})]


def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


def _twin(device, **kw):
    spec = TwinSpec(dt=0.05, inner_dt=0.05, obs="random-half", trajectories=8, cycles=120,
                    spinup=40, seed=11, **kw)
    return spec.build(device=device)


@pytest.mark.parametrize("method,opts", FILTERS)
def test_filter_on_cuda_matches_cpu(method, opts):
    """One analysis agrees to rounding; a 120-cycle run gives the same RMSE per trajectory (the
    chaotic growth of rounding differences over 6 time units stays far below the RMSE)."""
    dev = _cuda()
    model, twin = _twin("cpu")
    _, twin_d = _twin(dev)
    filt = make_filter(method, members=20, **opts)
    res = run_filter(filt, twin, model)
    res_d = run_filter(make_filter(method, members=20, **opts), twin_d, model)
    assert res_d.n_diverged == res.n_diverged == 0
    torch.testing.assert_close(res_d.rmse_per_trajectory, res.rmse_per_trajectory, rtol=1e-6,
                               atol=0)
    # one analysis from the same ensemble
    state = res.final_state
    y, m = next(iter(twin.observations()))
    to = (lambda s: tuple(t.to(dev) for t in s)) if isinstance(state, tuple) else (
        lambda s: s.to(dev))
    a = filt.analysis(filt.forecast(state, model, twin.dt), y, m, twin.sigma, model=model,
                      dt=twin.dt)
    b = filt.analysis(filt.forecast(to(state), model, twin.dt), y.to(dev), m.to(dev),
                      twin.sigma, model=model, dt=twin.dt)
    a, b = (a[1], b[1]) if isinstance(a, tuple) else (a, b)
    torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-9)


@pytest.mark.parametrize("method,opts", [f for f in FILTERS if not f[0].endswith("letkf")
                                         and f[0] != "local-enkf-n"])
def test_no_host_sync_inside_analysis(method, opts, monkeypatch):
    """With the loops' stopping test pushed beyond their iteration caps, an analysis runs
    entirely on the device: torch raises on any synchronising call. (The LETKFs call eigh, whose
    error check syncs once per analysis; they are not in this test.)"""
    dev = _cuda()
    monkeypatch.setattr(es, "SYNC_EVERY", 10**6)
    model, twin = _twin(dev)
    filt = make_filter(method, members=20, **opts)
    from danlab import rng

    state = filt.init(twin.x0, rng.TrajectoryStreams(twin.seed, rng.FILTER_INIT, 8))
    y, m = next(iter(twin.observations()))
    state = filt.forecast(state, model, twin.dt)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = filt.analysis(state, y, m, twin.sigma, model=model, dt=twin.dt)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    out = out[1] if isinstance(out, tuple) else out
    assert torch.isfinite(out).all()
