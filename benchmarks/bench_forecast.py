"""The L96 forecast eager against DANLAB_COMPILE's compiled RK4 step (same bits), process CPU
time per RK4 step and state, one thread: a baseline ensemble batch without gradient and a DAN
training batch forward + backward.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_forecast.py

Process time is used so that a loaded machine disturbs the comparison less; eager and compiled
alternate, best of `--repeats`.
"""

from __future__ import annotations

import argparse
import time

import torch

import danlab.dynamics.lorenz96 as l96

CASES = {  # name: (shape, dt, with gradient)
    "ensembles 64 x 40 members, dt 0.05": ((64, 40, 40), 0.05, False),
    "ensembles 1024 x 40 members, dt 0.05": ((1024, 40, 40), 0.05, False),
    "training batch 32, dt 0.05, fwd + bwd": ((32, 40), 0.05, True),
    "training batch 32, dt 1.0, fwd + bwd": ((32, 40), 1.0, True),
}


def timed(model, x, dt, grad, calls):
    t = time.process_time()
    for _ in range(calls):
        if grad:
            xg = x.detach().requires_grad_(True)
            model.forecast(xg, dt).sum().backward()
        else:
            with torch.no_grad():
                model.forecast(x, dt)
    return time.process_time() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    torch.set_num_threads(1)
    model = l96.Lorenz96(8.0, 0.01)
    print("| case | eager (µs per RK4 step and state) | compiled | speed-up |")
    print("|---|---:|---:|---:|")
    for name, (shape, dt, grad) in CASES.items():
        x = 8 + torch.randn(*shape, dtype=getattr(torch, a.dtype))
        steps = round(dt / model.inner_dt)
        calls = max(2, int(2e7 / (x.numel() * steps)))
        per = {}
        for compiled in (True, False):  # warm-up: compile, caches
            l96.COMPILE = compiled
            timed(model, x, dt, grad, 1)
        for _ in range(a.repeats):
            for compiled in (False, True):
                l96.COMPILE = compiled
                s = timed(model, x, dt, grad, calls)
                per[compiled] = min(per.get(compiled, 1e9), s)
        n_states = x.numel() // shape[-1]
        us = {k: 1e6 * v / (calls * steps * n_states) for k, v in per.items()}
        print(f"| {name} | {us[False]:.3f} | {us[True]:.3f} | {us[False] / us[True]:.2f}× |")


if __name__ == "__main__":
    main()
