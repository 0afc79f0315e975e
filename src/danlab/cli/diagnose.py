"""danlab diagnose: what a trained DAN has learned (P^a, Omega_r, r(lambda), innovations,
comparison with the EnKF-N); netCDF results and PNG/PDF figures in the paper's style."""

from __future__ import annotations

from pathlib import Path

from danlab.cli._common import add_device_options, print_json, resolve_device, resolve_dtype
from danlab.errors import check

KINDS = ("covariance", "marginal-gain", "nonlinearity", "innovations", "compare-enkf")


def _floats(text: str) -> list[float]:
    from danlab.errors import DanlabError

    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DanlabError(f"{text!r} is not a comma-separated list of numbers") from None
    check(len(vals) > 0, "an empty list of numbers is not allowed")
    return vals


def register(sub) -> None:
    p = sub.add_parser("diagnose", help="diagnostics of trained DANs", description=__doc__)
    p.add_argument("kind", choices=KINDS, metavar="{" + ",".join(KINDS) + "}")
    p.add_argument("run_dir", nargs="+", help="run directories written by danlab train "
                   "(several: one panel / curve each)")
    p.add_argument("--out", required=True, help="directory for the netCDF file and figures")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--states", type=int, default=200,
                   help="states (covariance, marginal-gain) or (x, zeta) pairs (nonlinearity)")
    p.add_argument("--method", default=None,
                   help="covariance: jacobian | stein; marginal-gain: autodiff | composite")
    p.add_argument("--samples", type=int, default=64, help="N_p for stein / composite")
    p.add_argument("--r", type=int, default=None, help="reference site (default N_x // 2)")
    p.add_argument("--shifts", default="1", help="marginal-gain: translations per state "
                   "(an integer or 'all')")
    p.add_argument("--full", action="store_true", help="marginal-gain: build the full Gamma")
    p.add_argument("--antithetic", action="store_true", help="composite: +/- sample pairs")
    p.add_argument("--scale", default=None, help="marginal-gain figure: each | common "
                   "(default each for one run, common for several)")
    p.add_argument("--lambdas", default="0.1,0.2,0.5,1,2,5,10,20",
                   help="nonlinearity: comma-separated lambda values")
    # A trained DAN's Jacobian P^a has a floor of poorly determined, slightly asymmetric
    # directions (docs/diagnostics.md); inverting them exactly lets the small nonlinear part
    # dominate r(lambda). 5% of the largest singular value keeps the informative directions.
    p.add_argument("--rtol", type=float, default=0.05, help="nonlinearity: relative cut-off "
                   "of the singular values of P^a in its pseudo-inverse (default 0.05; "
                   "1e-8 is the exact pseudo-inverse)")
    p.add_argument("--no-standardise", action="store_true",
                   help="nonlinearity: Euclidean ratio, without P^a(x)^-1")
    p.add_argument("--dt", default=None, help="comma-separated dt values to run each DAN at "
                   "(nonlinearity, innovations; default: each run's own dt)")
    p.add_argument("--cycles", type=int, default=600, help="DA cycles per run")
    p.add_argument("--spinup", type=int, default=100, help="DA cycles discarded")
    p.add_argument("--trajectories", type=int, default=4, help="DA trajectories")
    p.add_argument("--bins", type=int, default=81, help="innovations: histogram bins")
    p.add_argument("--members", type=int, default=40, help="compare-enkf: EnKF-N members")
    p.add_argument("--every", type=int, default=10, help="compare-enkf: sample every n cycles")
    p.add_argument("--k", type=int, default=10, help="compare-enkf: dominant eigenspace size")
    p.add_argument("--nx", default=None, help="evaluate at this N_x instead of the run's (the "
                   "circular CNN does not depend on N_x); comma-separated: one per run")
    p.add_argument("--obs", default=None, help="evaluate with this observation configuration "
                   "instead of the run's")
    p.add_argument("--seed", type=int, default=2_000_003, help="seed of states and samples")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from danlab import io
    from danlab.diagnostics import plots

    for d in args.run_dir:
        check(Path(d).is_dir(), f"run directory {d!r} does not exist")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    out = Path(args.out)
    ds, summary, fig = _KIND[args.kind](args, device, dtype)
    ds.attrs["run_dirs"] = ";".join(str(d) for d in args.run_dir)
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


def _nx_for(args, k: int):
    if args.nx is None:
        return None
    vals = [_int(v, "nx") for v in args.nx.split(",")]
    check(len(vals) in (1, len(args.run_dir)),
          f"--nx has {len(vals)} values for {len(args.run_dir)} run directories: give one or "
          "one per run")
    return vals[0] if len(vals) == 1 else vals[k]


