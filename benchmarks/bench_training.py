"""Training throughput of each preset's network, and one DAN cycle against one EnKF-N cycle.

    python benchmarks/bench_training.py [--device cpu|cuda] [--steps 20] [--max-batch 256]
                                        [--threads N] [--autocast] [--presets cpu,smoke]

Throughput = trajectory-cycles per second, forward + backward through N_iter cycles of the one
cycle engine, as `danlab train` runs them (S_b capped by --max-batch on a CPU). The cycle cost
is split into forecast and analysis on the same batch of trajectories.
"""

from __future__ import annotations

import argparse
import time

import torch

from danlab import Lorenz96, ObservationConfig
from danlab.config import preset
from danlab.cycle import cycle
from danlab.filters import DANFilter, make_filter
from danlab.nets import build_net
from danlab.observations import projected_innovation
from danlab.twin import ObservationStream, attractor_states, make_generator


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn, repeats, device):
    """Mean seconds of fn() over `repeats` calls, after one warm-up call."""
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - t) / repeats


def training_throughput(name, device, steps, max_batch, autocast=False):
    cfg = preset(name)
    s_b = min(cfg.s_b, max_batch)
    model = Lorenz96(cfg.forcing, cfg.inner_dt)
    net = build_net(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    filt = DANFilter(net)
    gen = make_generator(0, device)
    truth = attractor_states(model, s_b, cfg.nx, 0, torch.float32, device, compute_device=device)
    xa = truth + torch.randn(truth.shape, generator=gen, device=device)
    obs = ObservationConfig(cfg.obs, cfg.sigma)

    def step():
        nonlocal xa, truth
        stream = ObservationStream(model, obs, truth, cfg.dt, gen, cfg.n_iter)
        loss = 0.0
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            for x, est in cycle(filt, xa, model, cfg.dt, stream, cfg.sigma):  # noqa: B007
                loss = loss + ((est.float() - stream.truth) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        xa, truth = x.detach(), stream.truth

    sec = seconds_per_call(step, steps, device)
    params = sum(p.numel() for p in net.parameters())
    return dict(preset=name, filters=cfg.filters, blocks=cfg.blocks, params=params, s_b=s_b,
                n_iter=cfg.n_iter, step_ms=1e3 * sec, throughput=s_b * cfg.n_iter / sec)


def cycle_costs(device, batch, members, repeats):
    """Seconds per trajectory-cycle of forecast and analysis: DAN (cpu net) vs EnKF-N."""
    cfg = preset("cpu")
    model = Lorenz96(cfg.forcing, cfg.inner_dt)
    net = build_net(cfg).to(device).eval()
    x = attractor_states(model, batch, 40, 1, torch.float32, device)
    ens = x.unsqueeze(1) + torch.randn(batch, members, 40, device=device)
    y, mask = ObservationConfig().observe(x, make_generator(2, device))
    enkf = make_filter("enkf-n", members=members)

    def timeit(fn):
        return seconds_per_call(fn, repeats, device) / batch

    with torch.no_grad():
        return dict(
            dan_forecast=timeit(lambda: model.forecast(x, cfg.dt)),
            dan_analysis=timeit(lambda: x + net(x, projected_innovation(y, mask, x, 1.0))),
            enkf_forecast=timeit(lambda: model.forecast(ens, cfg.dt)),
            enkf_analysis=timeit(lambda: enkf.analysis(ens, y, mask, 1.0)),
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--batch", type=int, default=64, help="trajectories for the cycle costs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast, as train --autocast")
    p.add_argument("--presets", default="smoke,cpu,casual,boosted")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"autocast {args.autocast}")
    print("\n| preset | N_f x blocks | params | S_b | N_iter | ms/step | traj-cycles/s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.presets.split(","):
        r = training_throughput(name, device, args.steps, args.max_batch, args.autocast)
        print(f"| {r['preset']} | {r['filters']} x {r['blocks']} | {r['params']} | {r['s_b']} | "
              f"{r['n_iter']} | {r['step_ms']:.1f} | {r['throughput']:.0f} |")
    c = cycle_costs(device, args.batch, 40, 20)
    print(f"\nOne cycle on {args.batch} trajectories, microseconds per trajectory-cycle:")
    print("| method | forecast | analysis | total |\n|---|---|---|---|")
    for m in ("dan", "enkf"):
        f, a = 1e6 * c[f"{m}_forecast"], 1e6 * c[f"{m}_analysis"]
        print(f"| {'DAN (cpu net)' if m == 'dan' else 'EnKF-N, N=40'} | {f:.1f} | {a:.1f} | "
              f"{f + a:.1f} |")


if __name__ == "__main__":
    main()
