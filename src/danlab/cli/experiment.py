"""danlab experiment: the paper's figures, each one command at three scales.

  danlab experiment list
  danlab experiment run NAME --scale smoke|cpu|paper [--executor ...] [--out DIR]
  danlab experiment status NAME [--out DIR]
  danlab experiment plot NAME [--out DIR]      (PNG + PDF from stored results only)
  danlab experiment collect NAME --scale ... [--out DIR]
                          (results + figure from the runs stored so far; runs nothing)

Runs are shared between the experiments of one --out (e.g. fig6 and fig7 diagnose the same
trainings), and a run finished before an interruption is never recomputed."""

from __future__ import annotations

from danlab.cli._common import parse_list, print_json, progress_on, resolve_device

INT_AXES = ("n_iter", "nx", "seed")
STR_AXES = ("method",)


def _pair(text: str, option: str) -> tuple[str, str]:
    from danlab.errors import DanlabError

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise DanlabError(f"{option} {text!r} is not allowed: give NAME=VALUE")
    return key.strip(), value.strip()


def _value(text: str):
    """'500' -> 500, '0.1' -> 0.1, 'true' -> True, else the text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def register(sub) -> None:
    from danlab.executors import EXECUTORS
    from danlab.experiments import SCALES

    p = sub.add_parser("experiment", help="the paper's figures as commands",
                       description=__doc__)
    p.add_argument("action", metavar="list|run|status|plot|collect",
                   help="what to do (collect: the results and figure from the runs stored so "
                        "far, cells without a run left NaN; runs nothing)")
    p.add_argument("name", nargs="?", default=None, help="the experiment (see list)")
    p.add_argument("--scale", default="smoke", metavar="|".join(SCALES),
                   help="smoke: minutes on a laptop (CI); cpu: hours on a 2-core machine; "
                        "paper: the paper's sizes, GPUs or a cluster (default: smoke)")
    p.add_argument("--out", default="danlab-experiments", metavar="DIR",
                   help="results directory (default: danlab-experiments)")
    g = p.add_argument_group("executor (as for danlab sweep)")
    g.add_argument("--executor", default="local", metavar="|".join(EXECUTORS))
    g.add_argument("--workers", type=int, default=None, help="local: processes (default: cores)")
    g.add_argument("--address", default=None, help="ray: cluster address")
    g.add_argument("--gpus", type=float, default=0.0, help="ray/slurm: GPUs per run")
    g.add_argument("--partition", default=None, help="slurm: partition")
    g.add_argument("--time", type=int, default=120, metavar="MINUTES",
                   help="slurm: time per run (default: 120)")
    g.add_argument("--cluster", default=None, help="slurm: submitit cluster ('local' to test)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda",
                   help="device of the runs (default: cpu)")
    p.add_argument("--grid", action="append", default=[], metavar="AXIS=V1,V2,...",
                   help="replace one axis of the experiment's grid (e.g. dt=0.05,0.3, or "
                        "'method=EnKF-N,casual DAN' for fig3; repeatable): a reduced "
                        "scale, recorded in the results")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field of every training (e.g. max_steps=500; repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from danlab.errors import check, check_choice
    from danlab.experiments import registry
    from danlab.experiments.runner import plot_experiment, run_experiment, status_experiment
    from danlab.progress import log, quiet

    check_choice("action", args.action, ("list", "run", "status", "plot", "collect"))
    if args.action == "list":
        reg = registry()
        if args.json:
            print_json({n: m.TITLE for n, m in reg.items()})
        else:
            for n, m in reg.items():
                print(f"{n:12s} {m.TITLE}")
        return 0
    check(args.name is not None, f"experiment {args.action} needs a NAME (see danlab "
                                 "experiment list)")
    if args.action == "plot":
        paths = plot_experiment(args.name, args.out)
        print_json({"figures": [str(p) for p in paths]}) if args.json else print(
            "\n".join(str(p) for p in paths))
        return 0
    if args.action == "status":
        st = status_experiment(args.name, args.out)
        if args.json:
            print_json(st)
        else:
            print(f"{st['name']}: {st['done']}/{st['total']} runs done, {st['failed']} failed, "
                  f"{st['pending']} pending; " + ("finished" if st["finished"] else
                                                   "not finished"))
        return 0
    from danlab.executors import make_executor

    ex = make_executor(args.executor, args.workers, args.address, 1.0, args.gpus,
                       folder=str(Path(args.out) / "slurm"), partition=args.partition,
                       time_min=args.time, cluster=args.cluster)
    grid = {k: ([m.strip() for m in v.split(",") if m.strip()] if k in STR_AXES else
                parse_list(v, float if k not in INT_AXES else int, k))
            for k, v in (_pair(g, "--grid") for g in args.grid)}
    train = dict(_pair(s, "--set") for s in args.set)
    train = {k: _value(v) for k, v in train.items()}
    res = run_experiment(args.name, args.scale, args.out, ex, progress=progress_on(args),
                         log=quiet if args.json else log, grid=grid, train=train,
                         device=str(resolve_device(args.device)),
                         stored_only=args.action == "collect")
    print_json(res) if args.json else print("\n".join(res["figures"]))
    return 1 if res["failed_runs"] else 0
