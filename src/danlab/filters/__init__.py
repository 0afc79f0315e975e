"""Analysis schemes run by the cycle engine: each a small dataclass (see filters.base.Filter).

`METHODS` is the one registry of methods by their command-line name; `make_filter(name,
**parameters)` builds one, refusing parameters the method does not have.
"""

from __future__ import annotations

from dataclasses import fields

from danlab.errors import check, check_choice
from danlab.filters.base import EnsembleFilter, Filter, SingleStateFilter
from danlab.filters.dan import DANFilter
from danlab.filters.enkf_n import EnKFN
from danlab.filters.etkf import ETKF
from danlab.filters.ienkf_n import IEnKFN
from danlab.filters.letkf import LETKF, LocalEnKFN
from danlab.filters.reference import FreeRun, ObservationOnly
from danlab.filters.sakov import SakovA1, SakovA2, SakovFilter
from danlab.filters.var3d import DEFAULT_SCALE, Var3D

METHODS: dict[str, type] = {
    "enkf-n": EnKFN,
    "ienkf-n": IEnKFN,
    "etkf": ETKF,
    "letkf": LETKF,
    "local-enkf-n": LocalEnKFN,
    "3dvar": Var3D,
    "sakov-a1": SakovA1,
    "sakov-a2": SakovA2,
    "obs-only": ObservationOnly,
    "free": FreeRun,
}


def method_parameters(method: str) -> dict:
    """{parameter: default} of a method (what make_filter accepts)."""
    check_choice("method", method, tuple(METHODS))
    cls = METHODS[method]
    return {f.name: cls.__dataclass_fields__[f.name].default for f in fields(cls) if f.init}


def make_filter(method: str, **parameters) -> Filter:
    """A filter by its command-line name, e.g. make_filter("enkf-n", members=40, dirac=True)."""
    allowed = method_parameters(method)
    unknown = sorted(set(parameters) - set(allowed))
    check(not unknown, f"parameters {unknown} are not allowed for method {method!r}: it takes "
                       f"{', '.join(allowed) or 'none'}")
    return METHODS[method](**parameters)


__all__ = [
    "DANFilter", "DEFAULT_SCALE", "ETKF", "EnKFN", "EnsembleFilter", "Filter", "FreeRun",
    "IEnKFN", "LETKF", "LocalEnKFN", "METHODS", "ObservationOnly", "SakovA1", "SakovA2",
    "SakovFilter", "SingleStateFilter", "Var3D", "make_filter", "method_parameters",
]
