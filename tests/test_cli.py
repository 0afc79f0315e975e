"""The danlab command end to end, in-process, at tiny sizes."""

import json

import pytest

from danlab.cli import main

TWIN = ["--trajectories", "2", "--cycles", "60", "--spinup", "20", "--device", "cpu"]


@pytest.mark.parametrize("method", ["enkf-n", "ienkf-n", "3dvar", "etkf", "sakov-a1", "sakov-a2",
                                    "obs-only", "free"])
def test_baseline_json(method, capsys, tmp_path):
    assert main(["baseline", "--method", method, "--members", "10", *TWIN, "--json",
                 "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"rmse", "rmse_per_trajectory", "diverged", "seconds", "config"} <= set(out)
    assert len(out["rmse_per_trajectory"]) == 2
    if method == "sakov-a1":
        assert (out["config"]["steps"], out["config"]["scale"]) == (5, 0.03)
    assert (tmp_path / f"{method}.nc").exists()


@pytest.mark.parametrize("obs", ["alternate", "random", "random-half"])
def test_baseline_sparse_and_nx80(obs, capsys):
    assert main(["baseline", "--method", "enkf-n", "--obs", obs, "--nx", "80", *TWIN,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rmse"] < 2.0


def test_baseline_on_user_file(tmp_path, capsys):
    from danlab import Lorenz96, ObservationConfig, make_twin
    from danlab.twin import twin_to_dataset

    twin = make_twin(Lorenz96(), ObservationConfig("random"), 40, 0.05, 2, 50, seed=9)
    twin_to_dataset(twin).drop_vars("truth").to_netcdf(tmp_path / "obs.nc")
    assert main(["baseline", "--method", "enkf-n", "--members", "10", "--obs-file",
                 str(tmp_path / "obs.nc"), "--spinup", "10", "--device", "cpu",
                 "--out", str(tmp_path / "res")]) == 0
    assert (tmp_path / "res" / "enkf-n.nc").exists()


def test_train_evaluate_json(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--max-steps", "10", "--n-r", "64", "--s-b", "8",
            "--test-trajectories", "2", "--test-cycles", "60", "--test-spinup", "20",
            "--out", str(run), "--json", "--device", "cpu"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"rmse", "val_rmse", "steps", "seconds", "throughput"} <= set(out)
    assert out["steps"] == 10
    assert main(args) == 2  # refuses to overwrite a run without --resume
    capsys.readouterr()
    assert main(["evaluate", str(run), "--nx", "80", "--obs", "alternate", *TWIN,
                 "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert len(ev["rmse_per_trajectory"]) == 2


def test_quickstart_tiny(tmp_path):
    from danlab.experiments.quickstart import quickstart

    out = quickstart(tmp_path, "smoke", members=20, progress=False, log=lambda *a: None,
                     max_steps=10, n_r=64, s_b=8, test_trajectories=2, test_cycles=80,
                     test_spinup=20)
    assert set(out["rmse"]) == {"dan", "enkf-n", "3dvar"}
    assert all(0 < v < 1.0 for v in out["rmse"].values())  # all informative (obs-only ~1)
    for name in ("rmse_over_cycles", "hovmoller", "training_curve"):
        assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}.pdf").exists()


def test_cli_methods_match_the_registry():
    from danlab.cli.baseline import METHODS as CLI_METHODS
    from danlab.filters import METHODS

    assert CLI_METHODS == METHODS


def test_tune_sakov_picks_the_best_scale(capsys):
    assert main(["tune-sakov", "--algorithm", "a1", "--scales", "0.03,3", "--trajectories", "2",
                 "--cycles", "80", "--spinup", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    table = {row["scale"]: row["rmse"] for row in out["table"]}
    assert out["steps"] == 5 and set(table) == {0.03, 3.0}
    assert out["best_scale"] == min(table, key=table.get)
    assert table[0.03] < 0.45 < table[3.0]  # tuned scale tracks; an inflated P^f trusts y more


@pytest.mark.parametrize("argv", [["--algorithm", "A3"], ["--scales", "0.1,x"],
                                  ["--scales", "0.1,-1"], ["--steps", "0"]])
def test_tune_sakov_bad_input(argv, capsys):
    assert main(["tune-sakov", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlab: error:") and "\n" not in err


@pytest.mark.parametrize("argv", [
    ["baseline", "--method", "kalman"],
    ["baseline", "--method", "sakov-a1", "--steps", "0"],
    ["baseline", "--method", "sakov-a2", "--scale", "-1"],
    ["baseline", "--method", "enkf-n", "--nx", "3"],
    ["baseline", "--method", "enkf-n", "--dt", "0"],
    ["baseline", "--method", "enkf-n", "--members", "1"],
    ["baseline", "--method", "enkf-n", "--cycles", "10", "--spinup", "10"],
    ["baseline", "--method", "enkf-n", "--sigma", "-1"],
    ["baseline", "--method", "enkf-n", "--obs", "sparse"],
    ["train", "--preset", "huge"],
    ["evaluate", "/nonexistent/run"],
])
def test_bad_input_one_line_exit_2(argv, capsys, tmp_path):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlab: error:") and "\n" not in err and "Traceback" not in err
    assert not out.exists()
