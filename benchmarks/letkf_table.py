"""Long-run RMSE and timing of the LETKF / local EnKF-N beside the global EnKF-N.

One run per (method, N_x, N) given on the command line, on the standard twin (seed 1000003,
full observation, sigma = 1, F = 8), scored by danlab.run_filter; one JSON line per run is
appended to --out. Examples (what docs report; inner step 0.05 as DAPPER):

    OMP_NUM_THREADS=1 python benchmarks/letkf_table.py --method letkf --nx 40 --members 20 \
        --loc-radius 9 --inflation 1.01
    OMP_NUM_THREADS=1 python benchmarks/letkf_table.py --method local-enkf-n --nx 40 80 160 \
        --members 20 40 --loc-radius 9 --xN 1
    OMP_NUM_THREADS=1 python benchmarks/letkf_table.py --method enkf-n --nx 40 80 160 \
        --members 20 40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.filters import make_filter
from danlab.filters.letkf import LETKF, LocalEnKFN


def build(method, n, args):
    if method == "letkf":
        return LETKF(n, args.loc_radius, inflation=args.inflation)
    if method == "local-enkf-n":
        return LocalEnKFN(n, args.loc_radius, xN=args.xN, inflation=args.inflation)
    return make_filter(method, members=n)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", nargs="+", default=["letkf"])
    p.add_argument("--nx", type=int, nargs="+", default=[40])
    p.add_argument("--members", type=int, nargs="+", default=[20])
    p.add_argument("--loc-radius", type=float, default=9.0)
    p.add_argument("--inflation", type=float, default=1.0)
    p.add_argument("--xN", type=float, default=1.0)
    p.add_argument("--dt", type=float, default=0.05)
    p.add_argument("--inner-dt", type=float, default=0.05)
    p.add_argument("--trajectories", type=int, default=16)
    p.add_argument("--cycles", type=int, default=1500)
    p.add_argument("--spinup", type=int, default=500)
    p.add_argument("--seed", type=int, default=1_000_003)
    p.add_argument("--rows", default=None,
                   help="run only trajectories a:b of the twin (to split a long run)")
    p.add_argument("--out", default="letkf_table.jsonl")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = Lorenz96(8.0, args.inner_dt)
    for nx in args.nx:
        t0 = time.perf_counter()
        twin = make_twin(model, ObservationConfig("full", 1.0), nx, args.dt, args.trajectories,
                         args.cycles, args.seed)
        t_twin = time.perf_counter() - t0
        if args.rows:
            a, b = (int(v) for v in args.rows.split(":"))
            twin = dataclasses.replace(twin, truth=twin.truth[:, a:b], y=twin.y[:, a:b],
                                       mask=twin.mask[:, a:b], x0=twin.x0[a:b])
        for method in args.method:
            for n in args.members:
                local = method in ("letkf", "local-enkf-n")
                res = run_filter(build(method, n, args), twin, model, spinup=args.spinup)
                row = dict(method=method, nx=nx, members=n, rmse=res.rmse,
                           diverged=res.n_diverged, seconds=round(res.seconds, 1),
                           ms_per_cycle=round(1e3 * res.seconds / args.cycles, 2),
                           twin_seconds=round(t_twin, 1),
                           loc_radius=args.loc_radius if local else None,
                           inflation=args.inflation if method != "enkf-n" else None,
                           xN=args.xN if method == "local-enkf-n" else None,
                           dt=args.dt, inner_dt=args.inner_dt, rows=args.rows,
                           trajectories=twin.n_trajectories,
                           cycles=args.cycles, spinup=args.spinup, seed=args.seed,
                           rmse_per_trajectory=[round(float(v), 5)
                                                for v in res.rmse_per_trajectory])
                print(json.dumps({k: v for k, v in row.items() if k != "rmse_per_trajectory"}),
                      flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
