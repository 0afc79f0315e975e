"""Time and peak memory of Omega_r (fast path, one translation per state) from 1,000 states,
autodiff vs composite, for a cpu-preset-sized CNN (ResidualCNN(filters=32, kernel=5,
blocks=4), float32, random weights with a non-zero head).

Each (N_x, method) runs in its own process so that its peak RSS (resource.getrusage) is its
own. A configuration whose projected time exceeds --budget seconds is timed on the states
processed within the budget and extrapolated linearly to --states (marked "extrapolated").

    OMP_NUM_THREADS=1 python benchmarks/bench_diagnostics.py --budget 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def one(nx: int, method: str, states: int, budget: float, n_samples: int) -> dict:
    import torch

    from danlab.diagnostics import mean_marginal_gain
    from danlab.nets.cnn import ResidualCNN

    torch.manual_seed(0)
    net = ResidualCNN(32, 5, 4)
    torch.nn.init.normal_(net.head[1].weight, std=0.1)
    net.eval()
    g = torch.Generator().manual_seed(0)
    xs = 2.35 + 3.63 * torch.randn(states, nx, generator=g)
    kw = {"n_samples": n_samples, "antithetic": True} if method == "composite" else {}
    mean_marginal_gain(net, xs[:1], method=method, **kw)  # warm-up: torch.func set-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # per-call batch: a few states (the function streams over them in any case)
    step = max(1, min(states, 64 // max(1, nx // 40)))
    done, start = 0, time.perf_counter()
    while done < states:
        n = min(step, states - done)
        mean_marginal_gain(net, xs[done:done + n], method=method, **kw)
        done += n
        if time.perf_counter() - start > budget and done < states:
            break
    elapsed = time.perf_counter() - start
    return {"nx": nx, "method": method, "n_samples": n_samples if method == "composite" else None,
            "states_timed": done, "seconds_timed": elapsed,
            "seconds_for_states": elapsed * states / done, "extrapolated": done < states,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mib": rss0 / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="40,80,160,320,640")
    ap.add_argument("--methods", default="composite,autodiff")
    ap.add_argument("--states", type=int, default=1000)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per configuration")
    ap.add_argument("--samples", type=int, default=32, help="N_p of the composite route")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="JSON lines file for the results")
    args = ap.parse_args()
    if args.one:
        nx, method = args.one.split(":")
        print(json.dumps(one(int(nx), method, args.states, args.budget, args.samples)))
        return
    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print("| N_x | method | N_p | states timed | time for 1,000 states (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for nx in (int(v) for v in args.sizes.split(",")):
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--one", f"{nx}:{method}", "--states",
                   str(args.states), "--budget", str(args.budget), "--samples", str(args.samples)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1])
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(res) + "\n")
            t = f"{res['seconds_for_states']:.0f}" + (" (extrapolated)" if res["extrapolated"]
                                                       else "")
            print(f"| {nx} | {method} | {res['n_samples'] or '-'} | {res['states_timed']} | {t} "
                  f"| {res['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
