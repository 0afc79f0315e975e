"""Analysis schemes run by the cycle engine: each a small class (see filters.base.Filter)."""

from danlab.filters.base import EnsembleFilter, Filter, SingleStateFilter
from danlab.filters.dan import DANFilter
from danlab.filters.reference import FreeRun, ObservationOnly

__all__ = ["DANFilter", "EnsembleFilter", "Filter", "FreeRun", "ObservationOnly", "SingleStateFilter"]
