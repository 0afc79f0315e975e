"""The code examples of the docs and README run as written."""

from __future__ import annotations

import re
from pathlib import Path

from danlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_observation_file_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (block,) = _python_blocks(ROOT / "docs" / "observations.md")
    exec(compile(block, "docs/observations.md", "exec"), {})
    assert main(["baseline", "--method", "enkf-n", "--obs-file", "my_obs.nc", "--spinup", "20",
                 "--device", "cpu", "--json", "--out", "results"]) == 0
    assert (tmp_path / "results" / "enkf-n.nc").exists()
    assert '"obs_file": "my_obs.nc"' in capsys.readouterr().out


def test_readme_api_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (block,) = _python_blocks(ROOT / "README.md")
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0][0].isdigit()  # "0.19.." then the verdict
