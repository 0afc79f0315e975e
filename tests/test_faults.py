"""Fault tests (issue 6): a `danlab train` subprocess killed at many moments (SIGKILL, including
in the middle of a checkpoint write; SIGTERM and SIGINT) resumes to bit-identical final weights
in float64 on the CPU; disk-full and permission errors give a one-line error and leave the
previous good files intact; NaN in training is rolled back; a diverging EnKF-N trajectory is
flagged; same config and seed give the same results."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch

from danlab import io
from danlab.cli import main
from danlab.errors import DanlabError

# The test's own launcher: danlab's CLI with io.atomic_write wrapped so that the nth write of a
# named file announces itself in $DANLAB_FAULT_MARK (after the data is written and flushed to
# the temporary file, before the rename) and then sleeps: the test kills it right there.
DRIVER = r'''
import os, pathlib, sys, time
from danlab import io
_orig, _count = io.atomic_write, {}
PAUSE, MARK = os.environ.get("DANLAB_FAULT_PAUSE"), os.environ.get("DANLAB_FAULT_MARK")

def atomic_write(path, write):
    name = pathlib.Path(path).name
    _count[name] = _count.get(name, 0) + 1
    if PAUSE:
        want, nth, secs = PAUSE.split(":")
        if name == want and _count[name] == int(nth):
            def slow(f):
                write(f)
                f.flush()
                tmp = pathlib.Path(MARK + ".tmp")
                tmp.write_text(name)
                tmp.rename(MARK)
                time.sleep(float(secs))
            return _orig(path, slow)
    return _orig(path, write)

io.atomic_write = atomic_write
from danlab.cli import main
sys.exit(main(sys.argv[1:]))
'''

# 14 steps per epoch, 6 epochs, finishing by --max-steps (no time budget), float64, fixed seed
SLOW_ARGS = ["--preset", "smoke", "--dtype", "float64", "--train-seed", "3", "--time-budget",
             "0", "--max-steps", "84", "--warmup-cycles", "20", "--val-cycles", "16",
             "--trajectories", "2", "--cycles", "60", "--spinup", "10"]
# the fast representative: 7 steps per epoch, 3 epochs, a tiny net
FAST_ARGS = ["--preset", "smoke", "--dtype", "float64", "--train-seed", "5", "--time-budget",
             "0", "--filters", "4", "--blocks", "1", "--n-r", "72", "--s-b", "8", "--max-steps",
             "21", "--warmup-cycles", "5", "--val-cycles", "8", "--trajectories", "2",
             "--cycles", "30", "--spinup", "5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _launch(tmp: Path, out: Path, args, pause=None, resume=False) -> tuple[subprocess.Popen, Path]:
    driver = tmp / "fault_driver.py"
    if not driver.exists():
        driver.write_text(DRIVER)
    mark = tmp / f"mark-{time.monotonic_ns()}"
    env = dict(ENV, DANLAB_FAULT_MARK=str(mark), **({"DANLAB_FAULT_PAUSE": pause} if pause else {}))
    cmd = [sys.executable, str(driver), "train", *args, "--out", str(out), "--device", "cpu",
           "--no-progress", "--json", *(["--resume"] if resume else [])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, mark


def _wait_for(path: Path, proc: subprocess.Popen, timeout=300.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill point: {proc.communicate()[1]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("kill point never reached")
        time.sleep(0.01)


def _finish(proc) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _run(tmp, out, args, resume=False) -> dict:
    proc, _ = _launch(tmp, out, args, resume=resume)
    rc, stdout, err = _finish(proc)
    assert rc == 0, err
    assert "Traceback" not in err
    return json.loads(stdout.strip().splitlines()[-1])


def _weights(out: Path) -> dict:
    return {name: torch.load(out / name, weights_only=True)["weights"]
            for name in ("checkpoint.pt", "best.pt")}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    for name in wa:
        assert wa[name].keys() == wb[name].keys()
        for k in wa[name]:
            assert wa[name][k].dtype == torch.float64
            assert torch.equal(wa[name][k], wb[name][k]), f"{name}:{k} differs"


def _run_here(out, args, resume=False) -> dict:
    """The same command in this process (cheaper than a fresh interpreter; same bits on CPU)."""
    import contextlib
    import io as _io

    buf = _io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", *args, "--out", str(out), "--device", "cpu", "--no-progress",
                   "--json", *(["--resume"] if resume else [])])
    assert rc == 0
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def _interrupt_and_resume(tmp, args, reference: Path, pause: str, delay: float = 0.0,
                          sig=signal.SIGKILL, resume_here=False) -> dict:
    """Run until the pause point, wait `delay` s, send `sig`, then resume (or restart when no
    checkpoint exists yet) and compare with the uninterrupted reference."""
    out = tmp / f"run-{pause.replace(':', '_')}-{delay}-{sig.name}"
    proc, mark = _launch(tmp, out, args, pause=pause)
    _wait_for(mark, proc)
    time.sleep(delay)
    if delay == 0.0:  # killed inside atomic_write: the data sits in a temporary file only
        name = pause.split(":")[0]
        assert list(out.glob(f".{name}.*.tmp")), "no temporary file at the kill point"
    before = (out / "checkpoint.pt").exists() and torch.load(out / "checkpoint.pt",
                                                             weights_only=True)["state"]
    proc.send_signal(sig)
    rc, _, err = _finish(proc)
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
    else:
        assert rc == 130, err
        assert "Traceback" not in err
        after = torch.load(out / "checkpoint.pt", weights_only=True)["state"]
        assert not before or after["step"] > before["step"], "no checkpoint on the signal"
    # every file present is whole (readable); a checkpoint is never half-written
    for name in ("checkpoint.pt", "best.pt"):
        if (out / name).exists():
            torch.load(out / name, weights_only=True)
    resume = (out / "checkpoint.pt").exists()
    summary = (_run_here if resume_here else partial(_run, tmp))(out, args, resume=resume)
    _assert_same_weights(out, reference)
    ref = json.loads((reference / "results.json").read_text())
    assert summary["rmse"] == ref["rmse"] and summary["val_rmse"] == ref["val_rmse"]
    assert summary["steps"] == ref["steps"]
    return summary


@pytest.fixture(scope="module")
def fast_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fast")
    _run_here(tmp / "reference", FAST_ARGS)
    return tmp, tmp / "reference"


def test_sigkill_during_checkpoint_write_resumes_identically(fast_reference):
    """The fast representative: SIGKILL while checkpoint.pt #2 is being written (its data in
    the temporary file, not yet renamed), resume, same final weights bit for bit."""
    tmp, ref = fast_reference
    _interrupt_and_resume(tmp, FAST_ARGS, ref, "checkpoint.pt:2:30", resume_here=True)


@pytest.fixture(scope="module")
def slow_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow")
    _run(tmp, tmp / "reference", SLOW_ARGS)
    return tmp, tmp / "reference"


# (pause point "file:nth:seconds", delay after it) — SIGKILL at different moments
KILLS = [
    ("config.toml:1:30", 0.0),     # after the warm-up, before any checkpoint: restart
    ("checkpoint.pt:1:30", 0.0),   # inside the first checkpoint write: restart
    ("checkpoint.pt:3:30", 0.0),   # inside a later checkpoint write
    ("best.pt:2:30", 0.0),         # inside a best-weights write (before its checkpoint)
    ("checkpoint.pt:2:0", 0.45),   # mid-epoch
    ("checkpoint.pt:4:0", 1.3),    # mid-epoch, later
    ("results.json:1:30", 0.0),    # inside the final results write, after the last checkpoint
]


@pytest.mark.slow
@pytest.mark.parametrize("pause,delay", KILLS, ids=[f"{p}+{d}" for p, d in KILLS])
def test_sigkill_at_many_moments(slow_reference, pause, delay):
    tmp, ref = slow_reference
    _interrupt_and_resume(tmp, SLOW_ARGS, ref, pause, delay)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("delay", [0.3, 0.85])
def test_sigterm_sigint_checkpoint_and_resume(slow_reference, sig, delay):
    """SIGTERM/SIGINT mid-epoch: a checkpoint is written, exit status 130, resume identical."""
    tmp, ref = slow_reference
    _interrupt_and_resume(tmp, SLOW_ARGS, ref, "checkpoint.pt:2:0", delay, sig)


# ---------------------------------------------------------------- disk full, permissions
def _good_state(d: Path) -> dict:
    io.save_torch(d / "checkpoint.pt", {"weights": torch.arange(4.0)})
    io.write_json(d / "results.json", {"rmse": 0.2})
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_disk_full_keeps_previous_file(tmp_path, monkeypatch):
    good = _good_state(tmp_path)
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DanlabError, match="disk is full.*previous file is intact"):
        io.save_torch(tmp_path / "checkpoint.pt", {"weights": torch.zeros(1000)})
    with pytest.raises(DanlabError, match="disk is full"):
        io.write_json(tmp_path / "results.json", {"rmse": 9.9})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good  # no temp files left


def test_disk_full_on_append_is_a_clean_error(tmp_path, monkeypatch):
    io.append_jsonl(tmp_path / "metrics.jsonl", {"step": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DanlabError, match="disk is full"):
        io.append_jsonl(tmp_path / "metrics.jsonl", {"step": 2})


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_directory(tmp_path):
    good = _good_state(tmp_path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(DanlabError, match="cannot write"):
            io.save_torch(tmp_path / "checkpoint.pt", {"weights": torch.zeros(3)})
        with pytest.raises(DanlabError, match="cannot write"):
            io.append_jsonl(tmp_path / "metrics.jsonl", {"step": 2})
    finally:
        tmp_path.chmod(0o755)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good


def test_read_only_via_failing_rename(tmp_path, monkeypatch):
    """Works as root too: the rename is refused (EACCES), the old file and no temp remain."""
    good = _good_state(tmp_path)

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(DanlabError, match="Permission denied.*previous file is intact"):
        io.save_torch(tmp_path / "checkpoint.pt", {"weights": torch.zeros(3)})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good


def test_cli_disk_full_during_baseline(tmp_path, monkeypatch, capsys):
    """Disk full while `danlab baseline` writes its results: exit 2, one line, old files kept."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "enkf-n.json").write_text('{"old": true}\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    rc = main(["baseline", "--method", "free", "--cycles", "4", "--spinup", "1",
               "--trajectories", "1", "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "disk is full" in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_out_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("not a directory\n")
    rc = main(["baseline", "--method", "free", "--cycles", "4", "--spinup", "1",
               "--trajectories", "1", "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write" in err and "Traceback" not in err, err
    assert (tmp_path / "out").read_text() == "not a directory\n"


# ---------------------------------------------------------------- numerical faults
TINY = dict(filters=4, blocks=1, n_r=40, s_b=8, n_iter=3, max_steps=8, time_budget=0.0,
            warmup_cycles=4, val_cycles=4, test_trajectories=2, test_cycles=30, test_spinup=5,
            dtype="float64", seed=11)


def _quiet(*a):
    pass


def _poison_streams(monkeypatch, which):
    """Training batches whose analyses hold NaN (as from NaN observations): the `which`-th
    training batch (or every one, which=None) after the warm-up."""
    from danlab import training

    count = {"n": 0}
    original = training.TrainingData.run

    def run(self, filt, idx, n_cycles):
        batch = n_cycles == TINY["n_iter"] and len(idx) == TINY["s_b"]
        if batch:
            count["n"] += 1
        poison = batch and (which is None or count["n"] == which)
        for x, xa, truth in original(self, filt, idx, n_cycles):
            yield (x, xa * float("nan"), truth) if poison else (x, xa, truth)

    monkeypatch.setattr(training.TrainingData, "run", run)
    return count


def test_poisoned_batch_is_rolled_back(tmp_path, monkeypatch):
    from danlab.config import preset
    from danlab.io import read_jsonl
    from danlab.train import load, train

    _poison_streams(monkeypatch, which=3)
    logs = []
    out = train(preset("smoke", **TINY), tmp_path, progress=False, log=logs.append)
    assert out["rollbacks"] == 1 and out["steps"] == TINY["max_steps"]
    assert out["rmse"] == out["rmse"] and out["diverged"] == 0
    assert any("rolled back" in line for line in logs)
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")
            if r.get("event") == "rollback"] == [2]
    assert all(torch.isfinite(p).all() for p in load(tmp_path).parameters())


def test_a_blown_up_trajectory_is_reset_not_kept(tmp_path, monkeypatch):
    """A stored state that blows up (as a lost L96 or KS state off the attractor can under any
    weights) makes its batch's loss non-finite: that step is skipped, without a rollback and
    with the learning rate kept, and the trajectory is reset near the truth; it does not fail
    every later batch."""
    from danlab import training
    from danlab.config import preset
    from danlab.io import read_jsonl
    from danlab.train import train

    original = training.Session.start

    def start(self, resume):
        out = original(self, resume)
        self.data.xa[self.data.perm[0]] = float("nan")  # in the first batch of epoch 1
        return out

    monkeypatch.setattr(training.Session, "start", start)
    logs = []
    out = train(preset("smoke", **{**TINY, "max_steps": 12}), tmp_path, progress=False,
                log=logs.append)
    assert out["steps"] == 12  # 3 epochs draw that trajectory
    assert out["skipped"] == 1 and out["rollbacks"] == 0
    assert any("1 of 8 trajectories that blew up: step skipped" in line for line in logs)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["blown_up"]) for r in records if r.get("event") == "skipped"] \
        == [(0, 1)]
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["state"]["lr_scale"] == 1.0 and torch.isfinite(ck["xa"]).all()


