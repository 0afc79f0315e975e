"""Sweeps: a grid (and explicit points) of runs over any config fields, on an executor (local
processes, Ray, Slurm through submitit), resumable, collected into one labelled Dataset.

A sweep spec (TOML, or a `Sweep` built in Python):

    kind = "baseline"                 # baseline | train | evaluate
    [base]                            # fields every run shares (dotted keys or tables)
    "twin.trajectories" = 16
    [grid]                            # the cartesian product of these values
    method = ["enkf-n", "ienkf-n"]
    "twin.dt" = [0.05, 0.3]
    [[points]]                        # extra runs (on top of base)
    method = "3dvar"
    "twin.dt" = 0.05

With `cross = true` every point is run at every grid value (points x grid) instead.

The out directory holds sweep.json (the runs and their labels), runs/<kind>-<hash>/ (one per
run, shared by every sweep using the same root), results.nc and results.md.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from danlab import io, runs
from danlab.errors import DanlabError, check, check_choice
from danlab.progress import log as stderr_log
from danlab.progress import progress_bar
from danlab.spec import load_toml

SCORES = ("rmse", "diverged", "trajectories", "seconds", "wall_seconds")


@dataclass
class Sweep:
    kind: str
    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    points: list = field(default_factory=list)
    name: str = "sweep"
    cross: bool = False

    def __post_init__(self):
        check_choice("kind", self.kind, runs.KINDS)
        self.base = runs.flatten(self.base)
        self.grid = runs.flatten(self.grid)
        self.points = [runs.flatten(p) for p in self.points]
        for k, v in self.grid.items():
            check(isinstance(v, list) and len(v) > 0,
                  f"grid {k!r} must be a non-empty list of values, got {v!r}")

    @classmethod
    def from_toml(cls, path: str) -> Sweep:
        data = load_toml(path)
        known = {"kind", "base", "grid", "points", "name", "cross"}
        extra = sorted(set(data) - known)
        check(not extra, f"sweep spec {path!r}: unknown keys {extra}; allowed: "
                         f"{', '.join(sorted(known))}")
        check("kind" in data, f"sweep spec {path!r}: kind is missing (baseline, train or "
                              "evaluate)")
        return cls(data["kind"], data.get("base", {}), data.get("grid", {}),
                   data.get("points", []), data.get("name", Path(path).stem),
                   bool(data.get("cross", False)))

    def entries(self) -> list[dict]:
        """[{"labels": {swept field: value}, "fields": {...}, "config": resolved}] in order."""
        keys = list(self.grid)
        rows = [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]
        if self.cross and self.points:
            rows = [{**p, **r} for p in self.points for r in rows]
        else:
            if not keys and self.points:  # points only: no base run of its own
                rows = []
            rows += [dict(p) for p in self.points]
        swept = list(dict.fromkeys(keys + [k for p in self.points for k in p]))
        out = []
        for row in rows:
            fields = {**self.base, **row}
            labels = {k: fields.get(k, self.base.get(k)) for k in swept}
            out.append({"labels": labels, "fields": fields,
                        "config": runs.resolve(self.kind, fields)})
        return out


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0

    def line(self, running: int) -> str:
        return (f"{self.done + self.skipped}/{self.total} done ({self.skipped} stored), "
                f"{running} running, {self.failed} failed")


def run(sweep: Sweep, out: str | Path, executor=None, root: str | Path | None = None,
        progress: bool = True, log=stderr_log, device: str = "cpu") -> dict:
    """Run every unfinished run of `sweep` (finished ones are read back), then collect the
    results. `root` holds the run directories (default out/runs; share it between sweeps to
    share runs). Failed runs record their traceback and do not stop the others."""
    from danlab.executors import make_executor

    out = Path(out)
    root = Path(root) if root is not None else out / "runs"
    entries = sweep.entries()
    io.write_json(out / "sweep.json", {"name": sweep.name, "kind": sweep.kind,
                                       "root": str(root), "sweep": asdict(sweep),
                                       "runs": [{"labels": e["labels"],
                                                 "run": runs.run_name(e["config"])}
                                                for e in entries]})
    executor = executor or make_executor("local")
    todo, state = [], Progress(len(entries))
    for e in entries:
        if runs.stored(root, e["config"]) is not None:
            state.skipped += 1
        else:
            todo.append(e)
    unique = list({runs.run_name(e["config"]): e for e in todo}.values())
    log(f"sweep {sweep.name}: {len(entries)} runs, {state.skipped} already stored, "
        f"{len(unique)} to run on {executor.describe()}")
    bar = progress_bar(total=len(entries), initial=state.skipped, desc=sweep.name,
                       unit="run", enabled=progress)
    failures = {}
    start = time.perf_counter()
    # runs that another process (a second sweep on the same root, another node) is computing
    # are left for last, then waited for: concurrent sweeps share a grid instead of queueing
    # behind each other's runs
    busy, wait = unique, False
    while busy:
        jobs = [(e["config"], str(root), device, wait) for e in busy]
        later = []
        for e, outcome in executor.map(runs.execute, jobs):
            name = runs.run_name(busy[e]["config"])
            if runs.is_busy(outcome):
                later.append(busy[e])
                continue
            if isinstance(outcome, BaseException):
                state.failed += 1
                failures[name] = runs.run_failed(outcome)
                log(f"run {name} failed: {failures[name]} (traceback in {root / name}/error.txt)")
            else:
                state.done += 1
            bar.update(1)
            bar.set_postfix_str(state.line(executor.running()))
        if later:
            log(f"sweep {sweep.name}: {len(later)} runs held by another process; waiting for them")
        busy, wait = later, True
    bar.close()
    ds = collect(out)
    log(f"sweep {sweep.name}: {state.line(0)} in {time.perf_counter() - start:.0f} s; "
        f"results in {out / 'results.nc'}")
    missing = sum(runs.stored(root, e["config"]) is None for e in unique)
    return {"done": state.done, "stored": state.skipped, "failed": state.failed,
            "missing": missing, "failures": failures, "results": ds}


def status(out: str | Path) -> dict:
    """done / failed / pending counts of a sweep directory (pending: never finished)."""
    meta = _meta(out)
    root = Path(meta["root"])
    counts = {"done": 0, "failed": 0, "pending": 0}
    for r in meta["runs"]:
        d = root / r["run"]
        key = ("done" if (d / runs.RESULT).exists() else
               "failed" if (d / "error.txt").exists() else "pending")
        counts[key] += 1
    return {"name": meta["name"], "total": len(meta["runs"]), **counts}


def _meta(out) -> dict:
    path = Path(out) / "sweep.json"
    if not path.exists():
        raise DanlabError(f"{str(out)!r} holds no sweep (no sweep.json): run one with "
                          "`danlab sweep SPEC.toml --out DIR`")
    return json.loads(path.read_text())


def collect(out: str | Path):
    """The sweep's results as an xarray Dataset labelled by the swept fields (one dimension
    each; runs absent from a grid cell are NaN), with the diverged count beside every RMSE;
    written to out/results.nc and out/results.md."""
    import numpy as np
    import pandas as pd

    meta = _meta(out)
    root = Path(meta["root"])
    rows = []
    for r in meta["runs"]:
        path = root / r["run"] / runs.RESULT
        result = json.loads(path.read_text()) if path.exists() else {}
        row = {k: _label(v) for k, v in r["labels"].items()}
        row.update({k: result.get(k, math.nan) for k in SCORES})
        row["rmse"] = math.nan if row["rmse"] is None else row["rmse"]
        row["rmse_std"] = _spread(result)
        row["status"] = "done" if result else "missing"
        row["run"] = r["run"]
        rows.append(row)
    dims = [k for k in meta["runs"][0]["labels"]] if meta["runs"] else []
    for d in dims:  # a field set only by some points: its other runs are labelled "-"
        values = [row[d] for row in rows]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            for row in rows:
                row[d] = "-" if row[d] is None else str(row[d])
    frame = pd.DataFrame(rows)
    if dims:
        frame = frame.drop_duplicates(subset=dims, keep="last")
        ds = frame.set_index(dims).to_xarray()
    else:
        ds = frame.to_xarray()
    for name in ("status", "run"):
        ds[name] = ds[name].astype(str)
    ds.attrs.update(name=meta["name"], kind=meta["kind"], root=meta["root"],
                    note="rmse is the mean over the trajectories that did not diverge, rmse_std "
                         "the standard deviation of their RMSEs; diverged counts those "
                         "left out of the mean")
    io.save_netcdf(Path(out) / "results.nc", ds)
    io.write_text(Path(out) / "results.md", table(frame, dims) + "\n")
    return ds if len(rows) else ds.assign(rmse=("index", np.array([])))


def _spread(result: dict) -> float:
    """Standard deviation (ddof 1) of the per-trajectory RMSEs that enter the mean."""
    per = result.get("rmse_per_trajectory")
    if not per:
        return math.nan
    at = result.get("diverged_at") or [-1] * len(per)
    kept = [r for r, a in zip(per, at) if a < 0 and r is not None and math.isfinite(r)]
    if len(kept) < 2:
        return math.nan
    mean = sum(kept) / len(kept)
    return math.sqrt(sum((r - mean) ** 2 for r in kept) / (len(kept) - 1))


def _label(v):
    return v if v is None or isinstance(v, (int, float, str, bool)) else json.dumps(v)


def table(frame, dims) -> str:
    """A markdown table: one row per run, the swept fields then 'rmse ± std (k/n diverged)'
    (std: over the trajectories in the mean)."""
    head = [*dims, "test RMSE", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in frame.iterrows():
        if r["status"] != "done":
            score = "not finished"
        elif not math.isfinite(r["rmse"]) and not math.isfinite(r["diverged"]):
            score = "done (no score)"
        else:
            score = f"{r['rmse']:.4f}"
            if math.isfinite(r.get("rmse_std", math.nan)):
                score += f" ± {r['rmse_std']:.4f}"
            if math.isfinite(r["diverged"]) and r["diverged"]:
                score += f" ({int(r['diverged'])}/{int(r['trajectories'])} diverged)"
        secs = "" if math.isnan(r["seconds"]) else f"{r['seconds']:.1f}"
        lines.append("| " + " | ".join([*(str(r[d]) for d in dims), score, secs]) + " |")
    return "\n".join(lines)
