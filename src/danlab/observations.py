"""The paper's four observation configurations, as site masks on the full grid.

Observations are stored on the full grid, `y = mask * (x^t + sigma * noise)`, so a batch whose
trajectories have different random H_k is still one tensor. With R = sigma^2 I,
the projected innovation is zeta = H^T R^{-1} (y - H x^f) = mask * (y - x^f) / sigma^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.errors import check, check_choice

OBSERVATION_KINDS = ("full", "alternate", "random", "random-half")


@dataclass(frozen=True)
class ObservationConfig:
    """kind: full | alternate (every other site) | random (N_y ~ U{0..N_x} distinct sites per
    cycle) | random-half (N_y ~ U{floor(N_x/2)..N_x}); sigma: observation error std (R = sigma^2 I).
    """

    kind: str = "full"
    sigma: float = 1.0

    def __post_init__(self):
        check_choice("obs", self.kind, OBSERVATION_KINDS)
        check(
            isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0,
            f"sigma={self.sigma!r} is not allowed: it must be a finite number > 0",
        )

    def sample_mask(
        self, batch_shape: tuple[int, ...], nx: int, generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """A boolean site mask of shape (*batch_shape, nx), drawn with `generator`."""
        shape = (*batch_shape, nx)
        if self.kind == "full":
            return torch.ones(shape, dtype=torch.bool, device=device)
        if self.kind == "alternate":
            # the paper's [H]_{j,i} = delta_{i,2j} (1-based): sites 2, 4, ..., i.e. odd 0-based
            mask = torch.zeros(nx, dtype=torch.bool, device=device)
            mask[1::2] = True
            return mask.expand(shape).clone()
        low = 0 if self.kind == "random" else nx // 2
        gdev = generator.device
        n_obs = torch.randint(low, nx + 1, batch_shape, generator=generator, device=gdev)
        ranks = torch.rand(shape, generator=generator, device=gdev).argsort(-1).argsort(-1)
        return (ranks < n_obs.unsqueeze(-1)).to(device)

    def draw(self, shape: tuple[int, ...], generator: torch.Generator, device, dtype
             ) -> tuple[Tensor, Tensor]:
        """(mask, noise) of shape (..., N_x), in this order from `generator`."""
        mask = self.sample_mask(tuple(shape[:-1]), shape[-1], generator, device)
        noise = torch.randn(shape, generator=generator, device=generator.device,
                            dtype=dtype).to(device)
        return mask, noise

    def observe(self, truth: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw (y, mask) for truth (..., N_x): y on the full grid, zero where unobserved."""
        mask, noise = self.draw(tuple(truth.shape), generator, truth.device, truth.dtype)
        return self.apply(truth, mask, noise), mask

    def apply(self, truth: Tensor, mask: Tensor, noise: Tensor) -> Tensor:
        """y = truth + sigma * noise where observed, zero elsewhere."""
        return torch.where(mask, truth + self.sigma * noise, torch.zeros_like(truth))


def innovation(y: Tensor, mask: Tensor, xf: Tensor) -> Tensor:
    """delta = y - H x^f on the full grid (zero at unobserved sites)."""
    return torch.where(mask, y - xf, torch.zeros_like(xf))


def projected_innovation(y: Tensor, mask: Tensor, xf: Tensor, sigma: float) -> Tensor:
    """zeta = H^T R^{-1} (y - H x^f) with R = sigma^2 I."""
    return innovation(y, mask, xf) / sigma**2