def test_a_batch_with_many_blown_up_trajectories_is_rolled_back(tmp_path, monkeypatch):
    """More than a quarter of the batch blown up is not a few lost trajectories: the step is
    rolled back at half the learning rate, as for any non-finite loss."""
    from danlab import training
    from danlab.config import preset
    from danlab.train import train

    original = training.Session.start

    def start(self, resume):
        out = original(self, resume)
        self.data.xa[self.data.perm[:3]] = float("nan")  # 3 of the first batch's 8
        return out

    monkeypatch.setattr(training.Session, "start", start)
    out = train(preset("smoke", **TINY), tmp_path, progress=False, log=_quiet)
    assert out["rollbacks"] == 1 and out["skipped"] == 0


def test_injected_nan_is_rolled_back(tmp_path, faults):
    from danlab.config import preset
    from danlab.train import train

    faults.nan_at = 5
    out = train(preset("smoke", **TINY), tmp_path, progress=False, log=_quiet)
    assert out["rollbacks"] == 1 and out["steps"] == TINY["max_steps"]


def test_persistent_nan_fails_cleanly_keeping_the_checkpoint(tmp_path, monkeypatch):
    """Every batch poisoned: after MAX_ROLLBACKS a one-line DanlabError; the last epoch
    checkpoint is still loadable."""
    from danlab.config import preset
    from danlab.train import MAX_ROLLBACKS, train

    _poison_streams(monkeypatch, which=None)
    with pytest.raises(DanlabError, match="non-finite losses") as e:
        train(preset("smoke", **{**TINY, "max_steps": 20}), tmp_path, progress=False,
              log=_quiet)
    assert "\n" not in str(e.value)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["state"]["rollbacks"] <= MAX_ROLLBACKS + 1


