"""Sweeps: runs keyed by their config, resumable after SIGKILL, the same results on every
executor, failures recorded without stopping the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from danlab import runs
from danlab.cli import main
from danlab.errors import DanlabError
from danlab.executors import make_executor
from danlab.sweep import Sweep, collect, run, status

SMALL = {"twin.trajectories": 2, "twin.cycles": 40, "twin.spinup": 10}
SPEC = """
kind = "baseline"
[base]
"twin.trajectories" = 2
"twin.cycles" = {cycles}
"twin.spinup" = 10
[grid]
method = ["3dvar", "obs-only", "etkf"]
"twin.dt" = [0.05, 0.1]
"""


def _quiet(*a):
    pass


def _values(ds):
    return {k: ds[k].values.tolist() for k in ("rmse", "diverged")}


def test_a_run_is_keyed_by_its_resolved_config(tmp_path):
    a = runs.resolve("baseline", {"method": "enkf-n", "members": 10, **SMALL})
    b = runs.resolve("baseline", {"method": "enkf-n", "parameters.members": 10,
                                  "twin": {"trajectories": 2, "cycles": 40, "spinup": 10,
                                           "inner_dt": 0.01}})
    assert runs.run_name(a) == runs.run_name(b)  # the inner step's default resolved
    first = runs.execute(a, tmp_path)
    again = runs.execute(a, tmp_path)  # a no-op that returns the stored result
    assert again == first
    d = tmp_path / runs.run_name(a)
    assert json.loads((d / "run.json").read_text()) == a
    with pytest.raises(DanlabError, match="parameters \\['inflation'\\] are not allowed"):
        runs.resolve("baseline", {"method": "enkf-n", "parameters.inflation": 1.1})


def test_failed_run_records_its_traceback_and_the_others_go_on(tmp_path, monkeypatch):
    sweep = Sweep("baseline", SMALL, {"method": ["obs-only", "3dvar"]})
    compute = runs._compute

    def failing(config, *args):
        if config["method"] == "3dvar":
            raise RuntimeError("boom")
        return compute(config, *args)

    monkeypatch.setattr(runs, "_compute", failing)
    res = run(sweep, tmp_path, make_executor("inline"), progress=False, log=_quiet)
    assert res["done"] == 1 and res["failed"] == 1 and "boom" in list(res["failures"].values())[0]
    st = status(tmp_path)
    assert st == {"name": "sweep", "total": 2, "done": 1, "failed": 1, "pending": 0}
    name = runs.run_name(runs.resolve("baseline", {"method": "3dvar", **SMALL}))
    assert "RuntimeError: boom" in (tmp_path / "runs" / name / "error.txt").read_text()
    monkeypatch.setattr(runs, "_compute", compute)  # fixed: the rerun completes the sweep
    assert run(sweep, tmp_path, make_executor("inline"), progress=False, log=_quiet)["done"] == 1
    assert status(tmp_path)["done"] == 2


def test_sweep_sigkill_then_rerun_recomputes_only_unfinished(tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text(SPEC.format(cycles=300))
    ref = tmp_path / "ref"
    assert main(["sweep", str(spec), "--out", str(ref), "--executor", "inline",
                 "--no-progress"]) == 0
    out = tmp_path / "cut"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "danlab", "sweep", str(spec), "--out",
                             str(out), "--executor", "inline", "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while len(list((out / "runs").glob("*/result.json"))) < 2:  # 2 of 6 finished
        assert proc.poll() is None and time.monotonic() - t0 < 120
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    assert 2 <= len(finished) < 6
    assert status(out)["pending"] == 6 - len(finished)
    assert main(["sweep", str(spec), "--out", str(out), "--executor", "inline",
                 "--no-progress"]) == 0
    for name, mtime in finished.items():  # finished runs were not recomputed
        assert (out / "runs" / name / "result.json").stat().st_mtime_ns == mtime
    a, b = xr.open_dataset(ref / "results.nc").load(), xr.open_dataset(out / "results.nc").load()
    assert _values(a) == _values(b) and status(out)["done"] == 6


def test_local_processes_give_the_inline_results(tmp_path):
    sweep = Sweep("baseline", SMALL, {"method": ["3dvar", "obs-only"], "twin.dt": [0.05, 0.1]})
    a = run(sweep, tmp_path / "a", make_executor("inline"), progress=False, log=_quiet)
    b = run(sweep, tmp_path / "b", make_executor("local", 2), progress=False, log=_quiet)
    assert _values(a["results"]) == _values(b["results"])
    assert a["results"]["rmse"].dims == ("method", "twin.dt")


def test_evaluate_runs_share_their_training(tmp_path):
    train = {"train.preset": "smoke", "train.filters": 4, "train.blocks": 1, "train.n_r": 64,
             "train.s_b": 8, "train.max_steps": 6, "train.time_budget": 0.0,
             "train.twin.trajectories": 2, "train.twin.cycles": 40, "train.twin.spinup": 10}
    sweep = Sweep("evaluate", train, {"twin.nx": [40, 80]})
    res = run(sweep, tmp_path, make_executor("inline"), progress=False, log=_quiet)
    assert res["done"] == 2 and len(list((tmp_path / "runs").glob("train-*"))) == 1
    assert res["results"]["rmse"].dims == ("twin.nx",)


def test_bad_sweep_specs(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    for text, fragment in [('kind = "dance"\n', "kind='dance'"),
                           ('kind = "baseline"\n[grid]\nmethod = "enkf-n"\n', "non-empty list"),
                           ('kind = "baseline"\n[grid]\nmethod = ["kalman"]\n', "kalman"),
                           ('[grid]\nmethod = ["3dvar"]\n', "kind is missing")]:
        bad.write_text(text)
        assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1
        assert not (tmp_path / "o").exists()
    assert main(["sweep", "status", str(tmp_path / "nothing")]) == 2
    assert "holds no sweep" in capsys.readouterr().err


@pytest.mark.distributed
@pytest.mark.parametrize("name,options", [("ray", {}), ("slurm", {"cluster": "local"})])
def test_ray_and_submitit_give_the_local_results(tmp_path, name, options):
    pytest.importorskip({"ray": "ray", "slurm": "submitit"}[name])
    sweep = Sweep("baseline", SMALL, {"method": ["3dvar", "obs-only"], "twin.dt": [0.05, 0.1]})
    a = run(sweep, tmp_path / "a", make_executor("inline"), progress=False, log=_quiet)
    ex = make_executor(name, folder=str(tmp_path / "jobs"), **options)
    b = run(sweep, tmp_path / "b", ex, progress=False, log=_quiet)
    assert b["done"] == 4 and _values(a["results"]) == _values(b["results"])
    if name == "ray":
        import ray

        ray.shutdown()


def test_collect_labels_points_outside_the_grid(tmp_path):
    sweep = Sweep("baseline", SMALL, {"method": ["obs-only"]},
                  [{"method": "etkf", "members": 8}])
    res = run(sweep, tmp_path, make_executor("inline"), progress=False, log=_quiet)
    ds = collect(tmp_path)
    assert set(ds["members"].values.tolist()) == {"-", "8"} and res["done"] == 2
    assert "| etkf | 8 |" in (tmp_path / "results.md").read_text()
    # the spread beside the mean: the std of the per-trajectory RMSEs of the run
    cell = ds.sel({"method": "obs-only", "members": "-"})
    per = json.loads((tmp_path / "runs" / str(cell["run"].values) / "result.json").read_text())
    expect = float(np.std(per["rmse_per_trajectory"], ddof=1))
    assert float(cell["rmse_std"]) == pytest.approx(expect, rel=1e-12)
    assert f"{float(cell['rmse']):.4f} ± {expect:.4f}" in (tmp_path / "results.md").read_text()


def test_cross_runs_every_point_at_every_grid_value():
    s = Sweep("baseline", SMALL, {"twin.dt": [0.05, 0.1]},
              [{"method": "obs-only"}, {"method": "etkf", "members": 8}], cross=True)
    labels = [e["labels"] for e in s.entries()]
    assert len(labels) == 4 and {(d["method"], d["twin.dt"]) for d in labels} == {
        ("obs-only", 0.05), ("obs-only", 0.1), ("etkf", 0.05), ("etkf", 0.1)}


def _die_on_first_call(config, root, device="cpu"):
    import os as _os
    from pathlib import Path as _Path

    flag = _Path(root) / "died-once"
    if config["method"] == "3dvar" and not flag.exists():
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text("x")
        _os._exit(1)  # a worker killed mid-run (OOM, SIGKILL)
    return runs.execute(config, root, device)


def test_a_dead_local_worker_does_not_stop_the_sweep(tmp_path):
    sweep = Sweep("baseline", SMALL, {"method": ["3dvar", "obs-only"]})
    ex = make_executor("local", 2)
    entries = sweep.entries()
    out = dict(ex.map(_die_on_first_call, [(e["config"], str(tmp_path)) for e in entries]))
    ex.close()
    assert all(isinstance(v, dict) for v in out.values()) and len(out) == 2


def test_a_sweep_can_change_the_model(tmp_path):
    # the base twin's L96 forcing and step do not carry over to a model that has none
    cfg = runs.resolve("baseline", {"method": "3dvar", "twin.model": "ks", "twin.nx": 128,
                                    "twin.dt": 1.0, "twin.cycles": 20, "twin.spinup": 5,
                                    "twin.trajectories": 1})
    assert cfg["twin"]["forcing"] is None and cfg["twin"]["inner_dt"] == 0.5
    l96 = runs.resolve("baseline", {"method": "3dvar", "twin.model": "l96", "twin.dt": 0.1})
    assert l96["twin"]["forcing"] == 8.0 and l96["twin"]["inner_dt"] == 0.01
    ev = runs.resolve("evaluate", {"train.twin.model": "ks", "train.twin.nx": 128,
                                   "train.twin.dt": 1.0, "twin.trajectories": 2})
    assert ev["twin"]["model"] == "ks" and ev["twin"]["forcing"] is None
    with pytest.raises(DanlabError, match="has no forcing"):
        runs.resolve("baseline", {"method": "3dvar", "twin.model": "ks", "twin.nx": 128,
                                  "twin.dt": 1.0, "twin.forcing": 8.0})
    assert runs.execute(cfg, tmp_path)["trajectories"] == 1
    from pathlib import Path

    spec = Path(__file__).parents[1] / "benchmarks" / "sweeps" / "ks_baselines.toml"
    entries = Sweep.from_toml(str(spec)).entries()  # resolves (validates) every run
    assert len(entries) == 11 and {e["config"]["twin"]["model"] for e in entries} == {"ks"}


def test_a_later_train_field_at_its_default_keeps_the_keys_of_stored_runs():
    from danlab.config import preset

    for name, default in runs.LATER_TRAIN_FIELDS.items():
        cfg = preset("cpu", optimizer="adam").to_dict()  # the fields' defaults
        assert cfg[name] == default
        older = {k: v for k, v in cfg.items() if k != name}  # as stored before the field
        train = {"kind": "train", "config": cfg, "workers": 1}
        assert runs.run_name(train) == runs.run_name({**train, "config": older})
        ev = {"kind": "evaluate", "train": train, "checkpoint": "best.pt"}
        assert runs.run_name(ev) == runs.run_name({**ev, "train": {**train, "config": older}})
    changed = {"kind": "train", "config": preset("cpu", val_every=4).to_dict(), "workers": 1}
    assert runs.run_name(changed) != runs.run_name({**changed, "config": preset("cpu").to_dict()})


def _stops_on_sigterm(flags: str, i: int) -> int:
    """A run that, like a training, turns SIGTERM into a clean stop (and writes its pid)."""
    import os as _os
    import signal as _signal
    import time as _time
    from pathlib import Path

    def stop(signum, frame):
        raise RuntimeError("SIGTERM: stopped")

    _signal.signal(_signal.SIGTERM, stop)
    (Path(flags) / f"started_{i}").write_text(str(_os.getpid()))
    _time.sleep(30)
    return i


def test_a_local_worker_exits_with_its_sweep(tmp_path):
    """SIGKILL on a sweep: its worker stops the run in progress and starts none of the queued
    ones (it would otherwise run them on as an orphan)."""
    tests = os.path.dirname(os.path.abspath(__file__))
    code = ("from test_sweep import _stops_on_sigterm\n"
            "from danlab.executors import Local\n"
            f"list(Local(1).map(_stops_on_sigterm, [({str(tmp_path)!r}, i) for i in range(4)]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    sweep = subprocess.Popen([sys.executable, "-c", code], env=env)
    first = tmp_path / "started_0"
    t0 = time.monotonic()
    while not first.exists():
        assert sweep.poll() is None and time.monotonic() - t0 < 120
        time.sleep(0.05)
    time.sleep(0.2)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    worker = int(first.read_text())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        try:
            state = open(f"/proc/{worker}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":  # exited, not yet reaped by its new parent
            break
        time.sleep(0.1)
    else:
        pytest.fail("the worker of a killed sweep is still running after 20 s")
    assert sorted(p.name for p in tmp_path.glob("started_*")) == ["started_0"]


def test_a_run_held_by_another_process_is_left_for_last(tmp_path):
    """Two sweeps on one root share its grid: a run whose lock another process holds is
    skipped and waited for only after every other run (it used to block the sweep at once)."""
    import fcntl
    import threading

    sweep = Sweep("baseline", SMALL, {"method": ["3dvar", "obs-only", "etkf"]})
    root = tmp_path / "out" / "runs"
    held = root / runs.run_name(sweep.entries()[0]["config"])
    held.mkdir(parents=True)
    lock = open(held / ".lock", "w")  # another open file description: conflicts like a process
    fcntl.flock(lock, fcntl.LOCK_EX)
    threading.Timer(2.0, lock.close).start()  # closing releases the lock
    lines = []
    out = run(sweep, tmp_path / "out", make_executor("inline"), progress=False,
              log=lines.append)
    done = sorted(root.glob("*/result.json"), key=lambda p: p.stat().st_mtime_ns)
    assert out["done"] == 3 and out["failed"] == 0 and len(done) == 3
    assert done[-1].parent == held
    assert any("1 runs held by another process" in line for line in lines)
    assert runs.is_busy(runs.execute(sweep.entries()[0]["config"], root)) is False
