"""What danlab needs from a dynamical model, and what it derives from it.

A model is a batched, differentiable map `forecast(x, dt)` on states (..., N_x) plus a way to
draw starting points for its attractor. Everything else the cycle engine, filters, trainer, twin
builder and diagnostics use (spin-up, attractor states, climatological mean / spread /
covariance, tangent-linear model) has a default here. Subclass `Model` for your own dynamics;
`check_model` tells in one line what an object lacks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.errors import DanlabError, check, check_int_at_least


@dataclass(frozen=True)
class Climatology:
    """Statistics of the attractor at one N_x: mean and std of a site (the model is assumed
    statistically homogeneous in space, as L96 and KS are), and the covariance (N_x, N_x)."""

    mean: float
    std: float
    covariance: Tensor


class Model:
    """Base class of danlab's dynamical models.

    Subclasses set `name` and `inner_dt` (the integration step, recorded with every result) and
    implement `forecast` and `random_state`. `fixed_nx` is the state size where the model fixes
    it (a grid) and None where any N_x works (L96). `spinup_time` is the model time that brings a
    random state onto the attractor.
    """

    name: str = "model"
    inner_dt: float = 0.01
    spinup_time: float = 20.0
    fixed_nx: int | None = None
    #: model time between climatology samples (about a decorrelation time)
    climatology_interval: float = 0.2

    def forecast(self, x: Tensor, dt: float) -> Tensor:
        """Integrate x (..., N_x) over time dt; differentiable; any leading batch shape."""
        raise NotImplementedError

    def random_state(self, n: int, nx: int, generator: torch.Generator) -> Tensor:
        """n starting points (n, N_x), float64 on the CPU, drawn with `generator` (before
        spin-up)."""
        raise NotImplementedError

    def options(self) -> dict:
        """The constructor options that define this model (recorded with every result)."""
        return {"inner_dt": self.inner_dt}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    # --- optional capabilities -------------------------------------------------------------

    has_backward: bool = False

    def backward(self, x: Tensor, dt: float) -> Tensor:
        """Integrate x backward in time over dt (needed by Sakov's A1/A2 only)."""
        raise DanlabError(f"model {self.name!r} has no backward step: sakov-a1/a2 need one "
                          "(set has_backward = True and implement backward(x, dt))")

    def tangent_linear(self, x: Tensor, dx: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """(M(x), M'(x) dx) by forward-mode autodiff; dx has the shape of x or broadcasts."""
        return torch.func.jvp(lambda z: self.forecast(z, dt), (x,), (dx.expand_as(x),))

    def tangent_rows(self, x: Tensor, e: Tensor, dt: float) -> Tensor:
        """M'(x) applied to each row of e (B, n, N_x), x (B, N_x)."""
        xs = x.unsqueeze(-2).expand_as(e).contiguous()
        return self.tangent_linear(xs, e.contiguous(), dt)[1]

    # --- derived ---------------------------------------------------------------------------

    def check_nx(self, nx: int) -> None:
        check_int_at_least("nx", nx, 4)
        if self.fixed_nx is not None:
            check(nx == self.fixed_nx, f"nx={nx} is not allowed for model {self.name!r}: its "
                                       f"grid has {self.fixed_nx} sites")

    def spinup(self, x: Tensor, time: float | None = None) -> Tensor:
        """Integrate without gradient, to bring x onto the attractor."""
        with torch.no_grad():
            return self.forecast(x, self.spinup_time if time is None else time)

    def attractor_states(self, starts: Tensor, device="cpu", dtype=torch.float64) -> Tensor:
        """Spin the starting points (n, N_x) up onto the attractor, in float64 on `device`."""
        x = self.spinup(starts.to(device=device, dtype=torch.float64))
        return x.to(dtype=dtype)

    def climatology(self, nx: int) -> Climatology:
        """Mean, spread and covariance of the attractor at N_x (sampled once, cached)."""
        return _climatology(self, nx)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.options() == other.options()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.options().items()))))


CLIMATOLOGY_TRAJECTORIES = 32
CLIMATOLOGY_SAMPLES = 200
CLIMATOLOGY_SEED = 12345


@functools.lru_cache(maxsize=32)
def _climatology(model: Model, nx: int) -> Climatology:
    # one torch thread: multi-threaded reductions round differently, and this cached value
    # (B of 3D-Var, the divergence rule, the nets' normalisation) must not depend on how many
    # threads the process that first asked for it had
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _sample_climatology(model, nx)
    finally:
        torch.set_num_threads(threads)


def _sample_climatology(model: Model, nx: int) -> Climatology:
    from danlab.rng import generator

    model.check_nx(nx)
    g = generator(CLIMATOLOGY_SEED)
    x = model.attractor_states(model.random_state(CLIMATOLOGY_TRAJECTORIES, nx, g))
    samples = []
    with torch.no_grad():
        for _ in range(CLIMATOLOGY_SAMPLES):
            x = model.forecast(x, model.climatology_interval)
            samples.append(x)
    X = torch.cat(samples)
    check(bool(torch.isfinite(X).all()), f"model {model!r} blew up while sampling its "
                                         "climatology: is its inner step stable?")
    mean = float(X.mean())
    A = X - X.mean(0)
    cov = A.T @ A / (X.shape[0] - 1)
    return Climatology(mean, float(X.std()), cov)


def check_model(model, nx: int | None = None) -> Model:
    """One-line errors for an object that does not behave as a danlab model."""
    what = f"model {type(model).__name__}"
    check(isinstance(model, Model), f"{what} is not a danlab.dynamics.Model subclass")
    check(isinstance(getattr(model, "inner_dt", None), (int, float)),
          f"{what} has no numeric inner_dt")
    nx = nx or getattr(model, "fixed_nx", None) or 40
    try:
        x = model.random_state(2, nx, torch.Generator().manual_seed(0))
        out = model.forecast(x, model.inner_dt)
    except DanlabError:
        raise
    except NotImplementedError:
        raise DanlabError(f"{what} does not implement forecast(x, dt) and random_state(n, nx, g)"
                          ) from None
    except Exception as exc:  # noqa: BLE001 - a user's model: any failure becomes one line
        raise DanlabError(f"{what} failed on a state of shape (2, {nx}): "
                          f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"
                          ) from None
    check(isinstance(x, Tensor) and tuple(x.shape) == (2, nx),
          f"{what}.random_state(2, {nx}, g) must return a tensor of shape (2, {nx})")
    check(isinstance(out, Tensor) and out.shape == x.shape,
          f"{what}.forecast(x, dt) must return a tensor of the shape of x (2, {nx}), got "
          f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    check(bool(torch.isfinite(out).all()), f"{what}.forecast returned non-finite values")
    check(math.isfinite(model.inner_dt) and model.inner_dt > 0,
          f"{what}.inner_dt={model.inner_dt!r} must be a finite number > 0")
    return model
