"""Your own observations as a netCDF file (format in docs/observations.md).

Variables (dims in this order):
  y      (cycle, trajectory, site)  observations on the full grid (any value where unobserved)
  mask   (cycle, trajectory, site)  1 where observed, 0 elsewhere
  x0     (trajectory, site)         optional first guess at the initial time
  truth  (time, trajectory, site)   optional, time = cycle + 1 (truth[0] is the initial time):
                                    with it, scores are computed; without it, analyses only
Attributes: sigma and dt (required); model ("l96" by default), forcing, inner_dt (optional:
the model settings the observations were made with).
Cycle k (1-based) is at time k * dt after the initial time of x0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from danlab.errors import DanlabError, check
from danlab.twin import TwinData

MODEL_ATTRS = ("model", "forcing", "inner_dt")


@dataclass
class ObservationFile:
    """A user's observation file read: the twin data and the model settings it states."""

    path: str
    twin: TwinData
    model_settings: dict

    def describe(self) -> dict:
        """What the file holds (recorded with results instead of twin options)."""
        return {"obs_file": self.path, "trajectories": self.twin.n_trajectories,
                "cycles": self.twin.n_cycles, "nx": self.twin.nx, "dt": self.twin.dt,
                "sigma": self.twin.sigma, "has_truth": self.twin.truth is not None,
                **self.model_settings}


def twin_to_dataset(twin: TwinData, model=None):
    """The twin as an xarray Dataset in the file format above (model settings as attributes)."""
    import xarray as xr

    data = {"y": (("cycle", "trajectory", "site"), twin.y.cpu().double().numpy()),
            "mask": (("cycle", "trajectory", "site"), twin.mask.cpu().numpy().astype("int8")),
            "x0": (("trajectory", "site"), twin.x0.cpu().double().numpy())}
    if twin.truth is not None:
        data["truth"] = (("time", "trajectory", "site"), twin.truth.cpu().double().numpy())
    attrs = {"sigma": twin.sigma, "dt": twin.dt}
    if model is not None:
        attrs.update({"model": model.name, **{k: v for k, v in model.options().items()
                                              if k in MODEL_ATTRS and v is not None}})
    return xr.Dataset(data, attrs=attrs)


def read_observations(path: str, dtype=torch.float64, device="cpu") -> TwinData:
    """The twin data of an observation file (see `read_observation_file` for the settings)."""
    return read_observation_file(path, dtype, device).twin


def read_observation_file(path: str, dtype=torch.float64, device="cpu") -> ObservationFile:
    import xarray as xr

    try:
        ds = xr.open_dataset(path).load()
    except FileNotFoundError:
        raise DanlabError(f"observation file {path!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one line
        raise DanlabError(f"observation file {path!r} is not readable netCDF "
                          f"({type(exc).__name__})") from None
    where = f"observation file {path!r}"
    for name in ("y", "mask"):
        check(name in ds, f"{where}: variable {name!r} is missing (need y and mask)")
        check(ds[name].dims == ("cycle", "trajectory", "site"),
              f"{where}: {name} has dims {ds[name].dims}; expected (cycle, trajectory, site)")
    for name in ("y", "mask", "x0", "truth"):
        if name in ds:
            check(ds[name].dtype.kind in "biuf",
                  f"{where}: {name} has dtype {ds[name].dtype}; expected numbers")
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
    settings = {}
    for attr in MODEL_ATTRS:
        if attr in ds.attrs:
            v = ds.attrs[attr]
            v = str(v) if attr == "model" else float(v)
            settings[attr] = v
    if "x0" in ds:
        x0 = ds["x0"].values.astype("float64")
        check(x0.shape == y.shape[1:], f"{where}: x0 shape {x0.shape}; expected {y.shape[1:]}")
        check(np.isfinite(x0).all(), f"{where}: x0 holds NaN or inf")
    else:  # y where first observed, the mean observed value elsewhere
        seen = mask.any(0)
        first_idx = mask.argmax(0)
        first = np.take_along_axis(y, first_idx[None], 0)[0]
        mean = (y * mask).sum((0, 2)) / np.maximum(mask.sum((0, 2)), 1)
        x0 = np.where(seen, first, mean[:, None])
    truth = None
    if "truth" in ds:
        truth = ds["truth"].values.astype("float64")
        check(truth.shape == (y.shape[0] + 1, *y.shape[1:]),
              f"{where}: truth shape {truth.shape}; expected {(y.shape[0] + 1, *y.shape[1:])}")
        check(np.isfinite(truth).all(), f"{where}: truth holds NaN or inf")

    def as_t(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    twin = TwinData(as_t(truth) if truth is not None else None, as_t(y), as_t(mask), as_t(x0),
                    float(ds.attrs["sigma"]), float(ds.attrs["dt"]))
    return ObservationFile(str(path), twin.to(device=device, dtype=dtype), settings)
