"""Dirac-Jeffreys EnKF-N vs forcing F (paper Sect. 4.2, Fig. 5 baselines; docs/dirac_jeffreys.md).

L96, N_x = 40, N = 40, dt = 0.05, full observation, sigma = 1; the `danlab baseline` protocol:
16 trajectories x 1,500 cycles, RMSE over the cycles after a 500-cycle spin-up, test seed
1000003, inner RK4 step 0.01, filter seed 0 (the same numbers as e.g.
`danlab baseline --method enkf-n --forcing 6 --dirac --trajectories 16 --json`).

Methods per F: the Dirac-Jeffreys EnKF-N (`--dirac`), the Jeffreys EnKF-N (danlab's default =
DAPPER 1.8.1's EnKF_N), an ETKF whose multiplicative inflation is scanned (the best is "tuned"),
the Dirac-Jeffreys IEnKF-N, and, as diagnostics, the two hyperpriors without mode correction
(Dirac-Jeffreys, and Jeffreys with the N+1 log coefficient, g = 1). Each finished run is appended
to a JSON-lines file (--out) and skipped when the script is run again, so the measurement can be
resumed or split over processes (--forcings / --methods). Examples:

    OMP_NUM_THREADS=1 python benchmarks/dirac_forcing_table.py --forcings 4 5 6 7
    OMP_NUM_THREADS=1 python benchmarks/dirac_forcing_table.py --forcings 8 10 12
    python benchmarks/dirac_forcing_table.py --table --md docs/dirac_forcing_table.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
from danlab.filters import ETKF, EnKFN, IEnKFN

METHODS = {  # name -> filter factory (N members)
    "enkf-n-dirac": lambda n: EnKFN(n, dirac=True),
    "enkf-n": lambda n: EnKFN(n),
    "ienkf-n-dirac": lambda n: IEnKFN(n, dirac=True),
    "enkf-n-dirac-raw": lambda n: EnKFN(n, dirac=True, mode_correction=False),
    "enkf-n-g1-raw": lambda n: EnKFN(n, g=1.0, mode_correction=False),
}
INFLATIONS = (0.998, 1.0, 1.005, 1.01, 1.015, 1.02, 1.03)


class _Recorder:
    """Wraps a filter to average its EnKF-N inflation l1 over the cycles after the spin-up."""

    def __init__(self, filt, spinup: int):
        self.filt, self.spinup, self.k, self.l1 = filt, spinup, 0, []
        self.name = getattr(filt, "name", "filter")

    def init(self, x0, gen):
        return self.filt.init(x0, gen)

    def forecast(self, state, model, dt):
        return self.filt.forecast(state, model, dt)

    def analysis(self, state, y, mask, sigma):
        out = self.filt.analysis(state, y, mask, sigma)
        self.k += 1
        l1 = getattr(self.filt, "last_inflation", None)
        if l1 is not None and self.k > self.spinup:
            self.l1.append(float(l1.mean()))
        return out

    def estimate(self, state):
        return self.filt.estimate(state)


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def key(r):
    return (r["method"], r.get("inflation"), r["forcing"], r["trajectories"], r["cycles"],
            r["spinup"], r["seed"])


def run_one(args, method, forcing, inflation=None):
    rec = dict(method=method, inflation=inflation, forcing=forcing, trajectories=args.trajectories,
               cycles=args.cycles, spinup=args.spinup, seed=args.seed)
    done = {key(r): r for r in load(args.out)}
    if key(rec) in done:
        return done[key(rec)]
    model = Lorenz96(forcing, inner_dt=0.01)
    twin = make_twin(model, ObservationConfig("full", 1.0), 40, 0.05, args.trajectories,
                     args.cycles, seed=args.seed)
    filt = ETKF(40, inflation=inflation) if method == "etkf" else METHODS[method](40)
    rec_filt = _Recorder(filt, args.spinup)
    t0 = time.perf_counter()
    res = run_filter(rec_filt, twin, model, spinup=args.spinup)
    per = [float(v) for v in res.rmse_per_trajectory]
    ok = [v for v in per if math.isfinite(v)]
    truth = twin.truth[1:]
    rec.update(rmse=res.rmse, rmse_std=(float(torch.tensor(ok).std()) if len(ok) > 1 else 0.0),
               rmse_max=max(ok) if ok else math.nan, rmse_per_trajectory=per,
               diverged=res.n_diverged, clim_std=float(truth.std()),
               l1=(sum(rec_filt.l1) / len(rec_filt.l1)) if rec_filt.l1 else None,
               seconds=time.perf_counter() - t0, load=os.getloadavg()[0])
    with open(args.out, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(json.dumps({k: v for k, v in rec.items() if k != "rmse_per_trajectory"}), flush=True)
    return rec


def _cell(r):
    if r is None:
        return "—"
    return f"{r['rmse']:.4f} ± {r['rmse_std']:.4f} (max {r['rmse_max']:.3f}, {r['diverged']} div)"


def table(args) -> str:
    rows = load(args.out)
    by = {(r["method"], r.get("inflation"), r["forcing"]): r for r in rows}
    forcings = sorted({r["forcing"] for r in rows})
    out = ["| F | clim. std | Dirac-Jeffreys EnKF-N | Jeffreys EnKF-N | tuned ETKF (inflation) "
           "| IEnKF-N Dirac-Jeffreys | DJ / ETKF |",
           "|---|---|---|---|---|---|---|"]
    diag = ["| F | DJ EnKF-N | Jeffreys EnKF-N | DJ, no mode corr. | Jeffreys g=1, no mode corr. "
            "| ETKF scan (inflation: RMSE) |",
            "|---|---|---|---|---|---|"]
    for f in forcings:
        scan = sorted((r for (m, _, ff), r in by.items() if m == "etkf" and ff == f),
                      key=lambda r: r["inflation"])
        fin = [r for r in scan if r["diverged"] == 0 and math.isfinite(r["rmse"])]
        best = min(fin, key=lambda r: r["rmse"]) if fin else None
        dj = by.get(("enkf-n-dirac", None, f))
        clim = next(iter(r["clim_std"] for (_, _, ff), r in by.items() if ff == f), math.nan)
        ratio = f"{dj['rmse'] / best['rmse']:.3f}" if dj and best else "—"
        etkf = f"{_cell(best)} ({best['inflation']})" if best else "—"
        out.append(f"| {f:g} | {clim:.2f} | {_cell(dj)} | {_cell(by.get(('enkf-n', None, f)))} "
                   f"| {etkf} | {_cell(by.get(('ienkf-n-dirac', None, f)))} | {ratio} |")

        def short(m, f=f):
            r = by.get((m, None, f))
            if r is None:
                return "—"
            l1 = f", l1 {r['l1']:.4f}" if r.get("l1") is not None else ""
            return f"{r['rmse']:.4f} (max {r['rmse_max']:.3f}{l1})"

        scan_s = ", ".join(f"{r['inflation']}: {r['rmse']:.4f}" for r in scan)
        diag.append(f"| {f:g} | {short('enkf-n-dirac')} | {short('enkf-n')} "
                    f"| {short('enkf-n-dirac-raw')} | {short('enkf-n-g1-raw')} | {scan_s} |")
    head = (f"{rows[0]['trajectories']} trajectories x {rows[0]['cycles']} cycles, spin-up "
            f"{rows[0]['spinup']}, seed {rows[0]['seed']}; RMSE ± std over trajectories "
            "(max = worst trajectory; div = flagged diverged)." if rows else "")
    return "\n".join([head, "", *out, "", "Inflation l1 (mean over test cycles and trajectories) "
                      "and the ETKF scan:", "", *diag, ""])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--forcings", type=float, nargs="+", default=[4, 5, 6, 7, 8, 10, 12])
    p.add_argument("--methods", nargs="+", default=[*METHODS, "etkf"],
                   choices=[*METHODS, "etkf"])
    p.add_argument("--inflations", type=float, nargs="+", default=list(INFLATIONS))
    p.add_argument("--trajectories", type=int, default=16)
    p.add_argument("--cycles", type=int, default=1500)
    p.add_argument("--spinup", type=int, default=500)
    p.add_argument("--seed", type=int, default=1_000_003)
    p.add_argument("--out", default="benchmarks/dirac_forcing_results.jsonl")
    p.add_argument("--table", action="store_true", help="only print the table of --out")
    p.add_argument("--md", default=None, help="also write the table to this markdown file")
    args = p.parse_args()
    if not args.table:
        for f in args.forcings:
            for m in args.methods:
                if m == "etkf":
                    for infl in args.inflations:
                        run_one(args, m, f, infl)
                else:
                    run_one(args, m, f)
    text = table(args)
    print(text)
    if args.md:
        with open(args.md, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
