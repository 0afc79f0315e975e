"""The residual circular 1-D CNN analysis operator of Boc24, with the paper's ablations.

Layers (Boc24's exact recipe is not in our references; this is our documented choice):
  inputs  [(x^f - mean) / std, sigma * zeta]   2 channels (1 with variant "no-xf")
  lift    conv(k) -> N_f channels
  blocks  `blocks` x residual [act, conv(k), act, conv(k)] + skip
  head    act, 1x1 conv -> 1 channel, zero-initialised (so a_theta = 0 at the start)
  output  std * head + alpha * zeta   (Eq. 22; alpha starts at sigma^2: x^a = y when H = I)
Every convolution is circular over the sites, so the operator is translation-equivariant and
independent of N_x. "linear" replaces every activation by the identity (a_theta linear).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from danlab.dynamics import Lorenz96
from danlab.nets import register_net

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def circular_conv(c_in: int, c_out: int, kernel: int) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, padding_mode="circular")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, act: type[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(act(), circular_conv(channels, channels, kernel),
                                  act(), circular_conv(channels, channels, kernel))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ResidualCNN(nn.Module):
    """increment = a(x^f, zeta) on (..., N_x) tensors."""

    def __init__(self, filters: int = 32, kernel: int = 5, blocks: int = 4,
                 activation: str = "gelu", variant: str = "full", alpha: bool = True,
                 sigma: float = 1.0, climatology: tuple[float, float] = Lorenz96.climatology):
        super().__init__()
        act = nn.Identity if variant == "linear" else ACTIVATIONS[activation]
        self.use_xf = variant != "no-xf"
        self.sigma = float(sigma)
        self.register_buffer("clim", torch.tensor(climatology, dtype=torch.float32))
        c_in = 2 if self.use_xf else 1
        self.lift = circular_conv(c_in, filters, kernel)
        self.blocks = nn.Sequential(*[ResidualBlock(filters, kernel, act) for _ in range(blocks)])
        self.head = nn.Sequential(act(), nn.Conv1d(filters, 1, 1))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)
        self.alpha = nn.Parameter(torch.tensor(self.sigma**2)) if alpha else None

    def forward(self, xf: Tensor, zeta: Tensor) -> Tensor:
        batch = xf.shape[:-1]
        mean, std = self.clim[0], self.clim[1]
        z = (self.sigma * zeta).reshape(-1, 1, zeta.shape[-1])
        if self.use_xf:
            h = torch.cat([((xf - mean) / std).reshape(-1, 1, xf.shape[-1]), z], dim=1)
        else:
            h = z
        h = self.head(self.blocks(self.lift(h)))
        out = (std * h).reshape(*batch, xf.shape[-1])
        if self.alpha is not None:
            out = out + self.alpha * zeta
        return out


@register_net("cnn")
def build_cnn(cfg) -> ResidualCNN:
    return ResidualCNN(cfg.filters, cfg.kernel, cfg.blocks, cfg.activation, cfg.variant,
                       cfg.alpha, cfg.sigma)
