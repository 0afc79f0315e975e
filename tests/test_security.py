"""Untrusted checkpoints execute nothing (issue 6): a checkpoint.pt / best.pt whose pickle would
create a file when unpickled is refused by danlab.load, `train --resume`, `evaluate` and
`diagnose`, with a one-line error, and the file is never created."""

from __future__ import annotations

import builtins
import os
import pickle

import pytest
import torch

from danlab import io
from danlab.cli import main
from danlab.config import preset
from danlab.errors import DanlabError
from danlab.nets import build_net
from danlab.train import load, load_checkpoint


class _OpenFile:
    """Unpickling this calls open(path, 'w'): it creates `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


class _System:
    """Unpickling this runs a shell command that creates `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _cfg():
    return preset("smoke", test_cycles=20, test_spinup=5, test_trajectories=2)


def _evil_checkpoint(path, marker, how):
    cfg = _cfg()
    payload = _OpenFile(marker) if how in ("open", "legacy") else _System(marker)
    obj = dict(config=cfg.to_dict(), weights=build_net(cfg).state_dict(), step=0,
               val_rmse=1.0, extra=payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "legacy":  # a bare pickle stream, not torch's zip container
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path)


HOW = ["open", "system", "legacy"]


def test_payload_really_creates_the_file(tmp_path):
    """Sanity: the payload is live (plain pickle.load would create the marker)."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_OpenFile(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("how", HOW)
def test_load_refuses_malicious_best(tmp_path, how):
    marker = tmp_path / "pwned"
    _evil_checkpoint(tmp_path / "run" / "best.pt", marker, how)
    with pytest.raises(DanlabError) as e:
        load(tmp_path / "run")
    assert "refusing to load" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DanlabError):
        load_checkpoint(tmp_path / "run" / "best.pt")
    assert not marker.exists()


@pytest.mark.parametrize("how", HOW)
def test_cli_refuses_malicious_checkpoints(tmp_path, how, capsys):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    _evil_checkpoint(run / "best.pt", marker, how)
    _evil_checkpoint(run / "checkpoint.pt", marker, how)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    out = tmp_path / "out"
    cfg_args = ["--preset", "smoke", "--cycles", "20", "--spinup", "5", "--trajectories", "2"]
    for argv in (["evaluate", str(run), "--device", "cpu", "--out", str(out)],
                 ["train", *cfg_args, "--resume", "--out", str(run), "--device", "cpu",
                  "--no-progress"],
                 ["diagnose", "covariance", str(run), "--states", "2", "--out", str(out),
                  "--device", "cpu"]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "refusing to load" in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
        assert not marker.exists(), f"{argv[0]} executed the pickle"
        assert not out.exists()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before


def test_plain_checkpoint_still_loads(tmp_path):
    cfg = _cfg()
    io.save_torch(tmp_path / "best.pt", dict(config=cfg.to_dict(),
                                             weights=build_net(cfg).state_dict()))
    net = load(tmp_path)
    assert net.config == cfg


def test_no_unsafe_load_in_package():
    """Every torch.load in danlab passes weights_only=True; no pickle.load anywhere."""
    import pathlib

    import danlab

    root = pathlib.Path(danlab.__file__).parent
    for f in root.rglob("*.py"):
        text = f.read_text()
        assert "pickle.load" not in text, f
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{f}: {line.strip()}"
