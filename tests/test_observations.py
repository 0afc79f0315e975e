import pytest
import torch

from danlab import ObservationConfig, projected_innovation
from danlab.errors import DanlabError
from danlab.twin import make_generator


@pytest.mark.parametrize("nx", [8, 40, 41])
def test_masks(nx):
    g = make_generator(0)
    full = ObservationConfig("full").sample_mask((5,), nx, g)
    assert full.all()
    alt = ObservationConfig("alternate").sample_mask((5,), nx, g)
    assert (alt.sum(-1) == nx // 2).all() and alt[:, 1::2].all() and not alt[:, 0::2].any()
    counts = ObservationConfig("random").sample_mask((4000,), nx, g).sum(-1)
    assert counts.min() == 0 and counts.max() == nx  # N_y ~ U{0..N_x}, bounds included
    assert abs(float(counts.float().mean()) - nx / 2) < 0.1 * nx
    half = ObservationConfig("random-half").sample_mask((4000,), nx, g).sum(-1)
    assert half.min() == nx // 2 and half.max() == nx


def test_random_sites_are_uniform():
    g = make_generator(1)
    m = ObservationConfig("random").sample_mask((20000,), 10, g).float().mean(0)
    assert torch.allclose(m, torch.full_like(m, 0.5), atol=0.02)


def test_observe_and_projected_innovation():
    cfg = ObservationConfig("random", sigma=2.0)
    truth = torch.randn(6, 40, dtype=torch.float64)
    y, mask = cfg.observe(truth, make_generator(3))
    assert (y[~mask] == 0).all()
    xf = torch.randn_like(truth)
    zeta = projected_innovation(y, mask, xf, cfg.sigma)
    assert torch.allclose(zeta, mask * (y - xf) / 4.0)
    y2, mask2 = cfg.observe(truth, make_generator(3))
    assert torch.equal(y, y2) and torch.equal(mask, mask2)


@pytest.mark.parametrize("kw", [dict(kind="sparse"), dict(sigma=0.0), dict(sigma=float("inf"))])
def test_bad_config(kw):
    with pytest.raises(DanlabError, match="not allowed"):
        ObservationConfig(**kw)
