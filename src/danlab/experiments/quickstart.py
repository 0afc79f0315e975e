"""The quickstart experiment: DAN vs EnKF-N vs 3D-Var at dt = 0.05, full observation, sigma = 1,
all three on the same test trajectories (the twin spec of the training preset)."""

from __future__ import annotations

from pathlib import Path

import torch

from danlab import io
from danlab.config import preset
from danlab.cycle import paired_comparison, run_filter
from danlab.filters import DANFilter, make_filter
from danlab.progress import log as stderr_log
from danlab.runs import load
from danlab.train import rollback_note, train


def quickstart(out: Path, preset_name: str = "cpu", members: int = 40, device: str = "cpu",
               resume: bool = False, log=stderr_log, progress: bool = True,
               **overrides) -> dict:
    """Train, compare on the same test trajectories, plot; `overrides` change preset values."""
    cfg = preset(preset_name, **overrides)
    log(f"[1/3] training the {preset_name!r} DAN (N_f={cfg.filters}, {cfg.blocks} blocks, "
        f"S_b={cfg.s_b}, N_iter={cfg.n_iter}, {cfg.optimizer}; at most "
        f"{cfg.time_budget:.0f} s)")
    trained = train(cfg, out / "dan", resume=resume, device=device, progress=progress, log=log)

    log(f"[2/3] DAN, EnKF-N and 3D-Var on the same test set: {cfg.twin.describe()}")
    model, twin = cfg.twin.build(device=device)
    methods = {
        "dan": DANFilter(load(out / "dan", dtype=torch.float64, device=device)),
        "enkf-n": make_filter("enkf-n", members=members),
        "3dvar": make_filter("3dvar"),
    }
    results = {name: run_filter(f, twin, model, progress=progress,
                                keep_analyses=(name == "dan"))
               for name, f in methods.items()}
    for name, r in results.items():
        _write(out, name, r, methods[name].parameters())

    log("[3/3] writing figures")
    figures = plot(out, twin, results, cfg.twin.spinup)
    table = ["| method | test RMSE | seconds |", "|---|---|---|"]
    for name, r in results.items():
        table.append(f"| {name} | {r.label()} | {r.seconds:.1f} |")
    versus = paired_comparison(results["dan"], results["enkf-n"], ("dan", "enkf-n"))
    table.append(f"\ndan vs enkf-n, paired over {versus['common']} trajectories: "
                 f"{versus['verdict']}")
    table.append(f"test set: {cfg.twin.describe()} [{twin.fingerprint()}]")
    table = "\n".join(table)
    note = rollback_note(trained["rollbacks"], trained["skipped"])
    log(f"training: {trained['steps']} steps in {trained['seconds']:.0f} s (stopped by "
        f"{trained['stop']}){note}; figures in {out}")
    summary = dict(rmse={n: r.rmse for n, r in results.items()},
                   rmse_label={n: r.label() for n, r in results.items()},
                   diverged={n: r.n_diverged for n, r in results.items()},
                   dan_vs_enkf_n=versus,
                   training=dict(steps=trained["steps"], seconds=trained["seconds"],
                                 stop=trained["stop"], val_rmse=trained["val_rmse"],
                                 throughput=trained["throughput"],
                                 rollbacks=trained["rollbacks"],
                                 skipped=trained["skipped"]),
                   test_set=results["dan"].test_set, table=table,
                   figures=[str(p) for p in figures], out=str(out))
    io.write_json(out / "results.json", summary)
    io.write_text(out / "results.md", table + "\n")
    return summary


def _write(out: Path, name: str, r, parameters: dict) -> None:
    from danlab.cli.baseline import write_results

    write_results(out, name, r, {"method": name, "parameters": parameters, **r.summary()})


def plot(out: Path, twin, results: dict, spinup: int) -> list[Path]:
    import matplotlib.pyplot as plt

    from danlab.io import read_jsonl

    paths = []
    # RMSE over cycles, mean over trajectories
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, r in results.items():
        curve = r.rmse_per_cycle.nanmean(1).numpy()
        ax.plot(curve, lw=0.8, label=f"{name} ({r.label()})")
    ax.axvline(spinup, color="k", lw=0.5, ls=":", label="end of spin-up")
    ax.set(xlabel="cycle", ylabel="RMSE (mean over trajectories)", yscale="log",
           title=f"Analysis RMSE, L96 N_x={twin.nx}, dt={twin.dt}")
    ax.legend()
    paths += io.save_figure(fig, out / "rmse_over_cycles")
    plt.close(fig)
    # Hovmoeller of truth, DAN analysis and error for trajectory 0
    n = min(200, twin.n_cycles)
    truth = twin.truth[1:n + 1, 0].cpu().numpy()
    xa = results["dan"].analyses[:n, 0].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5), sharey=True)
    for ax, data, title, cmap in ((axes[0], truth, "truth", "RdBu_r"),
                                  (axes[1], xa, "DAN analysis", "RdBu_r"),
                                  (axes[2], xa - truth, "error", "PuOr_r")):
        lim = abs(data).max()
        im = ax.imshow(data, aspect="auto", origin="lower", cmap=cmap, vmin=-lim, vmax=lim,
                       extent=(0, twin.nx, 0, n * twin.dt))
        ax.set(title=title, xlabel="site")
        fig.colorbar(im, ax=ax)
    axes[0].set_ylabel("time")
    paths += io.save_figure(fig, out / "hovmoller")
    plt.close(fig)
    # training curve
    rows = read_jsonl(out / "dan" / "metrics.jsonl")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    tr = [(r["seconds"], r["train_rmse"]) for r in rows if "train_rmse" in r and "epoch" not in r]
    va = [(r["seconds"], r["val_rmse"]) for r in rows if "val_rmse" in r]
    if tr:
        ax.plot(*zip(*tr), lw=0.6, label="train (batch)")
    if va:
        ax.plot(*zip(*va), "o-", ms=3, label="validation")
    ax.set(xlabel="training time (s)", ylabel="RMSE", yscale="log", title="Training curve")
    ax.legend()
    paths += io.save_figure(fig, out / "training_curve")
    plt.close(fig)
    return paths
