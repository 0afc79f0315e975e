"""danlab quickstart: train a DAN on the CPU, compare it with EnKF-N and 3D-Var on the same
test trajectories, print a table and write figures (about 15 minutes on a 2-core CPU)."""

from __future__ import annotations

from pathlib import Path

from danlab.cli._common import print_json, resolve_device


def register(sub) -> None:
    p = sub.add_parser("quickstart", help="small end-to-end experiment on the CPU",
                       description=__doc__)
    p.add_argument("--out", default="danlab-quickstart", help="output directory")
    p.add_argument("--preset", default="cpu", help="training preset (default cpu; smoke is fast)")
    p.add_argument("--members", type=int, default=40, help="EnKF-N ensemble size")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--resume", action="store_true", help="continue an interrupted quickstart")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab.errors import DanlabError, check_int_at_least
    from danlab.experiments.quickstart import quickstart

    check_int_at_least("members", args.members, 2)
    out = Path(args.out)
    if not args.resume and (out / "dan" / "checkpoint.pt").exists():
        raise DanlabError(f"{str(out)!r} already holds a quickstart: use --resume or another --out")
    log = (lambda *a: None) if args.json else print
    summary = quickstart(out, preset_name=args.preset, members=args.members,
                         device=str(resolve_device(args.device)), resume=args.resume, log=log,
                         progress=not args.json)
    if args.json:
        print_json(summary)
    return 0
