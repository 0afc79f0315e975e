"""danlab evaluate: test RMSE of a trained DAN on the baselines' test trajectories."""

from __future__ import annotations

from pathlib import Path

from danlab.cli._common import print_json, resolve_device, resolve_dtype


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained DAN", description=__doc__)
    p.add_argument("run_dir", help="a directory written by danlab train")
    for name, typ in (("dt", float), ("nx", int), ("forcing", float), ("obs", str),
                      ("sigma", float), ("trajectories", int), ("cycles", int),
                      ("spinup", int), ("seed", int), ("inner-dt", float)):
        p.add_argument(f"--{name}", type=typ, default=None,
                       help="default: the run's trained/test configuration")
    p.add_argument("--checkpoint", default="best.pt",
                   help="weights file inside RUN_DIR (default best.pt; e.g. snapshots/t600.pt)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="float32 | float64 (default: the run's)")
    p.add_argument("--out", default=None, help="directory for results (netCDF, JSON)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab.cli.baseline import write_results
    from danlab.errors import check
    from danlab.train import evaluate_run

    check(Path(args.run_dir).is_dir(), f"run directory {args.run_dir!r} does not exist")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype) if args.dtype else None
    result = evaluate_run(args.run_dir, nx=args.nx, dt=args.dt, forcing=args.forcing,
                          obs=args.obs, sigma=args.sigma, trajectories=args.trajectories,
                          cycles=args.cycles, spinup=args.spinup, seed=args.seed,
                          inner_dt=args.inner_dt, device=str(device), dtype=dtype,
                          which=args.checkpoint)
    summary = {"method": "dan", "run_dir": args.run_dir, **result.summary()}
    if args.out:
        write_results(Path(args.out), "dan", result, summary)
    if args.json:
        print_json(summary)
    else:
        print(f"dan: test RMSE {result.rmse:.4f} ({result.n_diverged} diverged)")
    return 0
