"""danlab: a laboratory for data assimilation networks on chaotic dynamics."""

from danlab.cycle import FilterResult, cycle, run_filter
from danlab.dynamics import Lorenz96
from danlab.errors import DanlabError
from danlab.filters import FreeRun, ObservationOnly
from danlab.observations import ObservationConfig, innovation, projected_innovation
from danlab.twin import ObservationStream, TwinData, make_twin

__version__ = "0.1.0"

__all__ = [
    "DanlabError", "FilterResult", "FreeRun", "Lorenz96", "ObservationConfig", "ObservationOnly",
    "ObservationStream", "TwinData", "cycle", "innovation", "make_twin", "projected_innovation",
    "run_filter",
]
