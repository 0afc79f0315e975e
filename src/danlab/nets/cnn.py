"""The residual circular 1-D CNN analysis operator of Boc24, with the paper's ablations.

Layers (Boc24's exact recipe is not in our references; this is our documented choice):
  inputs  [(x^f - mean) / std, sigma * zeta]   2 channels (1 with variant "no-xf"); mean and std
          are the model's climatology
  trunk   lift conv(k) -> N_f channels, `blocks` x residual [act, conv(k), act, conv(k)] + skip
  head    act, 1x1 conv -> 1 channel, zero-initialised (so a_theta = 0 at the start)
  output  std * head + alpha * zeta   (Eq. 22; alpha starts at sigma^2: x^a = y when H = I)
"linear" replaces every activation by the identity (a_theta linear in its inputs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from danlab.nets import register_net
from danlab.nets.trunk import AlphaTerm, Normalise, Trunk, activation_class


class ResidualCNN(nn.Module):
    """increment = a(x^f, zeta) on (..., N_x) tensors."""

    def __init__(self, filters: int = 32, kernel: int = 5, blocks: int = 4,
                 activation: str = "gelu", variant: str = "full", alpha: bool = True,
                 sigma: float = 1.0, climatology: tuple[float, float] = (0.0, 1.0),
                 product: bool = False):
        super().__init__()
        act = activation_class(activation, linear=variant == "linear")
        self.use_xf = variant != "no-xf"
        self.sigma = float(sigma)
        self.norm = Normalise(*climatology)
        self.trunk = Trunk(2 if self.use_xf else 1, filters, kernel, blocks, act,
                           product=product and variant != "linear")
        self.head = nn.Sequential(act(), nn.Conv1d(filters, 1, 1))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)
        self.alpha_term = AlphaTerm(self.sigma, alpha)

    def forward(self, xf: Tensor, zeta: Tensor) -> Tensor:
        batch, nx = xf.shape[:-1], xf.shape[-1]
        h = (self.sigma * zeta).reshape(-1, 1, nx)
        if self.use_xf:
            h = torch.cat([self.norm(xf).reshape(-1, 1, nx), h], dim=1)
        out = (self.norm.std * self.head(self.trunk(h))).reshape(*batch, nx)
        return self.alpha_term(out, zeta)


@register_net("cnn")
def build_cnn(cfg, climatology) -> ResidualCNN:
    return ResidualCNN(cfg.filters, cfg.kernel, cfg.blocks, cfg.activation, cfg.variant,
                       cfg.alpha, cfg.twin.sigma, climatology, cfg.product)
