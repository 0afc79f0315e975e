"""Diagnostics of trained runs as results: each function takes loaded operators (with their
TrainConfig as `op.config`) and returns (xarray Dataset, JSON summary, figure), from which
`danlab diagnose` writes netCDF, JSON and PNG/PDF. The twin of every DA sample is the run's own
(its model, observation configuration and dt) unless the caller changes it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from danlab.errors import check
from danlab.twin import DIAGNOSTIC_SEED


def label(twin) -> str:
    return f"N_x={twin.nx}, obs={twin.obs}, dt={twin.dt:g}"


def attractor_trajectory(twin, k: int, seed: int = DIAGNOSTIC_SEED, dtype=torch.float64,
                         device="cpu", spacing: float | None = None):
    """k states of (at most 8) trajectories on the model's attractor, `spacing` time apart
    (default: 0.25, or the model's decorrelation time `climatology_interval` if longer: 10
    for KS, whose step 0.5 cannot make 0.25 and whose states stay correlated for ~10)."""
    from danlab.twin import attractor_states

    check(isinstance(k, int) and k >= 1, f"states={k!r} is not allowed: it must be >= 1")
    model = twin.make_model()
    if spacing is None:
        spacing = max(0.25, model.climatology_interval)
    x = attractor_states(model, min(8, k), twin.nx, seed)
    xs = []
    with torch.no_grad():
        while sum(v.shape[0] for v in xs) < k:
            xs.append(x)
            x = model.forecast(x, spacing)
    return torch.cat(xs)[:k].to(device=device, dtype=dtype)


def locality(om: np.ndarray, r: int, radius: int = 4) -> float:
    """Fraction of sum |Omega_r|^2 within `radius` sites of (r, r) (circular distance)."""
    n = om.shape[0]
    d = np.abs((np.arange(n) - r + n // 2) % n - n // 2)
    near = (d[:, None] <= radius) & (d[None, :] <= radius)
    tot = float((om**2).sum())
    return float((om[near] ** 2).sum() / tot) if tot > 0 else float("nan")


def covariance(op, twin, states: int, method: str, samples: int, seed: int, dtype, device):
    import xarray as xr

    from danlab.diagnostics.covariance import analysis_covariance
    from danlab.diagnostics.plots import plot_covariance

    x = attractor_trajectory(twin, states, seed, dtype, device)
    gen = torch.Generator().manual_seed(seed)
    pa = analysis_covariance(op, x, method, samples, obs=twin.observation, generator=gen)
    pa_np = pa.detach().cpu().double().numpy()
    ds = xr.Dataset({"pa": (("state", "i", "j"), pa_np),
                     "x": (("state", "site"), x.cpu().double().numpy())},
                    attrs={"method": method, "n_samples": samples, "label": label(twin)})
    diag = pa_np.diagonal(axis1=1, axis2=2)
    summary = {"method": method, "states": int(x.shape[0]), "nx": twin.nx,
               "mean_diagonal": float(diag.mean()),
               "mean_trace_fraction_diagonal": float((diag**2).sum() / (pa_np**2).sum())}
    return ds, summary, plot_covariance(ds)


def marginal_gain(ops, twins, states: int, method: str, samples: int, r, shifts, full: bool,
                  antithetic: bool, scale: str, seed: int, dtype, device):
    """Omega_r of each run (one panel each), with the standard error of Gamma-bar's mean
    over states (from two halves of the states) so its sampling error is visible."""
    import xarray as xr

    from danlab.diagnostics import mean_marginal_gain
    from danlab.diagnostics.plots import plot_omega

    check(scale in ("each", "common"), f"scale={scale!r} is not allowed: choose each or common")
    data, attrs, panels = {}, {"method": method, "panels": len(ops)}, []
    for k, (op, twin) in enumerate(zip(ops, twins)):
        x = attractor_trajectory(twin, states, seed, dtype, device)
        halves = []
        for h, part in enumerate((x[0::2], x[1::2]) if states >= 2 else (x,)):
            res = mean_marginal_gain(  # independent zeta draws per half
                op, part, r, method, full=full, shifts=shifts, n_samples=samples,
                obs=twin.observation, antithetic=antithetic,
                generator=torch.Generator().manual_seed(seed + k + 1000 * h))
            halves.append((res, part.shape[0]))
        n = sum(m for _, m in halves)
        om = sum(res.omega.detach().cpu().double().numpy() * m for res, m in halves) / n
        rr = halves[0][0].r
        # two independent halves: the std error of the full mean is |a - b| / 2
        err = (np.abs(halves[0][0].omega.cpu().double().numpy()
                      - halves[-1][0].omega.cpu().double().numpy()) / 2
               if len(halves) == 2 else np.full_like(om, np.nan))
        data[f"omega_{k}"] = ((f"i_{k}", f"j_{k}"), om)
        data[f"omega_stderr_{k}"] = ((f"i_{k}", f"j_{k}"), err)
        attrs[f"label_{k}"] = label(twin)
        attrs[f"r_{k}"] = rr
        peak = float(np.abs(om).max())
        panels.append({"nx": twin.nx, "obs": twin.obs, "r": rr, "max_abs_omega": peak,
                       "relative_stderr_at_peak_scale": float(np.nanmax(err) / peak)
                       if peak > 0 else float("nan"),
                       "locality": locality(om, rr),
                       "seconds": sum(res.seconds for res, _ in halves)})
    ds = xr.Dataset(data, attrs=attrs)
    summary = {"method": method, "states": states, "n_samples": samples, "shifts": shifts,
               "panels": panels}
    return ds, summary, plot_omega(ds, scale)


def nonlinearity(items, lambdas, states: int, rtol: float, standardise: bool, seed: int,
                 dtype):
    """r(lambda) of Eq. 23 for each (operator, twin) in `items`."""
    import xarray as xr

    from danlab.diagnostics import da_samples, nonlinearity_ratio
    from danlab.diagnostics.plots import plot_nonlinearity

    rows, dts, curves = [], [], []
    gen = torch.Generator().manual_seed(seed)
    for op, twin in items:
        s = da_samples(op, twin, dtype)
        pick = torch.randperm(s.xf.shape[0], generator=gen)[:states]
        res = nonlinearity_ratio(op, s.xf[pick], s.zeta[pick], lambdas, rtol=rtol,
                                 standardise=standardise)
        rows.append((res.ratio.numpy(), res.stderr.numpy()))
        dts.append(twin.dt)
        curves.append({"dt": twin.dt, "nx": twin.nx, "da_rmse": s.rmse,
                       "da_diverged": s.n_diverged, "pairs": res.n_samples,
                       "ratio": [float(v) for v in res.ratio],
                       "stderr": [float(v) for v in res.stderr]})
    ds = xr.Dataset({"ratio": (("dt", "lambda"), np.stack([r[0] for r in rows])),
                     "stderr": (("dt", "lambda"), np.stack([r[1] for r in rows]))},
                    coords={"dt": dts, "lambda": lambdas},
                    attrs={"rtol": rtol, "standardise": int(standardise)})
    return ds, {"lambdas": lambdas, "rtol": rtol, "curves": curves}, plot_nonlinearity(ds)


def innovation_stats(zeta: torch.Tensor) -> dict:
    z = zeta.double()
    return {"std": float(z.std()), "max_abs": float(z.abs().max()),
            "kurtosis": float(((z - z.mean()) ** 4).mean() / z.var() ** 2)}


def innovations(items, bins: int, dtype):
    """Histograms of the projected innovations at observed sites (Fig. 7)."""
    import xarray as xr

    from danlab.diagnostics import da_samples, innovation_histogram
    from danlab.diagnostics.plots import plot_innovations

    samples = [(da_samples(op, twin, dtype), twin.dt) for op, twin in items]
    lim = max(float(s.zeta[s.mask].abs().max()) for s, _ in samples)
    edges, dens, stats = [], [], []
    for s, dt in samples:
        e, d = innovation_histogram(s.zeta, s.mask, bins, lim)
        edges.append(e.numpy())
        dens.append(d.numpy())
        stats.append({"dt": dt, "da_rmse": s.rmse, "da_diverged": s.n_diverged,
                      **innovation_stats(s.zeta[s.mask])})
    ds = xr.Dataset({"density": (("dt", "bin"), np.stack(dens)),
                     "edges": (("dt", "edge"), np.stack(edges))},
                    coords={"dt": [dt for _, dt in samples]})
    return ds, {"histograms": stats}, plot_innovations(ds)


def compare_enkf(op, twin, members: int, every: int, k: int, dtype):
    import xarray as xr

    from danlab.diagnostics import compare_with_enkf
    from danlab.diagnostics.plots import plot_compare

    res = compare_with_enkf(op, twin, members=members, every=every, k=k, dtype=dtype)
    ds = xr.Dataset({name: (dims, getattr(res, name).cpu().double().numpy())
                     for name, dims in (("eig_dan", ("sample", "rank")),
                                        ("eig_enkf", ("sample", "rank")),
                                        ("cosines", ("sample", "k")),
                                        ("alignment", ("sample", "k")),
                                        ("rel_diff", ("sample",)),
                                        ("asymmetry", ("sample",)))},
                    attrs={"random_cos2": res.random_cos2, "members": members,
                           "enkf_rmse": res.enkf_rmse})
    return ds, res.summary(), plot_compare(ds)


#: each diagnostic's options and their defaults (those of `danlab diagnose`)
DIAGNOSTICS = {
    "covariance": {"states": 200, "method": "jacobian", "samples": 64},
    "marginal-gain": {"states": 400, "method": "composite", "samples": 64, "r": None,
                      "shifts": 1, "full": False, "antithetic": False},
    "nonlinearity": {"states": 200, "lambdas": [0.1, 0.2, 0.5, 1, 2, 5, 10, 20],
                     "truncate": 1e-8, "standardise": True},
    "innovations": {"bins": 81},
    "compare-enkf": {"members": 40, "every": 10, "k": 10},
}


def check_options(diagnostic: str, options: dict) -> dict:
    """The diagnostic's options with defaults filled in; unknown ones refused."""
    known = DIAGNOSTICS[diagnostic]
    extra = sorted(set(options) - set(known))
    check(not extra, f"options {extra} are not allowed for diagnostic {diagnostic!r}: it "
                     f"takes {', '.join(known)}")
    return {**known, **options}


