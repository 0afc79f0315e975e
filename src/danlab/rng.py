"""The one random-generator factory: every random draw in danlab comes from a generator made here.

Generators are keyed by a tuple of integers through numpy's SeedSequence, so that streams with
different keys are independent. A twin experiment gives each trajectory its own streams (keyed by
(seed, purpose, i)): trajectory i is the same whatever the number of trajectories.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from danlab.errors import check

# purposes of the per-trajectory streams of a twin experiment and of a filter's initial ensemble
TRUTH, OBSERVATION_NOISE, OBSERVATION_SITES, FIRST_GUESS, FILTER_INIT = range(5)


def seed_of(*key: int) -> int:
    """A 63-bit seed from a key of non-negative integers (SeedSequence mixing)."""
    check(all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in key),
          f"random key {key!r} is not allowed: it must be non-negative integers")
    state = np.random.SeedSequence(list(key)).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(*key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device` seeded from `key`."""
    g = torch.Generator(device=device)
    g.manual_seed(seed_of(*key))
    return g


class TrajectoryStreams:
    """One generator per trajectory for one purpose: trajectory i draws from
    generator(seed, purpose, i), so draws of trajectory i do not depend on how many there are."""

    def __init__(self, seed: int, purpose: int, n: int):
        self.generators = [generator(seed, purpose, i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, fn: Callable[[torch.Generator], Tensor]) -> Tensor:
        """Stack fn(g_i) over trajectories: (n, *fn's shape)."""
        return torch.stack([fn(g) for g in self.generators])

    def randn(self, *shape: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """Standard normal draws (n, *shape), float64 on the CPU unless dtype says otherwise."""
        return self.draw(lambda g: torch.randn(shape, generator=g, dtype=dtype))
