"""Linear-in-zeta DAN (App. B): Eq. B1, the low-rank variant, the explicit P^a, the hypernetwork."""

import pytest
import torch

from danlab.config import TrainConfig
from danlab.errors import DanlabError
from danlab.nets import NET_BUILDERS, build_net
from danlab.nets.linear_zeta import (
    LinearZetaDAN,
    apply_taper,
    dense_covariance,
    gaspari_cohn,
    localized_product,
    low_rank_product,
    taper_kernel,
    taper_matrix,
)

F64 = torch.float64


def _perturb(net: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Give a freshly initialised net non-trivial, state-dependent outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_gaspari_cohn_values():
    r = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0], dtype=F64)
    g = gaspari_cohn(r)
    assert g[0] == 1.0 and g[4] == 0.0 and g[5] == 0.0
    assert torch.all(g[:4] > 0) and torch.all(g[:4].diff() < 0)
    # continuity at r = 1 (the two pieces meet)
    eps = torch.tensor([1 - 1e-9, 1 + 1e-9], dtype=F64)
    assert abs(float(gaspari_cohn(eps).diff())) < 1e-7


@pytest.mark.parametrize("nx", [5, 8, 13, 40, 41, 160])
@pytest.mark.parametrize("radius", [0.5, 1.0, 2.5, 4.0, 12.0])
def test_eq_b1_equals_dense(nx, radius):
    g = torch.Generator().manual_seed(nx)
    x = torch.randn(3, 7, nx, generator=g, dtype=F64)
    zeta = torch.randn(3, nx, generator=g, dtype=F64)
    b1 = localized_product(x, zeta, radius)
    dense = (dense_covariance(x, radius) @ zeta.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(b1, dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nx", [4, 40, 97])
def test_low_rank_variant(nx):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, nx, generator=g, dtype=F64)
    zeta = torch.randn(2, nx, generator=g, dtype=F64)
    ref = ((x.transpose(-1, -2) @ x) @ zeta.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(low_rank_product(x, zeta), ref, rtol=0, atol=1e-12)
    assert torch.allclose(localized_product(x, zeta, 0.0), ref, rtol=0, atol=1e-12)


def test_taper_is_periodic_symmetric_and_banded():
    rho = taper_matrix(40, 4.0)
    assert torch.allclose(rho, rho.T)
    assert torch.allclose(rho, torch.roll(torch.roll(rho, 3, 0), 3, 1))
    assert rho[0, 8] == 0 and rho[0, 7] > 0 and rho[0, 33] > 0 and rho[0, 32] == 0
    assert torch.linalg.eigvalsh(rho).min() > -1e-12  # GC is a correlation function
    w, left = taper_kernel(40, 4.0)
    assert w.numel() == 15 and left == 7
    v = torch.randn(2, 40, dtype=F64)
    assert torch.allclose(apply_taper(v, w, left), v @ rho.T, atol=1e-13)


def test_taper_wider_than_domain():
    """A band that wraps around the circle is not counted twice."""
    for nx in (6, 7):
        w, left = taper_kernel(nx, 10.0)
        assert w.numel() == nx
        v = torch.randn(nx, dtype=F64)
        assert torch.allclose(apply_taper(v, w, left), taper_matrix(nx, 10.0) @ v, atol=1e-13)


@pytest.mark.parametrize("radius,alpha", [(4.0, True), (2.0, False), (0.0, True)])
@pytest.mark.parametrize("nx", [16, 40])
def test_jacobian_is_explicit_covariance(radius, alpha, nx):
    net = LinearZetaDAN(filters=8, blocks=1, columns=5, loc_radius=radius, alpha=alpha).double()
    _perturb(net)
    xf = 2.35 + 3.63 * torch.randn(nx, dtype=F64)
    zeta = torch.randn(nx, dtype=F64)
    jac = torch.func.jacrev(lambda z: net(xf, z))(zeta)
    p = net.covariance(xf)
    assert torch.allclose(jac, p, rtol=0, atol=1e-10)
    assert torch.allclose(p, p.T, atol=1e-12)
    assert torch.linalg.eigvalsh(p).min() > -1e-10
    # exactly linear in zeta
    assert torch.allclose(net(xf, 2.0 * zeta), 2.0 * net(xf, zeta), atol=1e-12)


def test_initial_operator():
    nx = 40
    torch.manual_seed(0)
    xf = 2.35 + 3.63 * torch.randn(4, nx, dtype=F64)
    net = LinearZetaDAN(filters=8, blocks=1, columns=4, loc_radius=4.0, alpha=False,
                        climatology=(2.35, 3.63)).double()
    p = net.covariance(xf[0]).detach()
    # about the stationary s0 * rho (gain 0.9 when H = I, R = I), plus a small random state
    # dependence that breaks the symmetry between columns; the start is a stable filter
    s0_rho = 0.9 / float(torch.linalg.eigvalsh(taper_matrix(nx, 4.0, F64)).max()) \
        * taper_matrix(nx, 4.0, F64)
    assert float((p - s0_rho).norm() / s0_rho.norm()) < 0.5
    assert float(torch.linalg.eigvalsh(p).max()) < 1.0
    net = LinearZetaDAN(filters=8, blocks=1, columns=4, alpha=True, sigma=1.0,
                        climatology=(2.35, 3.63)).double()
    zeta = torch.randn(4, nx, dtype=F64)
    inc = net(xf, zeta)  # about zeta: the observation-only start, as the residual CNN
    assert float((inc - zeta).abs().max()) < 0.1 * float(zeta.abs().max())


def test_columns_are_not_tied():
    """Regression: with identical initial columns every column gets the same gradient for ever,
    and rho o X X^T stays rank one in X. The columns must differ and learn differently."""
    torch.manual_seed(0)
    net = LinearZetaDAN(filters=8, blocks=1, columns=4).double()
    xf = 2.35 + 3.63 * torch.randn(8, 40, dtype=F64)
    x = net.anomalies(xf).detach()
    assert float((x[:, 1:] - x[:, :1]).abs().max()) > 1e-3 * float(x.abs().max())
    net(xf, torch.randn(8, 40, dtype=F64)).pow(2).sum().backward()
    g = net.head[1].weight.grad.squeeze(-1)  # (columns, filters)
    assert float((g[1:] - g[:1]).abs().max()) > 1e-3 * float(g.abs().max())


def test_registered_and_scales_with_nx():
    assert "linear-zeta" in NET_BUILDERS
    cfg = TrainConfig(net="linear-zeta", filters=8, blocks=1, columns=6, loc_radius=3.0)
    net = build_net(cfg)
    for nx in (40, 80, 333):
        xf = torch.randn(2, 3, nx)
        out = net(xf, torch.randn(2, 3, nx))
        assert out.shape == (2, 3, nx)
        assert net.anomalies(xf).shape == (2, 3, 6, nx)
    loss = net(torch.randn(2, 40), torch.randn(2, 40)).pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    assert net.head[1].weight.grad.abs().sum() > 0  # X != 0 at the start: no saddle


def test_bad_input():
    with pytest.raises(DanlabError, match="loc_radius"):
        LinearZetaDAN(loc_radius=-1.0)
    with pytest.raises(DanlabError, match="columns"):
        LinearZetaDAN(columns=0)
    with pytest.raises(DanlabError, match="activation"):
        LinearZetaDAN(activation="softmax")


def test_hypernetwork_is_linear_in_zeta_and_banded():
    from danlab.nets.hyper import HyperDAN

    net = HyperDAN(filters=8, blocks=1, channels=3, hyper_kernel=3, alpha=False).double()
    _perturb(net, scale=0.1)
    xf = 2.35 + 3.63 * torch.randn(24, dtype=F64)
    zeta = torch.randn(24, dtype=F64)
    jac = torch.func.jacrev(lambda z: net(xf, z))(zeta)
    assert torch.allclose(jac @ zeta, net(xf, zeta), atol=1e-12)  # linear, no bias
    band = taper_matrix(24, 1.25) > 0  # offsets |d| <= 2 = 2 * (3 // 2)
    assert float(jac[~band].abs().max()) == 0.0
    other = 2.35 + 3.63 * torch.randn(24, dtype=F64)
    assert not torch.allclose(torch.func.jacrev(lambda z: net(other, z))(zeta), jac)


def test_hypernetwork_registered():
    assert "hyper" in NET_BUILDERS
    net = build_net(TrainConfig(net="hyper", filters=8, blocks=1, columns=4))
    out = net(torch.randn(2, 3, 50), torch.randn(2, 3, 50))
    assert out.shape == (2, 3, 50)
    zeta = torch.randn(5, 40)
    assert torch.allclose(net(torch.randn(5, 40), zeta), zeta)  # obs-only start with alpha


def test_diagnostics_jacobian_equals_explicit_covariance():
    """danlab.diagnostics runs unchanged on the operator; its P^a is rho o X X^T (+ alpha I)."""
    from danlab.diagnostics.covariance import analysis_covariance

    net = LinearZetaDAN(filters=8, blocks=1, columns=5, loc_radius=3.0).double()
    _perturb(net, seed=3)
    xf = 2.35 + 3.63 * torch.randn(3, 40, dtype=F64)
    with torch.no_grad():
        p_diag = analysis_covariance(net, xf, "jacobian")
        p_explicit = net.covariance(xf)
    assert torch.allclose(p_diag, p_explicit, rtol=0, atol=1e-10)
    with torch.no_grad():  # Stein regression: exact up to rounding for an operator linear in zeta
        p_stein = analysis_covariance(net, xf[:1], "stein", n_samples=400)
    assert torch.allclose(p_stein, p_explicit[:1], atol=1e-8)


def test_checkpoint_without_x_unit_is_refused(tmp_path):
    """A linear-zeta checkpoint from before the O(1) head (no x_unit) must not load silently
    with another meaning."""
    from danlab import io
    from danlab.train import BEST, load

    cfg = TrainConfig(net="linear-zeta", filters=8, blocks=1, columns=4)
    weights = build_net(cfg).state_dict()
    io.save_torch(tmp_path / BEST, dict(config=cfg.to_dict(), weights=weights))
    assert isinstance(load(tmp_path), LinearZetaDAN)
    del weights["x_unit"]
    io.save_torch(tmp_path / BEST, dict(config=cfg.to_dict(), weights=weights))
    with pytest.raises(DanlabError, match="x_unit"):
        load(tmp_path)


def test_alpha_in_log_scale_is_positive_and_moves_a_few_percent_per_step():
    from danlab.nets.linear_zeta import ALPHA_LOG_UNIT
    from danlab.nets.trunk import AlphaTerm

    term = AlphaTerm(sigma=2.0, log_unit=ALPHA_LOG_UNIT)
    assert float(term.value()) == pytest.approx(4.0)
    opt = torch.optim.Adam(term.parameters(), lr=3e-3)
    for _ in range(50):  # a loss that wants alpha -> 0
        opt.zero_grad()
        term.value().backward()
        opt.step()
    a = float(term.value())
    # 50 Adam steps of ~lr in u: alpha shrinks by exp(-50 lr / unit) = 0.22, never below 0
    assert 0 < a < 4.0 * 0.3
    plain = AlphaTerm(sigma=2.0)
    opt = torch.optim.Adam(plain.parameters(), lr=3e-3)
    for _ in range(50):
        opt.zero_grad()
        plain.value().backward()
        opt.step()
    assert float(plain.value()) > 4.0 - 0.2  # the plain parameter moves ~lr per step
