import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def faults(monkeypatch):
    """danlab.training's fault-injection hooks (nan_at, stop_at), reset after the test."""
    from danlab import training

    f = training.Faults()
    monkeypatch.setattr(training, "FAULTS", f)
    return f
