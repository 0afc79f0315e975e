"""What every analysis operator shares: the normalised inputs, a circular residual CNN trunk,
and the alpha * zeta term of Eq. 22."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from danlab.errors import check_choice

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def activation_class(name: str, linear: bool = False) -> type[nn.Module]:
    check_choice("activation", name, tuple(ACTIVATIONS))
    return nn.Identity if linear else ACTIVATIONS[name]


def circular_conv(c_in: int, c_out: int, kernel: int) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, padding_mode="circular")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, act: type[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(act(), circular_conv(channels, channels, kernel),
                                  act(), circular_conv(channels, channels, kernel))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ProductBlock(nn.Module):
    """h + W [conv_a(h) * conv_b(h)]: a bilinear layer, as in the L96 CNNs of the literature
    (L96's nonlinearity is quadratic), so products of neighbouring features come cheap."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.a = circular_conv(channels, channels, kernel)
        self.b = circular_conv(channels, channels, kernel)
        self.mix = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.mix(self.a(h) * self.b(h))


class Trunk(nn.Module):
    """lift conv(k) to N_f channels, an optional product block, then `blocks` residual
    blocks; every convolution circular over the sites, so the trunk is translation-equivariant
    and independent of N_x."""

    def __init__(self, c_in: int, filters: int, kernel: int, blocks: int,
                 act: type[nn.Module], product: bool = False):
        super().__init__()
        self.lift = circular_conv(c_in, filters, kernel)
        self.product = ProductBlock(filters, kernel) if product else None
        self.blocks = nn.Sequential(*[ResidualBlock(filters, kernel, act) for _ in range(blocks)])

    def forward(self, h: Tensor) -> Tensor:
        h = self.lift(h)
        if self.product is not None:
            h = self.product(h)
        return self.blocks(h)


class Normalise(nn.Module):
    """(x - mean) / std with the model's climatological mean and spread (buffers, so a
    checkpoint carries the constants it was trained with)."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("clim", torch.tensor((mean, std), dtype=torch.float32))

    @property
    def std(self) -> Tensor:
        return self.clim[1]

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.clim[0]) / self.clim[1]


class AlphaTerm(nn.Module):
    """alpha * zeta (Eq. 22) with a trainable alpha starting at sigma^2, so that x^a = y when
    H = I at the start; `enabled=False` gives Eq. 2 (no such term).

    log_unit > 0: alpha = sigma^2 exp(u / log_unit), u trainable from 0 (`log_alpha`). alpha
    stays positive, and an Adam step (about lr in u) changes it by lr / log_unit relatively
    instead of lr / sigma^2 absolutely: the linear-in-zeta net, which cannot offset alpha with
    a negative increment, otherwise spends hundreds of steps walking alpha down from sigma^2."""

    def __init__(self, sigma: float, enabled: bool = True, log_unit: float = 0.0):
        super().__init__()
        self.sigma2, self.log_unit = float(sigma) ** 2, float(log_unit)
        self.alpha = self.log_alpha = None
        if enabled and log_unit > 0:
            self.log_alpha = nn.Parameter(torch.tensor(0.0))
        elif enabled:
            self.alpha = nn.Parameter(torch.tensor(self.sigma2))

    def value(self) -> Tensor | None:
        """alpha, or None without the term."""
        if self.log_alpha is not None:
            return self.sigma2 * torch.exp(self.log_alpha / self.log_unit)
        return self.alpha

    def forward(self, out: Tensor, zeta: Tensor) -> Tensor:
        alpha = self.value()
        return out if alpha is None else out + alpha * zeta
