"""The one DA cycle engine: forecast, observe, analysis, for any filter, batched over trajectories.

`cycle` is the loop itself; `run_filter` scores it on a twin experiment (test RMSE, per-cycle
curves, divergence flags) and training calls `cycle` with gradients on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from danlab.dynamics import Lorenz96
from danlab.errors import check, check_int_at_least
from danlab.filters.base import Filter
from danlab.twin import TwinData, make_generator

DIVERGENCE_RMSE = 10.0  # a free run of L96 (F=8) has RMSE ~5; beyond 10 a filter has lost track


def cycle(
    filt: Filter, state: Any, model: Lorenz96, dt: float,
    observations: Iterable[tuple[Tensor, Tensor]], sigma: float,
    guard: Callable[[Any, Tensor], Any] | None = None,
) -> Iterator[tuple[Any, Tensor]]:
    """For each (y, mask) of `observations`: forecast, then analysis; yield (state, x^a).

    `guard(state, xa)`, if given, may return a repaired state (e.g. diverged trajectories
    restarted) that the next cycle starts from."""
    for y, mask in observations:
        state = filt.forecast(state, model, dt)
        state = filt.analysis(state, y, mask, sigma)
        xa = filt.estimate(state)
        if guard is not None:
            state = guard(state, xa)
        yield state, xa


def final(steps: Iterable[tuple[Any, Tensor]], state: Any = None) -> Any:
    """Run a `cycle` iterator to its end; return the last state (`state` if it was empty)."""
    for state, _ in steps:  # noqa: B007
        pass
    return state


@dataclass
class FilterResult:
    """rmse: test RMSE (spatial RMSE per cycle, averaged over cycles after the spin-up, then
    over trajectories that did not diverge); rmse_per_trajectory (B,), NaN where diverged;
    rmse_per_cycle (T, B); diverged (B,) bool; diverged_at (B,) first diverged cycle or -1."""

    rmse: float
    rmse_per_trajectory: Tensor
    rmse_per_cycle: Tensor | None
    diverged: Tensor
    diverged_at: Tensor
    seconds: float
    n_cycles: int
    spinup: int
    analyses: Tensor | None = None
    final_state: Any = None

    @property
    def n_diverged(self) -> int:
        return int(self.diverged.sum())

    def summary(self) -> dict:
        return {
            "rmse": self.rmse,
            "rmse_per_trajectory": [float(v) for v in self.rmse_per_trajectory],
            "diverged": self.n_diverged,
            "diverged_trajectories": [int(i) for i in torch.nonzero(self.diverged).flatten()],
            "seconds": self.seconds,
            "cycles": self.n_cycles,
            "spinup": self.spinup,
        }


def run_filter(
    filt: Filter, twin: TwinData, model: Lorenz96, spinup: int = 0, seed: int = 0,
    keep_analyses: bool = False, divergence_rmse: float = DIVERGENCE_RMSE, progress: bool = False,
) -> FilterResult:
    """Run `filt` over every trajectory of `twin` and score it against twin.truth.

    `seed` drives the filter's own randomness (initial ensemble). A trajectory whose analysis
    is non-finite, or whose RMSE exceeds `divergence_rmse`, is flagged, excluded from the
    averages, and restarted from its initial state so its numbers cannot poison the batch.
    If twin.truth is None (the user's own observations), only non-finite analyses are flagged
    and the RMSEs are NaN; keep_analyses returns x^a.
    """
    n_cycles = twin.n_cycles
    check_int_at_least("spinup", spinup, 0)
    check(n_cycles > spinup,
          f"cycles={n_cycles} is not allowed: it must exceed spinup={spinup}")
    gen = make_generator(seed, "cpu")
    device, dtype = twin.y.device, twin.y.dtype
    b = twin.n_trajectories
    state0 = filt.init(twin.x0, gen)
    has_truth = twin.truth is not None
    rmse_cycles = torch.full((n_cycles, b), float("nan"), dtype=dtype, device=device)
    diverged = torch.zeros(b, dtype=torch.bool, device=device)
    diverged_at = torch.full((b,), -1, dtype=torch.long, device=device)
    analyses = (torch.empty((n_cycles, b, twin.nx), dtype=dtype, device=device)
                if keep_analyses else None)
    k = 0

    def guard(state, xa):
        nonlocal diverged, diverged_at
        bad = ~torch.isfinite(xa).all(-1)
        if has_truth:
            err = torch.sqrt(((xa - twin.truth[k + 1]) ** 2).mean(-1))
            bad |= ~(err <= divergence_rmse)
            rmse_cycles[k] = err
        if analyses is not None:
            analyses[k] = xa
        diverged_at = torch.where(bad & ~diverged, torch.full_like(diverged_at, k), diverged_at)
        diverged = diverged | bad
        if bool(bad.any()):  # restart diverged rows so the batch stays finite
            state = _restart_rows(state, state0, bad)
        return state

    steps = cycle(filt, state0, model, twin.dt, twin.observations(), twin.sigma, guard)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, total=n_cycles, desc=getattr(filt, "name", "filter"), leave=False)
    start = time.perf_counter()
    state = state0
    with torch.no_grad():
        for state, _ in steps:  # noqa: B007  (the guard does the bookkeeping)
            k += 1
    seconds = time.perf_counter() - start
    kept = rmse_cycles[spinup:]
    per_traj = kept.mean(0)
    per_traj = torch.where(diverged, torch.full_like(per_traj, float("nan")), per_traj)
    ok = ~diverged
    rmse = float(per_traj[ok].mean()) if bool(ok.any()) and has_truth else float("nan")
    rmse_cycles = torch.where(diverged_at.ge(0).unsqueeze(0)
                              & (torch.arange(n_cycles, device=device).unsqueeze(1)
                                 >= diverged_at.unsqueeze(0)),
                              torch.full_like(rmse_cycles, float("nan")), rmse_cycles)
    return FilterResult(rmse, per_traj.cpu(), rmse_cycles.cpu(), diverged.cpu(),
                        diverged_at.cpu(), seconds, n_cycles, spinup,
                        analyses.cpu() if analyses is not None else None, state)


def _restart_rows(state: Any, state0: Any, rows: Tensor) -> Any:
    def fix(leaf, leaf0):
        if not isinstance(leaf, Tensor):
            return leaf
        m = rows.reshape(rows.shape + (1,) * (leaf.dim() - 1))
        return torch.where(m, leaf0, leaf)

    return tree_map(fix, state, state0) if not isinstance(state, Tensor) else fix(state, state0)
