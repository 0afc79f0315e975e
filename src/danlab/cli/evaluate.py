"""danlab evaluate: the test RMSE of a trained DAN on the test trajectories of a twin spec:
the run's own (the baselines' of the same spec), or any other N_x, dt, F or observations."""

from __future__ import annotations

from pathlib import Path

from danlab.cli._common import (
    add_output_options,
    add_twin_options,
    print_json,
    progress_on,
    resolve_device,
    resolve_dtype,
    twin_from_args,
    warn_diverged,
)


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained DAN on test trajectories",
                       description=__doc__)
    p.add_argument("run_dir", help="a directory written by danlab train")
    p.add_argument("--checkpoint", default="best.pt", metavar="FILE",
                   help="weights file inside RUN_DIR (default: best.pt; e.g. snapshots/t600.pt)")
    add_twin_options(p)
    add_output_options(p, dtype=None, out="directory for the results (netCDF and JSON)")
    p.add_argument("--dtype", default=None, metavar="float32|float64",
                   help="precision (default: the run's)")
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab.errors import check
    from danlab.runs import evaluate_run, load

    check(Path(args.run_dir).is_dir(), f"run directory {args.run_dir!r} does not exist")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype) if args.dtype else None
    op = load(args.run_dir, which=args.checkpoint)
    twin = twin_from_args(args, op.config.twin)
    result = evaluate_run(args.run_dir, twin, device=str(device), dtype=dtype,
                          progress=progress_on(args), operator=op)
    summary = {"method": "dan", "run_dir": args.run_dir, "checkpoint": args.checkpoint,
               **result.summary()}
    if args.out:
        from danlab.cli.baseline import write_results

        write_results(Path(args.out), "dan", result, summary)
    warn_diverged("dan", result)
    if args.json:
        print_json(summary)
    else:
        print(f"dan: test RMSE {result.label()}; test set {result.test_set['spec']} "
              f"[{result.test_set['fingerprint']}]")
    return 0
