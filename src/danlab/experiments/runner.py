"""Running an experiment: its sweeps on an executor (resumable, runs shared between
experiments under one root), its results as one netCDF Dataset, its figure from that file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import xarray as xr

from danlab import io, sweep
from danlab.errors import DanlabError, check_choice
from danlab.experiments import SCALES, get
from danlab.progress import log as stderr_log


class StoredOnly:
    """An executor that runs nothing: a sweep through it collects the stored runs only."""

    def describe(self) -> str:
        return "nothing (stored runs only)"

    def running(self) -> int:
        return 0

    def map(self, fn, args_list):
        return iter(())


class Context:
    """What an experiment's `compute` runs its sweeps through. With `sweeps_dir` the sweeps'
    files go there instead of OUT/NAME/sweeps (collect: a `run` in progress keeps its own)."""

    def __init__(self, name: str, scale: str, out: Path, executor, progress: bool, log,
                 grid: dict | None = None, train: dict | None = None,
                 sweeps_dir: Path | None = None):
        self.name, self.scale, self.out = name, scale, Path(out)
        self.grid, self.train = grid or {}, train or {}
        self.dir = self.out / name
        self.sweeps_dir = Path(sweeps_dir) if sweeps_dir else self.dir / "sweeps"
        self.root = self.out / "runs"  # shared by every experiment of this --out
        self.executor, self.progress, self.log = executor, progress, log
        self.sweeps: list[str] = []
        self.failed = 0
        self.missing = 0
        self.stored = 0

    def values(self, name: str, default: list) -> list:
        """The experiment's values of `name` (e.g. dt): the scale's, or those given."""
        return list(self.grid.get(name, default))

    def training(self, fields: dict) -> dict:
        """Training fields with the run-wide overrides (e.g. max_steps) applied."""
        return {**fields, **self.train}

    def run(self, s: sweep.Sweep) -> xr.Dataset:
        """Run a sweep (stored runs are read back); its results Dataset."""
        s.name = f"{self.name}-{s.name}"
        self.sweeps.append(s.name)
        res = sweep.run(s, self.sweeps_dir / s.name, self.executor, self.root,
                        progress=self.progress, log=self.log,
                        device=getattr(self, "device", "cpu"))
        self.failed += res["failed"]
        self.missing += res["missing"]
        self.stored += res["stored"] + res["done"]
        return res["results"]

    def results(self, s: sweep.Sweep) -> list[dict]:
        """Each run's full result (e.g. per-trajectory RMSEs, diagnostics), in sweep order."""
        from danlab import runs

        out = []
        for e in s.entries():
            stored = runs.stored(self.root, e["config"])
            out.append({"labels": e["labels"], "result": stored,
                        "dir": self.root / runs.run_name(e["config"])})
        return out


def run_experiment(name: str, scale: str, out: str | Path, executor=None,
                   progress: bool = True, log=stderr_log, grid: dict | None = None,
                   train: dict | None = None, device: str = "cpu",
                   stored_only: bool = False) -> dict:
    """Run experiment `name` at `scale`; `grid` replaces some of its axes (e.g. {"dt": [0.05,
    0.3]}) and `train` overrides fields of every training (e.g. {"max_steps": 500}): a reduced
    version of a scale, recorded in the results. `stored_only`: run nothing, build the results
    and the figure from the runs stored so far (cells without a run are NaN and counted in the
    attribute `missing_runs`); a `run` of the same experiment may be in progress meanwhile."""
    import tempfile

    from danlab.executors import make_executor

    check_choice("scale", scale, SCALES)
    exp = get(name)
    scratch = tempfile.TemporaryDirectory(prefix="danlab-collect-") if stored_only else None
    ctx = Context(name, scale, Path(out),
                  StoredOnly() if stored_only else executor or make_executor("local"),
                  progress, log, grid, train, sweeps_dir=scratch and scratch.name)
    ctx.device = device
    t0 = time.perf_counter()
    try:
        ds = exp.compute(scale, ctx)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if not stored_only:
            raise
        raise DanlabError(f"{name}: the stored runs are not enough to collect its results "
                          f"({type(exc).__name__}: {exc}); run `danlab experiment run {name}` "
                          "first") from None
    finally:
        getattr(ctx.executor, "close", lambda: None)()
        if scratch:
            scratch.cleanup()
    seconds = time.perf_counter() - t0
    if stored_only and not ctx.stored:
        raise DanlabError(f"{name} at scale {scale!r}: none of its runs is stored in "
                          f"{str(out)!r}; run `danlab experiment run {name} --scale {scale}` "
                          "first")
    ds.attrs.update(experiment=name, scale=scale, title=exp.TITLE, compute_seconds=seconds,
                    failed_runs=ctx.failed, missing_runs=ctx.missing,
                    collected_only=int(stored_only), grid_overrides=json.dumps(grid or {}),
                    train_overrides=json.dumps(train or {}))
    io.save_netcdf(ctx.dir / "results.nc", ds)
    if not stored_only:  # experiment.json says the experiment finished (status)
        io.write_json(ctx.dir / "experiment.json", {"name": name, "scale": scale,
                                                    "sweeps": ctx.sweeps, "seconds": seconds,
                                                    "failed_runs": ctx.failed})
    figures = plot_experiment(name, out)
    log(f"{name} ({scale}): {len(ctx.sweeps)} sweeps in {seconds:.0f} s, {ctx.failed} failed "
        f"runs, {ctx.missing} missing; figure {figures[0] if figures else '-'}")
    return {"name": name, "scale": scale, "seconds": seconds, "failed_runs": ctx.failed,
            "missing_runs": ctx.missing, "results": str(ctx.dir / "results.nc"),
            "figures": [str(f) for f in figures]}


def plot_experiment(name: str, out: str | Path) -> list[Path]:
    """The figure (PNG and PDF) from the stored results: nothing is recomputed."""
    exp = get(name)
    path = Path(out) / name / "results.nc"
    if not path.exists():
        raise DanlabError(f"no results for {name!r} in {str(out)!r}: run `danlab experiment run "
                          f"{name} --out {out}` first")
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    return exp.plot(ds, Path(out) / name / name)


def status_experiment(name: str, out: str | Path) -> dict:
    get(name)
    meta = Path(out) / name / "experiment.json"
    sweeps_dir = Path(out) / name / "sweeps"
    rows = [sweep.status(d) for d in sorted(sweeps_dir.glob("*")) if (d / "sweep.json").exists()]
    total = {k: sum(r[k] for r in rows) for k in ("total", "done", "failed", "pending")}
    finished = json.loads(meta.read_text()) if meta.exists() else None
    return {"name": name, "sweeps": rows, **total, "finished": finished is not None,
            "scale": finished["scale"] if finished else None}
