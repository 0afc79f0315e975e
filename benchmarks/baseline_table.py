"""Baseline RMSE table of issue 2 (L96, F=8, sigma=1): EnKF-N and IEnKF-N (N=40) at several dt and
both inner steps, tuned 3D-Var, and every baseline on the sparse configurations and N_x=80.

Each finished run is appended to a JSON-lines file (--out), and skipped when the script is run
again, so a long measurement can be resumed or split over processes (--part). Examples:

    OMP_NUM_THREADS=1 python benchmarks/baseline_table.py --part dt --inner-dt 0.05
    OMP_NUM_THREADS=1 python benchmarks/baseline_table.py --part dt --inner-dt 0.01
    OMP_NUM_THREADS=1 python benchmarks/baseline_table.py --part 3dvar
    OMP_NUM_THREADS=1 python benchmarks/baseline_table.py --part sparse
    python benchmarks/baseline_table.py --table      # print the markdown table from --out
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.filters import make_filter, tune_3dvar

DAPPER = {  # DESIGN.md, DAPPER 1.8.1, inner step 0.05
    ("enkf-n", 0.05): 0.185, ("enkf-n", 0.3): 0.485, ("enkf-n", 0.5): 0.709,
    ("ienkf-n", 0.05): 0.180, ("ienkf-n", 0.3): 0.364, ("ienkf-n", 0.5): 0.422,
    ("3dvar", 0.05): 0.409,
}


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def key(r):
    return (r["method"], json.dumps(r["options"], sort_keys=True), r["obs"], r["nx"], r["dt"],
            r["inner_dt"], r["trajectories"], r["cycles"], r["spinup"])


def run_one(args, method, options, obs="full", nx=40, dt=0.05, inner_dt=0.05, cycles=None):
    cycles = cycles or args.cycles
    rec = dict(method=method, options=options, obs=obs, nx=nx, dt=dt, inner_dt=inner_dt,
               trajectories=args.trajectories, cycles=cycles, spinup=args.spinup)
    done = {key(r): r for r in load(args.out)}
    if key(rec) in done:
        return done[key(rec)]
    model = Lorenz96(8.0, inner_dt=inner_dt)
    twin = make_twin(model, ObservationConfig(obs, 1.0), nx, dt, args.trajectories,
                     cycles + args.spinup, seed=args.seed)
    opts = dict(options)
    if method == "3dvar":
        opts.setdefault("nx", nx)
    filt = make_filter(method, 40, **opts)
    t0 = time.perf_counter()
    res = run_filter(filt, twin, model, spinup=args.spinup, seed=args.seed)
    per = res.rmse_per_trajectory
    spread = (float(torch.nanmean((per - res.rmse) ** 2) ** 0.5) if math.isfinite(res.rmse)
              else math.nan)
    rec.update(rmse=res.rmse, rmse_std=spread,
               diverged=res.n_diverged, seconds=time.perf_counter() - t0,
               load=os.getloadavg()[0])
    with open(args.out, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)
    return rec


def tuned_scale(args, obs="full", nx=40):
    """The B scale tuned on a separate twin (seed + 1); full obs: 8 x 1500 cycles, the sparse
    configurations and N_x=80: 4 x 600 cycles."""
    suffix = "" if (obs, nx) == ("full", 40) else f".{obs}.{nx}"
    path = args.out + f".3dvar-tuning{suffix}.json"
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)["best"]
    size = dict(n_trajectories=8, n_cycles=1500, spinup=300) if not suffix else \
        dict(n_trajectories=4, n_cycles=600, spinup=200)
    best, table = tune_3dvar(Lorenz96(8.0, inner_dt=0.05), nx=nx, dt=0.05,
                             obs=ObservationConfig(obs, 1.0), seed=args.seed + 1, **size)
    with open(path, "w") as fh:
        json.dump({"best": best, "table": table}, fh)
    print(f"3D-Var tuning {obs} N_x={nx} (scale, RMSE):", table, "best", best, flush=True)
    return best


def table(args):
    rows = load(args.out)
    print("| method | obs | N_x | dt | inner_dt | traj x cycles | RMSE | ± (traj std) | DAPPER "
          "| diverged | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        opt = ",".join(f"{k}={v}" for k, v in r["options"].items() if k != "nx")
        name = r["method"] + (f" ({opt})" if opt else "")
        ref = DAPPER.get((r["method"], r["dt"])) if (r["obs"] == "full" and r["nx"] == 40
                                                     and not opt.startswith("dirac")) else None
        ref = "" if ref is None or r["method"] == "3dvar" and "scale" not in r["options"] else ref
        print(f"| {name} | {r['obs']} | {r['nx']} | {r['dt']} | {r['inner_dt']} | "
              f"{r['trajectories']}x{r['cycles']} | {r['rmse']:.4f} | {r['rmse_std']:.4f} | "
              f"{ref} | {r['diverged']} | {r['seconds']:.0f} |")
    import glob

    for path in sorted(glob.glob(args.out + ".3dvar-tuning*.json")):
        with open(path) as fh:
            tun = json.load(fh)
        what = path.split(".3dvar-tuning")[1][:-len(".json")].strip(".") or "full.40"
        print(f"\n3D-Var scale tuning ({what}, dt=0.05): "
              + ", ".join(f"{s:g}: {v:.3f}" for s, v in tun["table"]) + f"; best {tun['best']:g}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("dt", "3dvar", "sparse", "sparse-3dvar", "all"),
                   default="all")
    p.add_argument("--inner-dt", type=float, default=None, help="only this inner step (part dt)")
    p.add_argument("--dts", type=float, nargs="+", default=[0.05, 0.3, 0.5])
    p.add_argument("--trajectories", type=int, default=8)
    p.add_argument("--cycles", type=int, default=5000)
    p.add_argument("--sparse-cycles", type=int, default=2000)
    p.add_argument("--spinup", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/baseline_results.jsonl")
    p.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.table:
        return table(args)
    inner = [args.inner_dt] if args.inner_dt else [0.05, 0.01]
    if args.part in ("dt", "all"):
        for idt in inner:
            for dt in args.dts:
                for method in ("enkf-n", "ienkf-n"):
                    run_one(args, method, {}, dt=dt, inner_dt=idt)
        run_one(args, "enkf-n", {"dirac": True}, dt=0.05, inner_dt=inner[0])
    if args.part in ("3dvar", "all"):
        scale = tuned_scale(args)
        run_one(args, "3dvar", {"scale": scale}, dt=0.05, inner_dt=0.05)
        run_one(args, "etkf", {"inflation": 1.01}, dt=0.05, inner_dt=0.05)
        run_one(args, "obs-only", {}, dt=0.05, inner_dt=0.05)
    if args.part in ("sparse", "all"):
        scale = tuned_scale(args)
        for obs, nx in (("alternate", 40), ("random", 40), ("random-half", 40), ("full", 80)):
            for method, opts in (("enkf-n", {}), ("ienkf-n", {}), ("3dvar", {"scale": scale}),
                                 ("etkf", {"inflation": 1.01}), ("obs-only", {}), ("free", {})):
                run_one(args, method, opts, obs=obs, nx=nx, dt=0.05, inner_dt=0.05,
                        cycles=args.sparse_cycles)
    if args.part in ("sparse-3dvar", "all"):  # the B scale re-tuned for each configuration
        for obs, nx in (("alternate", 40), ("random", 40), ("random-half", 40), ("full", 80)):
            run_one(args, "3dvar", {"scale": tuned_scale(args, obs, nx)}, obs=obs, nx=nx,
                    dt=0.05, inner_dt=0.05, cycles=args.sparse_cycles)


if __name__ == "__main__":
    main()
