"""Twin experiments: a `TwinSpec` names one (model, observations, time axis, test set); its
`build()` gives the model and the truth / observations every method is scored on.

Every trajectory has its own random streams, keyed by (seed, purpose, trajectory index): the
first 8 trajectories of a 64-trajectory spec equal an 8-trajectory spec bit for bit, so results
of different sizes pair. Everything is drawn and integrated in float64 on the CPU, then cast, so
the data do not depend on the device or dtype of the methods compared.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from danlab import rng
from danlab.dynamics import Model, make_model, model_class
from danlab.errors import check, check_choice, check_int_at_least, check_positive
from danlab.observations import OBSERVATION_KINDS, ObservationConfig
from danlab.spec import param

#: the standard test set's seed: every score in danlab's docs uses it unless it says otherwise
TEST_SEED = 1_000_003
#: tuning runs (tune-3dvar, tune-sakov, localisation scans) use a twin separate from the test set
TUNING_SEED = 2_000_029
#: states and DA samples of the diagnostics
DIAGNOSTIC_SEED = 2_000_003


@dataclass(frozen=True)
class TwinSpec:
    """One twin experiment: the model, its observation, the time axis and the test set."""

    model: str = param("l96", "dynamical model: l96, ks, or module:Class of your own")
    nx: int = param(40, "number of sites N_x")
    forcing: float | None = param(None, "L96 forcing F (default: the model's, 8)")
    dt: float = param(0.05, "time between analyses, Delta t")
    inner_dt: float | None = param(None, "integration step; must divide dt (default: the "
                                         "model's, 0.01 for L96; DAPPER uses 0.05)")
    obs: str = param("full", "observation configuration", choices=OBSERVATION_KINDS)
    sigma: float = param(1.0, "observation error std (R = sigma^2 I)")
    trajectories: int = param(16, "test trajectories")
    cycles: int = param(1500, "analysis cycles per trajectory")
    spinup: int = param(500, "first cycles left out of the test RMSE")
    seed: int = param(TEST_SEED, "seed of the trajectories and observations")
    model_options: dict = field(default_factory=dict)

    def __post_init__(self):
        cls = model_class(self.model)
        defaults = _constructor_defaults(cls)
        if self.forcing is None and "forcing" in defaults:
            object.__setattr__(self, "forcing", float(defaults["forcing"]))
        check(self.forcing is None or "forcing" in defaults,
              f"forcing={self.forcing!r} is not allowed: model {self.model!r} has no forcing")
        if self.inner_dt is None:
            object.__setattr__(self, "inner_dt", float(defaults.get("inner_dt", cls.inner_dt)))
        check_int_at_least("nx", self.nx, 4)
        if self.forcing is not None:
            check(isinstance(self.forcing, (int, float)) and math.isfinite(self.forcing),
                  f"forcing={self.forcing!r} is not allowed: it must be a finite number")
        check_positive("dt", self.dt)
        check_positive("inner_dt", self.inner_dt)
        n = self.dt / self.inner_dt
        check(self.dt < self.inner_dt or abs(n - round(n)) <= 1e-6 * n,
              f"inner_dt={self.inner_dt:g} is not allowed: it must divide dt={self.dt:g} "
              f"(e.g. {self.dt / max(1, math.ceil(n)):g})")
        check_choice("obs", self.obs, OBSERVATION_KINDS)
        check_positive("sigma", self.sigma)
        check_int_at_least("trajectories", self.trajectories, 1)
        check_int_at_least("cycles", self.cycles, 1)
        check_int_at_least("spinup", self.spinup, 0)
        check(self.cycles > self.spinup,
              f"cycles={self.cycles} is not allowed: it must exceed spinup={self.spinup}")
        check_int_at_least("seed", self.seed, 0)
        check(isinstance(self.model_options, dict),
              f"model_options={self.model_options!r} must be a table of the model's options")

    @property
    def observation(self) -> ObservationConfig:
        return ObservationConfig(self.obs, self.sigma)

    @property
    def step_used(self) -> float:
        """The integration step actually taken: dt / round(dt / inner_dt) (dt if dt < inner_dt)."""
        return self.dt / max(1, round(self.dt / self.inner_dt))

    def make_model(self) -> Model:
        cls = model_class(self.model)
        takes = _constructor_defaults(cls)
        opts = dict(self.model_options)
        opts.update({k: v for k, v in (("forcing", self.forcing), ("inner_dt", self.inner_dt),
                                       ("nx", self.nx)) if k in takes})
        model = make_model(self.model, **opts)
        model.check_nx(self.nx)
        return model

    def build(self, device="cpu", dtype=torch.float64) -> tuple[Model, TwinData]:
        """(model, twin data) of this spec."""
        model = self.make_model()
        twin = make_twin(model, self.observation, self.nx, self.dt, self.trajectories,
                         self.cycles, self.seed, dtype=dtype, device=device)
        twin.spec = self
        return model, twin

    def replace(self, **changes) -> TwinSpec:
        import dataclasses

        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        model = f"{self.model}" + (f" F={self.forcing:g}" if self.forcing is not None else "")
        return (f"{model} N_x={self.nx} dt={self.dt:g} (step {self.step_used:g}) "
                f"obs={self.obs} sigma={self.sigma:g}; {self.trajectories} trajectories x "
                f"{self.cycles} cycles (spin-up {self.spinup}), seed {self.seed}")


def _constructor_defaults(cls) -> dict:
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if k != "self"}


@dataclass
class TwinData:
    """truth: (T+1, B, N_x), truth[0] at the initial time; y, mask: (T, B, N_x) for cycles 1..T;
    x0: (B, N_x) the initial guess shared by all methods (truth[0] + sigma * noise)."""

    truth: Tensor | None
    y: Tensor
    mask: Tensor
    x0: Tensor
    sigma: float
    dt: float
    spec: TwinSpec | None = None

    @property
    def n_cycles(self) -> int:
        return self.y.shape[0]

    @property
    def n_trajectories(self) -> int:
        return self.y.shape[1]

    @property
    def nx(self) -> int:
        return self.y.shape[-1]

    @property
    def seed(self) -> int:
        return self.spec.seed if self.spec is not None else 0

    def observations(self) -> Iterator[tuple[Tensor, Tensor]]:
        for k in range(self.n_cycles):
            yield self.y[k], self.mask[k]

    def fingerprint(self) -> str:
        """A short hash of the truth (or of the observations if there is no truth): two scores
        with the same fingerprint come from the same trajectories. Hashed at float32 precision,
        so a float32 run (a DAN) and a float64 run (a baseline) of one spec agree."""
        data = self.truth if self.truth is not None else self.y
        return hashlib.sha256(data.detach().cpu().float().numpy().tobytes()).hexdigest()[:12]

    def to(self, device=None, dtype=None) -> TwinData:
        def cast(t):
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)
        truth = cast(self.truth) if self.truth is not None else None
        return TwinData(truth, cast(self.y), self.mask.to(device), cast(self.x0),
                        self.sigma, self.dt, self.spec)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator keyed by one integer (see danlab.rng for keyed streams)."""
    return rng.generator(int(seed), device=device)


