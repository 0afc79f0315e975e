"""A realistic EnKF-N ensemble for the benchmarks that time pieces of one analysis: the inputs
of the last analysis of a short EnKF-N run through the cycle engine (L96 N_x = 40, F = 8, full
observation, N = 40, dt = 0.05 with RK4 step 0.05, DAPPER's; the forecast of the 30th cycle)."""

import torch

from danlab import make_filter, rng
from danlab.cycle import cycle, final
from danlab.twin import TwinSpec


def last_analysis_inputs(batch: int, dtype: torch.dtype, cycles: int = 30):
    """(model, E (batch, N, N_x), y, mask, sigma) of the run's last analysis call."""
    spec = TwinSpec(dt=0.05, inner_dt=0.05, trajectories=batch, cycles=cycles, spinup=0, seed=7)
    model, twin = spec.build(dtype=dtype)
    filt = make_filter("enkf-n", members=40)
    seen, analysis = {}, filt.analysis

    def keep(state, y, mask, sigma, **kw):  # each call overwrites: the last one stays
        seen["args"] = (state, y, mask, sigma)
        return analysis(state, y, mask, sigma, **kw)

    filt.analysis = keep
    state = filt.init(twin.x0, rng.TrajectoryStreams(twin.seed, rng.FILTER_INIT, batch))
    with torch.no_grad():
        final(cycle(filt, state, model, twin.dt, twin.observations(), twin.sigma))
    return (model, *seen["args"])
