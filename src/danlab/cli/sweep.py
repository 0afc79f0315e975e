"""danlab sweep: a grid of trainings, evaluations or baselines (a TOML spec, see
danlab.sweep), on local processes, Ray or Slurm; resumable; results as a labelled Dataset.

  danlab sweep SPEC.toml --out DIR [--executor local|ray|slurm ...]   run (again: resume)
  danlab sweep status DIR                                              done / failed / pending
  danlab sweep results DIR                                             the results table
"""

from __future__ import annotations

from danlab.cli._common import print_json, progress_on, resolve_device


def register(sub) -> None:
    from danlab.executors import EXECUTORS

    p = sub.add_parser("sweep", help="run a grid of runs on an executor, resumably",
                       description=__doc__)
    p.add_argument("target", metavar="SPEC.toml|status|results",
                   help="a sweep spec to run, or status / results of --out's sweep")
    p.add_argument("dir", nargs="?", default=None, metavar="DIR",
                   help="the sweep directory (for status and results; same as --out)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the sweep's directory (default: danlab-sweeps/<spec name>)")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="where run directories live (default: DIR/runs; share it between "
                        "sweeps to share their runs)")
    g = p.add_argument_group("executor")
    g.add_argument("--executor", default="local", metavar="|".join(EXECUTORS),
                   help="where runs execute (default: local processes)")
    g.add_argument("--workers", type=int, default=None,
                   help="local: processes (default: the number of cores)")
    g.add_argument("--address", default=None, help="ray: address of an existing cluster")
    g.add_argument("--cpus", type=float, default=1.0, help="ray/slurm: CPUs per run")
    g.add_argument("--gpus", type=float, default=0.0,
                   help="ray: GPUs per run, fractional to share a GPU (e.g. 0.25); "
                        "slurm: GPUs per task")
    g.add_argument("--partition", default=None, help="slurm: partition")
    g.add_argument("--time", type=int, default=60, metavar="MINUTES",
                   help="slurm: time limit per run (default: 60)")
    g.add_argument("--cluster", default=None,
                   help="slurm: submitit cluster (default: slurm; 'local' runs submitit's "
                        "local executor)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda",
                   help="device of the runs (default: cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from danlab import sweep as S
    from danlab.errors import DanlabError
    from danlab.executors import make_executor
    from danlab.progress import log, quiet

    if args.target in ("status", "results"):
        out = args.dir or args.out
        if out is None:
            raise DanlabError(f"sweep {args.target} needs the sweep directory: danlab sweep "
                              f"{args.target} DIR")
        if args.target == "status":
            st = S.status(out)
            print_json(st) if args.json else print(
                f"{st['name']}: {st['done']}/{st['total']} done, {st['failed']} failed, "
                f"{st['pending']} pending")
            return 0
        S.collect(out)
        text = (Path(out) / "results.md").read_text()
        print_json({"table": text}) if args.json else print(text, end="")
        return 0
    spec = S.Sweep.from_toml(args.target)
    out = args.out or args.dir or f"danlab-sweeps/{spec.name}"
    spec.entries()  # every run resolved (and refused if bad) before anything starts
    executor = make_executor(args.executor, args.workers, args.address, args.cpus, args.gpus,
                             folder=str(Path(out) / "slurm"), partition=args.partition,
                             time_min=args.time, cluster=args.cluster)
    try:
        res = S.run(spec, out, executor, args.root, progress=progress_on(args),
                    log=quiet if args.json else log, device=str(resolve_device(args.device)))
    finally:
        getattr(executor, "close", lambda: None)()
    summary = {k: res[k] for k in ("done", "stored", "failed", "failures")} | {
        "out": out, "results": str(Path(out) / "results.nc")}
    if args.json:
        print_json(summary)
    else:
        print((Path(out) / "results.md").read_text(), end="")
    return 1 if res["failed"] else 0
