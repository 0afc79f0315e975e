"""docs/tutorial.ipynb runs as written: its code cells, in order, in one namespace."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_tutorial_notebook_executes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {}
    for k, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"tutorial cell {k}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "DAN test RMSE" in out and "Omega_r peak" in out
    assert namespace["dan"].rmse < namespace["results"]["obs-only"].rmse  # it learned
