"""The one DA cycle engine: forecast, observe, analysis, for any filter, batched over trajectories.

`cycle` is the loop itself; `run_filter` scores it on a twin experiment (test RMSE, per-cycle
curves, divergence flags) and training calls `cycle` with gradients on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from danlab import rng
from danlab.dynamics import Model
from danlab.errors import check, check_int_at_least
from danlab.filters.base import Filter, check_filter_model
from danlab.progress import progress_bar
from danlab.twin import TwinData


def cycle(
    filt: Filter, state: Any, model: Model, dt: float,
    observations: Iterable[tuple[Tensor, Tensor]], sigma: float,
    guard: Callable[[Any, Tensor], Any] | None = None,
) -> Iterator[tuple[Any, Tensor]]:
    """For each (y, mask) of `observations`: forecast, then analysis; yield (state, x^a).

    `guard(state, xa)`, if given, may return a repaired state (e.g. diverged trajectories
    restarted) that the next cycle starts from."""
    for y, mask in observations:
        state = filt.forecast(state, model, dt)
        state = filt.analysis(state, y, mask, sigma, model=model, dt=dt)
        xa = filt.estimate(state)
        if guard is not None:
            state = guard(state, xa)
        yield state, xa


def final(steps: Iterable[tuple[Any, Tensor]], state: Any = None) -> Any:
    """Run a `cycle` iterator to its end; return the last state (`state` if it was empty)."""
    for state, _ in steps:  # noqa: B007
        pass
    return state


@dataclass(frozen=True)
class Divergence:
    """When a trajectory counts as diverged, relative to the climatological spread `std` of the
    model's attractor (so the same rule holds at any forcing, N_x or model):

    * blow-up: its analysis is non-finite or its RMSE exceeds `blowup` x std at a cycle (far
      beyond a free run, ~1.4 std); the trajectory is then restarted so the batch stays finite;
    * lost track: its RMSE averaged over `window` cycles reaches `lost` x std, i.e. it is no
      better than the climatological mean (a filter that has lost the truth).
    The trainer resets trajectories by the same blow-up rule."""

    blowup: float = 4.0
    lost: float = 1.0
    window: int = 50

    def blown_up(self, err: Tensor, std: float) -> Tensor:
        """(B,) bool from per-trajectory RMSEs (NaN counts as blown up)."""
        return ~(err <= self.blowup * std)

    def lost_at(self, rmse_cycles: Tensor, std: float) -> Tensor:
        """(B,) first cycle at which the `window`-cycle running mean RMSE (ending there)
        reaches lost x std; -1 if never. Runs shorter than the window use their whole length."""
        t = rmse_cycles.shape[0]
        w = min(self.window, t)
        c = torch.cumsum(torch.nan_to_num(rmse_cycles, nan=0.0), 0)
        c = torch.cat([torch.zeros_like(c[:1]), c])
        windowed = (c[w:] - c[:-w]) / w  # mean over cycles k-w+1..k for k = w-1..t-1
        hit = windowed >= self.lost * std
        first = torch.where(hit.any(0), hit.float().argmax(0) + (w - 1), -1)
        return first.to(torch.long)


DEFAULT_DIVERGENCE = Divergence()


def mean_label(rmse: float, n_diverged: int, n: int) -> str:
    """A mean that marks the trajectories it leaves out: '0.4210 (1/16 diverged)'."""
    text = f"{rmse:.4f}"
    return text + (f" ({n_diverged}/{n} diverged)" if n_diverged else "")


@dataclass
class FilterResult:
    """rmse: test RMSE (spatial RMSE per cycle, averaged over cycles after the spin-up, then
    over the trajectories that did not diverge: `n_diverged` says how many are left out);
    rmse_per_trajectory (B,), NaN where diverged; rmse_per_cycle (T, B), NaN from divergence
    on; diverged (B,) bool; diverged_at (B,) first diverged cycle or -1."""

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
    test_set: dict = field(default_factory=dict)
    has_truth: bool = True

    @property
    def n_diverged(self) -> int:
        return int(self.diverged.sum())

    @property
    def n_trajectories(self) -> int:
        return int(self.diverged.numel())

    def label(self) -> str:
        if not self.has_truth:
            return "no truth: analyses only"
        return mean_label(self.rmse, self.n_diverged, self.n_trajectories)

    def summary(self) -> dict:
        return {
            "rmse": self.rmse if self.has_truth else None,
            "rmse_label": self.label(),
            "rmse_per_trajectory": [float(v) for v in self.rmse_per_trajectory],
            "diverged": self.n_diverged,
            "trajectories": self.n_trajectories,
            "diverged_trajectories": [int(i) for i in torch.nonzero(self.diverged).flatten()],
            "diverged_at": [int(v) for v in self.diverged_at if v >= 0],
            "seconds": self.seconds,
            "cycles": self.n_cycles,
            "spinup": self.spinup,
            "test_set": self.test_set,
        }


def run_filter(
    filt: Filter, twin: TwinData, model: Model, spinup: int | None = None,
    seed: int | None = None, keep_analyses: bool = False,
    divergence: Divergence = DEFAULT_DIVERGENCE, progress: bool = False,
) -> FilterResult:
    """Run `filt` over every trajectory of `twin` and score it against twin.truth.

    spinup defaults to the twin spec's; `seed` (default: the twin's) keys the filter's own
    randomness (initial ensemble), one stream per trajectory. Divergence is judged by
    `divergence` against the model's climatology; diverged trajectories are flagged, left out
    of the mean (and counted), and restarted from their initial state after a blow-up. Without
    a truth (a user's observations) only non-finite analyses are flagged and there is no RMSE.
    """
    spec = twin.spec
    spinup = (spec.spinup if spec is not None else 0) if spinup is None else spinup
    seed = twin.seed if seed is None else seed
    n_cycles = twin.n_cycles
    check_int_at_least("spinup", spinup, 0)
    check(n_cycles > spinup, f"cycles={n_cycles} is not allowed: it must exceed spinup={spinup}")
    check_filter_model(filt, model)
    device, dtype = twin.y.device, twin.y.dtype
    b = twin.n_trajectories
    state0 = filt.init(twin.x0, rng.TrajectoryStreams(seed, rng.FILTER_INIT, b))
    has_truth = twin.truth is not None
    std = model.climatology(twin.nx).std
    rmse_cycles = torch.full((n_cycles, b), float("nan"), dtype=dtype, device=device)
    blown_at = torch.full((b,), -1, dtype=torch.long, device=device)
    analyses = (torch.empty((n_cycles, b, twin.nx), dtype=dtype, device=device)
                if keep_analyses else None)
    k = 0

    def guard(state, xa):
        nonlocal blown_at
        bad = ~torch.isfinite(xa).all(-1)
        if has_truth:
            err = torch.sqrt(((xa - twin.truth[k + 1]) ** 2).mean(-1))
            bad = bad | divergence.blown_up(err, std)
            rmse_cycles[k] = err
        if analyses is not None:
            analyses[k] = xa
        blown_at = torch.where(bad & (blown_at < 0), k, blown_at)
        return _restart_rows(state, state0, bad)  # no host sync: fine on a GPU

    steps = cycle(filt, state0, model, twin.dt, twin.observations(), twin.sigma, guard)
    steps = progress_bar(steps, total=n_cycles, desc=getattr(filt, "name", "filter"),
                         enabled=progress)
    start = time.perf_counter()
    state = state0
    with torch.no_grad():
        for state, _ in steps:  # noqa: B007  (the guard does the bookkeeping)
            k += 1
    seconds = time.perf_counter() - start
    lost_at = divergence.lost_at(rmse_cycles, std) if has_truth else torch.full_like(blown_at, -1)
    at = torch.where((blown_at >= 0) & ((lost_at < 0) | (blown_at < lost_at)), blown_at, lost_at)
    diverged = at >= 0
    after = diverged.unsqueeze(0) & (torch.arange(n_cycles, device=device).unsqueeze(1)
                                     >= at.unsqueeze(0))
    rmse_cycles = torch.where(after, float("nan"), rmse_cycles)
    per_traj = torch.where(diverged, float("nan"), rmse_cycles[spinup:].mean(0))
    ok = ~diverged
    rmse = float(per_traj[ok].mean()) if bool(ok.any()) and has_truth else float("nan")
    test_set = {"spec": twin.spec.describe() if spec is not None else "user observations",
                "fingerprint": twin.fingerprint()}
    return FilterResult(rmse, per_traj.cpu(), rmse_cycles.cpu(), diverged.cpu(), at.cpu(),
                        seconds, n_cycles, spinup,
                        analyses.cpu() if analyses is not None else None, state, test_set,
                        has_truth)


def _restart_rows(state: Any, state0: Any, rows: Tensor) -> Any:
    def fix(leaf, leaf0):
        if not isinstance(leaf, Tensor):
            return leaf
        m = rows.reshape(rows.shape + (1,) * (leaf.dim() - 1))
        return torch.where(m, leaf0, leaf)

    return tree_map(fix, state, state0) if not isinstance(state, Tensor) else fix(state, state0)


def paired_comparison(a: FilterResult, b: FilterResult, names=("a", "b")) -> dict:
    """Compare two results on the same test set, over the trajectories both kept.

    Returns the mean difference a - b (negative: a is better) with its standard error over
    trajectories, and a `verdict` that says 'a better' / 'b better' only when both means are
    over the same trajectories and the difference exceeds 2 standard errors."""
    check(a.test_set.get("fingerprint") == b.test_set.get("fingerprint"),
          "the two results come from different test sets: they cannot be compared")
    ra, rb = a.rmse_per_trajectory, b.rmse_per_trajectory
    both = torch.isfinite(ra) & torch.isfinite(rb)
    n = int(both.sum())
    if n == 0:
        return {"common": 0, "verdict": "no trajectory kept by both"}
    d = (ra - rb)[both].double()
    mean = float(d.mean())
    se = float(d.std() / n**0.5) if n > 1 else float("inf")
    same = bool((a.diverged == b.diverged).all())
    if not same:
        verdict = (f"not comparable as means: {a.n_diverged} vs {b.n_diverged} trajectories "
                   f"left out; on the {n} kept by both, {names[0]} - {names[1]} = {mean:+.4f}")
    elif abs(mean) <= 2 * se:
        verdict = "no significant difference"
    else:
        verdict = f"{names[0] if mean < 0 else names[1]} better"
    return {"common": n, "difference": mean, "stderr": se, "same_trajectories": same,
            "verdict": verdict}
