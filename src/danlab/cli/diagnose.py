"""danlab diagnose KIND RUN_DIR...: what a trained DAN has learned. Each kind writes a netCDF
file, a JSON summary (--json) and PNG/PDF figures in the paper's style under --out:

  covariance     P^a(x) by Jacobian or Stein regression (Eq. 5, 12)
  marginal-gain  the mean marginal gain Omega_r (Eq. 21; Fig. 1, 2: one panel per run)
  nonlinearity   r(lambda) of Eq. 23 (Fig. 6; one curve per run and dt)
  innovations    histograms of the projected innovations (Fig. 7)
  compare-enkf   the DAN's P^a against the EnKF-N's along the same trajectory

DA samples use each run's own twin (model, observation configuration, dt) unless --nx, --obs
or --dt say otherwise."""

from __future__ import annotations

from pathlib import Path

from danlab.cli._common import (
    add_output_options,
    parse_list,
    print_json,
    resolve_device,
    resolve_dtype,
)
from danlab.errors import check
from danlab.twin import DIAGNOSTIC_SEED

KINDS = {
    "covariance": "P^a(x) by Jacobian or Stein regression",
    "marginal-gain": "the mean marginal gain Omega_r (Fig. 1, 2)",
    "nonlinearity": "r(lambda) of Eq. 23 (Fig. 6)",
    "innovations": "projected-innovation histograms (Fig. 7)",
    "compare-enkf": "the DAN's P^a against the EnKF-N's",
}


def register(sub) -> None:
    p = sub.add_parser("diagnose", help="diagnostics of trained DANs", description=__doc__)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, helptext in KINDS.items():
        k = kinds.add_parser(kind, help=helptext, description=helptext)
        k.add_argument("run_dir", nargs="+" if kind != "covariance" and kind != "compare-enkf"
                       else 1, help="run directories written by danlab train"
                       + (" (one panel / curve each)" if kind not in ("covariance",
                                                                       "compare-enkf") else ""))
        k.add_argument("--out", required=True, metavar="DIR",
                       help="directory for the netCDF file and figures")
        k.add_argument("--seed", type=int, default=DIAGNOSTIC_SEED,
                       help=f"seed of the states and samples (default: {DIAGNOSTIC_SEED})")
        k.add_argument("--nx", default=None, metavar="N[,N...]",
                       help="evaluate at this N_x instead of the run's (one per run, or one "
                            "for all)")
        k.add_argument("--obs", default=None, metavar="KIND",
                       help="observation configuration instead of the run's")
        _OPTIONS[kind](k)
        add_output_options(k)
        k.set_defaults(func=run)


def _covariance_options(p) -> None:
    p.add_argument("--states", type=int, default=200, help="states on the attractor "
                   "(default: 200)")
    p.add_argument("--method", default="jacobian", metavar="jacobian|stein",
                   help="exact Jacobian at zeta = 0 or Stein regression (default: jacobian)")
    p.add_argument("--samples", type=int, default=64, help="N_p for stein (default: 64)")


def _gain_options(p) -> None:
    p.add_argument("--states", type=int, default=400,
                   help="states averaged (default: 400; the JSON reports the sampling error)")
    p.add_argument("--method", default="composite", metavar="autodiff|composite",
                   help="second-order autodiff or the composite regression of App. G-H "
                        "(default: composite)")
    p.add_argument("--samples", type=int, default=64, help="N_p for composite (default: 64)")
    p.add_argument("--r", type=int, default=None, help="reference site (default: N_x // 2)")
    p.add_argument("--shifts", default="1", metavar="N|all",
                   help="translations per state (default: 1)")
    p.add_argument("--full", action="store_true", help="build the full Gamma (slow)")
    p.add_argument("--antithetic", action="store_true", help="composite: +/- sample pairs")
    p.add_argument("--scale", default=None, metavar="each|common",
                   help="colour scale per panel or shared (default: each for one run, common "
                        "for several)")


def _da_options(p, cycles=600, spinup=100, trajectories=4) -> None:
    p.add_argument("--dt", default=None, metavar="LIST",
                   help="dt values to run each DAN at (default: each run's own dt)")
    p.add_argument("--cycles", type=int, default=cycles, help=f"DA cycles (default: {cycles})")
    p.add_argument("--spinup", type=int, default=spinup,
                   help=f"DA cycles discarded (default: {spinup})")
    p.add_argument("--trajectories", type=int, default=trajectories,
                   help=f"DA trajectories (default: {trajectories})")


