import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def faults(monkeypatch):
    """danlab.training's fault-injection hooks (nan_at, stop_at, blowup_at), reset after the
    test."""
    from danlab import training

    f = training.Faults()
    monkeypatch.setattr(training, "FAULTS", f)
    return f


@pytest.fixture
def forecast_ensemble():
    """Factory of one-step filter inputs: (E (b, n, nx) L96 ensembles spun up for 2 time units,
    y (b, nx) zero where unobserved, mask (b, nx) with about `observed` of the sites);
    trajectory 0 observes every site, trajectory 1 none (N_y = 0); `edit(mask)` may change
    the mask in place before y is masked."""
    from danlab.dynamics import Lorenz96

    def make(b=5, n=12, nx=10, seed=0, observed=0.6, edit=None):
        g = torch.Generator().manual_seed(seed)
        x = 8 + torch.randn(b, 1, nx, generator=g, dtype=torch.float64)
        E = Lorenz96().spinup(x + torch.randn(b, n, nx, generator=g, dtype=torch.float64), 2.0)
        y = E.mean(1) + torch.randn(b, nx, generator=g, dtype=torch.float64)
        mask = torch.rand(b, nx, generator=g) < observed
        mask[0] = True
        mask[1] = False
        if edit is not None:
            edit(mask)
        return E, torch.where(mask, y, 0.0), mask

    return make
