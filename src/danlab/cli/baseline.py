"""danlab baseline: run a classical filter on a twin experiment (or on your observations)."""

from __future__ import annotations

import time
from pathlib import Path

from danlab.cli._common import add_device_options, print_json, resolve_device, resolve_dtype
from danlab.errors import check, check_int_at_least, check_positive

# kept in step with danlab.filters.METHODS (tested) without importing torch at parse time
METHODS = ("enkf-n", "ienkf-n", "3dvar", "etkf", "sakov-a1", "sakov-a2", "obs-only", "free")


def add_twin_options(p, cycles: int = 1500, spinup: int = 500, trajectories: int = 8,
                     seed: int = 1_000_003) -> None:
    p.add_argument("--dt", type=float, default=0.05, help="time between analyses (default 0.05)")
    p.add_argument("--nx", type=int, default=40, help="number of sites N_x >= 4 (default 40)")
    p.add_argument("--forcing", type=float, default=8.0, help="L96 forcing F (default 8)")
    p.add_argument("--obs", default="full", help="full | alternate | random | random-half")
    p.add_argument("--sigma", type=float, default=1.0, help="observation error std (default 1)")
    p.add_argument("--trajectories", type=int, default=trajectories)
    p.add_argument("--cycles", type=int, default=cycles, help="analysis cycles per trajectory")
    p.add_argument("--spinup", type=int, default=spinup, help="cycles left out of the RMSE")
    p.add_argument("--seed", type=int, default=seed, help="seed of the test trajectories")
    p.add_argument("--inner-dt", type=float, default=0.01, help="RK4 step (DAPPER uses 0.05)")


