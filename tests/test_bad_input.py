"""Bad input is refused cleanly (issue 6): exit status 2 (CLI) or DanlabError (a ValueError, API),
a one-line message naming the bad value, no traceback, and the output directory unchanged
(not even created). Table-driven over the CLI, TOML configs, observation netCDF files and
checkpoints, plus a hypothesis sweep over TrainConfig domains."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danlab import io
from danlab.cli import main
from danlab.config import TrainConfig, preset
from danlab.errors import DanlabError
from danlab.nets import build_net

T, B, N = 6, 2, 8


# ---------------------------------------------------------------- fixtures: bad files on disk
def _obs(**attrs):
    import xarray as xr

    rng = np.random.default_rng(0)
    dims = ("cycle", "trajectory", "site")
    return xr.Dataset({"y": (dims, rng.normal(size=(T, B, N))),
                       "mask": (dims, np.ones((T, B, N), dtype="int8"))},
                      attrs=attrs or {"sigma": 1.0, "dt": 0.05})


def _write_obs_files(d: Path) -> None:
    dims = ("cycle", "trajectory", "site")
    _obs().to_netcdf(d / "good.nc")
    _obs().drop_vars("y").to_netcdf(d / "no_y.nc")
    _obs().drop_vars("mask").to_netcdf(d / "no_mask.nc")
    ds = _obs()
    ds["y"] = ds["y"].transpose("site", "trajectory", "cycle")
    ds.to_netcdf(d / "dims_order.nc")
    ds = _obs().rename({"site": "x"})
    ds.to_netcdf(d / "dims_name.nc")
    ds = _obs().assign(mask=(("cycle", "trajectory", "s2"), np.ones((T, B, N + 1), "int8")))
    ds.to_netcdf(d / "mask_shape.nc")
    ds = _obs()
    ds["y"][2, 0, 3] = np.nan
    ds.to_netcdf(d / "nan_observed.nc")
    ds = _obs()
    ds["y"][1, 1, 1] = np.inf
    ds.to_netcdf(d / "inf_observed.nc")
    ds = _obs()
    ds["mask"][0, 0, 0] = 2
    ds.to_netcdf(d / "mask_two.nc")
    ds = _obs()
    ds["mask"] = (dims, np.full((T, B, N), 0.5))
    ds.to_netcdf(d / "mask_half.nc")
    _obs(dt=0.05).to_netcdf(d / "no_sigma.nc")
    _obs(sigma=-1.0, dt=0.05).to_netcdf(d / "neg_sigma.nc")
    _obs(sigma=float("nan"), dt=0.05).to_netcdf(d / "nan_sigma.nc")
    _obs(sigma=1.0, dt="fast").to_netcdf(d / "str_dt.nc")
    _obs(sigma=1.0, dt=0.0).to_netcdf(d / "zero_dt.nc")
    ds = _obs()
    ds["x0"] = (("trajectory", "s2"), np.zeros((B, N + 1)))
    ds.to_netcdf(d / "x0_nx.nc")
    ds = _obs()
    ds["x0"] = (("trajectory", "site"), np.full((B, N), np.nan))
    ds.to_netcdf(d / "x0_nan.nc")
    ds = _obs()
    ds["truth"] = (("time", "trajectory", "site"), np.zeros((T, B, N)))
    ds.to_netcdf(d / "truth_len.nc")
    ds = _obs()
    ds["truth"] = (("time", "trajectory", "s2"), np.zeros((T + 1, B, N - 1)))
    ds.to_netcdf(d / "truth_nx.nc")
    import xarray as xr

    xr.Dataset({"y": (dims, np.zeros((T, B, 3))), "mask": (dims, np.ones((T, B, 3), "int8"))},
               attrs={"sigma": 1.0, "dt": 0.05}).to_netcdf(d / "nx3.nc")
    xr.Dataset({"y": (dims, np.zeros((0, B, N))), "mask": (dims, np.ones((0, B, N), "int8"))},
               attrs={"sigma": 1.0, "dt": 0.05}).to_netcdf(d / "no_cycles.nc")
    ds = _obs()
    ds["y"] = (dims, np.full((T, B, N), "a", dtype="U1"))
    ds.to_netcdf(d / "y_text.nc")
    (d / "text.nc").write_text("this is not netCDF\n")
    (d / "empty.nc").write_bytes(b"")
    (d / "truncated.nc").write_bytes((d / "good.nc").read_bytes()[:300])


TOML = {
    "unknown_key": "nx = 40\nbogus = 3\n",
    "section": "[train]\nnx = 40\n",
    "wrong_type_str": 'nx = "forty"\n',
    "wrong_type_bool": "alpha = 1\n",
    "wrong_type_float_for_int": "filters = 8.5\n",
    "nan": "lr = nan\n",
    "inf": "dt = inf\n",
    "negative": "sigma = -1.0\n",
    "even_kernel": "kernel = 4\n",
    "bad_choice": 'obs = "diagonal"\n',
    "batch_too_big": "n_r = 100\ns_b = 1000\n",
    "spinup_too_long": "test_cycles = 10\ntest_spinup = 10\n",
    "not_toml": "nx = [\n",
    "not_utf8": b"\xff\xfe\x00",
}


def _small_cfg(**kw) -> TrainConfig:
    return preset("smoke", test_cycles=20, test_spinup=5, test_trajectories=2, **kw)


def _write_runs(d: Path) -> None:
    cfg = _small_cfg()
    net = build_net(cfg)
    good = dict(config=cfg.to_dict(), weights=net.state_dict(), step=0, val_rmse=1.0)
    io.save_torch(d / "run_ok" / "best.pt", good)
    io.save_torch(d / "run_wrong_weights" / "best.pt",
                  {**good, "config": cfg.replace(filters=8).to_dict()})
    io.save_torch(d / "run_unknown_key" / "best.pt",
                  {**good, "config": {**cfg.to_dict(), "bogus": 1}})
    io.save_torch(d / "run_bad_value" / "best.pt",
                  {**good, "config": {**cfg.to_dict(), "sigma": -1.0}})
    io.save_torch(d / "run_no_config" / "best.pt", dict(weights=net.state_dict()))
    io.save_torch(d / "run_not_dict" / "best.pt", [1, 2, 3])
    (d / "run_empty").mkdir()
    (d / "run_truncated").mkdir()
    (d / "run_truncated" / "best.pt").write_bytes((d / "run_ok" / "best.pt").read_bytes()[:500])
    (d / "run_text").mkdir()
    (d / "run_text" / "best.pt").write_text("hello")
    # --resume on an incomplete checkpoint (a best.pt copied as checkpoint.pt)
    io.save_torch(d / "run_partial_ckpt" / "checkpoint.pt", good)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad_inputs")
    _write_obs_files(d)
    for name, text in TOML.items():
        p = d / f"{name}.toml"
        p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
    _write_runs(d)
    return d


# ---------------------------------------------------------------- helpers
def snapshot(path: Path) -> dict | None:
    """Every file under path with its size and mtime; None when path does not exist."""
    if not path.exists():
        return None
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*"))}


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    return rc, err


def assert_refused(rc, err, fragment):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("danlab: error:"), err
    assert fragment.lower() in lines[0].lower(), (fragment, err)


BASE = ["--cycles", "8", "--spinup", "2", "--trajectories", "1", "--device", "cpu"]
OBS = ["baseline", "--method", "enkf-n", "--members", "4", "--spinup", "1", "--device", "cpu",
       "--obs-file"]
TRAIN = ["train", "--preset", "smoke", "--device", "cpu", "--no-progress"]
EVAL = ["evaluate", "--device", "cpu", "--cycles", "8", "--spinup", "2", "--trajectories", "1"]

# (id, argv with {f} = the fixture directory, fragment the one-line message must contain)
CLI_CASES = [
    # ---- baseline options
    ("baseline-method", ["baseline", "--method", "kalman", *BASE], "method='kalman'"),
    ("baseline-nx", ["baseline", "--method", "enkf-n", "--nx", "2", *BASE], "nx=2"),
    ("baseline-dt-neg", ["baseline", "--method", "enkf-n", "--dt", "-1", *BASE], "dt=-1.0"),
    ("baseline-dt-nan", ["baseline", "--method", "enkf-n", "--dt", "nan", *BASE], "dt=nan"),
    ("baseline-dt-inf", ["baseline", "--method", "enkf-n", "--dt", "inf", *BASE], "dt=inf"),
    ("baseline-sigma-0", ["baseline", "--method", "enkf-n", "--sigma", "0", *BASE], "sigma=0.0"),
    ("baseline-forcing-nan", ["baseline", "--method", "free", "--forcing", "nan", *BASE],
     "forcing=nan"),
    ("baseline-inner-dt", ["baseline", "--method", "free", "--inner-dt", "0", *BASE],
     "inner_dt=0.0"),
    ("baseline-obs", ["baseline", "--method", "enkf-n", "--obs", "diag", *BASE], "obs='diag'"),
    ("baseline-members", ["baseline", "--method", "enkf-n", "--members", "1", *BASE],
     "members=1"),
    ("baseline-inflation", ["baseline", "--method", "etkf", "--inflation", "-1", *BASE],
     "inflation=-1.0"),
    ("baseline-device", ["baseline", "--method", "free", *BASE, "--device", "tpu"],
     "device='tpu'"),
    ("baseline-dtype", ["baseline", "--method", "free", "--dtype", "float16", *BASE],
     "dtype='float16'"),
    ("baseline-spinup", ["baseline", "--method", "free", "--cycles", "3", "--spinup", "5"],
     "spinup=5"),
    ("baseline-seed", ["baseline", "--method", "free", "--seed", "-3", *BASE], "seed=-3"),
    ("baseline-trajectories", ["baseline", "--method", "free", "--trajectories", "0"],
     "trajectories=0"),
    ("baseline-int-parse", ["baseline", "--method", "free", "--nx", "abc"], "'abc'"),
    ("baseline-param-of-other-method", ["baseline", "--method", "3dvar", "--members", "5",
                                        *BASE], "--members is not a parameter of method"),
    ("baseline-inner-dt-divides", ["baseline", "--method", "free", "--dt", "0.05",
                                   "--inner-dt", "0.03", *BASE], "inner_dt=0.03"),
    ("baseline-model", ["baseline", "--method", "free", "--model", "lorenz63", *BASE],
     "model='lorenz63'"),
    ("baseline-model-import", ["baseline", "--method", "free", "--model", "no_such:Model",
                               *BASE], "cannot be imported"),
    ("baseline-tuned-missing", ["baseline", "--method", "3dvar", "--tuned", "{f}/nope.json",
                                *BASE], "does not exist"),
    ("baseline-tuned-not-json", ["baseline", "--method", "3dvar", "--tuned",
                                 "{f}/good.nc", *BASE], "not a danlab tuning result"),
    ("obs-file-with-twin-option", [*OBS, "{f}/good.nc", "--trajectories", "5"],
     "cannot be used with --obs-file"),
    # ---- observation files
    ("obs-missing-file", [*OBS, "{f}/nope.nc"], "nope.nc"),
    ("obs-not-netcdf", [*OBS, "{f}/text.nc"], "not readable netCDF"),
    ("obs-empty-file", [*OBS, "{f}/empty.nc"], "not readable netCDF"),
    ("obs-truncated", [*OBS, "{f}/truncated.nc"], "not readable netCDF"),
    ("obs-no-y", [*OBS, "{f}/no_y.nc"], "variable 'y' is missing"),
    ("obs-no-mask", [*OBS, "{f}/no_mask.nc"], "variable 'mask' is missing"),
    ("obs-dims-order", [*OBS, "{f}/dims_order.nc"], "y has dims"),
    ("obs-dims-name", [*OBS, "{f}/dims_name.nc"], "has dims"),
    ("obs-mask-shape", [*OBS, "{f}/mask_shape.nc"], "mask has dims"),
    ("obs-nan-observed", [*OBS, "{f}/nan_observed.nc"], "NaN or inf at observed sites"),
    ("obs-inf-observed", [*OBS, "{f}/inf_observed.nc"], "NaN or inf at observed sites"),
    ("obs-mask-two", [*OBS, "{f}/mask_two.nc"], "mask must hold only 0/1"),
    ("obs-mask-half", [*OBS, "{f}/mask_half.nc"], "mask must hold only 0/1"),
    ("obs-no-sigma", [*OBS, "{f}/no_sigma.nc"], "sigma=None"),
    ("obs-neg-sigma", [*OBS, "{f}/neg_sigma.nc"], "sigma="),
    ("obs-nan-sigma", [*OBS, "{f}/nan_sigma.nc"], "sigma="),
    ("obs-str-dt", [*OBS, "{f}/str_dt.nc"], "dt='fast'"),
    ("obs-zero-dt", [*OBS, "{f}/zero_dt.nc"], "dt="),
    ("obs-x0-nx", [*OBS, "{f}/x0_nx.nc"], "x0 shape"),
    ("obs-x0-nan", [*OBS, "{f}/x0_nan.nc"], "x0 holds NaN"),
    ("obs-truth-len", [*OBS, "{f}/truth_len.nc"], "truth shape"),
    ("obs-truth-nx", [*OBS, "{f}/truth_nx.nc"], "truth shape"),
    ("obs-nx3", [*OBS, "{f}/nx3.nc"], "N_x=3"),
    ("obs-no-cycles", [*OBS, "{f}/no_cycles.nc"], "at least one cycle"),
    ("obs-y-text", [*OBS, "{f}/y_text.nc"], "y has dtype"),
    ("obs-spinup-too-long", [*OBS, "{f}/good.nc", "--spinup", "6"], "spinup=6"),
    # ---- train: options and TOML configs
    ("train-preset", ["train", "--preset", "huge", "--device", "cpu"], "preset='huge'"),
    ("train-lr-neg", [*TRAIN, "--lr", "-1"], "lr=-1.0"),
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], "lr=nan"),
    ("train-clip-inf", [*TRAIN, "--clip", "inf"], "clip=inf"),
    ("train-decay-from", [*TRAIN, "--decay-from", "1.5"], "decay_from=1.5"),
    ("train-nx", [*TRAIN, "--nx", "3"], "nx=3"),
    ("train-kernel", [*TRAIN, "--kernel", "0"], "kernel=0"),
    ("train-dtype", [*TRAIN, "--dtype", "float16"], "dtype='float16'"),
    ("train-bool", [*TRAIN, "--compile", "maybe"], "'maybe'"),
    ("train-net", [*TRAIN, "--net", "transformer"], "net='transformer'"),
    ("train-activation", [*TRAIN, "--activation", "sin"], "activation='sin'"),
    ("train-variant", [*TRAIN, "--variant", "x"], "variant='x'"),
    ("train-time-budget", [*TRAIN, "--time-budget", "-1"], "time_budget=-1.0"),
    ("train-n-iter-ramp", [*TRAIN, "--n-iter-start", "2", "--n-iter-from", "0.8",
                           "--n-iter-until", "0.5"], "n_iter_from=0.8, n_iter_until=0.5"),
    ("train-n-iter-until", [*TRAIN, "--n-iter-until", "1.5"], "n_iter_until=1.5"),
    ("train-seed", [*TRAIN, "--seed", "-1"], "seed=-1"),
    ("train-forcing", [*TRAIN, "--forcing", "nan"], "forcing=nan"),
    ("train-loc-radius", [*TRAIN, "--net", "linear-zeta", "--loc-radius", "-1"],
     "loc_radius=-1.0"),
    ("train-device", [*TRAIN, "--device", "cuda"] if not torch.cuda.is_available()
     else [*TRAIN, "--device", "tpu"], "device="),
    ("train-resume-nothing", [*TRAIN, "--resume"], "no checkpoint.pt"),
    ("train-init-missing", [*TRAIN, "--init", "{f}/nothere"], "does not exist"),
    ("train-init-other-net", [*TRAIN, "--init", "{f}/run_ok", "--filters", "99"],
     "filters 16 there, 99 here"),
    ("train-init-wrong-weights", [*TRAIN, "--init", "{f}/run_wrong_weights", "--filters", "8"],
     "weights do not match"),
    ("train-init-truncated", [*TRAIN, "--init", "{f}/run_truncated"], "refusing to load"),
    ("train-resume-partial", [*TRAIN, "--resume", "--out", "{f}/run_partial_ckpt"],
     "is not a danlab checkpoint"),
    ("toml-missing", [*TRAIN, "--config", "{f}/missing.toml"], "does not exist"),
    *[(f"toml-{name}", [*TRAIN, "--config", f"{{f}}/{name}.toml"], frag) for name, frag in [
        ("unknown_key", "unknown key 'bogus'"), ("section", "unknown key 'train'"),
        ("wrong_type_str", "nx='forty'"), ("wrong_type_bool", "alpha=1"),
        ("wrong_type_float_for_int", "filters=8.5"), ("nan", "lr=nan"), ("inf", "dt=inf"),
        ("negative", "sigma=-1.0"), ("even_kernel", "kernel=4"),
        ("bad_choice", "obs='diagonal'"), ("batch_too_big", "s_b=1000"),
        ("spinup_too_long", "cycles=10"), ("not_toml", "not valid TOML"),
        ("not_utf8", "not valid TOML")]],
    # ---- evaluate: run directories, checkpoints, options
    ("eval-no-dir", [*EVAL, "{f}/nothere"], "does not exist"),
    ("eval-no-best", [*EVAL, "{f}/run_empty"], "does not exist"),
    ("eval-wrong-weights", [*EVAL, "{f}/run_wrong_weights"], "weights do not match"),
    ("eval-unknown-key", [*EVAL, "{f}/run_unknown_key"], "unknown key 'bogus'"),
    ("eval-bad-value", [*EVAL, "{f}/run_bad_value"], "sigma=-1.0"),
    ("eval-no-config", [*EVAL, "{f}/run_no_config"], "missing ['config']"),
    ("eval-not-dict", [*EVAL, "{f}/run_not_dict"], "is not a danlab checkpoint"),
    ("eval-truncated", [*EVAL, "{f}/run_truncated"], "refusing to load"),
    ("eval-text", [*EVAL, "{f}/run_text"], "refusing to load"),
    ("eval-nx", [*EVAL, "{f}/run_ok", "--nx", "2"], "nx=2"),
    ("eval-dt", [*EVAL, "{f}/run_ok", "--dt", "inf"], "dt=inf"),
    ("eval-obs", [*EVAL, "{f}/run_ok", "--obs", "weird"], "obs='weird'"),
    ("eval-sigma", [*EVAL, "{f}/run_ok", "--sigma", "0"], "sigma=0.0"),
    ("eval-spinup", [*EVAL, "{f}/run_ok", "--spinup", "10"], "spinup=10"),
    ("eval-dtype", [*EVAL, "{f}/run_ok", "--dtype", "half"], "dtype='half'"),
    # ---- quickstart
    ("quickstart-preset", ["quickstart", "--preset", "nope", "--device", "cpu"], "preset='nope'"),
    ("quickstart-members", ["quickstart", "--members", "1", "--device", "cpu"], "members=1"),
    ("quickstart-resume", ["quickstart", "--preset", "smoke", "--resume", "--device", "cpu"],
     "no checkpoint.pt"),
    # ---- diagnose
    ("diagnose-kind", ["diagnose", "hessian", "{f}/run_ok"], "invalid choice: 'hessian'"),
    ("diagnose-no-dir", ["diagnose", "covariance", "{f}/nothere"], "does not exist"),
    ("diagnose-truncated", ["diagnose", "covariance", "{f}/run_truncated"], "refusing to load"),
    ("diagnose-states", ["diagnose", "covariance", "{f}/run_ok", "--states", "0"], "states=0"),
    ("diagnose-method", ["diagnose", "covariance", "{f}/run_ok", "--states", "2", "--method",
                         "magic"], "method='magic'"),
    ("diagnose-r", ["diagnose", "marginal-gain", "{f}/run_ok", "--states", "2", "--r", "99"],
     "r=99"),
    ("diagnose-shifts", ["diagnose", "marginal-gain", "{f}/run_ok", "--shifts", "x"],
     "shifts='x'"),
    ("diagnose-lambdas", ["diagnose", "nonlinearity", "{f}/run_ok", "--lambdas", "a,b"], "'a,b'"),
    ("diagnose-bins", ["diagnose", "innovations", "{f}/run_ok", "--bins", "0", "--cycles", "20",
                       "--spinup", "5"], "bins=0"),
]


@pytest.mark.parametrize("argv,fragment", [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_input(argv, fragment, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output directory would land here
    out = tmp_path / "out"
    argv = [a.replace("{f}", str(files)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    before = snapshot(files), sorted(os.listdir(tmp_path))
    rc, err = run_cli(argv, capsys)
    assert_refused(rc, err, fragment)
    assert not out.exists(), "the output directory was created for a refused input"
    assert (snapshot(files), sorted(os.listdir(tmp_path))) == before


@pytest.mark.parametrize("argv", [
    pytest.param(["train", "--preset", "smoke", "--config", "{f}/unknown_key.toml"],
                 marks=pytest.mark.slow),
    ["evaluate", "{f}/run_truncated"],
], ids=["train-toml", "evaluate-ckpt"])
def test_cli_subprocess_exit_2(argv, files, tmp_path):
    """The installed entry point (a fresh interpreter): exit status 2, one line, no traceback,
    an existing output directory left exactly as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous good state\n")
    before = snapshot(out)
    argv = [a.replace("{f}", str(files)) for a in argv] + ["--out", str(out), "--device", "cpu"]
    proc = subprocess.run([sys.executable, "-c", "import sys; from danlab.cli import main; "
                           "sys.exit(main())", *argv], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert_refused(proc.returncode, proc.stderr, "danlab: error:")
    assert snapshot(out) == before


@pytest.mark.parametrize("name", ["run_ok"])
def test_existing_out_dir_unchanged(name, files, tmp_path, capsys):
    """A bad option with an existing --out: nothing in it changes."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "results.json").write_text("{}\n")
    before = snapshot(out)
    rc, err = run_cli([*EVAL, str(files / name), "--sigma", "nan", "--out", str(out)], capsys)
    assert_refused(rc, err, "sigma=nan")
    assert snapshot(out) == before


# ---------------------------------------------------------------- API level
def test_api_read_observations(files):
    from danlab.obsfile import read_observations

    for name in ("no_y", "mask_two", "nan_observed", "x0_nx", "text", "y_text", "no_cycles"):
        with pytest.raises(DanlabError) as e:
            read_observations(str(files / f"{name}.nc"))
        assert "\n" not in str(e.value) and f"{name}.nc" in str(e.value)
    assert read_observations(str(files / "good.nc")).nx == N


def test_api_load_refuses_bad_checkpoints(files):
    from danlab.train import load

    for name in ("run_wrong_weights", "run_unknown_key", "run_no_config", "run_not_dict",
                 "run_truncated", "run_text", "run_empty"):
        with pytest.raises(ValueError) as e:
            load(files / name)
        assert "\n" not in str(e.value)


def test_api_train_config_from_dict():
    for bad, frag in [({"nx": "40"}, "nx='40'"), ({"lr": float("nan")}, "lr=nan"),
                      ({"bogus": 1}, "bogus"), ({"kernel": 2}, "kernel=2"),
                      ({"dtype": "float16"}, "float16"), ({"alpha": 0}, "alpha=0")]:
        with pytest.raises(DanlabError, match=None) as e:
            TrainConfig.from_dict(bad)
        assert frag in str(e.value)


POSITIVE = ("dt", "inner_dt", "sigma", "lr", "clip")
bad_floats = st.one_of(st.floats(max_value=0.0), st.sampled_from([math.nan, math.inf, -math.inf]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(POSITIVE), value=bad_floats)
def test_hypothesis_positive_fields_refused(field, value):
    with pytest.raises(DanlabError) as e:
        TrainConfig.from_dict({field: value})
    assert f"{field}=" in str(e.value) and "\n" not in str(e.value)


INT_FIELDS = ("nx", "filters", "blocks", "n_iter", "epochs", "s_b", "val_cycles")


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(INT_FIELDS), value=st.integers(max_value=0))
def test_hypothesis_int_fields_refused(field, value):
    with pytest.raises(DanlabError) as e:
        TrainConfig.from_dict({field: value})
    assert f"{field}={value}" in str(e.value)


@settings(max_examples=40, deadline=None)
@given(key=st.text(min_size=1, max_size=12).filter(
    lambda k: k not in TrainConfig.__dataclass_fields__))
def test_hypothesis_unknown_keys_refused(key):
    with pytest.raises(DanlabError) as e:
        TrainConfig.from_dict({key: 1})
    assert "unknown key" in str(e.value)
