"""The paper's figures as experiments: one small module per figure, each with `NAME`, `TITLE`,
`compute(scale, ctx) -> xarray.Dataset` (its grids of trainings, baselines and diagnostics,
run as sweeps through `ctx.run`) and `plot(ds, stem) -> [paths]` (from stored results only).
A new figure is one new module in this package. `scale` is smoke | cpu | paper: it changes
sizes and budgets (grids, trajectories, steps, widths), never the algorithms that run.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from danlab.errors import check_choice

SCALES = ("smoke", "cpu", "paper")


def registry() -> dict[str, ModuleType]:
    """{name: module} of every experiment module in this package."""
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in ("common", "quickstart", "runner"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "compute"):
            out[module.NAME] = module
    return out


def get(name: str) -> ModuleType:
    reg = registry()
    check_choice("experiment", name, tuple(reg))
    return reg[name]
