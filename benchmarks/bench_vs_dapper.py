"""Time danlab's EnKF-N and IEnKF-N against DAPPER 1.8.1's EnKF_N and iEnKS(Lag=1, xN=1).

Cost per trajectory-cycle, L96 N_x = 40, F = 8, full observation, sigma = 1, N = 40 members,
dt = 0.05 with DAPPER's RK4 step 0.05, one thread on each side (OMP_NUM_THREADS=1 and
torch.set_num_threads(1)).

* DAPPER runs one trajectory (its unit of work) through ``xp.assimilate`` with
  ``dpr.rc.comps.error_only = True`` (its cheapest statistics) in a subprocess of a Python >= 3.12
  interpreter that has dapper==1.8.1;
* danlab runs a batch of B trajectories through the cycle engine (`run_filter`, which also scores
  every cycle), in float64 and/or float32.

Start-up (imports, twin generation, JIT warm-up, allocations) is removed by differencing: each
side runs a short and a long experiment in the same process and the cost is
(t_long - t_short) / (extra cycles x trajectories). Times are CPU times of the process
(``time.process_time``: robust on a shared machine, where wall time also counts the waits for
a core; with one thread both are the same on a quiet machine), best of --repeats.

    ~/.pyenv/versions/3.12*/bin/python -m venv /tmp/dapper
    /tmp/dapper/bin/pip install dapper==1.8.1
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_vs_dapper.py \
        --dapper-python /tmp/dapper/bin/python

The RMSE of each run is printed as a check that the timed work is the real filter (not a diverged
or trivial one).
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
dpr.rc.comps.error_only = True
dpr.rc.liveplotting = False
from dapper.mods.Lorenz96.sakov2008 import HMM
short, long, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
methods = sys.argv[4].split(",")
make = {"EnKF_N": lambda: da.EnKF_N(N=40),
        "iEnKS_lag1_xN1": lambda: da.iEnKS("Sqrt", N=40, Lag=1, xN=1)}

def run(name, K):
    hmm = HMM.copy()
    hmm.tseq.Ko = K
    hmm.tseq.BurnIn = 0.05 * min(100, K // 2)
    dpr.set_seed(3000)
    xx, yy = hmm.simulate()
    xp = make[name]()
    t = time.process_time()
    xp.assimilate(hmm, xx, yy)
    sec = time.process_time() - t
    xp.stats.average_in_time()
    return sec, float(xp.avrgs.err.rms.a.val)

out = {}
for name in methods:
    best = None
    for _ in range(repeats):
        (s0, _), (s1, rmse) = run(name, short), run(name, long)
        per = (s1 - s0) / (long - short)
        best = per if best is None else min(best, per)
    out[name] = dict(per_traj_cycle=best, rmse=rmse, cycles=[short, long])
print(json.dumps(out))
"""

PAIRS = {"enkf-n": "EnKF_N", "ienkf-n-tol0": "iEnKS_lag1_xN1", "ienkf-n": "iEnKS_lag1_xN1"}
LABELS = {"enkf-n": "EnKF-N vs EnKF_N(N=40)",
          "ienkf-n-tol0": "IEnKF-N (tol=0: 10 iterations, DAPPER's work) vs iEnKS(Lag=1, xN=1)",
          "ienkf-n": "IEnKF-N (default tol=1e-3: 2-3 iterations) vs iEnKS(Lag=1, xN=1)"}


def run_dapper(python: str, short: int, long: int, repeats: int, methods: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg")
    proc = subprocess.run([python, "-c", DAPPER_SCRIPT, str(short), str(long), str(repeats),
                           ",".join(methods)], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"DAPPER run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def l96_compiled() -> bool:
    import danlab.dynamics.lorenz96 as l96

    return l96.COMPILE


def run_danlab(method: str, trajectories: int, short: int, long: int, dtype: str,
               repeats: int) -> dict:
    import torch

    from danlab import make_filter, run_filter
    from danlab.twin import TwinSpec

    torch.set_num_threads(1)
    opts = dict(tol=0.0) if method == "ienkf-n-tol0" else {}
    name = method.replace("-tol0", "")

    def one(cycles: int):
        spec = TwinSpec(dt=0.05, inner_dt=0.05, trajectories=trajectories, cycles=cycles,
                        spinup=min(100, cycles // 2), seed=1_000_003)
        model, twin = spec.build(dtype=getattr(torch, dtype))
        filt = make_filter(name, members=40, **opts)
        t = time.process_time()
        res = run_filter(filt, twin, model)
        return time.process_time() - t, res

    if l96_compiled():
        one(short)  # compiles: else the first short run pays it and the difference is too small
    best = None
    for _ in range(repeats):
        (s0, _), (s1, res) = one(short), one(long)
        per = (s1 - s0) / ((long - short) * trajectories)
        best = per if best is None else min(best, per)
    return dict(per_traj_cycle=best, rmse=res.rmse, diverged=res.n_diverged,
                trajectories=trajectories, cycles=[short, long], dtype=dtype)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dapper-python", default="/tmp/dapper/bin/python")
    p.add_argument("--methods", default="enkf-n,ienkf-n-tol0,ienkf-n")
    p.add_argument("--trajectories", type=int, default=64, help="danlab batch")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--cycles", default="100,400", help="danlab short,long cycles")
    p.add_argument("--dapper-cycles", default="100,400", help="DAPPER short,long cycles")
    p.add_argument("--repeats", type=int, default=2, help="best of this many differences")
    p.add_argument("--no-dapper", action="store_true", help="danlab only")
    p.add_argument("--compile", action="store_true",
                   help="danlab's L96 integration through torch.compile (as DANLAB_COMPILE=1; "
                        "compiled by an untimed run first)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    methods = args.methods.split(",")
    short, long = (int(x) for x in args.cycles.split(","))
    dshort, dlong = (int(x) for x in args.dapper_cycles.split(","))
    if args.compile:
        import danlab.dynamics.lorenz96 as l96

        l96.COMPILE = True
    load0 = os.getloadavg()[0]
    dl = {(m, dt): run_danlab(m, args.trajectories, short, long, dt, args.repeats)
          for m in methods for dt in args.dtypes.split(",")}
    dp = ({} if args.no_dapper else
          run_dapper(args.dapper_python, dshort, dlong, args.repeats,
                     sorted({PAIRS[m] for m in methods})))
    load1 = os.getloadavg()[0]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"load average {load0:.1f} -> {load1:.1f}")
    if args.json:
        print(json.dumps({"danlab": {f"{m} {dt}": v for (m, dt), v in dl.items()},
                          "dapper": dp, "machine": machine}))
        return
    print(f"machine: {machine}; python {sys.version.split()[0]}; one thread each; "
          f"danlab batch {args.trajectories}{', compiled L96' if args.compile else ''}\n")
    print("| method | dtype | danlab µs / traj-cycle | DAPPER µs / traj-cycle | speed-up | "
          "RMSE danlab | RMSE DAPPER |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (m, dt), x in dl.items():
        y = dp.get(PAIRS[m])
        ref = (f"{1e6 * y['per_traj_cycle']:.0f} | {y['per_traj_cycle'] / x['per_traj_cycle']:.1f}x"
               if y else "- | -")
        print(f"| {LABELS[m]} | {dt} | {1e6 * x['per_traj_cycle']:.1f} | {ref} "
              f"| {x['rmse']:.3f} | {y['rmse'] if y else float('nan'):.3f} |")


if __name__ == "__main__":
    main()
