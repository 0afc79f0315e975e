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
from danlab.twin import TwinSpec

torch.set_num_threads(1)


# --- CLI --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run whose operator is linear (identity activations, random weights): its P^a is the
    same at every state, its marginal gain is zero and r(lambda) = lambda, exactly."""
    d = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(twin=TwinSpec(nx=12), filters=4, blocks=1, dtype="float64",
                      variant="linear")
    torch.manual_seed(0)
    net = build_net(cfg)
    torch.nn.init.normal_(net.head[1].weight, std=0.1)
    io.save_torch(d / "best.pt", {"weights": net.state_dict(), "config": cfg.to_dict()})
    return d


COMMON = ["--device", "cpu", "--json"]
DA = ["--cycles", "30", "--spinup", "10", "--trajectories", "1"]


@pytest.mark.parametrize("kind,extra", [
    ("covariance", ["--states", "6", "--method", "stein", "--samples", "16"]),
    ("marginal-gain", ["--states", "6", "--method", "autodiff", "--shifts", "all", "--nx",
                       "10"]),
    ("nonlinearity", ["--states", "6", *DA, "--dt", "0.05,0.1", "--lambdas", "0.5,1,2"]),
    ("innovations", [*DA, "--bins", "11", "--obs", "random-half"]),
    ("compare-enkf", ["--cycles", "30", "--spinup", "10", "--members", "8", "--every", "10",
                      "--k", "3"]),
])
def test_cli_writes_netcdf_and_figures(run_dir, tmp_path, capsys, kind, extra):
    from danlab.runs import load

    out = tmp_path / "out"
    runs = [str(run_dir)] * (2 if kind == "marginal-gain" else 1)  # two panels, common scale
    assert main(["diagnose", kind, *runs, "--out", str(out), *COMMON, *extra]) == 0
    summary = json.loads(capsys.readouterr().out)
    stem = kind.replace("-", "_")
    assert summary["kind"] == kind
    for ext in ("nc", "png", "pdf"):
        assert (out / f"{stem}.{ext}").stat().st_size > 0
    op = load(run_dir, dtype=torch.float64)
    with xr.open_dataset(out / f"{stem}.nc") as ds:
        ds = ds.load()
    if kind == "covariance":  # Stein regression is exact for a linear operator
        pa = torch.as_tensor(ds["pa"].values)
        jac = torch.func.jacfwd(lambda z: op(torch.zeros(12, dtype=torch.float64), z))(
            torch.zeros(12, dtype=torch.float64))
        assert torch.allclose(pa, jac.expand_as(pa), atol=1e-9)
    if kind == "marginal-gain":  # a linear operator's P^a does not depend on x
        assert len(summary["panels"]) == 2 and summary["panels"][0]["nx"] == 10
        assert float(abs(ds["omega_0"]).max()) < 1e-10
    if kind == "nonlinearity":  # r(lambda) = lambda for an operator linear in zeta
        assert len(summary["curves"]) == 2
        assert abs(ds["ratio"].values - ds["lambda"].values[None]).max() < 1e-8
    if kind == "innovations":  # densities integrate to one
        widths = (ds["edges"].values[:, 1:] - ds["edges"].values[:, :-1])
        assert abs((ds["density"].values * widths).sum(-1) - 1).max() < 1e-9
    if kind == "compare-enkf":  # one P^a for every sample
        eig = ds["eig_dan"].values
        assert abs(eig - eig[:1]).max() < 1e-9 and summary["enkf_rmse"] < 1.0


@pytest.mark.parametrize("argv,msg", [
    (["diagnose", "covariance", "/nonexistent/run"], "does not exist"),
    (["diagnose", "innovations", "RUN", "--states", "2"], "unrecognized arguments"),
    (["diagnose", "marginal-gain", "RUN", "--shifts", "two"], "shifts"),
    (["diagnose", "marginal-gain", "RUN", "--r", "99"], "out of range"),
    (["diagnose", "marginal-gain", "RUN", "--method", "composite", "--samples", "1"], "N_p"),
    (["diagnose", "nonlinearity", "RUN", "--lambdas", "a,b"], "comma-separated"),
])
def test_cli_errors_are_one_line(run_dir, tmp_path, capsys, argv, msg):
    argv = [str(run_dir) if v == "RUN" else v for v in argv]
    assert main([*argv, "--out", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlab: error:") and msg in err and "\n" not in err
