"""Fig. A3: the scaling law of Eq. A1, RMSE^(1/gamma) = f(N_r^alpha / S_b^beta) with f a
quadratic, fitted (scipy, least squares) to the Fig. A2 results; gamma, alpha, beta and
rho = beta / alpha with 95% confidence intervals beside the paper's 1.435, 0.103, 0.060, 0.58.

The model is written RMSE = (c0 + c1 u + c2 u^2)^gamma with u = N_r^alpha / S_b^beta; since
only the ratio of the exponents is identifiable up to the scale of u, the fit fixes nothing;
the 95% intervals come from the least-squares covariance (a wide interval means the grid does
not constrain that exponent). Each training (seed) is one point of the fit."""

from __future__ import annotations

import numpy as np
import xarray as xr

from danlab.experiments import common as C
from danlab.experiments import figA2

NAME = "figA3"
TITLE = "Scaling law of Eq. A1 fitted to Fig. A2 (Fig. A3)"
PAPER = {"gamma": 1.435, "alpha": 0.103, "beta": 0.060, "rho": 0.58}


def model(x, gamma, alpha, beta, c0, c1, c2):
    n_r, s_b = x
    u = n_r**alpha / s_b**beta
    return np.abs(c0 + c1 * u + c2 * u**2) ** gamma


def fit(n_r, s_b, rmse) -> dict:
    from scipy.optimize import curve_fit

    x = np.vstack([n_r, s_b]).astype(float)
    p0 = [PAPER["gamma"], PAPER["alpha"], PAPER["beta"], 0.5, 0.0, 0.0]
    try:
        params, cov = curve_fit(model, x, rmse, p0=p0, maxfev=20000)
    except RuntimeError as e:  # no convergence: reported in the Dataset, not raised
        nan = (float("nan"), float("nan"))
        return {"params": np.full(6, np.nan), "status": str(e), "residual_rms": float("nan"),
                "ci95": {k: nan for k in ("gamma", "alpha", "beta", "rho")}}
    err = np.sqrt(np.clip(np.diag(cov), 0, np.inf))
    g, a, b = params[:3]
    # rho = b / a by the delta method
    grad = np.array([0, -b / a**2, 1 / a, 0, 0, 0])
    rho_err = float(np.sqrt(max(grad @ cov @ grad, 0.0)))
    out = {"gamma": (g, 1.96 * err[0]), "alpha": (a, 1.96 * err[1]),
           "beta": (b, 1.96 * err[2]), "rho": (b / a, 1.96 * rho_err)}
    return {"params": params, "ci95": out, "status": "converged",
            "residual_rms": float(np.sqrt(np.mean((model(x, *params) - rmse) ** 2)))}


def fit_power_law(n_r, s_b, rmse) -> dict:
    """The two-exponent cross-check of Eq. A1: log RMSE = a + b log N_r + c log S_b by least
    squares, i.e. RMSE proportional to (N_r / S_b^rho)^b with rho = -c / b; 95% half-widths
    from the least-squares covariance (rho's by the delta method). Three parameters instead of
    six, so it stays identified on a small grid where Eq. A1's exponents are not."""
    X = np.column_stack([np.ones(len(rmse)), np.log(n_r), np.log(s_b)]).astype(float)
    z = np.log(np.asarray(rmse, float))
    coef, *_ = np.linalg.lstsq(X, z, rcond=None)
    dof = max(len(z) - 3, 1)
    cov = np.linalg.pinv(X.T @ X) * float(np.sum((z - X @ coef) ** 2)) / dof
    _, b, c = coef
    grad = np.array([0.0, c / b**2, -1 / b])
    return {"b": (b, 1.96 * float(np.sqrt(cov[1, 1]))), "c": (c, 1.96 * float(np.sqrt(cov[2, 2]))),
            "rho": (-c / b, 1.96 * float(np.sqrt(max(grad @ cov @ grad, 0.0))))}


def compute(scale: str, ctx):
    a2 = figA2.compute(scale, ctx)
    n_r, s_b, seed = np.meshgrid(a2["n_r"], a2["s_b"], a2["seed"], indexing="ij")
    rmse = a2["rmse"].values
    ok = np.isfinite(rmse)
    result = fit(n_r[ok], s_b[ok], rmse[ok])
    attrs = {f"{k}": v[0] for k, v in result["ci95"].items()}
    attrs.update({f"{k}_ci95": v[1] for k, v in result["ci95"].items()})
    attrs.update({f"paper_{k}": v for k, v in PAPER.items()},
                 residual_rms=result["residual_rms"], points=int(ok.sum()),
                 fit_status=result["status"])
    power = fit_power_law(n_r[ok], s_b[ok], rmse[ok])
    for k, (v, ci) in power.items():
        attrs[f"power_{k}"], attrs[f"power_{k}_ci95"] = float(v), ci
    return xr.Dataset({"rmse": (("point",), rmse[ok]), "n_r": (("point",), n_r[ok]),
                       "s_b": (("point",), s_b[ok]),
                       "params": (("param",), result["params"])},
                      coords={"param": ["gamma", "alpha", "beta", "c0", "c1", "c2"]},
                      attrs=attrs)


def plot(ds, stem):
    import matplotlib.pyplot as plt

    p = ds["params"].values
    g, a, b = p[:3]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if np.all(np.isfinite(p)):
        u = ds["n_r"].values ** a / ds["s_b"].values ** b
        grid = np.linspace(u.min(), u.max(), 200)
        ax.plot(grid, np.abs(p[3] + p[4] * grid + p[5] * grid**2) ** g, "-", label="fit f^gamma")
        xlabel = "N_r^alpha / S_b^beta"
    else:  # Eq. A1 did not converge: the points against S_b
        u, xlabel = ds["s_b"].values, "S_b (Eq. A1 fit did not converge)"
        ax.set_xscale("log")
    ax.plot(u, ds["rmse"], "o", ms=4, label="test RMSE (Fig. A2 runs)")

    def est(k):
        return f"{k}={ds.attrs[k]:.3g}±{ds.attrs[k + '_ci95']:.2g}"

    ax.set(xlabel=xlabel, ylabel="test RMSE",
           title=f"Eq. A1: {est('gamma')}, {est('alpha')}, {est('beta')}, {est('rho')}\n"
                 f"power law: rho={ds.attrs['power_rho']:.3g}±{ds.attrs['power_rho_ci95']:.2g}"
                 f"   (paper: gamma=1.435, alpha=0.103, beta=0.060, rho=0.58; ± = 95%)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=8)
    return C.save(fig, stem)
