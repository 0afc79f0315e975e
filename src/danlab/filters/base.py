"""The filter interface that the cycle engine runs, and the two bases most filters build on.

A filter is a small dataclass: its fields are its parameters (so a run records the parameters
actually used), and four methods make one DA cycle. Its *state* is whatever it carries between
cycles (a state (B, N_x), an ensemble (B, N_e, N_x), a tuple of tensors...): every tensor in it
has the trajectory batch as leading dimension, so the engine can restart diverged trajectories.
What a filter needs from the model beyond `forecast` it names in `requires` (e.g. "backward");
the engine hands it the model and dt at every analysis, so no filter keeps them in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

from torch import Tensor

from danlab.dynamics import Model
from danlab.errors import DanlabError, check_int_at_least, check_positive
from danlab.rng import TrajectoryStreams
from danlab.spec import param


class Filter(Protocol):
    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]

    def init(self, x0: Tensor, streams: TrajectoryStreams) -> Any:
        """The state at the initial time from the shared initial guess x0 (B, N_x); random
        draws of trajectory i come from streams.generators[i]."""

    def forecast(self, state: Any, model: Model, dt: float) -> Any:
        """Propagate the state to the next analysis time."""

    def analysis(self, state: Any, y: Tensor, mask: Tensor, sigma: float, *, model: Model,
                 dt: float) -> Any:
        """Update with observations y (B, N_x) at sites mask (B, N_x), R = sigma^2 I; model and
        dt are those of the forecast just made (for filters that re-run or backtrack it)."""

    def estimate(self, state: Any) -> Tensor:
        """The analysis estimate x^a (B, N_x) (the ensemble mean for ensemble filters)."""

    def parameters(self) -> dict:
        """The filter's parameters, as recorded with its results."""


CAPABILITIES = {"backward": "has_backward"}


def check_filter_model(filt, model: Model) -> None:
    """A one-line error when the model lacks what the filter needs."""
    for need in getattr(filt, "requires", ()):
        if not getattr(model, CAPABILITIES[need], False):
            raise DanlabError(f"method {filt.name!r} needs a model with a {need} step; model "
                              f"{getattr(model, 'name', type(model).__name__)!r} has none")


class _Recorded:
    def parameters(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata.get("record", True)}


@dataclass
class SingleStateFilter(_Recorded):
    """Base for filters that carry one state x (B, N_x) and add an increment."""

    name: ClassVar[str] = "single-state"
    requires: ClassVar[tuple[str, ...]] = ()

    def init(self, x0: Tensor, streams: TrajectoryStreams) -> Tensor:
        return x0

    def forecast(self, state: Tensor, model: Model, dt: float) -> Tensor:
        return model.forecast(state, dt)

    def estimate(self, state: Tensor) -> Tensor:
        return state


@dataclass
class EnsembleFilter(_Recorded):
    """Base for ensemble filters: the state is an ensemble (B, N_e, N_x), started as
    x0 + init_spread * N(0, I) per member."""

    name: ClassVar[str] = "ensemble"
    requires: ClassVar[tuple[str, ...]] = ()
    members: int = param(40, "ensemble size N")
    init_spread: float = field(default=1.0, kw_only=True, metadata={
        "help": "std of the initial ensemble around the first guess"})

    def __post_init__(self):
        check_int_at_least("members", self.members, 2)
        check_positive("init_spread", self.init_spread)

    def init(self, x0: Tensor, streams: TrajectoryStreams) -> Tensor:
        noise = streams.randn(self.members, x0.shape[-1]).to(device=x0.device, dtype=x0.dtype)
        return x0.unsqueeze(-2) + self.init_spread * noise

    def forecast(self, state: Tensor, model: Model, dt: float) -> Tensor:
        return model.forecast(state, dt)

    def estimate(self, state: Tensor) -> Tensor:
        return state.mean(-2)
