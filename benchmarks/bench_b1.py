"""Cost of Eq. B1, P^a zeta = sum_l X_l o (rho (X_l o zeta)), against N_x: it grows linearly.

    OMP_NUM_THREADS=1 python benchmarks/bench_b1.py [--cols 8] [--radius 4] [--batch 32] [--json]

For each N_x it times the localised product (Eq. B1, rho a periodic Gaspari-Cohn circular
convolution), the low-rank product X (X^T zeta), and, up to N_x = 640, the dense
(rho o X X^T) zeta it replaces, and reports microseconds per call and per site.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from danlab.nets.linear_zeta import dense_covariance, localized_product, low_rank_product

SIZES = (40, 80, 160, 320, 640, 1280, 2560)


def timeit(fn, repeats: int = 7, min_time: float = 0.05) -> float:
    """Seconds per call: the best of `repeats` timings (robust to a loaded machine)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time and n >= 3:
                break
        best = min(best, elapsed / n)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--radius", type=float, default=4.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dense-max", type=int, default=640)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for nx in SIZES:
            x = torch.randn(a.batch, a.cols, nx)
            z = torch.randn(a.batch, nx)
            b1 = lambda x=x, z=z: localized_product(x, z, a.radius)  # noqa: E731
            low = lambda x=x, z=z: low_rank_product(x, z)  # noqa: E731
            dense = lambda x=x, z=z: (dense_covariance(x, a.radius) @ z[..., None])  # noqa: E731
            row = dict(nx=nx, b1_us=1e6 * timeit(b1), lowrank_us=1e6 * timeit(low))
            if nx <= a.dense_max:
                row["dense_us"] = 1e6 * timeit(dense)
            row["b1_ns_per_site"] = 1e3 * row["b1_us"] / (a.batch * nx)
            rows.append(row)
    if a.json:
        print(json.dumps(dict(cols=a.cols, radius=a.radius, batch=a.batch, rows=rows)))
        return 0
    print(f"Eq. B1, batch {a.batch}, n_cols {a.cols}, GC radius {a.radius}, "
          f"{torch.get_num_threads()} thread(s), float32")
    print(f"{'N_x':>6} {'B1 us':>10} {'ns/site':>8} {'low-rank us':>12} {'dense us':>10}")
    for r in rows:
        dense = f"{r['dense_us']:10.0f}" if "dense_us" in r else f"{'-':>10}"
        print(f"{r['nx']:6d} {r['b1_us']:10.0f} {r['b1_ns_per_site']:8.1f} "
              f"{r['lowrank_us']:12.0f} {dense}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
