"""Analysis schemes run by the cycle engine: each a small class (see filters.base.Filter)."""

from __future__ import annotations

from functools import lru_cache

from danlab.errors import DanlabError
from danlab.filters.base import EnsembleFilter, Filter, SingleStateFilter
from danlab.filters.dan import DANFilter
from danlab.filters.enkf_n import EnKFN
from danlab.filters.etkf import ETKF
from danlab.filters.ienkf_n import IEnKFN
from danlab.filters.reference import FreeRun, ObservationOnly
from danlab.filters.sakov import SakovFilter, tune_sakov
from danlab.filters.var3d import DEFAULT_SCALE, Var3D, climatological_covariance, tune_3dvar

METHODS = ("enkf-n", "ienkf-n", "3dvar", "etkf", "sakov-a1", "sakov-a2", "obs-only", "free")

__all__ = [
    "DANFilter", "ETKF", "EnKFN", "EnsembleFilter", "Filter", "FreeRun", "IEnKFN", "METHODS",
    "ObservationOnly", "SakovFilter", "SingleStateFilter", "Var3D", "climatological_covariance",
    "make_filter", "tune_3dvar", "tune_sakov",
]


@lru_cache(maxsize=8)
def _climatology(forcing: float, nx: int):
    from danlab.dynamics import Lorenz96

    # the climatology does not depend on the inner step (to sampling error): use the cheap one
    return climatological_covariance(Lorenz96(forcing, inner_dt=0.05), nx)


def make_filter(method: str, members: int = 40, **options) -> Filter:
    """A filter by its CLI name: enkf-n, ienkf-n, 3dvar, etkf, sakov-a1, sakov-a2, obs-only
    or free.

    `options` go to the class (e.g. dirac=True, tol=1e-3, inflation=1.01, init_spread=1.0).
    For 3dvar: B (N_x, N_x), or nx (and forcing, default 8) to use the climatological covariance
    of Lorenz-96 (cached), times `scale` (default: the value tuned at dt=0.05). `members` is
    ignored by the single-state methods. For sakov-a1/a2: steps, eps, scale (SakovFilter).
    """
    try:
        if method == "enkf-n":
            return EnKFN(members, **options)
        if method == "ienkf-n":
            return IEnKFN(members, **options)
        if method == "etkf":
            return ETKF(members, **options)
        if method == "3dvar":
            opts = dict(options)
            B = opts.pop("B", None)
            nx = opts.pop("nx", None)
            forcing = opts.pop("forcing", 8.0)
            scale = opts.pop("scale", DEFAULT_SCALE)
            if opts:
                raise DanlabError(f"options {sorted(opts)} are not allowed for 3dvar: "
                                  "use B, nx, forcing, scale")
            if B is None:
                if nx is None:
                    raise DanlabError("3dvar needs B or nx: give the background covariance or N_x")
                B = _climatology(float(forcing), int(nx))
            return Var3D(B, scale)
        if method in ("sakov-a1", "sakov-a2"):
            return SakovFilter(method[-2:].upper(), **options)
        if method in ("obs-only", "free"):
            if options:
                raise DanlabError(f"options {sorted(options)} are not allowed for {method}")
            return ObservationOnly() if method == "obs-only" else FreeRun()
    except TypeError as err:  # an unknown keyword option
        raise DanlabError(f"bad option for method={method!r}: {err}") from None
    raise DanlabError(f"method={method!r} is not allowed: choose one of {', '.join(METHODS)}")