def _nonlinearity_options(p) -> None:
    p.add_argument("--states", type=int, default=200, help="(x, zeta) pairs (default: 200)")
    p.add_argument("--lambdas", default="0.1,0.2,0.5,1,2,5,10,20", metavar="LIST",
                   help="lambda values (default: 0.1,0.2,0.5,1,2,5,10,20)")
    p.add_argument("--truncate", type=float, default=1e-8, metavar="RTOL",
                   help="relative cut-off of P^a's singular values in its pseudo-inverse "
                        "(default: 1e-8, Eq. 23 as written; 0.05 keeps only the well-"
                        "determined directions, docs/diagnostics.md)")
    p.add_argument("--no-standardise", action="store_true",
                   help="Euclidean ratio, without P^a(x)^-1")
    _da_options(p)


def _innovation_options(p) -> None:
    p.add_argument("--bins", type=int, default=81, help="histogram bins (default: 81)")
    _da_options(p)


def _compare_options(p) -> None:
    p.add_argument("--members", type=int, default=40, help="EnKF-N members (default: 40)")
    p.add_argument("--every", type=int, default=10, help="sample every n cycles (default: 10)")
    p.add_argument("--k", type=int, default=10, help="dominant eigenspace size (default: 10)")
    p.add_argument("--cycles", type=int, default=700, help="DA cycles (default: 700)")
    p.add_argument("--spinup", type=int, default=200, help="DA cycles discarded (default: 200)")
    p.add_argument("--trajectories", type=int, default=1, help="DA trajectories (default: 1)")


_OPTIONS = {"covariance": _covariance_options, "marginal-gain": _gain_options,
            "nonlinearity": _nonlinearity_options, "innovations": _innovation_options,
            "compare-enkf": _compare_options}


def run(args) -> int:
    from danlab import io
    from danlab.diagnostics import plots

    for d in args.run_dir:
        check(Path(d).is_dir(), f"run directory {d!r} does not exist")
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    ds, summary, fig = _compute(args, device, dtype)
    ds.attrs["run_dirs"] = ";".join(str(d) for d in args.run_dir)
    out = Path(args.out)
    stem = args.kind.replace("-", "_")
    files = [str(io.save_netcdf(out / f"{stem}.nc", ds))]
    files += [str(f) for f in io.save_figure(fig, out / stem)]
    plots.close(fig)
    summary = {"kind": args.kind, "run_dirs": list(args.run_dir), **summary, "files": files}
    if args.json:
        print_json(summary)
    else:
        print(f"diagnose {args.kind}: wrote {', '.join(files)}")
    return 0


def _runs(args, device, dtype):
    """(operator, twin) per run: the run's twin with --nx / --obs (and DA sizes) applied."""
    from danlab.diagnostics.report import with_twin
    from danlab.runs import load

    nx = parse_list(args.nx, int, "nx") if args.nx else [None]
    check(len(nx) in (1, len(args.run_dir)),
          f"--nx has {len(nx)} values for {len(args.run_dir)} run directories: give one or "
          "one per run")
    out = []
    for k, d in enumerate(args.run_dir):
        op = load(d, dtype=dtype, device=str(device))
        sizes = {n: getattr(args, n, None) for n in ("cycles", "spinup", "trajectories")}
        twin = with_twin(op.config.twin, nx=nx[0] if len(nx) == 1 else nx[k], obs=args.obs,
                         seed=args.seed, **sizes)
        out.append((op, twin))
    return out


def _with_dts(args, runs):
    from danlab.diagnostics.report import with_twin

    dts = parse_list(args.dt, float, "dt") if args.dt else [None]
    return [(op, with_twin(twin, dt=dt)) for op, twin in runs for dt in dts]


def _compute(args, device, dtype):
    from danlab.diagnostics import report

    runs = _runs(args, device, dtype)
    if args.kind == "covariance":
        op, twin = runs[0]
        return report.covariance(op, twin, args.states, args.method, args.samples, args.seed,
                                 dtype, device)
    if args.kind == "marginal-gain":
        shifts = "all" if args.shifts == "all" else parse_list(args.shifts, int, "shifts")[0]
        scale = args.scale or ("each" if len(runs) == 1 else "common")
        return report.marginal_gain([o for o, _ in runs], [t for _, t in runs], args.states,
                                    args.method, args.samples, args.r, shifts, args.full,
                                    args.antithetic, scale, args.seed, dtype, device)
    if args.kind == "nonlinearity":
        return report.nonlinearity(_with_dts(args, runs), parse_list(args.lambdas, float,
                                                                     "lambdas"),
                                   args.states, args.truncate, not args.no_standardise,
                                   args.seed, dtype)
    if args.kind == "innovations":
        return report.innovations(_with_dts(args, runs), args.bins, dtype)
    op, twin = runs[0]
    return report.compare_enkf(op, twin, args.members, args.every, args.k, dtype)
