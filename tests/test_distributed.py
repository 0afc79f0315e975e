"""One training over several processes (gloo on CPU): the same parameters as one process on
the combined batch, and an interrupted run resumed bit for bit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from danlab.cli import main

ARGS = ["train", "--preset", "smoke", "--dtype", "float64", "--time-budget", "0",
        "--filters", "4", "--blocks", "1", "--n-r", "72", "--s-b", "8", "--max-steps", "9",
        "--warmup-cycles", "3", "--val-cycles", "6", "--trajectories", "2", "--cycles", "30",
        "--spinup", "5", "--device", "cpu", "--no-progress", "--json"]


def _weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)["weights"]


def _train(out, workers, capsys, *extra):
    assert main([*ARGS, "--out", str(out), "--workers", str(workers), *extra]) in (0, 130)
    text = capsys.readouterr().out.strip()
    return json.loads(text.splitlines()[-1]) if text else {}


def test_two_processes_equal_one_process_on_the_combined_batch(tmp_path, capsys):
    one = _train(tmp_path / "one", 1, capsys)
    two = _train(tmp_path / "two", 2, capsys)
    assert two["workers"] == 2 and two["steps"] == one["steps"] == 9
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=0, atol=1e-10), k
    assert abs(one["rmse"] - two["rmse"]) < 1e-8


def test_two_process_run_resumes_exactly(tmp_path, capsys, monkeypatch):
    ref = _train(tmp_path / "ref", 2, capsys)
    monkeypatch.setenv("DANLAB_FAULT_STOP_AT", "5")  # both workers stop at step 5, mid-epoch
    assert _train(tmp_path / "cut", 2, capsys) in ({}, {"stopped": "stopped", "out":
                                                       str(tmp_path / "cut"), "resume": True})
    monkeypatch.delenv("DANLAB_FAULT_STOP_AT")
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]["step"] == 5
    resumed = _train(tmp_path / "cut", 2, capsys, "--resume")
    wr, wc = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert all(torch.equal(wr[k], wc[k]) for k in wr)
    assert resumed["rmse"] == ref["rmse"]


def test_workers_must_divide_the_batch(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "x"), "--workers", "3"]) == 2
    err = capsys.readouterr().err
    assert "s_b=8 is not allowed with --workers 3" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(os.cpu_count() is None, reason="no cpu count")
def test_threads_are_shared_between_workers():
    from danlab.distributed import launch

    assert callable(launch)


def test_a_blown_up_trajectory_skips_the_step_on_every_rank(tmp_path, capsys, monkeypatch,
                                                            faults):
    """The trajectory that blows up lives on one rank; the count is summed over the ranks, so
    both skip the step (no rollback) and end where one process on the combined batch ends."""
    monkeypatch.setenv("DANLAB_FAULT_BLOWUP_AT", "3")
    faults.blowup_at = 3  # the in-process run; the workers read the environment
    one = _train(tmp_path / "one", 1, capsys)
    two = _train(tmp_path / "two", 2, capsys)
    for run in (one, two):
        assert run["skipped"] == 1 and run["rollbacks"] == 0 and run["steps"] == 9
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=0, atol=1e-10), k


def _train_then_list_threads(out):
    from danlab.config import preset
    from danlab.progress import quiet
    from danlab.train import train

    cfg = preset("smoke", dtype="float64", time_budget=0, filters=4, blocks=1, n_r=72, s_b=8,
                 max_steps=3, val_cycles=6, test_trajectories=2, test_cycles=30, test_spinup=5)
    train(cfg, out, progress=False, log=quiet)
    names = [(t / "comm").read_text().strip() for t in Path("/proc/self/task").iterdir()]
    (out / f"threads{os.environ['RANK']}.txt").write_text("\n".join(names))


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="thread names from Linux /proc")
def test_a_two_process_run_ends_its_group_before_the_interpreter_ends(tmp_path):
    """When train returns, the gloo group's threads are gone: one still releasing a tensor at
    interpreter shutdown aborts the process after its work is done (1 run in ~35 without)."""
    from danlab.distributed import launch

    launch(_train_then_list_threads, 2, tmp_path)
    for rank in (0, 1):
        names = (tmp_path / f"threads{rank}.txt").read_text().split()
        assert "python" in names and "pt_gloo_runloop" not in names, names
