"""Twin experiments: truth trajectories on the attractor and their observations, from seeds.

The same (seed, configuration) gives the same truth, observations and initial guess to every
method, so every comparison in danlab is paired on identical test trajectories.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from danlab.dynamics import Lorenz96
from danlab.errors import check, check_int_at_least, check_positive
from danlab.observations import ObservationConfig

SPINUP_TIME = 20.0  # model time units to reach the attractor (about 30 Lyapunov times)


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

    @property
    def n_cycles(self) -> int:
        return self.y.shape[0]

    @property
    def n_trajectories(self) -> int:
        return self.y.shape[1]

    @property
    def nx(self) -> int:
        return self.y.shape[-1]

    def observations(self) -> Iterator[tuple[Tensor, Tensor]]:
        for k in range(self.n_cycles):
            yield self.y[k], self.mask[k]

    def to(self, device=None, dtype=None) -> TwinData:
        def cast(t):
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)
        truth = cast(self.truth) if self.truth is not None else None
        return TwinData(truth, cast(self.y), self.mask.to(device), cast(self.x0),
                        self.sigma, self.dt)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def attractor_states(
    model: Lorenz96, n: int, nx: int, seed: int, dtype=torch.float64, device="cpu",
    spinup_time: float = SPINUP_TIME, compute_device="cpu",
) -> Tensor:
    """n independent states (n, nx) on the attractor, drawn from `seed` on the CPU, integrated
    in float64 on `compute_device` (the CPU by default, so that the states do not depend on
    the device; training on a GPU spins its 2^18 trajectories up there)."""
    check_int_at_least("nx", nx, 4)
    g = make_generator(seed)
    x = model.forcing + torch.randn(n, nx, generator=g, dtype=torch.float64)
    x = model.spinup(x.to(compute_device), spinup_time)
    return x.to(device=device, dtype=dtype)


def make_twin(
    model: Lorenz96, obs: ObservationConfig, nx: int, dt: float, n_trajectories: int,
    n_cycles: int, seed: int = 0, dtype=torch.float64, device="cpu",
) -> TwinData:
    """Generate a twin experiment: everything is computed in float64 on the CPU from `seed`,
    then cast, so results do not depend on the device or dtype of the methods compared."""
    check_int_at_least("nx", nx, 4)
    check_positive("dt", dt)
    check_int_at_least("trajectories", n_trajectories, 1)
    check_int_at_least("cycles", n_cycles, 1)
    check(isinstance(seed, int) and seed >= 0,
          f"seed={seed!r} is not allowed: it must be an integer >= 0")
    x = attractor_states(model, n_trajectories, nx, seed)
    g = make_generator(seed + 7919)
    truth = [x]
    ys, masks = [], []
    with torch.no_grad():
        for _ in range(n_cycles):
            x = model.forecast(x, dt)
            y, m = obs.observe(x, g)
            truth.append(x)
            ys.append(y)
            masks.append(m)
    x0 = truth[0] + obs.sigma * torch.randn(truth[0].shape, generator=g, dtype=torch.float64)
    twin = TwinData(torch.stack(truth), torch.stack(ys), torch.stack(masks), x0, obs.sigma, dt)
    return twin.to(device=device, dtype=dtype)


class ObservationStream:
    """Truth advanced by the model and observed on the fly: an endless twin experiment used by
    training (and by long runs that should not store the whole truth). Iterating yields (y, mask);
    `truth` is the truth at the cycle just yielded."""

    def __init__(self, model: Lorenz96, obs: ObservationConfig, truth: Tensor, dt: float,
                 generator: torch.Generator, n_cycles: int):
        self.model, self.obs, self.truth, self.dt = model, obs, truth, dt
        self.generator, self.n_cycles = generator, n_cycles

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(self.n_cycles):
            with torch.no_grad():
                self.truth = self.model.forecast(self.truth, self.dt)
            yield self.obs.observe(self.truth, self.generator)


def twin_to_dataset(twin: TwinData):
    """The twin as an xarray Dataset: y, mask (cycle, trajectory, site), x0, truth if known."""
    import xarray as xr

    data = {"y": (("cycle", "trajectory", "site"), twin.y.cpu().numpy()),
            "mask": (("cycle", "trajectory", "site"), twin.mask.cpu().numpy().astype("int8")),
            "x0": (("trajectory", "site"), twin.x0.cpu().numpy())}
    if twin.truth is not None:
        data["truth"] = (("time", "trajectory", "site"), twin.truth.cpu().numpy())
    return xr.Dataset(data, attrs={"sigma": twin.sigma, "dt": twin.dt})


def read_observations(path: str, dtype=torch.float64, device="cpu") -> TwinData:
    """A user's observations from netCDF: y and mask (cycle, trajectory, site), attributes
    sigma and dt; optional x0 (trajectory, site) (default: y at the first cycle where observed,
    the observed mean elsewhere) and truth (time = cycle + 1, trajectory, site) for scores."""
    import numpy as np
    import xarray as xr

    from danlab.errors import DanlabError

    try:
        ds = xr.open_dataset(path).load()
    except FileNotFoundError:
        raise DanlabError(f"observation file {path!r} does not exist") from None
    except Exception as exc:
        raise DanlabError(f"observation file {path!r} is not readable netCDF "
                          f"({type(exc).__name__})") from None
    where = f"observation file {path!r}"
    for name in ("y", "mask"):
        check(name in ds, f"{where}: variable {name!r} is missing (need y and mask)")
        check(ds[name].dims == ("cycle", "trajectory", "site"),
              f"{where}: {name} has dims {ds[name].dims}; expected (cycle, trajectory, site)")
    for name in ("y", "mask", "x0", "truth"):
        if name in ds:
            kind = ds[name].dtype.kind
            check(kind in "biuf", f"{where}: {name} has dtype {ds[name].dtype}; expected numbers")
    y, mask = ds["y"].values.astype("float64"), ds["mask"].values
    check(mask.shape == y.shape, f"{where}: mask shape {mask.shape} differs from y {y.shape}")
    check(y.shape[0] >= 1 and y.shape[1] >= 1,
          f"{where}: y has shape {y.shape}; at least one cycle and one trajectory are needed")
    check(np.isin(mask, (0, 1)).all(), f"{where}: mask must hold only 0/1 (or booleans)")
    mask = mask.astype(bool)
    check(y.shape[-1] >= 4, f"{where}: N_x={y.shape[-1]} sites; at least 4 are needed")
    check(np.isfinite(y[mask]).all(), f"{where}: y holds NaN or inf at observed sites")
    y = np.where(mask, y, 0.0)
    for attr in ("sigma", "dt"):
        v = ds.attrs.get(attr)
        check(isinstance(v, (int, float, np.floating, np.integer)) and np.isfinite(v) and v > 0,
              f"{where}: attribute {attr}={v!r} must be a finite number > 0")
    if "x0" in ds:
        x0 = ds["x0"].values.astype("float64")
        check(x0.shape == y.shape[1:], f"{where}: x0 shape {x0.shape}; expected {y.shape[1:]}")
        check(np.isfinite(x0).all(), f"{where}: x0 holds NaN or inf")
    else:
        first = np.where(mask[0], y[0], (y * mask).sum((0, 2), keepdims=True)[0]
                         / np.maximum(mask.sum((0, 2), keepdims=True)[0], 1))
        x0 = first
    truth = None
    if "truth" in ds:
        truth = ds["truth"].values.astype("float64")
        check(truth.shape == (y.shape[0] + 1, *y.shape[1:]),
              f"{where}: truth shape {truth.shape}; expected {(y.shape[0] + 1, *y.shape[1:])}")
        check(np.isfinite(truth).all(), f"{where}: truth holds NaN or inf")
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    twin = TwinData(as_t(truth) if truth is not None else None, as_t(y), as_t(mask), as_t(x0),
                    float(ds.attrs["sigma"]), float(ds.attrs["dt"]))
    return twin.to(device=device, dtype=dtype)
