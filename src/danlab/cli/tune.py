"""Tuning commands: scan one parameter of a method on a twin kept apart from the test set,
refine the grid around the minimum, and write the result for `danlab baseline --tuned FILE`."""

from __future__ import annotations

from danlab.cli._common import (
    add_output_options,
    add_twin_options,
    parse_list,
    print_json,
    twin_from_args,
)

COMMANDS = {
    # command: (method(s), parameter, default values, help)
    "tune-3dvar": (("3dvar",), "scale",
                   "0.005,0.01,0.015,0.02,0.025,0.03,0.04,0.05,0.07,0.1,0.2,0.5,1",
                   "tune the scale of 3D-Var's static B"),
    "tune-sakov": (("sakov-a1", "sakov-a2"), "scale", "0.01,0.02,0.03,0.05,0.1,0.2,0.5,1,2",
                   "tune the scale of Sakov's A1/A2 P^f"),
    "tune-letkf": (("letkf", "local-enkf-n"), "loc_radius", "3,5,7,9,12,15,20",
                   "tune the localisation radius (or --parameter inflation / xN) of the LETKF"),
}


def register(sub) -> None:
    from danlab.tune import TUNING_TWIN

    for command, (methods, parameter, values, helptext) in COMMANDS.items():
        p = sub.add_parser(command, help=helptext, description=__doc__)
        if len(methods) > 1:
            p.add_argument("--method", default=methods[0], metavar="|".join(methods),
                           help=f"the method (default: {methods[0]})")
        if methods[0].startswith("sakov"):
            p.add_argument("--steps", type=int, default=None,
                           help="analysis steps T backtracked (default: the method's)")
            p.add_argument("--eps", type=float, default=None,
                           help="initial spread eps (default: the method's)")
        if methods[0] == "letkf":
            p.add_argument("--parameter", default=parameter, metavar="loc_radius|inflation|xN",
                           help=f"the parameter scanned (default: {parameter})")
            p.add_argument("--members", type=int, default=None, help="ensemble size N")
            p.add_argument("--loc-radius", type=float, default=None,
                           help="the radius, when another parameter is scanned")
            p.add_argument("--inflation", type=float, default=None,
                           help="the inflation, when another parameter is scanned")
        p.add_argument("--values", default=values, metavar="LIST",
                       help=f"comma-separated {parameter} values to scan (default: {values})")
        p.add_argument("--rounds", type=int, default=2,
                       help="refinements around the best value (default: 2)")
        add_twin_options(p, TUNING_TWIN)
        add_output_options(p, dtype=None, out=None)
        p.add_argument("--out", default=None, metavar="FILE",
                       help="write the result (JSON) here, for `danlab baseline --tuned FILE`")
        p.set_defaults(func=run, methods=methods, parameter_default=parameter)


def run(args) -> int:
    from danlab.errors import check_choice, check_int_at_least, check_positive
    from danlab.filters import make_filter
    from danlab.progress import log, quiet
    from danlab.tune import TUNING_TWIN, tune

    method = getattr(args, "method", args.methods[0])
    check_choice("method", method, args.methods)
    check_int_at_least("rounds", args.rounds, 0)
    parameter = getattr(args, "parameter", args.parameter_default)
    fixed = {k: getattr(args, k) for k in ("steps", "eps", "members", "loc_radius", "inflation")
             if getattr(args, k, None) is not None and k != parameter}
    twin = twin_from_args(args, TUNING_TWIN)
    values = parse_list(args.values, float, "values")
    for v in values:
        check_positive(parameter, v)
    make_filter(method, **fixed)  # bad fixed parameters: one line, before any log
    (quiet if args.json else log)(f"tuning {method} {parameter} on {twin.describe()}")
    t = tune(method, parameter, values, twin, rounds=args.rounds,
             log=None if args.json else log, **fixed)
    if args.out:
        t.write(args.out)
    if args.json:
        print_json({"method": t.method, "parameter": t.parameter, "best": t.best,
                    "table": [{"value": v, "rmse": r} for v, r in t.table], "twin": t.twin,
                    "fixed": t.fixed, "out": args.out})
    else:
        print(f"| {t.parameter} | tuning RMSE |\n|---|---|")
        for v, r in t.table:
            print(f"| {v:.6g} | {r:.4f} |")
        flag = "--" + t.parameter.replace("_", "-")
        use = f"--tuned {args.out}" if args.out else f"{flag} {t.best:.6g}"
        print(f"best {t.parameter}: {t.best:.6g} (danlab baseline --method {method} {use})")
    return 0
