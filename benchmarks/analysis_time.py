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
from danlab.twin import TwinSpec


def main(method: str, batch: int, dtype: str, spin: int = 20, timed: int = 40) -> None:
    torch.set_num_threads(1)
    spec = TwinSpec(dt=0.05, inner_dt=0.05, trajectories=batch, cycles=spin + timed, spinup=0,
                    seed=7)
    model, twin = spec.build(dtype=getattr(torch, dtype))
    filt = make_filter(method, members=40)
    state = filt.init(twin.x0, rng.TrajectoryStreams(twin.seed, rng.FILTER_INIT, batch))
    ta = 0.0
    with torch.no_grad():
        for k, (y, m) in enumerate(twin.observations()):
            state = filt.forecast(state, model, twin.dt)
            t = time.process_time()
            state = filt.analysis(state, y, m, twin.sigma, model=model, dt=twin.dt)
            if k >= spin:
                ta += time.process_time() - t
    err = float(((filt.estimate(state) - twin.truth[-1]) ** 2).mean().sqrt())
    print(f"{method} batch {batch} {dtype}: analysis {1e6 * ta / (batch * timed):.1f} µs per "
          f"trajectory-cycle (process time), last RMSE {err:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
