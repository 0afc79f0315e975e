"""danlab: a laboratory for data assimilation networks (learned analysis operators
x^a = x^f + a_theta(x^f, H^T R^-1 delta)) on chaotic dynamics, with the classical filters they
are judged against, all run by one DA cycle engine on the same test trajectories."""

from danlab import filters
from danlab.config import PRESETS, TrainConfig, preset
from danlab.cycle import Divergence, FilterResult, cycle, paired_comparison, run_filter
from danlab.dynamics import Lorenz96, Model, make_model
from danlab.errors import DanlabError
from danlab.filters import (
    ETKF,
    METHODS,
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
from danlab.obsfile import read_observations
from danlab.runs import evaluate_run, load
from danlab.train import train
from danlab.twin import TEST_SEED, TwinData, TwinSpec, make_twin

__version__ = "0.2.0"

__all__ = [
    "DANFilter", "DanlabError", "Divergence", "ETKF", "EnKFN", "FilterResult", "FreeRun",
    "IEnKFN", "Lorenz96", "METHODS", "Model", "ObservationConfig", "ObservationOnly",
    "PRESETS", "TEST_SEED", "TrainConfig", "TwinData", "TwinSpec", "Var3D", "build_net",
    "cycle", "evaluate_run", "filters", "innovation", "load", "make_filter", "make_model",
    "make_twin", "paired_comparison", "preset", "projected_innovation", "read_observations",
    "run_filter", "train",
]
