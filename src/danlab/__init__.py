"""danlab: a laboratory for data assimilation networks on chaotic dynamics."""

from danlab import filters
from danlab.config import PRESETS, TrainConfig, preset
from danlab.cycle import FilterResult, cycle, run_filter
from danlab.dynamics import Lorenz96
from danlab.errors import DanlabError
from danlab.filters import (
    ETKF,
    DANFilter,
    EnKFN,
    FreeRun,
    IEnKFN,
    ObservationOnly,
    Var3D,
    make_filter,
)
from danlab.nets import build_net
from danlab.observations import ObservationConfig, innovation, projected_innovation
from danlab.train import evaluate_run, load, train
from danlab.twin import ObservationStream, TwinData, make_twin, read_observations

__version__ = "0.1.0"

__all__ = [
    "DANFilter", "DanlabError", "ETKF", "EnKFN", "FilterResult", "FreeRun", "IEnKFN", "Lorenz96",
    "ObservationConfig", "ObservationOnly", "ObservationStream", "PRESETS", "TrainConfig",
    "TwinData", "Var3D", "build_net", "cycle", "evaluate_run", "filters", "innovation", "load",
    "make_filter", "make_twin", "preset", "projected_innovation", "read_observations",
    "run_filter", "train",
]
