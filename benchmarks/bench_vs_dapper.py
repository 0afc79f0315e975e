"""Time danlab's EnKF-N and IEnKF-N against DAPPER 1.8.1's EnKF_N and iEnKS(Lag=1, xN=1).

Per trajectory-cycle cost, L96 N_x=40, F=8, full observation, sigma=1, N=40 members, dt=0.05 with
DAPPER's RK4 step 0.05, float64, one thread for both (OMP_NUM_THREADS=1). danlab runs a batch of
64 trajectories through `run_filter`; DAPPER runs one trajectory (its unit of work) through
`xp.assimilate`, in a subprocess of a Python >= 3.12 interpreter that has dapper==1.8.1:

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/dapper-venv
    /tmp/dapper-venv/bin/pip install dapper==1.8.1
    OMP_NUM_THREADS=1 python benchmarks/bench_vs_dapper.py \
        --dapper-python /tmp/dapper-venv/bin/python

Both sides run their cycles after a short spin-up; the RMSE of each run is printed as a check
that the timed work is the real filter (not a diverged or trivial one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

DAPPER_SCRIPT = r"""
import json, sys, time
import numpy as np
import dapper as dpr
import dapper.da_methods as da
import dapper.tools.progressbar as pb
pb.disable_progbar = True
from dapper.mods.Lorenz96.sakov2008 import HMM
K = int(sys.argv[1])
HMM.tseq.Ko = K
HMM.tseq.BurnIn = 0.05 * min(100, K // 2)
dpr.set_seed(3000)
xx, yy = HMM.simulate()
out = {}
for name, xp in (("EnKF_N", da.EnKF_N(N=40)),
                 ("iEnKS_lag1_xN1", da.iEnKS("Sqrt", N=40, Lag=1, xN=1))):
    t = time.perf_counter()
    xp.assimilate(HMM, xx, yy)
    sec = time.perf_counter() - t
    xp.stats.average_in_time()
    out[name] = dict(seconds=sec, cycles=K, per_traj_cycle=sec / K,
                     rmse=float(xp.avrgs.err.rms.a.val))
print(json.dumps(out))
"""


def run_dapper(python: str, cycles: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([python, "-c", DAPPER_SCRIPT, str(cycles)], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"DAPPER run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_danlab(trajectories: int, cycles: int, spinup: int) -> dict:
    import torch

    from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
    from danlab.filters import EnKFN, IEnKFN

    torch.set_num_threads(1)
    model = Lorenz96(8.0, inner_dt=0.05)
    twin = make_twin(model, ObservationConfig("full", 1.0), 40, 0.05, trajectories,
                     cycles + spinup, seed=0)
    out = {}
    for name, filt in (("EnKF-N", EnKFN(40)),
                       ("IEnKF-N (tol=0, 10 iterations as DAPPER)", IEnKFN(40, tol=0.0)),
                       ("IEnKF-N (default tol=1e-3)", IEnKFN(40))):
        t = time.perf_counter()
        res = run_filter(filt, twin, model, spinup=spinup)
        sec = time.perf_counter() - t
        n = trajectories * (cycles + spinup)
        out[name] = dict(seconds=sec, trajectory_cycles=n, per_traj_cycle=sec / n,
                         rmse=res.rmse, diverged=res.n_diverged)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dapper-python", default="/tmp/dapper-venv/bin/python")
    p.add_argument("--trajectories", type=int, default=64)
    p.add_argument("--cycles", type=int, default=300, help="danlab cycles after its spin-up")
    p.add_argument("--spinup", type=int, default=100)
    p.add_argument("--dapper-cycles", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    load0 = os.getloadavg()[0]
    dl = run_danlab(args.trajectories, args.cycles, args.spinup)
    dp = run_dapper(args.dapper_python, args.dapper_cycles)
    load1 = os.getloadavg()[0]
    pairs = (("EnKF-N", "EnKF_N"),
             ("IEnKF-N (tol=0, 10 iterations as DAPPER)", "iEnKS_lag1_xN1"),
             ("IEnKF-N (default tol=1e-3)", "iEnKS_lag1_xN1"))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
              f"load average {load0:.1f} -> {load1:.1f}"
    if args.json:
        print(json.dumps({"danlab": dl, "dapper": dp, "machine": machine}))
        return
    print(f"machine: {machine}; python {sys.version.split()[0]}; one thread each\n")
    print("| method | danlab µs / traj-cycle | DAPPER µs / traj-cycle | speed-up | "
          "RMSE danlab | RMSE DAPPER |")
    print("|---|---|---|---|---|---|")
    for a, b in pairs:
        x, y = dl[a], dp[b]
        print(f"| {a} vs {b} | {1e6 * x['per_traj_cycle']:.0f} | {1e6 * y['per_traj_cycle']:.0f} "
              f"| {y['per_traj_cycle'] / x['per_traj_cycle']:.1f}x | {x['rmse']:.3f} "
              f"| {y['rmse']:.3f} |")


if __name__ == "__main__":
    main()
