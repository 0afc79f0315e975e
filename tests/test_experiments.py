"""Every registered experiment runs end to end at smoke scale and writes its figure; plotting
again reads the stored results only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from danlab.cli import main
from danlab.executors import make_executor
from danlab.experiments import registry
from danlab.experiments.runner import plot_experiment, run_experiment, status_experiment

NAMES = list(registry())


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("experiments")
    ex = make_executor("local", 2)
    for name in NAMES:  # one root: experiments share their runs (fig6 / fig7, figA2 / figA3)
        res = run_experiment(name, "smoke", d, ex, progress=False, log=lambda *a: None)
        assert res["failed_runs"] == 0, name
    return d


def test_the_registry_has_every_figure():
    assert set(NAMES) >= {"fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "figA1",
                          "figA2", "figA3", "nx-transfer"}


@pytest.mark.parametrize("name", NAMES)
def test_experiment_writes_results_and_figure(out, name):
    d = out / name
    for f in ("results.nc", f"{name}.png", f"{name}.pdf", "experiment.json"):
        assert (d / f).stat().st_size > 0, f
    with xr.open_dataset(d / "results.nc") as ds:
        assert ds.attrs["scale"] == "smoke" and ds.attrs["failed_runs"] == 0
        assert ds.attrs["missing_runs"] == 0 and ds.attrs["collected_only"] == 0
        if "rmse" in ds and "method" in ds.dims:  # scores beside their diverged counts
            assert "diverged" in ds and ds["rmse"].notnull().any()


def test_plot_recomputes_nothing(out):
    runs = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("result.json")}
    results = (out / "fig3" / "results.nc").stat().st_mtime_ns
    paths = plot_experiment("fig3", out)
    assert paths and all(p.exists() for p in paths)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("result.json")} == runs
    assert (out / "fig3" / "results.nc").stat().st_mtime_ns == results


def test_status_and_cli(out, capsys):
    st = status_experiment("fig3", out)
    assert st["finished"] and st["pending"] == 0 and st["done"] == st["total"] > 0
    assert main(["experiment", "status", "fig3", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["finished"]
    assert main(["experiment", "list"]) == 0 and "fig3" in capsys.readouterr().out
    assert main(["experiment", "run", "fig99", "--out", str(out)]) == 2
    assert "experiment='fig99'" in capsys.readouterr().err


def test_fig_a3_reports_the_fit_beside_the_paper(out):
    with xr.open_dataset(out / "figA3" / "results.nc") as ds:
        for k in ("gamma", "alpha", "beta", "rho"):
            assert f"{k}_ci95" in ds.attrs and f"paper_{k}" in ds.attrs
        assert "power_rho_ci95" in ds.attrs


def test_fig_a3_fits_recover_known_exponents():
    """Synthetic RMSEs from Eq. A1 with the paper's exponents, and from a pure power law in
    N_r / S_b^0.58, with 0.5% noise on the figA2 cpu grid: both fits find rho within their
    intervals."""
    from danlab.experiments import figA2, figA3

    n_r, s_b, _ = np.meshgrid(figA2.N_R["cpu"], figA2.S_B["cpu"], [0, 1], indexing="ij")
    n_r, s_b = n_r.ravel().astype(float), s_b.ravel().astype(float)
    noise = 1 + 0.005 * np.random.default_rng(0).standard_normal(n_r.size)
    power = figA3.fit_power_law(n_r, s_b, 0.9 * (n_r / s_b**0.58) ** -0.05 * noise)
    rho, ci = power["rho"]
    assert abs(rho - 0.58) < ci < 0.3
    exact = figA3.model((n_r, s_b), 1.435, 0.103, 0.060, 0.9, -0.35, 0.05) * noise
    rho, ci = figA3.fit(n_r, s_b, exact)["ci95"]["rho"]
    assert abs(rho - 0.58) < max(ci, 0.05)


def test_fig_a3_reports_a_fit_that_does_not_converge(monkeypatch):
    import scipy.optimize

    from danlab.experiments import figA3

    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev")

    monkeypatch.setattr(scipy.optimize, "curve_fit", fail)
    r = figA3.fit(np.array([1024.0, 4096.0]), np.array([8.0, 16.0]), np.array([0.22, 0.23]))
    assert r["status"].startswith("Optimal") and np.isnan(r["params"]).all()


def test_fig3_method_axis_reduces_the_figure(tmp_path, capsys):
    args = ["experiment", "run", "fig3", "--out", str(tmp_path), "--executor", "inline",
            "--grid", "dt=0.05", "--grid", "method=EnKF-N,linear DAN", "--json", "--no-progress"]
    assert main(args) == 0
    with xr.open_dataset(tmp_path / "fig3" / "results.nc") as ds:
        assert sorted(ds["method"].values.tolist()) == ["EnKF-N", "linear DAN"]
        assert ds["dt"].values.tolist() == [0.05]
    capsys.readouterr()
    bad = [*args[:-4], "--grid", "method=EnKF-N,LETKF", "--json"]
    assert main(bad) == 2 and "fig3's methods are" in capsys.readouterr().err


def test_collect_builds_the_figure_from_stored_runs_only(tmp_path, capsys):
    base = ["--out", str(tmp_path), "--executor", "inline", "--grid", "dt=0.05,0.3",
            "--json", "--no-progress"]
    assert main(["experiment", "run", "fig3", *base, "--grid", "method=EnKF-N"]) == 0
    capsys.readouterr()
    sweeps = {p: p.stat().st_mtime_ns for p in (tmp_path / "fig3" / "sweeps").rglob("*.json")}
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert main(["experiment", "collect", "fig3", *base,
                 "--grid", "method=EnKF-N,linear DAN"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["missing_runs"] == 2 and res["figures"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs  # nothing ran
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "fig3" / "sweeps").rglob("*.json")
            } == sweeps  # the run's sweep files are left as they are
    with xr.open_dataset(tmp_path / "fig3" / "results.nc") as ds:
        assert ds.attrs["missing_runs"] == 2 and ds.attrs["collected_only"] == 1
        assert ds["rmse"].sel({"method": "EnKF-N"}).notnull().all()
        assert ds["rmse"].sel({"method": "linear DAN"}).isnull().all()


def test_cpu_scale_trainings_do_not_follow_the_preset(monkeypatch):
    """A cpu-scale run means the same training whatever the cpu preset becomes: its key (the
    resolved config) must not move when the preset's values do."""
    from danlab import config, runs
    from danlab.experiments import common as C

    fields = {**C.training("cpu"), **C.twin("cpu")}
    before = runs.run_name(runs.resolve("train", fields))
    changed = {k: (v * 3 if isinstance(v, int) and not isinstance(v, bool) else v)
               for k, v in config.PRESETS["cpu"].items()}
    monkeypatch.setitem(config.PRESETS, "cpu", changed)
    assert runs.run_name(runs.resolve("train", fields)) == before
