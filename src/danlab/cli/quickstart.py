"""danlab quickstart: train a DAN on the CPU (the `cpu` preset: about 10 minutes on a 2-core
CPU; `--preset smoke`: about a minute), run it, EnKF-N and 3D-Var on the same test
trajectories, print the comparison table and write figures."""

from __future__ import annotations

from pathlib import Path

from danlab.cli._common import add_output_options, print_json, progress_on, resolve_device


def register(sub) -> None:
    from danlab.config import PRESETS

    p = sub.add_parser("quickstart", help="a small end-to-end experiment on the CPU",
                       description=__doc__)
    p.add_argument("--preset", default="cpu", metavar="|".join(PRESETS),
                   help="training preset (default: cpu; smoke is fast)")
    p.add_argument("--members", type=int, default=40, help="EnKF-N ensemble size (default: 40)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted quickstart")
    add_output_options(p, dtype=None)
    p.set_defaults(out="danlab-quickstart")
    p.add_argument("--out", default="danlab-quickstart", metavar="DIR",
                   help="output directory (default: danlab-quickstart)")
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab.errors import DanlabError, check_int_at_least
    from danlab.experiments.quickstart import quickstart
    from danlab.progress import log, quiet

    check_int_at_least("members", args.members, 2)
    out = Path(args.out)
    ckpt = out / "dan" / "checkpoint.pt"
    if not args.resume and ckpt.exists():
        raise DanlabError(f"{str(out)!r} already holds a quickstart: use --resume or another --out")
    if args.resume and not ckpt.exists():
        raise DanlabError(f"--resume: no checkpoint.pt in {str(ckpt.parent)!r} to resume from")
    summary = quickstart(out, preset_name=args.preset, members=args.members,
                         device=str(resolve_device(args.device)), resume=args.resume,
                         log=quiet if args.json else log, progress=progress_on(args))
    if args.json:
        print_json(summary)
    else:
        print(summary["table"])
    return 0
