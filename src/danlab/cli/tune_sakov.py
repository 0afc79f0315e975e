"""danlab tune-sakov: scan the multiplicative scale of Sakov's A1/A2 P^f on a short twin run."""

from __future__ import annotations

from danlab.cli._common import print_json

DEFAULT_SCALES = "0.01,0.02,0.03,0.05,0.1,0.2,0.5,1,2"


def register(sub) -> None:
    from danlab.cli.baseline import add_twin_options

    p = sub.add_parser("tune-sakov", help="tune the scale of Sakov's A1/A2 filters",
                       description=__doc__)
    p.add_argument("--algorithm", default="A1", help="A1 | A2")
    p.add_argument("--steps", type=int, default=None,
                   help="analysis steps T backtracked (default: A1 5, A2 10)")
    p.add_argument("--eps", type=float, default=1.0, help="initial spread eps (default 1)")
    add_twin_options(p, cycles=200, spinup=50, trajectories=2, seed=3)
    p.add_argument("--scales", default=DEFAULT_SCALES,
                   help=f"comma-separated scales to try (default {DEFAULT_SCALES})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab import Lorenz96, ObservationConfig, make_twin
    from danlab.cli.baseline import check_twin_options
    from danlab.errors import DanlabError, check_choice, check_int_at_least, check_positive
    from danlab.filters.sakov import TUNED, tune_sakov

    check_twin_options(args)
    check_choice("algorithm", args.algorithm.upper(), ("A1", "A2"))
    algorithm = args.algorithm.upper()
    steps = TUNED[algorithm][0] if args.steps is None else args.steps
    check_int_at_least("steps", steps, 1)
    check_positive("eps", args.eps)
    try:
        scales = tuple(float(s) for s in args.scales.split(","))
    except ValueError:
        raise DanlabError(f"--scales={args.scales!r} is not allowed: give numbers like "
                          "0.03,0.1") from None
    for s in scales:
        check_positive("scale", s)
    model = Lorenz96(args.forcing, args.inner_dt)
    twin = make_twin(model, ObservationConfig(args.obs, args.sigma), args.nx, args.dt,
                     args.trajectories, args.cycles, args.seed)
    best, table = tune_sakov(twin, model, algorithm, steps, args.eps, scales, args.spinup)
    if args.json:
        print_json({"algorithm": algorithm, "steps": steps, "eps": args.eps, "best_scale": best,
                    "table": [{"scale": s, "rmse": r} for s, r in table.items()]})
    else:
        print("| scale | test RMSE |\n|---|---|")
        for s, r in table.items():
            print(f"| {s:g} | {r:.4f} |")
        print(f"best scale: {best:g} (use danlab baseline --method sakov-{algorithm.lower()} "
              f"--steps {steps} --eps {args.eps:g} --scale {best:g})")
    return 0