def run_diagnostic(diagnostic: str, op, twin, options: dict, dtype=torch.float64,
                   device="cpu", seed: int = DIAGNOSTIC_SEED):
    """(Dataset, summary) of one diagnostic of operator `op` on `twin` (the DA samples'
    twin: model, observations, dt and sizes)."""
    o = check_options(diagnostic, options)
    if diagnostic == "covariance":
        ds, summary, fig = covariance(op, twin, o["states"], o["method"], o["samples"], seed,
                                      dtype, device)
    elif diagnostic == "marginal-gain":
        ds, summary, fig = marginal_gain([op], [twin], o["states"], o["method"], o["samples"],
                                         o["r"], o["shifts"], o["full"], o["antithetic"],
                                         "each", seed, dtype, device)
    elif diagnostic == "nonlinearity":
        ds, summary, fig = nonlinearity([(op, twin)], o["lambdas"], o["states"], o["truncate"],
                                        o["standardise"], seed, dtype)
    elif diagnostic == "innovations":
        ds, summary, fig = innovations([(op, twin)], o["bins"], dtype)
    else:
        ds, summary, fig = compare_enkf(op, twin, o["members"], o["every"], o["k"], dtype)
    from danlab.diagnostics.plots import close

    close(fig)
    return ds, summary


def with_twin(twin, **changes):
    """The run's twin with the given changes (None values ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(twin, **changes) if changes else twin