def _load(run_dir, device, dtype, args, k: int = 0):
    from danlab.train import load

    op = load(run_dir, dtype=dtype, device=str(device))
    cfg = op.config
    nx = _nx_for(args, k)
    if nx is not None:
        cfg = cfg.replace(nx=nx)
    if args.obs is not None:
        cfg = cfg.replace(obs=args.obs)
    return op, cfg


def _label(cfg) -> str:
    return f"N_x={cfg.nx}, obs={cfg.obs}, dt={cfg.dt:g}"


def attractor_trajectory(cfg, k: int, seed: int, dtype, device, spacing: float = 0.25):
    """k states of L96 trajectories (8 at most) on the attractor, `spacing` time units apart."""
    import torch

    from danlab.dynamics import Lorenz96
    from danlab.twin import attractor_states

    check(isinstance(k, int) and k >= 1, f"states={k!r} is not allowed: it must be >= 1")
    model = Lorenz96(cfg.forcing, cfg.inner_dt)
    b = min(8, k)
    x = attractor_states(model, b, cfg.nx, seed)
    xs = []
    with torch.no_grad():
        while sum(v.shape[0] for v in xs) < k:
            xs.append(x)
            x = model.forecast(x, spacing)
    return torch.cat(xs)[:k].to(device=device, dtype=dtype)


def _covariance(args, device, dtype):
    import torch
    import xarray as xr

    from danlab.diagnostics import analysis_covariance
    from danlab.diagnostics.plots import plot_covariance

    op, cfg = _load(args.run_dir[0], device, dtype, args)
    method = args.method or "jacobian"
    x = attractor_trajectory(cfg, args.states, args.seed, dtype, device)
    gen = torch.Generator().manual_seed(args.seed)
    pa = analysis_covariance(op, x, method, args.samples, sigma=cfg.sigma, generator=gen)
    pa_np = pa.detach().cpu().double().numpy()
    ds = xr.Dataset({"pa": (("state", "i", "j"), pa_np),
                     "x": (("state", "site"), x.cpu().double().numpy())},
                    attrs={"method": method, "n_samples": args.samples, "label": _label(cfg)})
    diag = pa_np.diagonal(axis1=1, axis2=2)
    summary = {"method": method, "states": int(x.shape[0]), "nx": cfg.nx,
               "mean_diagonal": float(diag.mean()),
               "mean_trace_fraction_diagonal": float((diag**2).sum() / (pa_np**2).sum())}
    return ds, summary, plot_covariance(ds)


def _marginal_gain(args, device, dtype):
    import torch
    import xarray as xr

    from danlab.diagnostics import mean_marginal_gain
    from danlab.diagnostics.plots import plot_omega
    from danlab.observations import ObservationConfig

    method = args.method or "composite"
    shifts = "all" if args.shifts == "all" else _int(args.shifts, "shifts")
    data, attrs, panels = {}, {"method": method, "panels": len(args.run_dir)}, []
    for k, run_dir in enumerate(args.run_dir):
        op, cfg = _load(run_dir, device, dtype, args, k)
        x = attractor_trajectory(cfg, args.states, args.seed, dtype, device)
        res = mean_marginal_gain(
            op, x, args.r, method, full=args.full, shifts=shifts, n_samples=args.samples,
            obs=ObservationConfig(cfg.obs, cfg.sigma), antithetic=args.antithetic,
            generator=torch.Generator().manual_seed(args.seed + k))
        om = res.omega.detach().cpu().double().numpy()
        data[f"omega_{k}"] = ((f"i_{k}", f"j_{k}"), om)
        attrs[f"label_{k}"] = _label(cfg)
        attrs[f"r_{k}"] = res.r
        panels.append({"run_dir": run_dir, "nx": cfg.nx, "obs": cfg.obs, "r": res.r,
                       "max_abs_omega": float(abs(om).max()),
                       "locality": _locality(om, res.r), "seconds": res.seconds})
    ds = xr.Dataset(data, attrs=attrs)
    scale = args.scale or ("each" if len(args.run_dir) == 1 else "common")
    check(scale in ("each", "common"), f"scale={scale!r} is not allowed: choose each or common")
    summary = {"method": method, "states": args.states, "n_samples": args.samples,
               "shifts": args.shifts, "panels": panels}
    return ds, summary, plot_omega(ds, scale)


