"""`danlab diagnose`: every kind writes netCDF + PNG + PDF; bad input is one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch
import xarray as xr

from danlab import io
from danlab.cli import main
from danlab.config import TrainConfig
from danlab.nets import build_net

torch.set_num_threads(1)


# --- CLI --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(nx=12, filters=4, blocks=1, dtype="float64")
    torch.manual_seed(0)
    net = build_net(cfg)
    torch.nn.init.normal_(net.head[1].weight, std=0.1)
    io.save_torch(d / "best.pt", {"weights": net.state_dict(), "config": cfg.to_dict()})
    return d


COMMON = ["--states", "6", "--cycles", "30", "--spinup", "10", "--trajectories", "1",
          "--device", "cpu", "--json"]


@pytest.mark.parametrize("kind,extra", [
    ("covariance", ["--method", "stein", "--samples", "16"]),
    ("marginal-gain", ["--method", "autodiff", "--shifts", "all", "--nx", "10"]),
    ("nonlinearity", ["--dt", "0.05,0.1", "--lambdas", "0.5,1,2"]),
    ("innovations", ["--bins", "11", "--obs", "random-half"]),
    ("compare-enkf", ["--members", "8", "--every", "10", "--k", "3"]),
])
def test_cli_writes_netcdf_and_figures(run_dir, tmp_path, capsys, kind, extra):
    out = tmp_path / "out"
    runs = [str(run_dir)] * (2 if kind == "marginal-gain" else 1)  # two panels, common scale
    assert main(["diagnose", kind, *runs, "--out", str(out), *COMMON, *extra]) == 0
    summary = json.loads(capsys.readouterr().out)
    stem = kind.replace("-", "_")
    assert summary["kind"] == kind
    for ext in ("nc", "png", "pdf"):
        assert (out / f"{stem}.{ext}").stat().st_size > 0
    with xr.open_dataset(out / f"{stem}.nc") as ds:
        assert len(ds.data_vars) >= 1
        names = set(ds.data_vars)
    if kind == "nonlinearity":
        assert len(summary["curves"]) == 2
    if kind == "marginal-gain":
        assert len(summary["panels"]) == 2 and "omega_1" in names
        assert summary["panels"][0]["nx"] == 10


@pytest.mark.parametrize("argv,msg", [
    (["diagnose", "covariance", "/nonexistent/run"], "does not exist"),
    (["diagnose", "marginal-gain", "RUN", "--shifts", "two"], "shifts"),
    (["diagnose", "marginal-gain", "RUN", "--r", "99"], "out of range"),
    (["diagnose", "marginal-gain", "RUN", "--method", "composite", "--samples", "1"], "N_p"),
    (["diagnose", "nonlinearity", "RUN", "--lambdas", "a,b"], "comma-separated"),
])
def test_cli_errors_are_one_line(run_dir, tmp_path, capsys, argv, msg):
    argv = [str(run_dir) if v == "RUN" else v for v in argv]
    assert main([*argv, "--out", str(tmp_path), "--states", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlab: error:") and msg in err and "\n" not in err
