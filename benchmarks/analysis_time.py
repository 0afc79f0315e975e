"""Process CPU time of the analysis alone, per trajectory-cycle (EnKF-N / IEnKF-N), for A/B
comparisons of two source trees on a machine that is not idle (process time is less disturbed
by other jobs than wall time):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/analysis_time.py enkf-n 64 float64

L96 N_x = 40, F = 8, full observation, N = 40, dt = 0.05 (RK4 step 0.05); 20 cycles of spin-up,
then 40 timed analyses; prints the time and the last analysis RMSE (equal for equal results).
"""

import sys
import time

import torch

from danlab import make_filter, rng
from danlab.cycle import cycle, final
from danlab.twin import TwinSpec


def main(method: str, batch: int, dtype: str, spin: int = 20, timed: int = 40) -> None:
    torch.set_num_threads(1)
    spec = TwinSpec(dt=0.05, inner_dt=0.05, trajectories=batch, cycles=spin + timed, spinup=0,
                    seed=7)
    model, twin = spec.build(dtype=getattr(torch, dtype))
    filt = make_filter(method, members=40)
    analysis, seconds = filt.analysis, []

    def timed_analysis(*args, **kwargs):  # the cycle engine's analysis call, timed
        t = time.process_time()
        out = analysis(*args, **kwargs)
        seconds.append(time.process_time() - t)
        return out

    filt.analysis = timed_analysis
    state = filt.init(twin.x0, rng.TrajectoryStreams(twin.seed, rng.FILTER_INIT, batch))
    with torch.no_grad():
        state = final(cycle(filt, state, model, twin.dt, twin.observations(), twin.sigma))
    err = float(((filt.estimate(state) - twin.truth[-1]) ** 2).mean().sqrt())
    per = 1e6 * sum(seconds[spin:]) / (batch * timed)
    print(f"{method} batch {batch} {dtype}: analysis {per:.1f} µs per trajectory-cycle "
          f"(process time), last RMSE {err:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
