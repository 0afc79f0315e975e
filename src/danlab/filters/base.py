"""The filter interface that the cycle engine runs.

A filter is a small object with four methods. Its *state* is whatever it carries between
cycles (a state (B, N_x), an ensemble (B, N_e, N_x), a tuple of tensors...): every tensor in it
has the trajectory batch as leading dimension, so the engine can mask diverged trajectories.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from danlab.dynamics import Lorenz96


class Filter(Protocol):
    name: str

    def init(self, x0: Tensor, generator: torch.Generator) -> Any:
        """The state at the initial time from the shared initial guess x0 (B, N_x)."""

    def forecast(self, state: Any, model: Lorenz96, dt: float) -> Any:
        """Propagate the state to the next analysis time."""

    def analysis(self, state: Any, y: Tensor, mask: Tensor, sigma: float) -> Any:
        """Update with observations y (B, N_x) at sites mask (B, N_x), R = sigma^2 I."""

    def estimate(self, state: Any) -> Tensor:
        """The analysis estimate x^a (B, N_x) (the ensemble mean for ensemble filters)."""


class SingleStateFilter:
    """Base for filters that carry one state x (B, N_x) and add an increment."""

    name = "single-state"

    def init(self, x0: Tensor, generator: torch.Generator) -> Tensor:
        return x0

    def forecast(self, state: Tensor, model: Lorenz96, dt: float) -> Tensor:
        return model.forecast(state, dt)

    def estimate(self, state: Tensor) -> Tensor:
        return state


class EnsembleFilter:
    """Base for ensemble filters: the state is an ensemble (B, N_e, N_x)."""

    name = "ensemble"

    def __init__(self, members: int, init_spread: float = 1.0):
        from danlab.errors import check_int_at_least, check_positive

        check_int_at_least("members", members, 2)
        check_positive("init_spread", init_spread)
        self.members = members
        self.init_spread = init_spread

    def init(self, x0: Tensor, generator: torch.Generator) -> Tensor:
        shape = (x0.shape[0], self.members, x0.shape[-1])
        noise = torch.randn(shape, generator=generator, device=generator.device,
                            dtype=torch.float64).to(device=x0.device, dtype=x0.dtype)
        return x0.unsqueeze(-2) + self.init_spread * noise

    def forecast(self, state: Tensor, model: Lorenz96, dt: float) -> Tensor:
        return model.forecast(state, dt)

    def estimate(self, state: Tensor) -> Tensor:
        return state.mean(-2)
