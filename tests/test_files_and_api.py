"""What users meet around the numbers: file permissions, strict JSON, imports, API errors,
twin specs and their per-trajectory streams."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

import danlab
from danlab import io
from danlab.errors import DanlabError
from danlab.twin import TwinSpec


def test_twin_subsets_are_bit_identical():
    """The first 8 trajectories of a 64-trajectory spec equal an 8-trajectory spec."""
    for obs in ("full", "random"):
        big = TwinSpec(obs=obs, trajectories=64, cycles=40, spinup=10).build()[1]
        small = TwinSpec(obs=obs, trajectories=8, cycles=40, spinup=10).build()[1]
        for name in ("truth", "y", "mask", "x0"):
            assert torch.equal(getattr(big, name)[..., :8, :] if name != "x0" else big.x0[:8],
                               getattr(small, name)), (obs, name)


def test_filter_results_pair_across_sizes():
    """An ensemble filter's initial ensemble is drawn per trajectory too."""
    f = danlab.make_filter("enkf-n", members=10)
    r8 = danlab.run_filter(f, *reversed(TwinSpec(trajectories=3, cycles=30, spinup=5).build()))
    r5 = danlab.run_filter(f, *reversed(TwinSpec(trajectories=5, cycles=30, spinup=5).build()))
    torch.testing.assert_close(r5.rmse_per_trajectory[:3], r8.rmse_per_trajectory,
                               rtol=0, atol=1e-12)


def test_twin_spec_validation_and_description():
    with pytest.raises(DanlabError, match="inner_dt=0.03 is not allowed: it must divide"):
        TwinSpec(dt=0.05, inner_dt=0.03)
    with pytest.raises(DanlabError, match="cycles=10 is not allowed"):
        TwinSpec(cycles=10, spinup=10)
    s = TwinSpec(dt=0.3)
    assert s.inner_dt == 0.01 and s.forcing == 8.0 and s.step_used == pytest.approx(0.01)
    assert "dt=0.3" in s.describe() and "seed 1000003" in s.describe()
    assert TwinSpec(dt=0.005).step_used == 0.005  # dt below the inner step: one step of dt


def test_unstable_inner_step_is_named():
    with pytest.raises(DanlabError, match="integration step 0.5 .* unstable"):
        TwinSpec(dt=1.0, inner_dt=0.5, trajectories=1, cycles=40, spinup=1).build()


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
        io.save_torch(tmp_path / "b.pt", {"x": torch.zeros(1)})
        io.append_jsonl(tmp_path / "c.jsonl", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.json", "b.pt", "c.jsonl"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


def test_json_is_strict(tmp_path):
    io.write_json(tmp_path / "a.json", {"rmse": float("nan"), "v": [1.0, float("inf")]})
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"rmse": None, "v": [1.0, None]}


def test_import_does_not_switch_the_matplotlib_backend():
    code = ("import matplotlib; before = matplotlib.rcParams['backend']; import danlab, "
            "danlab.diagnostics, danlab.diagnostics.plots, danlab.experiments.quickstart; "
            "after = matplotlib.rcParams['backend']; assert before == after, (before, after)")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "MPLBACKEND": "svg"})


def test_wrong_dtype_for_a_dan_is_one_line():
    cfg = danlab.preset("smoke")
    op = danlab.build_net(cfg).float()
    model, twin = TwinSpec(trajectories=1, cycles=5, spinup=1).build(dtype=torch.float64)
    with pytest.raises(DanlabError, match="dtype torch.float64 but the model"):
        danlab.run_filter(danlab.DANFilter(op), twin, model)


class DampedL96(danlab.Model):
    """A user's model in ten lines: Lorenz-96 with a damping factor, Heun's method."""

    name = "damped-l96"

    def __init__(self, forcing: float = 8.0, damping: float = 1.2, inner_dt: float = 0.01):
        self.forcing, self.damping, self.inner_dt = forcing, damping, inner_dt

    def options(self):
        return {"forcing": self.forcing, "damping": self.damping, "inner_dt": self.inner_dt}

    def tendency(self, x):
        r = torch.roll
        return (r(x, -1, -1) - r(x, 2, -1)) * r(x, 1, -1) - self.damping * x + self.forcing

    def forecast(self, x, dt):
        n = max(1, round(dt / self.inner_dt))
        h = dt / n
        for _ in range(n):  # Heun's method: a different scheme from danlab's RK4
            k1 = self.tendency(x)
            x = x + 0.5 * h * (k1 + self.tendency(x + h * k1))
        return x

    def random_state(self, n, nx, generator):
        return self.forcing + torch.randn(n, nx, generator=generator, dtype=torch.float64)


def test_user_model_through_the_api(tmp_path):
    """A user-defined model is assimilated and a DAN is trained on it through the public API,
    by its module:Class name (so a run records and rebuilds it)."""
    spec = TwinSpec(model=f"{__name__}:DampedL96", model_options={"damping": 1.3},
                    trajectories=2, cycles=60, spinup=20)
    model, twin = spec.build()
    assert model.damping == 1.3 and model.forcing == 8.0
    enkf = danlab.run_filter(danlab.make_filter("enkf-n", members=20), twin, model)
    assert enkf.n_diverged == 0 and enkf.rmse < 0.5
    cfg = danlab.preset("smoke", twin=spec, filters=8, blocks=1, n_r=64, s_b=8,
                        max_steps=30, time_budget=0.0, val_cycles=8)
    out = danlab.train(cfg, tmp_path, progress=False, log=lambda *a: None)
    assert out["diverged"] == 0 and out["rmse"] < 1.0
    again = danlab.evaluate_run(tmp_path)  # the run rebuilds the user's model by name
    assert again.rmse == pytest.approx(out["rmse"])


def test_user_model_from_the_command_line(capsys):
    from danlab.cli import main

    args = ["baseline", "--method", "enkf-n", "--members", "20", "--model",
            f"{__name__}:DampedL96", "--forcing", "6", "--trajectories", "2", "--cycles", "60",
            "--spinup", "20", "--device", "cpu", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["twin"]["model"].endswith(":DampedL96") and out["twin"]["forcing"] == 6.0
    assert out["rmse"] < 0.5
    assert main([*args[:5], "--model", f"{__name__}:NotThere", *args[7:]]) == 2
    assert "cannot be imported" in capsys.readouterr().err


def test_fingerprint_names_the_trajectories_not_the_precision():
    spec = TwinSpec(trajectories=3, cycles=20, spinup=5)
    f64 = spec.build(dtype=torch.float64)[1].fingerprint()
    assert spec.build(dtype=torch.float32)[1].fingerprint() == f64
    assert spec.replace(trajectories=4).build()[1].fingerprint() != f64
    assert spec.replace(seed=7).build()[1].fingerprint() != f64


def test_climatology_does_not_depend_on_the_thread_count():
    """Cached per process and used by 3D-Var's B and the divergence rule: a sweep's runs must
    give the same numbers in the main process (any thread count) and in 1-thread workers."""
    from danlab.dynamics import base
    from danlab.dynamics.lorenz96 import Lorenz96

    threads = torch.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            torch.set_num_threads(n)
            base._climatology.cache_clear()
            out.append(Lorenz96().climatology(40))
    finally:
        torch.set_num_threads(threads)
        base._climatology.cache_clear()
    assert torch.equal(out[0].covariance, out[1].covariance) and out[0].std == out[1].std