def attractor_states(model: Model, n: int, nx: int, seed: int, dtype=torch.float64,
                     device="cpu", compute_device="cpu") -> Tensor:
    """n states (n, nx) on the attractor: trajectory i starts from its own stream (seed, i), is
    spun up in float64 on `compute_device` (the CPU by default, so the states do not depend on
    the device), then cast."""
    model.check_nx(nx)
    starts = rng.TrajectoryStreams(seed, rng.TRUTH, n).draw(
        lambda g: model.random_state(1, nx, g)[0])
    return model.attractor_states(starts, device=compute_device).to(device=device, dtype=dtype)


def make_twin(
    model: Model, obs: ObservationConfig, nx: int, dt: float, n_trajectories: int,
    n_cycles: int, seed: int = 0, dtype=torch.float64, device="cpu",
) -> TwinData:
    """Truth, observations and first guess of `n_trajectories` independent trajectories, each
    from its own random streams (see the module docstring)."""
    check_int_at_least("trajectories", n_trajectories, 1)
    check_int_at_least("cycles", n_cycles, 1)
    check_positive("dt", dt)
    check_int_at_least("seed", seed, 0)
    b = n_trajectories
    x = attractor_states(model, b, nx, seed)
    noise = rng.TrajectoryStreams(seed, rng.OBSERVATION_NOISE, b).randn(n_cycles, nx)
    masks = rng.TrajectoryStreams(seed, rng.OBSERVATION_SITES, b).draw(
        lambda g: obs.sample_mask((n_cycles,), nx, g))
    first = rng.TrajectoryStreams(seed, rng.FIRST_GUESS, b).randn(nx)
    truth = [x]
    with torch.no_grad():
        for _ in range(n_cycles):
            x = model.forecast(x, dt)
            truth.append(x)
    truth = torch.stack(truth)
    check(bool(torch.isfinite(truth).all()),
          f"the truth blew up: the integration step {model.inner_dt:g} of {model!r} is "
          "unstable at this dt; use a smaller inner_dt")
    masks = masks.transpose(0, 1)
    y = torch.where(masks, truth[1:] + obs.sigma * noise.transpose(0, 1), 0.0)
    x0 = truth[0] + obs.sigma * first
    twin = TwinData(truth, y, masks, x0, obs.sigma, dt)
    return twin.to(device=device, dtype=dtype)


class ObservationStream:
    """Truth advanced by the model and observed on the fly: the endless twin experiment of
    training. Iterating yields (y, mask); `truth` is the truth at the cycle just yielded."""

    def __init__(self, model: Model, obs: ObservationConfig, truth: Tensor, dt: float,
                 generator: torch.Generator, n_cycles: int):
        self.model, self.obs, self.truth, self.dt = model, obs, truth, dt
        self.generator, self.n_cycles = generator, n_cycles

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(self.n_cycles):
            with torch.no_grad():
                self.truth = self.model.forecast(self.truth, self.dt)
            yield self.obs.observe(self.truth, self.generator)
