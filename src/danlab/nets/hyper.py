"""Hypernetwork linear-in-zeta DAN (App. B, last paragraph; untested in the paper).

A circular residual CNN maps the normalised x^f to per-site weights of a small convolutional
network that is then applied to zeta, so the increment is linear in zeta for every x^f:

    h   = CNN(x^f)                                  (N_f channels, per site)
    W1_i, W2_i = base + head(h)_i                   site-dependent kernels (width k)
    u_{c,i}   = sum_{j=-r..r} W1_i[c, j] zeta_{i+j}             1 -> C channels
    inc_i     = sum_{c, j} W2_i[c, j] u_{c, i+j}                C -> 1 channel
    increment = sigma^2 * inc + alpha zeta  (Eq. 22)

No bias and no activation act on zeta, so the Jacobian in zeta is an explicit banded matrix
(band 2(k-1)+1) that depends on x^f: P^a(x^f). The number of weights does not depend on N_x.
Initialisation: the head is zero, W1's base is random (default conv scale) and W2's base zero,
so with alpha (starting at sigma^2, as cnn.py) the start is the observation-only filter and
gradients reach W2 at once; without alpha, W2's base has a centre tap 0.5 on channel 0 and W1's
channel 0 is the identity tap, so the start is x^a = x^f + 0.5 sigma^2 zeta.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from danlab.errors import check, check_int_at_least
from danlab.nets import register_net
from danlab.nets.trunk import AlphaTerm, Normalise, Trunk, activation_class


def site_conv(u: Tensor, w: Tensor) -> Tensor:
    """Site-dependent circular convolution: u (B, C_in, N), w (B, C_out, C_in, k, N) ->
    out[b, o, i] = sum_{c, j} w[b, o, c, j, i] u[b, c, i + j - k // 2]."""
    k = w.shape[-2]
    r = k // 2
    padded = F.pad(u, (r, r), mode="circular")
    windows = padded.unfold(-1, k, 1)  # (B, C_in, N, k)
    return torch.einsum("bcnj,bocjn->bon", windows, w)


class HyperDAN(nn.Module):
    """increment = sigma^2 * [site conv W2(x^f)] [site conv W1(x^f)] zeta (+ alpha zeta)."""

    def __init__(self, filters: int = 32, kernel: int = 5, blocks: int = 4,
                 activation: str = "gelu", channels: int = 4, hyper_kernel: int = 5,
                 alpha: bool = True, sigma: float = 1.0,
                 climatology: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        act = activation_class(activation)
        check_int_at_least("channels", channels, 1)
        check(isinstance(hyper_kernel, int) and hyper_kernel >= 1 and hyper_kernel % 2 == 1,
              f"hyper_kernel={hyper_kernel!r} is not allowed: it must be an odd integer >= 1")
        self.sigma = float(sigma)
        self.channels, self.k = channels, hyper_kernel
        self.norm = Normalise(*climatology)
        n1 = channels * hyper_kernel  # W1: C x 1 x k
        self.n1 = n1
        self.trunk = Trunk(1, filters, kernel, blocks, act)
        self.head = nn.Sequential(act(), nn.Conv1d(filters, 2 * n1, 1))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)
        base1 = torch.empty(channels, 1, hyper_kernel).uniform_(-1, 1) / math.sqrt(hyper_kernel)
        base2 = torch.zeros(1, channels, hyper_kernel)
        if not alpha:
            base1[0, 0].zero_()
            base1[0, 0, hyper_kernel // 2] = 1.0
            base2[0, 0, hyper_kernel // 2] = 0.5
        self.base1 = nn.Parameter(base1)
        self.base2 = nn.Parameter(base2)
        self.alpha_term = AlphaTerm(self.sigma, alpha)

    def kernels(self, xf: Tensor) -> tuple[Tensor, Tensor]:
        """Site-dependent kernels W1 (B, C, 1, k, N), W2 (B, 1, C, k, N) for xf (B, N)."""
        nx = xf.shape[-1]
        h = self.head(self.trunk(self.norm(xf).reshape(-1, 1, nx)))
        b = h.shape[0]
        c, k = self.channels, self.k
        w1 = self.base1.unsqueeze(-1) + h[:, :self.n1].reshape(b, c, 1, k, nx)
        w2 = self.base2.unsqueeze(-1) + h[:, self.n1:].reshape(b, 1, c, k, nx)
        return w1, w2

    def forward(self, xf: Tensor, zeta: Tensor) -> Tensor:
        batch, nx = xf.shape[:-1], xf.shape[-1]
        w1, w2 = self.kernels(xf.reshape(-1, nx))
        u = site_conv((self.sigma * zeta).reshape(-1, 1, nx), w1)
        out = self.sigma * site_conv(u, w2).reshape(*batch, nx)
        return self.alpha_term(out, zeta)


@register_net("hyper")
def build_hyper(cfg, climatology) -> HyperDAN:
    """channels = cfg.columns (the hidden channels of the zeta network), hyper_kernel =
    cfg.kernel."""
    return HyperDAN(cfg.filters, cfg.kernel, cfg.blocks, cfg.activation, cfg.columns,
                    cfg.kernel, cfg.alpha, cfg.twin.sigma, climatology)
