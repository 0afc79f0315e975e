"""danlab train: learn an analysis operator through the DA cycle (truncated backpropagation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from danlab.cli._common import print_json, resolve_device
from danlab.config import PRESETS, TrainConfig

_SPECIAL = {"dtype", "seed"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_options(p) -> None:
    """One option per TrainConfig field, so any preset value can be overridden."""
    for f in dataclasses.fields(TrainConfig):
        default = getattr(TrainConfig(), f.name)
        if isinstance(default, bool):
            p.add_argument(_flag(f.name), dest=f.name, default=None, type=_bool,
                           metavar="true|false", help=f"(default {str(default).lower()})")
        else:
            p.add_argument(_flag(f.name), dest=f.name, default=None, type=type(default),
                           metavar=type(default).__name__.upper(), help=f"(default {default})")


def _bool(s: str) -> bool:
    import argparse

    value = {"true": True, "false": False, "1": True, "0": False}.get(s.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{s!r} is not allowed: use true or false")
    return value


def config_from_args(args) -> TrainConfig:
    from danlab.config import load_toml, preset

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name) is not None}
    base = dict(PRESETS.get(args.preset, {})) if args.preset else {}
    if args.preset:
        preset(args.preset)  # validates the name
    if args.config:
        base.update(load_toml(args.config))
        TrainConfig.from_dict(base, where=f"config file {args.config!r}")
    return TrainConfig.from_dict({**base, **overrides}, where="options")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a DAN", description=__doc__)
    p.add_argument("--preset", default=None, help=" | ".join(PRESETS))
    p.add_argument("--config", default=None, help="TOML file of TrainConfig values")
    p.add_argument("--out", default=None, help="run directory (default runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--snapshots", default="",
                   help="comma-separated training times (s) at which to keep the weights")
    p.add_argument("--snapshot-steps", default="",
                   help="comma-separated steps at which to keep the weights")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab.train import Stop, train

    cfg = config_from_args(args)
    snapshots = _parse_snapshots(args.snapshots)
    snapshot_steps = tuple(int(t) for t in _parse_snapshots(args.snapshot_steps))
    device = resolve_device(args.device)
    out = Path(args.out or f"runs/{args.preset or 'custom'}")
    if not args.resume and (out / "checkpoint.pt").exists():
        from danlab.errors import DanlabError

        raise DanlabError(f"{str(out)!r} already holds a run: use --resume, or another --out")
    log = (lambda *a: None) if args.json else print
    try:
        summary = train(cfg, out, resume=args.resume, device=str(device),
                        progress=not (args.no_progress or args.json), log=log,
                        snapshots=snapshots, snapshot_steps=snapshot_steps)
    except Stop:
        return 130
    if args.json:
        print_json(summary)
    else:
        print(f"test RMSE {summary['rmse']:.4f} (validation {summary['val_rmse']:.4f}), "
              f"{summary['steps']} steps in {summary['seconds']:.0f} s, "
              f"{summary['throughput']:.0f} trajectory-cycles/s; run in {out}")
    return 0


def _parse_snapshots(text: str) -> tuple[float, ...]:
    from danlab.errors import DanlabError

    try:
        times = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DanlabError(f"--snapshots={text!r} is not allowed: give seconds like "
                          "120,300,600") from None
    if any(not t > 0 for t in times):
        raise DanlabError(f"--snapshots={text!r} is not allowed: times must be > 0")
    return times
