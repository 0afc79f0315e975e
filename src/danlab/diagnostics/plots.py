"""Figures in the style of the paper, drawn from stored results (xarray Datasets), never
recomputed here: Fig. 1/2 (Omega_r), Fig. 6 (r(lambda)), Fig. 7 (innovation histograms),
P^a matrices, and the EnKF-N comparison."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np  # noqa: E402


def _panel_letter(k: int) -> str:
    return f"({chr(ord('a') + k)})"


def plot_omega(ds, scale: str = "each"):
    """Normalised Omega_r: each panel by its own max |Omega_r| (Fig. 1) or all panels by the
    common max (scale="common", Fig. 2). ds holds omega_<k> (i_<k>, j_<k>), attrs label_<k>."""
    n = int(ds.attrs["panels"])
    mats = [np.asarray(ds[f"omega_{k}"]) for k in range(n)]
    common = max(float(np.abs(m).max()) for m in mats) or 1.0
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.9), squeeze=False, layout="constrained")
    im = None
    for k, (ax, m) in enumerate(zip(axes[0], mats)):
        norm = common if scale == "common" else (float(np.abs(m).max()) or 1.0)
        im = ax.imshow(m / norm, cmap="RdBu_r", vmin=-1, vmax=1, origin="upper",
                       interpolation="nearest")
        ax.set_title(f"{_panel_letter(k)} {ds.attrs.get(f'label_{k}', '')}", fontsize=9)
        ax.set_xlabel("j (innovation site)")
        ax.set_ylabel("i (increment site)")
        if scale != "common":
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if scale == "common":
        fig.colorbar(im, ax=list(axes[0]), fraction=0.02, pad=0.02)
    fig.suptitle(r"$[\bar\Omega_r]_{ij}$ / max$|\bar\Omega_r|$"
                 + (" (common scale)" if scale == "common" else ""), fontsize=10)
    return fig


def plot_covariance(ds):
    """P^a(x) at the first sampled state and the mean over states."""
    pa = np.asarray(ds["pa"])
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.8))
    for ax, m, title in ((axes[0], pa[0], "P^a(x_0)"), (axes[1], pa.mean(0), "mean P^a(x)")):
        v = float(np.abs(m).max()) or 1.0
        im = ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
        ax.set_title(f"{title} ({ds.attrs.get('method', '')})", fontsize=9)
        ax.set_xlabel("j")
        ax.set_ylabel("i")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_nonlinearity(ds, ax=None, var: str = "ratio"):
    """r(lambda) (`var` of ds) on log-log axes, one curve per dt, with the linear reference
    r = lambda; on `ax` if given, else on a new figure."""
    lam = np.asarray(ds["lambda"])
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.0, 4.0))
    else:
        fig = ax.figure
    ax.loglog(lam, lam, "k--", lw=1, label=r"$r=\lambda$")
    cmap = plt.get_cmap("viridis")
    dts = np.asarray(ds["dt"])
    for k, dt in enumerate(dts):
        ax.loglog(lam, np.asarray(ds[var][k]), "-o", ms=3,
                  color=cmap(k / max(1, len(dts) - 1)), label=rf"$\Delta_t$={dt:g}")
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel(r"$r(\lambda)$")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_innovations(ds):
    """Density histograms of the projected innovations, one per dt (log scale)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    cmap = plt.get_cmap("viridis")
    dts = np.asarray(ds["dt"])
    for k, dt in enumerate(dts):
        edges = np.asarray(ds["edges"][k])
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax.semilogy(centres, np.asarray(ds["density"][k]), "-",
                    color=cmap(k / max(1, len(dts) - 1)), label=rf"$\Delta_t$={dt:g}")
    ax.set_xlabel(r"projected innovation $\zeta$")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return fig


def plot_compare(ds):
    """Mean spectra of the DAN and EnKF-N P^a, and the principal-angle cosines."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.8))
    rank = np.arange(1, ds.sizes["rank"] + 1)
    axes[0].semilogy(rank, np.abs(np.asarray(ds["eig_dan"]).mean(0)), "-o", ms=3, label="DAN")
    axes[0].semilogy(rank, np.abs(np.asarray(ds["eig_enkf"]).mean(0)), "-s", ms=3,
                     label="EnKF-N")
    axes[0].set_xlabel("eigenvalue rank")
    axes[0].set_ylabel("|eigenvalue| of P^a (mean)")
    axes[0].legend(fontsize=8)
    kk = np.arange(1, ds.sizes["k"] + 1)
    axes[1].plot(kk, np.asarray(ds["cosines"]).mean(0), "-o", ms=3, label="principal cosines")
    axes[1].plot(kk, np.asarray(ds["alignment"]).mean(0), "-s", ms=3,
                 label=r"$|u^{DAN}_i\cdot u^{EnKF}_i|$")
    axes[1].axhline(np.sqrt(float(ds.attrs["random_cos2"])), color="k", ls="--", lw=1,
                    label="unrelated subspaces (rms)")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_xlabel("index")
    axes[1].legend(fontsize=8)
    return fig


def close(fig) -> None:
    plt.close(fig)
