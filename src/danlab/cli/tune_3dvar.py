"""danlab tune-3dvar: scan the scale of 3D-Var's climatological B on a short twin run."""

from __future__ import annotations

from danlab.cli._common import print_json


def register(sub) -> None:
    from danlab.cli.baseline import add_twin_options

    p = sub.add_parser("tune-3dvar", help="tune the scale of 3D-Var's static B",
                       description=__doc__)
    add_twin_options(p, cycles=1000, spinup=200, trajectories=8, seed=0)
    p.add_argument("--scales", default=None,
                   help="comma-separated scales to try (default: a log-spaced grid)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab import Lorenz96, ObservationConfig
    from danlab.cli.baseline import check_twin_options
    from danlab.errors import DanlabError
    from danlab.filters.var3d import DEFAULT_SCALES, tune_3dvar

    check_twin_options(args)
    try:
        scales = (tuple(float(s) for s in args.scales.split(",")) if args.scales
                  else DEFAULT_SCALES)
    except ValueError:
        raise DanlabError(f"--scales={args.scales!r} is not allowed: give numbers like "
                          "0.01,0.02") from None
    model = Lorenz96(args.forcing, args.inner_dt)
    best, table = tune_3dvar(model, args.nx, args.dt, ObservationConfig(args.obs, args.sigma),
                             scales, args.trajectories, args.cycles, args.spinup, args.seed)
    if args.json:
        print_json({"best_scale": best, "table": [{"scale": s, "rmse": r} for s, r in table]})
    else:
        print("| scale | test RMSE |\n|---|---|")
        for s, r in table:
            print(f"| {s:g} | {r:.4f} |")
        print(f"best scale: {best:g} (use danlab baseline --method 3dvar --b-scale {best:g})")
    return 0
