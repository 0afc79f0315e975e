"""Training throughput, measured as `danlab train` runs, and one DAN cycle against one EnKF-N
cycle.

    python benchmarks/bench_training.py [--device cpu|cuda] [--steps 30] [--presets cpu,smoke]
                                        [--s-b 32,128] [--autocast] [--layouts 1x2,2x1]
                                        [--run-steps 400]

* per preset: milliseconds per training step (S_b trajectories, N_iter cycles forward and
  backward, the optimiser, the data bookkeeping: danlab.training.Session.step) in this process;
* per layout PxT (P processes of T torch threads each, `danlab train --workers P`): the whole
  run's throughput in trajectory-cycles per second over --run-steps steps of the cpu preset,
  validation included, from a fresh interpreter (the number a user gets);
* microseconds per trajectory-cycle of the forecast and the analysis, DAN vs EnKF-N (N = 40).
Wall-clock numbers: run it on a quiet machine, and say how quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from danlab.config import preset
from danlab.filters import make_filter
from danlab.nets import build_net
from danlab.observations import projected_innovation
from danlab.training import Group, Session
from danlab.twin import TwinSpec


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn, repeats, device, warmup=3):
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - t) / repeats


def step_cost(name, device, steps, autocast=False, **overrides):
    cfg = preset(name, autocast=autocast, time_budget=0.0, max_steps=10**6, **overrides)
    with tempfile.TemporaryDirectory() as d:
        s = Session(cfg, Path(d), device, lambda *a: None, Group()).start(False)

        def step():  # a new batch order at each epoch's end, without its validation
            s.step(0.0)
            if s.end_of_epoch():
                s.counters.pos = 0
                s.data.new_epoch()

        sec = seconds_per_call(step, steps, device)
    params = sum(p.numel() for p in s.net.parameters())
    return dict(preset=name, filters=cfg.filters, blocks=cfg.blocks, params=params, s_b=cfg.s_b,
                n_iter=cfg.n_iter, step_ms=1e3 * sec, throughput=cfg.s_b * cfg.n_iter / sec)


def run_throughput(processes, threads, steps, autocast=False, extra=()):
    """Trajectory-cycles/s of a whole `danlab train` run (fresh interpreter)."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "danlab", "train", "--preset", "cpu", "--max-steps",
               str(steps), "--time-budget", "0", "--workers", str(processes), "--out",
               f"{d}/run", "--device", "cpu", "--json", "--no-progress",
               "--autocast", "true" if autocast else "false", *extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if processes > 1:
            env["OMP_NUM_THREADS"] = str(threads)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["throughput"], r["seconds"]


def cycle_costs(device, batch, members, repeats):
    """Seconds per trajectory-cycle of forecast and analysis: DAN (cpu net) vs EnKF-N."""
    cfg = preset("cpu")
    model, twin = TwinSpec(trajectories=batch, cycles=2, spinup=1).build(device=device)
    x = twin.truth[1].float()
    net = build_net(cfg).to(device).eval()
    ens = twin.truth[1].unsqueeze(1) + torch.randn(batch, members, 40, dtype=torch.float64,
                                                   device=device)
    y, mask = twin.y[0], twin.mask[0]
    enkf = make_filter("enkf-n", members=members)

    def timeit(fn):
        return seconds_per_call(fn, repeats, device) / batch

    with torch.no_grad():
        return dict(
            dan_forecast=timeit(lambda: model.forecast(x, cfg.twin.dt)),
            dan_analysis=timeit(lambda: x + net(x, projected_innovation(y.float(), mask, x,
                                                                         1.0))),
            enkf_forecast=timeit(lambda: model.forecast(ens, cfg.twin.dt)),
            enkf_analysis=timeit(lambda: enkf.analysis(ens, y, mask, 1.0)),
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--presets", default="smoke,cpu")
    p.add_argument("--s-b", default="", help="comma-separated S_b for the per-step rows "
                                             "(default: each preset's)")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast, as train --autocast")
    p.add_argument("--layouts", default="1x2,2x1,1x1",
                   help="PxT: P processes (--workers) of T threads each; '' to skip")
    p.add_argument("--run-steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64, help="trajectories for the cycle costs")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, cores {os.cpu_count()}, "
          f"threads {torch.get_num_threads()}, autocast {args.autocast}, "
          f"load {os.getloadavg()[0]:.2f}")
    print("\n| preset | N_f x blocks | params | S_b | N_iter | ms/step | traj-cycles/s |")
    print("|---|---|---|---|---|---|---|")
    batches = [dict(s_b=int(b)) for b in args.s_b.split(",") if b] or [{}]
    for name in filter(None, args.presets.split(",")):
        for batch in batches:
            r = step_cost(name, device, args.steps, args.autocast, **batch)
            print(f"| {r['preset']} | {r['filters']} x {r['blocks']} | {r['params']} | "
                  f"{r['s_b']} | {r['n_iter']} | {r['step_ms']:.1f} | {r['throughput']:.0f} |")
    if args.layouts and device.type == "cpu":
        print(f"\nWhole `danlab train --preset cpu` runs, {args.run_steps} steps "
              "(validation included):")
        print("| processes x threads | traj-cycles/s | seconds |\n|---|---|---|")
        for layout in args.layouts.split(","):
            procs, threads = (int(v) for v in layout.split("x"))
            tp, sec = run_throughput(procs, threads, args.run_steps, args.autocast)
            print(f"| {procs} x {threads} | {tp:.0f} | {sec:.1f} |")
    c = cycle_costs(device, args.batch, 40, 20)
    print(f"\nOne cycle on {args.batch} trajectories, microseconds per trajectory-cycle:")
    print("| method | forecast | analysis | total |\n|---|---|---|---|")
    for m in ("dan", "enkf"):
        f, a = 1e6 * c[f"{m}_forecast"], 1e6 * c[f"{m}_analysis"]
        print(f"| {'DAN (cpu net)' if m == 'dan' else 'EnKF-N, N=40'} | {f:.1f} | {a:.1f} | "
              f"{f + a:.1f} |")


if __name__ == "__main__":
    main()
