"""danlab baseline: a classical DA method on the test trajectories of a twin experiment (or on
your own observations), scored with the test-RMSE protocol."""

from __future__ import annotations

import time
from dataclasses import asdict, fields
from pathlib import Path

from danlab.cli._common import (
    add_output_options,
    add_twin_options,
    print_json,
    progress_on,
    resolve_device,
    resolve_dtype,
    twin_from_args,
    twin_options_given,
    warn_diverged,
)
from danlab.errors import check


def method_options() -> dict:
    """{parameter: (type, help, [methods])} over every registered method."""
    import typing

    from danlab.filters import METHODS

    helps: dict = {}
    types: dict = {}
    for method, cls in METHODS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if not f.init or "help" not in f.metadata:
                continue
            types.setdefault(f.name, hints[f.name])
            helps.setdefault(f.name, {}).setdefault(f.metadata["help"], []).append(method)
    out = {}
    for name, by_help in helps.items():
        methods = [m for ms in by_help.values() for m in ms]
        text = (next(iter(by_help)) if len(by_help) == 1 else
                "; ".join(f"{', '.join(ms)}: {h}" for h, ms in by_help.items()))
        out[name] = (types[name], text, methods)
    return out


def register(sub) -> None:
    from danlab.filters import METHODS
    from danlab.spec import parse_bool

    p = sub.add_parser("baseline", help="run a classical DA method on the test trajectories",
                       description=__doc__)
    p.add_argument("--method", required=True, metavar="|".join(METHODS),
                   help="the DA method")
    g = p.add_argument_group("method parameters (default: the method's own)")
    for name, (tp, helptext, methods) in method_options().items():
        kind = parse_bool if tp is bool else (tp if tp in (int, float) else str)
        metavar = {bool: "true|false", int: "INT", float: "FLOAT"}.get(tp, "TEXT")
        extra = dict(nargs="?", const=True) if tp is bool else {}
        g.add_argument("--" + name.replace("_", "-"), dest="param_" + name, type=kind,
                       default=None, metavar=metavar, **extra,
                       help=f"{helptext} [{', '.join(methods)}]")
    p.add_argument("--tuned", default=None, metavar="FILE",
                   help="parameters from a `danlab tune-3dvar / tune-sakov --out FILE` result")
    add_twin_options(p)
    p.add_argument("--obs-file", default=None, metavar="FILE",
                   help="your own observations (netCDF, docs/observations.md) instead of a twin")
    add_output_options(p, out="directory for the results (netCDF and JSON)")
    p.set_defaults(func=run)


def filter_parameters(args) -> dict:
    """The method's parameters: those of --tuned, then those given on the command line."""
    from danlab.errors import check_choice
    from danlab.filters import METHODS, method_parameters
    from danlab.tune import Tuning

    check_choice("method", args.method, tuple(METHODS))
    params = {}
    if args.tuned:
        t = Tuning.read(args.tuned)
        check(t.method == args.method, f"--tuned {args.tuned!r} tuned {t.method!r}, not "
                                       f"{args.method!r}")
        params.update(t.parameters())
    allowed = method_parameters(args.method)
    for name in method_options():
        v = getattr(args, "param_" + name)
        if v is not None:
            check(name in allowed, f"--{name.replace('_', '-')} is not a parameter of method "
                                   f"{args.method!r}: it takes {', '.join(allowed) or 'none'}")
            params[name] = v
    return params


def run(args) -> int:
    from danlab.cycle import run_filter
    from danlab.filters import make_filter

    params = filter_parameters(args)
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    t0 = time.perf_counter()
    if args.obs_file:
        model, twin, spinup, recorded = _from_file(args, device, dtype)
    else:
        spec = twin_from_args(args)
        model, twin = spec.build(device=device, dtype=dtype)
        spinup, recorded = spec.spinup, {"twin": asdict(spec)}
    filt = make_filter(args.method, **params)
    result = run_filter(filt, twin, model, spinup=spinup, progress=progress_on(args),
                        keep_analyses=bool(args.obs_file and args.out))
    summary = {"method": args.method, "parameters": filt.parameters(), **result.summary(),
               "seconds": time.perf_counter() - t0, "seconds_filter": result.seconds,
               **recorded}
    if args.out:
        write_results(Path(args.out), args.method, result, summary)
    warn_diverged(args.method, result)
    if args.json:
        print_json(summary)
    elif result.has_truth:
        print(f"{args.method}: test RMSE {result.label()} over {result.n_trajectories} "
              f"trajectories, {summary['seconds']:.1f} s; test set {result.test_set['spec']} "
              f"[{result.test_set['fingerprint']}]")
    else:
        print(f"{args.method}: the observation file has no truth, so there is no RMSE; "
              f"{result.n_diverged} trajectories diverged (non-finite)"
              + (f"; analyses in {args.out}" if args.out else "; use --out to keep the analyses"))
    return 0


def _from_file(args, device, dtype):
    """Model, data, spin-up and description of --obs-file; twin options that the file sets are
    refused, model settings that conflict with the file's attributes too."""
    from danlab.obsfile import read_observation_file
    from danlab.twin import TwinSpec

    given = [o for o in twin_options_given(args)
             if o not in ("--model", "--forcing", "--inner-dt", "--spinup")]
    check(not given, f"{', '.join(given)} cannot be used with --obs-file: the file sets them")
    f = read_observation_file(args.obs_file, dtype=dtype, device=device)
    settings = dict(f.model_settings)
    for name in ("model", "forcing", "inner_dt"):
        v = getattr(args, "twin_" + name)
        if v is not None:
            check(name not in settings or settings[name] == v,
                  f"--{name.replace('_', '-')}={v} conflicts with the file's {name}="
                  f"{settings[name]}")
            settings[name] = v
    spinup = args.twin_spinup if args.twin_spinup is not None else 0
    check(f.twin.n_cycles > spinup,
          f"spinup={spinup} is not allowed: the file has only {f.twin.n_cycles} cycles")
    spec = TwinSpec(model=settings.get("model", "l96"), nx=f.twin.nx,
                    forcing=settings.get("forcing"), dt=f.twin.dt,
                    inner_dt=settings.get("inner_dt"), sigma=f.twin.sigma,
                    trajectories=f.twin.n_trajectories, cycles=f.twin.n_cycles, spinup=spinup)
    model = spec.make_model()
    return model, f.twin, spinup, {"observations": f.describe(),
                                   "model": {"name": spec.model, **model.options()}}


def write_results(out: Path, name: str, result, summary: dict) -> None:
    """<out>/<name>.nc (per-trajectory and per-cycle RMSEs, diverged flags, analyses if kept)
    and <name>.json (the summary)."""
    import xarray as xr

    from danlab import io

    ds = xr.Dataset(
        {"rmse_per_trajectory": (("trajectory",), result.rmse_per_trajectory.numpy()),
         "rmse_per_cycle": (("cycle", "trajectory"), result.rmse_per_cycle.numpy()),
         "diverged": (("trajectory",), result.diverged.numpy().astype("int8")),
         "diverged_at": (("trajectory",), result.diverged_at.numpy())},
        attrs={"method": name, "rmse": result.rmse, "rmse_label": result.label(),
               "diverged": result.n_diverged, "spinup": result.spinup,
               "test_set": result.test_set.get("spec", ""),
               "fingerprint": result.test_set.get("fingerprint", "")})
    if result.analyses is not None:
        ds["analysis"] = (("cycle", "trajectory", "site"), result.analyses.numpy())
    io.save_netcdf(out / f"{name}.nc", ds)
    io.write_json(out / f"{name}.json", summary)