def register(sub) -> None:
    p = sub.add_parser("baseline", help="run a classical DA method on test trajectories",
                       description=__doc__)
    p.add_argument("--method", required=True, help=" | ".join(METHODS))
    p.add_argument("--members", type=int, default=40, help="ensemble size N (default 40)")
    p.add_argument("--inflation", type=float, default=1.0, help="ETKF multiplicative inflation")
    p.add_argument("--b-scale", type=float, default=None,
                   help="3D-Var: scale of the climatological B (default: the value tuned at "
                        "dt=0.05; `danlab tune-3dvar` tunes it for other settings)")
    p.add_argument("--dirac", action="store_true", help="EnKF-N/IEnKF-N: Dirac-Jeffreys variant")
    p.add_argument("--max-iter", type=int, default=10,
                   help="IEnKF-N: most Gauss-Newton iterations per analysis (default 10)")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="IEnKF-N: stop when the RMS increment of w is below tol (default 1e-3; "
                        "0 = always --max-iter)")
    add_sakov_options(p)
    add_twin_options(p)
    p.add_argument("--obs-file", default=None,
                   help="netCDF of your own y, mask (cycle, trajectory, site), attrs sigma, dt")
    add_device_options(p)
    p.add_argument("--out", default=None, help="directory for results (netCDF, JSON)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=run)


def add_sakov_options(p) -> None:
    p.add_argument("--steps", type=int, default=None,
                   help="Sakov A1/A2: analysis steps T backtracked (default: A1 5, A2 10; keep "
                        "T <~ 20 at dt=0.05, docs/linear_zeta.md)")
    p.add_argument("--eps", type=float, default=1.0, help="Sakov A1/A2: initial spread eps")
    p.add_argument("--scale", type=float, default=None,
                   help="Sakov A1/A2: multiplicative scale of P^f (default: tuned at dt=0.05, "
                        "A1 0.03 with T=5, A2 0.5 with T=10; `danlab tune-sakov` for others)")


def sakov_options(args) -> dict:
    """SakovFilter options; the defaults are those tuned at dt=0.05 (docs/linear_zeta.md)."""
    from danlab.filters.sakov import TUNED

    tuned_steps, tuned_scale = TUNED[args.method[-2:].upper()]
    steps = tuned_steps if args.steps is None else args.steps
    scale = tuned_scale if args.scale is None else args.scale
    check_int_at_least("steps", steps, 1)
    check_positive("eps", args.eps)
    check_positive("scale", scale)
    return dict(steps=steps, eps=args.eps, scale=scale)


def check_twin_options(args) -> None:
    check_int_at_least("nx", args.nx, 4)
    check_positive("dt", args.dt)
    check_int_at_least("trajectories", args.trajectories, 1)
    check_int_at_least("spinup", args.spinup, 0)
    check(args.cycles > args.spinup,
          f"cycles={args.cycles} is not allowed: it must exceed spinup={args.spinup}")
    check_int_at_least("seed", args.seed, 0)


def build_twin(args, device, dtype):
    """The twin experiment named by the common options (identical for every method)."""
    from danlab import Lorenz96, ObservationConfig, make_twin

    check_twin_options(args)
    model = Lorenz96(args.forcing, args.inner_dt)
    obs = ObservationConfig(args.obs, args.sigma)
    return model, make_twin(model, obs, args.nx, args.dt, args.trajectories, args.cycles,
                            args.seed, dtype=dtype, device=device)


def run(args) -> int:
    from danlab import Lorenz96, run_filter
    from danlab.errors import check_choice
    from danlab.filters import make_filter
    from danlab.twin import read_observations

    check_choice("method", args.method, METHODS)
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    options = {"enkf-n": dict(dirac=args.dirac),
               "ienkf-n": dict(dirac=args.dirac, max_iter=args.max_iter, tol=args.tol),
               "etkf": dict(inflation=args.inflation)}.get(args.method, {})
    if args.method.startswith("sakov-"):
        options = sakov_options(args)
    t0 = time.perf_counter()
    if args.obs_file:
        model = Lorenz96(args.forcing, args.inner_dt)
        twin = read_observations(args.obs_file, dtype=dtype, device=device)
        check(twin.n_cycles > args.spinup,
              f"spinup={args.spinup} is not allowed: the file has only {twin.n_cycles} cycles")
    else:
        model, twin = build_twin(args, device, dtype)
    if args.method == "3dvar":
        options = dict(nx=twin.nx, forcing=model.forcing)
        if args.b_scale is not None:
            check_positive("b-scale", args.b_scale)
            options["scale"] = args.b_scale
    filt = make_filter(args.method, members=args.members, **options)
    result = run_filter(filt, twin, model, spinup=args.spinup, progress=args.progress,
                        keep_analyses=bool(args.obs_file and args.out))
    config = {k: v for k, v in vars(args).items() if k not in ("func", "json", "progress")}
    if args.method.startswith("sakov-"):
        config.update(options)  # the T, eps and scale actually used (defaults resolved)
    summary = {"method": args.method, **result.summary(), "seconds": time.perf_counter() - t0,
               "seconds_filter": result.seconds, "config": config}
    if args.out:
        write_results(Path(args.out), args.method, result, summary)
    if args.json:
        print_json(summary)
    else:
        print(f"{args.method}: test RMSE {result.rmse:.4f} over {twin.n_trajectories} "
              f"trajectories ({result.n_diverged} diverged), {summary['seconds']:.1f} s")
    return 0


def write_results(out: Path, name: str, result, summary: dict) -> None:
    import xarray as xr

    from danlab import io

    ds = xr.Dataset(
        {"rmse_per_trajectory": (("trajectory",), result.rmse_per_trajectory.numpy()),
         "rmse_per_cycle": (("cycle", "trajectory"), result.rmse_per_cycle.numpy()),
         "diverged": (("trajectory",), result.diverged.numpy().astype("int8"))},
        attrs={"method": name, "rmse": result.rmse, "spinup": result.spinup})
    if result.analyses is not None:
        ds["analysis"] = (("cycle", "trajectory", "site"), result.analyses.numpy())
    io.save_netcdf(out / f"{name}.nc", ds)
    io.write_json(out / f"{name}.json", summary)
