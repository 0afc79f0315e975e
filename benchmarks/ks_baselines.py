"""KS baselines on DAPPER's protocol (dapper/mods/KS/bocquet2019.py), next to its expected RMSEs.

The twin is danlab's KS test twin (N_x = 128, L = 32 pi, ETDRK4 step 0.5, full observation
every dt = 1.0, sigma = 1, seed 1000003); what differs from `danlab baseline` is the start:

* protocol "dapper" (default): DAPPER draws the truth and every member from N(x0, 0.001 I), so a
  filter starts ~0.03 from the truth with a spread of ~0.03. Here the first guess is truth[0] +
  0.0316 noise (its own random stream) and the ensemble spread at the start is 0.0316.
* protocol "danlab": danlab's test set as it is (first guess truth[0] + sigma noise, spread 1),
  i.e. what benchmarks/sweeps/ks_baselines.toml runs.

Methods (labels as in the table; DAPPER's names in docs/ks_results.md):

  etkf-20          danlab's ETKF, N = 20, post-analysis inflation 1.03 (no rotation)
  etkf-rot-20      the same plus a random mean-preserving rotation of the analysis anomalies at
                   every cycle (what DAPPER's EnKF('Sqrt', ..., rot=True) adds); defined here,
                   not in danlab, to show what the rotation is worth on KS
  enkf-n-20/40     EnKF-N (DAPPER's EnKF_N defaults)
  ienkf-n-20       IEnKF-N, N = 20
  letkf-16         LETKF, N = 16, radius 51/1.82, inflation 1.02 (DAPPER's LETKF without rot)
  3dvar            cycled 3D-Var, B = --scale x the climatological covariance
  oi               DAPPER's OptInterp: every analysis starts from the climatological mean (no
                   cycling), B = the climatological covariance (scale 1)
  climatology      the climatological mean as the estimate

Scores: the spatial RMSE of the analysis per cycle, averaged over the cycles after the spin-up
(DAPPER's rmse.a), then mean and std over trajectories. "kept" follows danlab's divergence rule
(cycle.Divergence: blown up, or lost track = 50-cycle mean RMSE >= the climatological std), and
"all" averages every trajectory that did not blow up, lost ones included (as DAPPER's number
would be for a run that lost track).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/ks_baselines.py --out ks_dapper.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from danlab import rng
from danlab.cycle import DEFAULT_DIVERGENCE, Divergence, run_filter
from danlab.filters import ETKF, Var3D, make_filter
from danlab.twin import TEST_SEED, TwinSpec

DAPPER_X0_STD = 0.001**0.5  # bocquet2019.py: X0 = GaussRV(mu=x0, C=0.001)
FIRST_GUESS_STREAM = 101    # a purpose key of our own for the near-truth first guess

#: DAPPER 1.8.1's "Expected rmse.a" in bocquet2019.py (None: not listed there)
DAPPER_EXPECTED = {"etkf-20": None, "etkf-rot-20": 0.115, "enkf-n-20": None, "enkf-n-40": None,
                   "ienkf-n-20": None, "letkf-16": 0.11, "3dvar": None, "oi": 0.5,
                   "climatology": 1.3}


@dataclass(kw_only=True)
class RotatedETKF(ETKF):
    """ETKF whose analysis anomalies are multiplied, each cycle, by a Haar-random orthogonal
    matrix U (N x N) with U 1 = 1: the mean and the sample covariance are unchanged, only the
    way the members span them is reshuffled."""

    name = "etkf-rot"
    seed: int = 0
    _gen: torch.Generator | None = field(default=None, init=False, repr=False,
                                         metadata={"record": False})

    def analysis(self, state: Tensor, y: Tensor, mask: Tensor, sigma: float, *, model=None,
                 dt=None) -> Tensor:
        Ea = super().analysis(state, y, mask, sigma, model=model, dt=dt)
        if self._gen is None:
            self._gen = rng.generator(self.seed, 7)
        b, n = Ea.shape[0], Ea.shape[-2]
        mean = Ea.mean(-2, keepdim=True)
        # orthonormal basis P (N, N-1) of the complement of 1, then U = P R P^T + 1 1^T / N
        ones = torch.full((n, 1), n**-0.5, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.cat([ones, torch.eye(n, dtype=torch.float64)], 1))
        P = q[:, 1:n]
        z = torch.randn(b, n - 1, n - 1, generator=self._gen, dtype=torch.float64)
        R, upper = torch.linalg.qr(z)
        R = R * torch.sign(torch.diagonal(upper, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar
        U = P @ R @ P.T + ones @ ones.T
        return mean + U.to(Ea) @ (Ea - mean)


@dataclass
class OptimalInterpolation(Var3D):
    """DAPPER's OptInterp: x^a = mu_C + B (B + R)^-1 (y - mu_C) at every cycle, the background
    the climatological mean, not a forecast."""

    name = "oi"
    scale: float = 1.0

    def forecast(self, state: Tensor, model, dt: float) -> Tensor:
        return torch.full_like(state, model.climatology(state.shape[-1]).mean)


def make_method(label: str, scale: float, init_spread: float | None):
    spread = {} if init_spread is None else {"init_spread": init_spread}
    table = {
        "etkf-20": lambda: make_filter("etkf", members=20, inflation=1.03, **spread),
        "etkf-rot-20": lambda: RotatedETKF(members=20, inflation=1.03, **spread),
        "enkf-n-20": lambda: make_filter("enkf-n", members=20, **spread),
        "enkf-n-40": lambda: make_filter("enkf-n", members=40, **spread),
        "ienkf-n-20": lambda: make_filter("ienkf-n", members=20, **spread),
        "letkf-16": lambda: make_filter("letkf", members=16, loc_radius=51 / 1.82,
                                        inflation=1.02, **spread),
        "3dvar": lambda: make_filter("3dvar", scale=scale),
        "oi": lambda: OptimalInterpolation(),
    }
    return table[label]()


def stats(values: Tensor) -> tuple[float, float]:
    v = values[torch.isfinite(values)].double()
    if v.numel() == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std()) if v.numel() > 1 else 0.0


def score(label: str, twin, model, spinup: int, scale: float, init_spread) -> dict:
    std = model.climatology(twin.nx).std
    t0 = time.perf_counter()
    if label == "climatology":
        mean = model.climatology(twin.nx).mean
        err = ((twin.truth[1:] - mean) ** 2).mean(-1).sqrt()  # (T, B)
        per_traj = err[spinup:].mean(0)
        lost = torch.zeros_like(per_traj, dtype=torch.bool)
        blown = lost.clone()
    else:
        filt = make_method(label, scale, init_spread)
        # no lost-track rule inside the run, so that lost trajectories keep their RMSEs
        res = run_filter(filt, twin, model, spinup=spinup,
                         divergence=Divergence(lost=math.inf))
        per_traj = res.rmse_per_trajectory
        blown = res.diverged
        lost_at = DEFAULT_DIVERGENCE.lost_at(res.rmse_per_cycle, std)
        lost = (lost_at >= 0) & ~blown
    seconds = time.perf_counter() - t0
    kept = ~(lost | blown)
    m_kept, s_kept = stats(per_traj[kept])
    m_all, s_all = stats(per_traj)
    return {"method": label, "rmse_kept": m_kept, "std_kept": s_kept,
            "lost": int(lost.sum()), "blown_up": int(blown.sum()),
            "rmse_all": m_all, "std_all": s_all, "trajectories": int(per_traj.numel()),
            "rmse_per_trajectory": [float(v) for v in per_traj],
            "dapper_expected": DAPPER_EXPECTED.get(label), "seconds": seconds}


def sweep_table(out: str) -> None:
    """Mean, std over the kept trajectories and diverged count of every run of a sweep."""
    from pathlib import Path

    meta = json.loads((Path(out) / "sweep.json").read_text())
    print("| run | test RMSE (std over trajectories) | diverged | s |")
    print("|---|---|---|---|")
    for r in meta["runs"]:
        res = json.loads((Path(meta["root"]) / r["run"] / "result.json").read_text())
        per = torch.tensor([math.nan if v is None else v for v in res["rmse_per_trajectory"]])
        m, s = stats(per)
        what = " ".join(f"{k}={v}" for k, v in r["labels"].items() if v is not None)
        first = min((v for v in res["diverged_at"] if v >= 0), default=None)
        div = f"{res['diverged']}/{res['trajectories']}" + (
            f" (first at cycle {first})" if first is not None else "")
        print(f"| {what} | {m:.4f} ({s:.4f}) | {div} | {res['seconds']:.0f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="dapper", choices=("dapper", "danlab"))
    p.add_argument("--trajectories", type=int, default=16)
    p.add_argument("--cycles", type=int, default=5000)
    p.add_argument("--spinup", type=int, default=1000)
    p.add_argument("--seed", type=int, default=TEST_SEED)
    p.add_argument("--scale", type=float, default=0.1,
                   help="3D-Var's B scale (from danlab tune-3dvar --model ks ...)")
    p.add_argument("--methods", default="climatology,oi,3dvar,etkf-20,etkf-rot-20,enkf-n-20,"
                                        "enkf-n-40,ienkf-n-20")
    p.add_argument("--out", default=None, help="JSON file of the results")
    p.add_argument("--sweep", default=None, metavar="DIR",
                   help="instead: the table of a finished `danlab sweep` directory, with the "
                        "std over trajectories")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.sweep:
        sweep_table(args.sweep)
        return

    spec = TwinSpec(model="ks", nx=128, dt=1.0, obs="full", sigma=1.0,
                    trajectories=args.trajectories, cycles=args.cycles, spinup=args.spinup,
                    seed=args.seed)
    t0 = time.perf_counter()
    model, twin = spec.build()
    init_spread = None
    if args.protocol == "dapper":
        noise = rng.TrajectoryStreams(args.seed, FIRST_GUESS_STREAM, twin.n_trajectories)
        twin.x0 = twin.truth[0] + DAPPER_X0_STD * noise.randn(twin.nx)
        init_spread = DAPPER_X0_STD
    print(f"twin {spec.describe()}, protocol {args.protocol}: built in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    print("| method | RMSE kept (std) | lost / blown up | RMSE all (std) | DAPPER | s |")
    print("|---|---|---|---|---|---|")
    for label in args.methods.split(","):
        r = score(label, twin, model, args.spinup, args.scale, init_spread)
        rows.append(r)
        exp = r["dapper_expected"]
        print(f"| {label} | {r['rmse_kept']:.4f} ({r['std_kept']:.4f}) | {r['lost']} / "
              f"{r['blown_up']} of {r['trajectories']} | {r['rmse_all']:.4f} "
              f"({r['std_all']:.4f}) | {'' if exp is None else exp} | {r['seconds']:.0f} |",
              flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"twin": spec.describe(), "protocol": args.protocol,
                       "scale_3dvar": args.scale, "torch": torch.__version__,
                       "machine": platform.node(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