def _locality(om, r: int, radius: int = 4) -> float:
    """Fraction of sum |Omega_r|^2 within `radius` sites of (r, r) (circular distance)."""
    import numpy as np

    n = om.shape[0]
    d = np.abs((np.arange(n) - r + n // 2) % n - n // 2)
    near = (d[:, None] <= radius) & (d[None, :] <= radius)
    tot = float((om**2).sum())
    return float((om[near] ** 2).sum() / tot) if tot > 0 else float("nan")


def _int(text, name):
    from danlab.errors import DanlabError

    try:
        return int(text)
    except ValueError:
        raise DanlabError(f"{name}={text!r} is not allowed: it must be an integer") from None


def _runs_and_dts(args, device, dtype):
    """(operator, config, dt) for each run, at its own dt or at each of --dt."""
    items = []
    for k, run_dir in enumerate(args.run_dir):
        op, cfg = _load(run_dir, device, dtype, args, k)
        for dt in (_floats(args.dt) if args.dt else [cfg.dt]):
            items.append((op, cfg, dt))
    return items


def _samples(op, cfg, dt, args, dtype):
    from danlab.diagnostics import da_samples

    return da_samples(op, cfg.nx, dt, cfg.obs, cfg.sigma, args.cycles, args.spinup,
                      args.trajectories, args.seed, cfg.forcing, cfg.inner_dt, dtype)


def _nonlinearity(args, device, dtype):
    import numpy as np
    import torch
    import xarray as xr

    from danlab.diagnostics import nonlinearity_ratio
    from danlab.diagnostics.plots import plot_nonlinearity

    lambdas = _floats(args.lambdas)
    rows, dts, curves = [], [], []
    gen = torch.Generator().manual_seed(args.seed)
    for op, cfg, dt in _runs_and_dts(args, device, dtype):
        s = _samples(op, cfg, dt, args, dtype)
        pick = torch.randperm(s.xf.shape[0], generator=gen)[:args.states]
        res = nonlinearity_ratio(op, s.xf[pick], s.zeta[pick], lambdas, rtol=args.rtol,
                                 standardise=not args.no_standardise)
        rows.append((res.ratio.numpy(), res.stderr.numpy()))
        dts.append(dt)
        curves.append({"dt": dt, "nx": cfg.nx, "da_rmse": s.rmse, "pairs": res.n_samples,
                       "ratio": [float(v) for v in res.ratio]})
    ds = xr.Dataset({"ratio": (("dt", "lambda"), np.stack([r[0] for r in rows])),
                     "stderr": (("dt", "lambda"), np.stack([r[1] for r in rows]))},
                    coords={"dt": dts, "lambda": lambdas})
    return ds, {"lambdas": lambdas, "curves": curves}, plot_nonlinearity(ds)


def _innovations(args, device, dtype):
    import numpy as np
    import xarray as xr

    from danlab.diagnostics import innovation_histogram
    from danlab.diagnostics.plots import plot_innovations

    samples = [(_samples(op, cfg, dt, args, dtype), dt)
               for op, cfg, dt in _runs_and_dts(args, device, dtype)]
    lim = max(float(s.zeta[s.mask].abs().max()) for s, _ in samples)
    edges, dens, stats = [], [], []
    for s, dt in samples:
        e, d = innovation_histogram(s.zeta, s.mask, args.bins, lim)
        edges.append(e.numpy())
        dens.append(d.numpy())
        z = s.zeta[s.mask].double()
        stats.append({"dt": dt, "da_rmse": s.rmse, "std": float(z.std()),
                      "max_abs": float(z.abs().max()),
                      "kurtosis": float(((z - z.mean()) ** 4).mean() / z.var() ** 2)})
    ds = xr.Dataset({"density": (("dt", "bin"), np.stack(dens)),
                     "edges": (("dt", "edge"), np.stack(edges))},
                    coords={"dt": [dt for _, dt in samples]})
    return ds, {"histograms": stats}, plot_innovations(ds)


def _compare(args, device, dtype):
    import xarray as xr

    from danlab.diagnostics import compare_with_enkf
    from danlab.diagnostics.plots import plot_compare

    op, cfg = _load(args.run_dir[0], device, dtype, args)
    res = compare_with_enkf(op, None, cfg.nx, cfg.dt, cfg.obs, cfg.sigma, args.members,
                            args.cycles, args.spinup, args.every, args.k, 1, args.seed,
                            cfg.forcing, cfg.inner_dt, dtype)
    ds = xr.Dataset({name: (dims, getattr(res, name).cpu().double().numpy())
                     for name, dims in (("eig_dan", ("sample", "rank")),
                                        ("eig_enkf", ("sample", "rank")),
                                        ("cosines", ("sample", "k")),
                                        ("alignment", ("sample", "k")),
                                        ("rel_diff", ("sample",)),
                                        ("asymmetry", ("sample",)))},
                    attrs={"random_cos2": res.random_cos2, "members": args.members,
                           "enkf_rmse": res.enkf_rmse})
    return ds, res.summary(), plot_compare(ds)


_KIND = {"covariance": _covariance, "marginal-gain": _marginal_gain,
         "nonlinearity": _nonlinearity, "innovations": _innovations, "compare-enkf": _compare}
