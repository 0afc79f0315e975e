"""Tuning a method's parameter by a scan on a twin kept apart from the test set.

`tune(method, parameter, values, twin)` scores every value on the same tuning trajectories
(one sweep of baseline runs per round, on any executor, its runs kept under `root`), then
refines the grid around the best value (geometric midpoints with its neighbours), and returns
a `Tuning` that `danlab baseline --tuned FILE` reads back, so no number is copied by hand. A
diverged or non-finite run scores inf.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from danlab import io
from danlab.errors import DanlabError, check, check_positive
from danlab.filters import METHODS, method_parameters
from danlab.twin import TUNING_SEED, TwinSpec

#: the default tuning twin: 8 trajectories x 1,000 cycles, its own seed (not the test set's)
TUNING_TWIN = TwinSpec(trajectories=8, cycles=1000, spinup=200, seed=TUNING_SEED)


@dataclass
class Tuning:
    method: str
    parameter: str
    best: float
    table: list[tuple[float, float]]
    twin: dict
    fixed: dict = field(default_factory=dict)

    def parameters(self) -> dict:
        """The method's parameters to use: the fixed ones and the tuned one."""
        return {**self.fixed, self.parameter: self.best}

    def write(self, path) -> Path:
        return io.write_json(path, asdict(self))

    @classmethod
    def read(cls, path) -> Tuning:
        try:
            data = json.loads(Path(path).read_text())
            t = cls(**data)
        except FileNotFoundError:
            raise DanlabError(f"tuning file {str(path)!r} does not exist") from None
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
            raise DanlabError(f"{str(path)!r} is not a danlab tuning result (written by "
                              "`danlab tune-* --out FILE`)") from None
        check(t.method in METHODS,
              f"{str(path)!r}: unknown method {t.method!r}")
        return t


def refine(table: dict[float, float]) -> list[float]:
    """Geometric midpoints between the best value and its neighbours in the scanned grid."""
    xs = sorted(table)
    i = xs.index(min(xs, key=lambda v: table[v]))
    out = [math.sqrt(xs[j] * xs[i]) for j in (i - 1, i + 1) if 0 <= j < len(xs)]
    return [v for v in out if v not in table]


def tune(method: str, parameter: str, values, twin: TwinSpec = TUNING_TWIN,
         rounds: int = 2, log=None, executor=None, root=None, **fixed) -> Tuning:
    """Scan `parameter` of `method` over `values` (> 0), then `rounds` refinements; each round
    is a sweep (default: in this process, its runs in a temporary directory)."""
    import tempfile

    from danlab.executors import make_executor
    from danlab.sweep import Sweep, run

    allowed = method_parameters(method)
    check(parameter in allowed, f"parameter={parameter!r} is not allowed for {method!r}: it "
                                f"takes {', '.join(allowed)}")
    values = [float(v) for v in values]
    check(len(values) >= 1, "values=() is not allowed: give at least one value")
    for v in values:
        check_positive(parameter, v)
    executor = executor or make_executor("inline")
    base = {"method": method, "twin": asdict(twin), **fixed}
    table: dict[float, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for k in range(rounds + 1):
            sweep = Sweep("baseline", base, {parameter: values}, name=f"tune-{method}-{k}")
            ds = run(sweep, out / f"round{k}", executor, root or out / "runs", progress=False,
                     log=lambda *a: None)["results"]
            for v in values:
                cell = ds.sel({parameter: v})
                ok = int(cell["diverged"]) == 0 and math.isfinite(float(cell["rmse"]))
                table[v] = float(cell["rmse"]) if ok else math.inf
                if log:
                    log(f"{parameter}={v:.6g}: {table[v]:.4f}")
            values = refine(table)
            if not values:
                break
    best = min(table, key=table.get)
    check(math.isfinite(table[best]), f"every {parameter} value diverged on the tuning twin: "
                                      "widen the scan")
    return Tuning(method, parameter, best, sorted(table.items()), asdict(twin), fixed)
