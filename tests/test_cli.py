"""The danlab command end to end, in-process, at tiny sizes."""

import json

import pytest

from danlab.cli import main

TWIN = ["--trajectories", "2", "--cycles", "60", "--spinup", "20", "--device", "cpu"]


@pytest.mark.parametrize("method", ["enkf-n", "ienkf-n", "3dvar", "etkf", "sakov-a1", "sakov-a2",
                                    "obs-only", "free"])
def test_baseline_json(method, capsys, tmp_path):
    members = ["--members", "10"] if method in ("enkf-n", "ienkf-n", "etkf") else []
    assert main(["baseline", "--method", method, *members, *TWIN, "--json",
                 "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"rmse", "rmse_per_trajectory", "diverged", "seconds", "parameters", "twin",
            "test_set"} <= set(out)
    assert len(out["rmse_per_trajectory"]) == 2 and out["twin"]["trajectories"] == 2
    if method == "sakov-a1":  # the parameters actually used are recorded
        assert (out["parameters"]["steps"], out["parameters"]["scale"]) == (5, 0.03)
    if members:
        assert out["parameters"]["members"] == 10
    assert (tmp_path / f"{method}.nc").exists()


def test_baseline_trajectory_subsets_pair(capsys):
    """Trajectory i is the same whatever the number of trajectories: the per-trajectory RMSEs
    of an 8-trajectory run equal the first 8 of a 12-trajectory run."""
    base = ["baseline", "--method", "3dvar", "--cycles", "60", "--spinup", "20", "--json",
            "--device", "cpu"]
    assert main([*base, "--trajectories", "8"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert main([*base, "--trajectories", "12"]) == 0
    big = json.loads(capsys.readouterr().out)
    assert small["rmse_per_trajectory"] == big["rmse_per_trajectory"][:8]


@pytest.mark.parametrize("obs", ["alternate", "random", "random-half"])
def test_baseline_sparse_and_nx80(obs, capsys):
    assert main(["baseline", "--method", "enkf-n", "--obs", obs, "--nx", "80", *TWIN,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rmse"] < 2.0


def test_baseline_on_user_file(tmp_path, capsys):
    from danlab import Lorenz96, ObservationConfig, make_twin
    from danlab.obsfile import twin_to_dataset

    twin = make_twin(Lorenz96(), ObservationConfig("random"), 40, 0.05, 2, 50, seed=9)
    twin_to_dataset(twin).drop_vars("truth").to_netcdf(tmp_path / "obs.nc")
    assert main(["baseline", "--method", "enkf-n", "--members", "10", "--obs-file",
                 str(tmp_path / "obs.nc"), "--spinup", "10", "--device", "cpu",
                 "--out", str(tmp_path / "res")]) == 0
    assert "no truth" in capsys.readouterr().out
    assert (tmp_path / "res" / "enkf-n.nc").exists()
    # the file fixes the twin: options that would be silently ignored are refused
    assert main(["baseline", "--method", "enkf-n", "--obs-file", str(tmp_path / "obs.nc"),
                 "--dt", "0.1", "--device", "cpu"]) == 2
    assert "cannot be used with --obs-file" in capsys.readouterr().err


def test_train_evaluate_json(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--max-steps", "10", "--n-r", "64", "--s-b", "8",
            "--trajectories", "2", "--cycles", "60", "--spinup", "20",
            "--out", str(run), "--json", "--device", "cpu"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"rmse", "val_rmse", "steps", "seconds", "throughput", "stop"} <= set(out)
    assert out["steps"] == 10 and out["stop"] == "max_steps"
    assert main(args) == 2  # refuses to overwrite a run without --resume
    capsys.readouterr()
    # --resume alone continues the stored run (its config, not the default preset's); a
    # finished run has nothing left to do and reports the same test RMSE
    assert main(["train", "--resume", "--out", str(run), "--json", "--device", "cpu"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["steps"] == 10 and again["rmse"] == out["rmse"]
    assert main(["evaluate", str(run), "--nx", "80", "--obs", "alternate", *TWIN,
                 "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert len(ev["rmse_per_trajectory"]) == 2


def test_train_summary_says_when_non_finite_losses_lowered_the_learning_rate(
        tmp_path, capsys, faults):
    faults.nan_at = 4
    assert main(["train", "--preset", "smoke", "--max-steps", "10", "--n-r", "64", "--s-b", "8",
                 "--trajectories", "2", "--cycles", "60", "--spinup", "20", "--no-progress",
                 "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    assert "1 non-finite loss rolled back (learning rate x0.5 from then on)" in \
        capsys.readouterr().out


def test_summary_note_of_skipped_steps_and_rollbacks():
    from danlab.train import rollback_note

    assert rollback_note(0) == ""
    assert rollback_note(0, 2) == ", 2 steps skipped (non-finite loss from blown-up trajectories)"
    assert rollback_note(2, 1) == (", 2 non-finite losses rolled back (learning rate x0.25 from "
                                   "then on), 1 step skipped (non-finite loss from blown-up "
                                   "trajectories)")


def test_quickstart_tiny(tmp_path):
    from danlab.experiments.quickstart import quickstart

    out = quickstart(tmp_path, "smoke", members=20, progress=False, log=lambda *a: None,
                     max_steps=10, n_r=64, s_b=8, test_trajectories=2, test_cycles=80,
                     test_spinup=20)
    assert set(out["rmse"]) == {"dan", "enkf-n", "3dvar"}
    assert all(0 < v < 1.0 for v in out["rmse"].values())  # all informative (obs-only ~1)
    for name in ("rmse_over_cycles", "hovmoller", "training_curve"):
        assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}.pdf").exists()


def test_tune_sakov_picks_the_best_scale_and_hands_it_over(capsys, tmp_path):
    result = tmp_path / "tuned.json"
    assert main(["tune-sakov", "--method", "sakov-a1", "--values", "0.03,3", "--rounds", "0",
                 "--trajectories", "2", "--cycles", "80", "--spinup", "20", "--json",
                 "--out", str(result)]) == 0
    out = json.loads(capsys.readouterr().out)
    table = {row["value"]: row["rmse"] for row in out["table"]}
    assert set(table) == {0.03, 3.0} and out["twin"]["seed"] != 1_000_003  # not the test set
    assert out["best"] == min(table, key=table.get)
    assert table[0.03] < 0.45 < table[3.0]  # tuned scale tracks; an inflated P^f trusts y more
    assert main(["baseline", "--method", "sakov-a1", "--tuned", str(result), *TWIN,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["scale"] == out["best"]
    assert main(["baseline", "--method", "3dvar", "--tuned", str(result), *TWIN]) == 2


def test_tune_refines_around_the_minimum(capsys):
    assert main(["tune-3dvar", "--values", "0.005,0.02,0.1", "--rounds", "1",
                 "--trajectories", "2", "--cycles", "80", "--spinup", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["table"]) == 5  # two geometric midpoints around the best of the three


@pytest.mark.parametrize("argv", [["--method", "sakov-a3"], ["--values", "0.1,x"],
                                  ["--values", "0.1,-1"], ["--steps", "0"]])
def test_tune_sakov_bad_input(argv, capsys):
    assert main(["tune-sakov", *argv, "--cycles", "30", "--spinup", "5"]) == 2
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
    ["baseline", "--method", "3dvar", "--members", "10"],
    ["baseline", "--method", "enkf-n", "--dt", "0.05", "--inner-dt", "0.03"],
    ["baseline", "--method", "enkf-n", "--model", "ks", "--forcing", "8"],
    ["baseline", "--method", "enkf-n", "--model", "nosuchmodule:Model"],
    ["train", "--preset", "huge"],
    ["evaluate", "/nonexistent/run"],
])
def test_bad_input_one_line_exit_2(argv, capsys, tmp_path):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlab: error:") and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_tune_letkf_scans_radius_or_inflation(capsys):
    common = ["--members", "20", "--rounds", "0", "--trajectories", "2", "--cycles", "80",
              "--spinup", "20", "--json"]
    assert main(["tune-letkf", "--inflation", "1.01", "--values", "5,9", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parameter"] == "loc_radius" and out["fixed"] == {"members": 20,
                                                                 "inflation": 1.01}
    assert main(["tune-letkf", "--parameter", "inflation", "--loc-radius", "9",
                 "--values", "1.0,1.05", *common]) == 0
    assert json.loads(capsys.readouterr().out)["fixed"]["loc_radius"] == 9.0


def test_cpu_preset_takes_the_long_recipe_from_a_40_minute_budget(tmp_path, capsys):
    """The cpu preset's batch depends on the budget (docs/dan.md): S_b 32 for the quickstart's
    600 s, S_b 128 with validation every 4th epoch, an EMA of the weights and 48 filters from
    2,400 s, unless given; other presets and a resumed run's stored config are left as they are."""
    import argparse

    from danlab.cli import train as cli_train
    from danlab.config import CPU_LONG, LONG_BUDGET, PRESETS, preset, to_toml
    from danlab.errors import DanlabError

    assert preset("cpu").s_b == PRESETS["cpu"]["s_b"] == 32
    assert preset("cpu", time_budget=LONG_BUDGET - 1).s_b == 32
    long = preset("cpu", time_budget=LONG_BUDGET)
    assert ((long.s_b, long.val_every, long.ema, long.filters) == tuple(CPU_LONG.values())
            == (128, 4, 0.999, 48))
    assert preset("cpu").ema == 0.0
    # Muon at every budget in the cpu preset; the paper's presets keep the paper's Adam
    assert preset("cpu").optimizer == long.optimizer == "muon"
    assert preset("casual").optimizer == preset("boosted").optimizer == "adam"
    assert preset("cpu", time_budget=7200.0, s_b=64).s_b == 64  # given values win
    assert preset("cpu", time_budget=0.0).s_b == 32  # no limit: the step-bound recipe
    assert preset("smoke", time_budget=7200.0).s_b == PRESETS["smoke"]["s_b"]
    # a sweep's run resolves its preset the same way
    from danlab.runs import resolve

    assert resolve("train", {"preset": "cpu", "time_budget": 2400.0})["config"]["s_b"] == 128
    assert resolve("train", {"time_budget": 600.0})["config"]["s_b"] == 32
    with pytest.raises(DanlabError, match="time_budget"):  # checked, not compared first
        preset("cpu", time_budget="long")

    def config(argv):
        parser = argparse.ArgumentParser()
        cli_train.register(parser.add_subparsers(), argv)
        return cli_train.config_from_args(parser.parse_args(argv), log=print)

    assert config(["train"]).s_b == 32
    cfg = config(["train", "--time-budget", "2400", "--out", str(tmp_path / "a")])
    assert ((cfg.s_b, cfg.val_every, cfg.ema, cfg.filters, cfg.time_budget)
            == (128, 4, 0.999, 48, 2400.0))
    assert "s_b 128, val_every 4, ema 0.999, filters 48" in capsys.readouterr().out
    assert config(["train", "--time-budget", "2400", "--s-b", "64"]).s_b == 64
    off = config(["train", "--time-budget", "2400", "--ema", "0"])
    assert (off.s_b, off.ema) == (128, 0.0)
    # a stored config (--resume, --config) keeps its own values
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.toml").write_text(to_toml(preset("cpu")))
    resumed = config(["train", "--resume", "--out", str(tmp_path / "b"), "--time-budget",
                      "7200"])
    assert (resumed.s_b, resumed.filters, resumed.time_budget) == (32, 32, 7200.0)