def test_enkf_n_flags_a_diverging_trajectory():
    """One trajectory's observations are blown up (1e3 off the truth): the EnKF-N loses it, the
    run flags it in `diverged` and the test RMSE averages over the others only."""
    from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
    from danlab.filters import make_filter

    model = Lorenz96()
    twin = make_twin(model, ObservationConfig("full", 1.0), 40, 0.05, 3, 60, seed=4)
    twin.y[20:, 1] += 1e3
    res = run_filter(make_filter("enkf-n", members=20), twin, model, spinup=10)
    assert res.diverged.tolist() == [False, True, False]
    assert res.n_diverged == 1 and res.summary()["diverged_trajectories"] == [1]
    assert int(res.diverged_at[1]) >= 19
    assert torch.isnan(res.rmse_per_trajectory[1])
    ok = res.rmse_per_trajectory[[0, 2]]
    assert res.rmse == pytest.approx(float(ok.mean())) and res.rmse < 1.0


def test_cli_reports_divergence_from_user_file(tmp_path, capsys):
    """`danlab baseline --obs-file` with huge values on one trajectory: reported in --json."""
    from danlab import Lorenz96, ObservationConfig, make_twin
    from danlab.obsfile import twin_to_dataset

    twin = make_twin(Lorenz96(), ObservationConfig("full", 1.0), 40, 0.05, 2, 40, seed=6)
    twin.y[10:, 0] = 1e6
    twin_to_dataset(twin).to_netcdf(tmp_path / "obs.nc")
    rc = main(["baseline", "--method", "enkf-n", "--members", "10", "--spinup", "5",
               "--device", "cpu", "--obs-file", str(tmp_path / "obs.nc"), "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and summary["diverged"] == 1 and summary["diverged_trajectories"] == [0]
    assert summary["rmse"] is not None and summary["rmse"] < 5.0  # a free run scores ~5


# ---------------------------------------------------------------- determinism (CPU)
def test_training_is_deterministic_run_to_run(tmp_path):
    from danlab.config import preset
    from danlab.train import train

    cfg = preset("smoke", **TINY)
    a = train(cfg, tmp_path / "a", progress=False, log=_quiet)
    b = train(cfg, tmp_path / "b", progress=False, log=_quiet)
    assert (a["rmse"], a["val_rmse"]) == (b["rmse"], b["val_rmse"])
    wa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for k in wa["weights"]:
        assert torch.equal(wa["weights"][k], wb["weights"][k])
    assert torch.equal(wa["xa"], wb["xa"]) and torch.equal(wa["gen"], wb["gen"])


def test_filters_are_deterministic_run_to_run():
    from danlab import Lorenz96, ObservationConfig, make_twin, run_filter
    from danlab.filters import make_filter

    model = Lorenz96()
    results = []
    for _ in range(2):
        twin = make_twin(model, ObservationConfig("random", 1.0), 40, 0.05, 2, 20, seed=8)
        r = run_filter(make_filter("enkf-n", members=10), twin, model, spinup=5, seed=3,
                       keep_analyses=True)
        results.append(r.analyses)
    assert torch.equal(results[0], results[1])


def test_cli_train_out_under_a_file(tmp_path, capsys):
    """`train --out` below a regular file: one line, exit 2, the file untouched."""
    (tmp_path / "f").write_text("x\n")
    rc = main(["train", *FAST_ARGS, "--max-steps", "2", "--device", "cpu", "--no-progress",
               "--out", str(tmp_path / "f" / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write" in err and "Traceback" not in err, err
    assert (tmp_path / "f").read_text() == "x\n"
