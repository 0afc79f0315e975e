"""Muon on the convolution kernels: the orthogonalisation, the split of the parameters, and
training with it (exact resume, rollback)."""

import pytest
import torch

from danlab.config import preset
from danlab.errors import DanlabError
from danlab.nets.cnn import ResidualCNN
from danlab.optim import Muon, Optimizers, hidden_kernels, make_optimizer, orthogonalise
from danlab.train import CHECKPOINT, load_checkpoint, train
from test_train import TINY, _full_and_resumed, quiet


@pytest.mark.parametrize("shape", [(32, 160), (160, 32), (3, 8, 8)])
def test_orthogonalise_keeps_the_singular_vectors_and_flattens_the_singular_values(shape):
    gen = torch.Generator().manual_seed(0)
    *batch, m, n = shape
    k = min(m, n)
    q1 = torch.linalg.qr(torch.randn(*batch, m, k, generator=gen, dtype=torch.float64))[0]
    q2 = torch.linalg.qr(torch.randn(*batch, n, k, generator=gen, dtype=torch.float64))[0]
    spread = torch.logspace(0, -2, k, dtype=torch.float64)  # condition number 100
    g = q1 @ torch.diag_embed(spread.expand(*batch, k)) @ q2.mT
    u = orthogonalise(g)
    left, s, right_t = torch.linalg.svd(g, full_matrices=False)
    # in g's singular bases, u is diagonal (same singular vectors) ...
    d = left.mT @ u @ right_t.mT
    diag = torch.diagonal(d, dim1=-2, dim2=-1)
    assert torch.allclose(d, torch.diag_embed(diag), atol=1e-10)
    # ... with every singular value near 1 whatever g's spread of singular values was
    assert (s.amax(-1) / s.amin(-1) > 99).all()
    assert diag.min() > 0.6 and diag.max() < 1.2


def test_a_muon_step_moves_a_kernel_by_its_orthogonalised_nesterov_momentum():
    w = torch.nn.Parameter(torch.zeros(4, 3, 5, dtype=torch.float64))
    opt = Muon([w], lr=0.1, momentum=0.9)
    g1, g2 = (torch.randn(4, 3, 5, dtype=torch.float64) for _ in range(2))
    w.grad = g1
    opt.step()
    w.grad = g2
    before = w.detach().clone()
    opt.step()
    buf = 0.9 * (0.1 * g1) + 0.1 * g2  # lerp(0, g1, 0.1), then lerp(·, g2, 0.1)
    nesterov = 0.1 * g2 + 0.9 * buf
    expected = -0.1 * 0.2 * 15 ** 0.5 * orthogonalise(nesterov.reshape(4, 15)).reshape(4, 3, 5)
    assert torch.allclose(w.detach() - before, expected, atol=1e-14)


def test_muon_takes_the_hidden_kernels_and_adam_the_rest():
    net = ResidualCNN(filters=8, blocks=2, product=True)
    opt = make_optimizer("muon", net, 1e-3)
    assert isinstance(opt, Optimizers)
    muon, adam = opt.opts
    kernels = muon.param_groups[0]["params"]
    # product block a, b, mix and 2 blocks × 2 convolutions; not the lift, not the head
    assert len(kernels) == 7 and all(k.ndim == 3 for k in kernels)
    assert all(k is not net.trunk.lift.weight and k is not net.head[1].weight for k in kernels)
    n_rest = len(adam.param_groups[0]["params"])
    assert len(kernels) + n_rest == len(list(net.parameters()))
    assert len(hidden_kernels(net)) == 7
    assert isinstance(make_optimizer("adam", net, 1e-3), torch.optim.Adam)


def test_training_with_muon_learns_and_resumes_exactly(tmp_path, faults):
    cfg = preset("smoke", **TINY, dtype="float64", optimizer="muon", ema=0.9)
    full, resumed = _full_and_resumed(cfg, tmp_path, faults, stop_at=13)
    assert full["rmse"] == resumed["rmse"]
    ck = load_checkpoint(tmp_path / "a" / CHECKPOINT, ("optimizer",))
    assert len(ck["optimizer"]["optimizers"]) == 2


def test_training_with_muon_beats_the_initial_operator(tmp_path):
    cfg = preset("smoke", **{**TINY, "max_steps": 120, "filters": 16, "n_iter": 6},
                 optimizer="muon")
    out = train(cfg, tmp_path, progress=False, log=quiet)
    # x^a = y (the initial operator) scores ~1.0
    assert out["rmse"] < 0.8 and out["rollbacks"] == 0


def test_a_nan_loss_with_muon_rolls_back_both_optimisers(tmp_path, faults):
    cfg = preset("smoke", **TINY, optimizer="muon")
    faults.nan_at = 10
    out = train(cfg, tmp_path, progress=False, log=quiet)
    assert out["rollbacks"] == 1 and out["steps"] == cfg.max_steps


def test_an_unknown_optimizer_is_refused_in_one_line():
    with pytest.raises(DanlabError, match="optimizer='sgd'.*adam, muon"):
        preset("smoke", optimizer="sgd")
