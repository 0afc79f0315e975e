"""danlab train: learn an analysis operator through the DA cycle (truncated backpropagation).

Every option overrides the preset's value (shown as its default); --config reads a TOML file of
TrainConfig values (the twin experiment as a [twin] table), as written in a run's config.toml.
"""

from __future__ import annotations

from pathlib import Path

from danlab.cli._common import (
    add_output_options,
    add_twin_options,
    parse_list,
    print_json,
    progress_on,
    resolve_device,
)


def register(sub, argv=()) -> None:
    from danlab import spec
    from danlab.config import PRESETS, TrainConfig, preset

    name = _preset_in(argv) or "cpu"
    try:
        base = preset(name)
    except Exception:  # noqa: BLE001 - a bad name is reported when the arguments are parsed
        base = preset("cpu")
    p = sub.add_parser("train", help="train a DAN", description=__doc__)
    p.add_argument("--preset", default="cpu", metavar="|".join(PRESETS),
                   help="starting values (default: cpu, about 10 minutes on a 2-core CPU; "
                        "with --time-budget 2400 or more the cpu preset trains with s_b 128, "
                        "val_every 4, ema 0.999 and 48 filters unless they are given)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML file of TrainConfig values (on top of the preset)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory (default: runs/<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly (its stored config; options given "
                        "override it)")
    p.add_argument("--snapshots", default="", metavar="SECONDS",
                   help="comma-separated training times at which to keep the weights")
    p.add_argument("--snapshot-steps", default="", metavar="STEPS",
                   help="comma-separated steps at which to keep the weights")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine (the batch is split between "
                        "them; reproducible for a given N; default: 1). On a cluster use "
                        "torchrun --nproc-per-node N -m danlab train ...")
    spec.add_arguments(p, TrainConfig, base)
    add_twin_options(p, base.twin)
    add_output_options(p, dtype=None)
    p.set_defaults(func=run)


def _train_workers(cfg, out: Path, workers: int, kwargs: dict) -> dict:
    import json

    from danlab.distributed import launch
    from danlab.errors import DanlabError, check_int_at_least
    from danlab.train import train

    check_int_at_least("workers", workers, 1)
    if cfg.s_b % workers:
        raise DanlabError(f"s_b={cfg.s_b} is not allowed with --workers {workers}: it must be a "
                          "multiple of the number of processes")
    from danlab.train import Stop

    try:
        launch(train, workers, cfg, out, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a worker's error, re-raised as the worker's
        text = str(exc)
        if "danlab.training.Stop" in text or "Stop:" in text:
            raise Stop("stopped") from None
        last = [ln for ln in text.strip().splitlines() if ln.strip()]
        if last and "DanlabError" in last[-1]:
            raise DanlabError(last[-1].split("DanlabError: ", 1)[-1]) from None
        raise
    return json.loads((out / "results.json").read_text())


def _preset_in(argv) -> str | None:
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--preset" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--preset="):
            return a.split("=", 1)[1]
    return None


def config_from_args(args, log=None):
    from danlab import spec
    from danlab.cli._common import twin_from_args
    from danlab.config import (
        PRESETS,
        TrainConfig,
        budget_values,
        load_toml,
        merge,
        migrate,
        preset,
    )

    preset(args.preset)  # validates the name
    base = dict(PRESETS[args.preset])
    config = args.config
    stored = Path(args.out or f"runs/{args.preset}") / "config.toml"
    if args.resume and not config and stored.exists():
        config = str(stored)  # --resume continues the stored run; options still override
    given = migrate(load_toml(config)) if config else {}
    cfg = TrainConfig.from_dict(merge(base, given), where=config or f"preset {args.preset}")
    overrides = spec.overrides_from_args(args, TrainConfig)
    budget = overrides.get("time_budget", cfg.time_budget)
    by_budget = budget_values(args.preset, budget, {*given, *overrides})
    if by_budget and log:
        values = ", ".join(f"{k} {v}" for k, v in by_budget.items())
        log(f"the {args.preset} preset with a budget of {budget:.0f} s: {values} "
            "(docs/dan.md)")
    twin = twin_from_args(args, cfg.twin)
    return cfg.replace(**by_budget, **overrides, twin=twin)


def run(args) -> int:
    from danlab.errors import DanlabError
    from danlab.progress import log, quiet
    from danlab.train import Stop, rollback_note, train

    cfg = config_from_args(args, log=None if args.json else log)
    snapshots = tuple(parse_list(args.snapshots, float, "snapshots")) if args.snapshots else ()
    if any(t <= 0 for t in snapshots):
        raise DanlabError(f"--snapshots={args.snapshots!r} is not allowed: times must be > 0")
    steps = tuple(parse_list(args.snapshot_steps, int, "snapshot-steps")) \
        if args.snapshot_steps else ()
    device = resolve_device(args.device)
    out = Path(args.out or f"runs/{args.preset}")
    if not args.resume and (out / "checkpoint.pt").exists():
        raise DanlabError(f"{str(out)!r} already holds a run: use --resume, or another --out")
    kwargs = dict(resume=args.resume, device=str(device), progress=progress_on(args),
                  log=quiet if args.json else log, snapshots=snapshots, snapshot_steps=steps)
    try:
        if args.workers > 1:
            summary = _train_workers(cfg, out, args.workers, kwargs)
        else:
            summary = train(cfg, out, **kwargs)
    except Stop as sig:
        if args.json:
            print_json({"stopped": str(sig), "out": str(out), "resume": True})
        return 130
    if not summary:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    if args.json:
        print_json(summary)
    else:
        rolled = rollback_note(summary["rollbacks"], summary["skipped"])
        print(f"test RMSE {summary['rmse_label']} (validation {summary['val_rmse']:.4f}), "
              f"{summary['steps']} steps in {summary['seconds']:.0f} s (stopped by "
              f"{summary['stop']}){rolled}, {summary['throughput']:.0f} trajectory-cycles/s; "
              f"run in {out}")
    return 0
