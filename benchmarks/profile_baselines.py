"""Where an EnKF-N / IEnKF-N cycle spends its time: forecast vs analysis, and the torch ops.

One thread; L96 N_x = 40, F = 8, full observation, sigma = 1, N = 40, dt = 0.05 with DAPPER's
RK4 step 0.05; a batch of B trajectories is cycled (after a short spin-up, so the ensembles
are realistic), timing the forecast and the analysis of every cycle separately, then one more
stretch of cycles runs under torch.profiler for the op breakdown (self CPU time per op, summed
over the analysis calls). Host syncs show up as aten::item / aten::is_nonzero calls.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/profile_baselines.py \
        --methods enkf-n,ienkf-n --batches 64,1024 --dtypes float64,float32
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def build(batch: int, cycles: int, dtype):
    from danlab.twin import TwinSpec

    spec = TwinSpec(dt=0.05, inner_dt=0.05, trajectories=batch, cycles=cycles, spinup=0,
                    seed=7)
    model, twin = spec.build(dtype=dtype)
    return model, twin


def make(method: str):
    from danlab import make_filter

    if method == "ienkf-n-tol0":
        return make_filter("ienkf-n", members=40, tol=0.0)
    return make_filter(method, members=40)


def run(method: str, batch: int, dtype, spin: int, timed: int, profiled: int, top: int):
    from torch.profiler import ProfilerActivity, profile

    model, twin = build(batch, spin + timed + profiled, dtype)
    filt = make(method)
    from danlab import rng

    state = filt.init(twin.x0, rng.TrajectoryStreams(twin.seed, rng.FILTER_INIT, batch))
    obs = list(twin.observations())
    tf = ta = 0.0
    with torch.no_grad():
        for k, (y, m) in enumerate(obs[: spin + timed]):
            t0 = time.perf_counter()
            state = filt.forecast(state, model, twin.dt)
            t1 = time.perf_counter()
            state = filt.analysis(state, y, m, twin.sigma, model=model, dt=twin.dt)
            t2 = time.perf_counter()
            if k >= spin:
                tf += t1 - t0
                ta += t2 - t1
        n = batch * timed
        xa = filt.estimate(state)
        err = float(((xa - twin.truth[spin + timed]) ** 2).mean().sqrt())
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for y, m in obs[spin + timed:]:
                state = filt.forecast(state, model, twin.dt)
                state = filt.analysis(state, y, m, twin.sigma, model=model, dt=twin.dt)
    print(f"\n### {method}, batch {batch}, {str(dtype).split('.')[-1]}: "
          f"forecast {1e6 * tf / n:.1f} + analysis {1e6 * ta / n:.1f} = "
          f"{1e6 * (tf + ta) / n:.1f} µs per trajectory-cycle (last-cycle RMSE {err:.3f})")
    iters = getattr(filt, "last_iterations", None)
    if iters is not None:
        print("Gauss-Newton iterations at the last analysis: mean "
              f"{float(iters.float().mean()):.2f}")
    evs = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in evs)
    per = batch * profiled
    print(f"profiled {profiled} cycles: {total / per:.1f} µs per trajectory-cycle (self time "
          "under the profiler, which adds overhead per op)")
    print("| op | calls per cycle | µs per trajectory-cycle | share |")
    print("|---|---:|---:|---:|")
    for e in sorted(evs, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"| {e.key} | {e.count / profiled:.1f} | {e.self_cpu_time_total / per:.2f} "
              f"| {100 * e.self_cpu_time_total / total:.0f}% |")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="enkf-n,ienkf-n")
    p.add_argument("--batches", default="64,1024")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--spin", type=int, default=20, help="cycles before timing")
    p.add_argument("--timed", type=int, default=20)
    p.add_argument("--profiled", type=int, default=5)
    p.add_argument("--top", type=int, default=14)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    for method in args.methods.split(","):
        for b in (int(x) for x in args.batches.split(",")):
            for dt in args.dtypes.split(","):
                run(method, b, getattr(torch, dt), args.spin, args.timed, args.profiled,
                    args.top)


if __name__ == "__main__":
    main()
