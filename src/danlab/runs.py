"""Runs and their directories.

A run is a pure function of its config: a baseline (method, parameters, twin), a training
(TrainConfig, processes) or an evaluation (a training's config and a twin). Its directory is
keyed by a hash of the resolved config, which the directory records (run.json); running a
finished run again returns its stored result (result.json, written last and atomically), so a
sweep killed at any moment recomputes only what was not finished. A training's directory also
holds its config.toml, checkpoint and best weights: `load` reads a trained operator once and
`evaluate_run` scores it on the test trajectories of its twin spec (or of another)."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch

from danlab import io, spec
from danlab.config import TrainConfig
from danlab.errors import DanlabError, check, check_choice

CHECKPOINT = "checkpoint.pt"  # everything needed to resume
BEST = "best.pt"              # best weights by validation RMSE, with the config

#: state-dict keys of networks saved before the nets shared one trunk
_OLD_KEYS = (("clim", "norm.clim"), ("lift.", "trunk.lift."), ("blocks.", "trunk.blocks."),
             ("alpha", "alpha_term.alpha"))


def load_checkpoint(path: str | Path, keys=("config", "weights")) -> dict:
    """torch.load with weights_only=True: a file that would run code when unpickled is refused;
    a file that loads but is not a dict holding `keys` (config a dict) is refused too."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DanlabError(f"checkpoint {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DanlabError(f"checkpoint {str(path)!r} is a directory") from None
    except Exception as exc:  # noqa: BLE001 - UnpicklingError and friends: never execute
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DanlabError(f"refusing to load {str(path)!r}: it is not a plain danlab checkpoint "
                          f"({first[:160]})") from None
    missing = [k for k in keys if k not in ck] if isinstance(ck, dict) else list(keys)
    if missing or not isinstance(ck.get("config"), dict):
        raise DanlabError(f"{str(path)!r} is not a danlab checkpoint: "
                          f"missing {missing or ['config (a dict)']}")
    return ck


def weights_of(net: torch.nn.Module) -> dict:
    """The state dict of a network, unwrapped from DDP / torch.compile."""
    inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None) or net
    return inner.state_dict()


def _migrate_weights(weights: dict) -> dict:
    if not isinstance(weights, dict) or not any(k.startswith("lift.") for k in weights):
        return weights
    out = {}
    for k, v in weights.items():
        for old, new in _OLD_KEYS:
            if k == old or (old.endswith(".") and k.startswith(old)):
                k = new + k[len(old):] if old.endswith(".") else new
                break
        out[k] = v
    return out


def load(run_dir: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
         which: str = BEST) -> torch.nn.Module:
    """The trained analysis operator of a run, in eval mode: `increment = op(xf, zeta)` on
    (..., N_x) tensors (the whole x^a - x^f, alpha*zeta included); `op.config` is its
    TrainConfig. `which` names the weights file (best.pt, checkpoint.pt, snapshots/t600.pt)."""
    from danlab.nets import build_net

    path = Path(run_dir) / which
    ck = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ck["config"], where=str(path))
    # the normalisation constants come with the weights: no climatology to recompute
    net = build_net(cfg, climatology=(0.0, 1.0))
    _load_weights(net, ck["weights"], path)
    net.config = cfg
    return net.to(device=device, dtype=dtype).eval()


def _load_weights(net: torch.nn.Module, weights, path: Path) -> None:
    weights = _migrate_weights(weights)
    try:
        net.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as exc:
        want, have = set(net.state_dict()), set(weights) if isinstance(weights, dict) else set()
        why = (f"missing {sorted(want - have)}, unexpected {sorted(have - want)}"
               if want != have else str(exc).splitlines()[0])
        raise DanlabError(f"{path}: weights do not match the config ({why[:200]}); was it "
                          "written by an older danlab?") from None


#: the TrainConfig fields that make the network's shape: a warm start (`init`) must share them
ARCHITECTURE = ("net", "variant", "filters", "kernel", "blocks", "activation", "alpha",
                "product", "columns", "loc_radius")


def load_initial_weights(cfg: TrainConfig, net: torch.nn.Module) -> dict:
    """Load the weights `cfg.init` names (a run directory's best.pt, or a weights file) into
    `net`, the network of `cfg`, refusing one of another shape. Returns the provenance (the file
    and the sha256 of its bytes) for the run's metrics: the config holds only the path."""
    import hashlib

    path = Path(cfg.init)
    path = path / BEST if path.is_dir() else path
    ck = load_checkpoint(path)
    theirs = TrainConfig.from_dict(ck["config"], where=str(path))
    diff = [f"{k} {getattr(theirs, k)!r} there, {getattr(cfg, k)!r} here" for k in ARCHITECTURE
            if getattr(theirs, k) != getattr(cfg, k)]
    check(not diff, f"init={cfg.init!r} is not allowed: its network differs from this run's "
                    f"({'; '.join(diff)})")
    _load_weights(net, ck["weights"], path)
    return dict(path=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                step=ck.get("step"))


def evaluate_run(run_dir, twin=None, device="cpu", dtype=None, progress=False,
                 which: str = BEST, operator=None, **changes):
    """Test RMSE of a run's operator on the test trajectories of `twin` (a TwinSpec; default:
    the run's own, with `changes` applied, e.g. nx=80, dt=0.1), the same trajectories every
    baseline of that spec runs on. `operator` skips loading when the caller has it."""
    from danlab.cycle import run_filter
    from danlab.filters.dan import DANFilter

    op = operator if operator is not None else load(run_dir, which=which)
    cfg = op.config
    twin = (twin or cfg.twin).replace(**changes) if changes else (twin or cfg.twin)
    check(twin.model == cfg.twin.model or ":" in twin.model,
          f"model={twin.model!r} is not allowed: the run was trained on {cfg.twin.model!r}")
    dtype = dtype or (torch.float64 if cfg.dtype == "float64" else torch.float32)
    op = op.to(device=device, dtype=dtype)
    model, data = twin.build(device=device, dtype=dtype)
    return run_filter(DANFilter(op), data, model, progress=progress)


KINDS = ("baseline", "train", "evaluate", "diagnose")
RESULT = "result.json"


# --- resolving a run config --------------------------------------------------------------

def _twin(fields: dict, base=None):
    from danlab.twin import TwinSpec

    base = base if base is not None else TwinSpec()
    changes = {k: v for k, v in fields.items()}
    if "model" in changes and changes["model"] != base.model:
        # a new model brings its own step and forcing (as the command line's twin options)
        changes.setdefault("inner_dt", None)
        changes.setdefault("forcing", None)
    return spec.from_dict(TwinSpec, {**dataclasses.asdict(base), **changes}, where="twin") \
        if changes else base


def _train_config(fields: dict):
    from danlab.config import preset

    fields = dict(fields)
    return preset(fields.pop("preset", "cpu"), **fields)  # its budget rule as for danlab train


def nest(flat: dict) -> dict:
    """{"twin.dt": 0.1, "lr": 1e-3} -> {"twin": {"dt": 0.1}, "lr": 1e-3}."""
    out: dict = {}
    for key, value in flat.items():
        parts = key.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            check(isinstance(d, dict), f"key {key!r} conflicts with a value given for {p!r}")
        d[parts[-1]] = value
    return out


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k in ("twin", "train", "parameters"):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resolve(kind: str, fields: dict) -> dict:
    """The canonical config of a run from its fields (dotted keys or nested tables)."""
    from danlab.filters import make_filter, method_parameters

    check_choice("kind", kind, KINDS)
    f = nest(flatten(fields))
    if kind == "baseline":
        method = f.pop("method", None)
        check(method is not None, "a baseline run needs a method")
        allowed = method_parameters(method)
        params = dict(f.pop("parameters", {}))
        params.update({k: f.pop(k) for k in list(f) if k in allowed})
        twin = _twin(f.pop("twin", {}))
        dtype = f.pop("dtype", "float64")
        check_choice("dtype", dtype, ("float32", "float64"))
        check(not f, f"unknown fields {sorted(f)} for a baseline run of {method!r}")
        make_filter(method, **params)  # validates the parameters now, not inside a worker
        return {"kind": kind, "method": method, "parameters": params,
                "twin": dataclasses.asdict(twin), "dtype": dtype}
    if kind == "train":
        workers = f.pop("workers", 1)
        cfg = _train_config(f)
        return {"kind": kind, "config": cfg.to_dict(), "workers": workers}
    train = _train_config(f.pop("train", {}))
    twin = _twin(f.pop("twin", {}), train.twin)
    checkpoint = f.pop("checkpoint", "best.pt")
    out = {"kind": kind, "train": {"kind": "train", "config": train.to_dict(), "workers": 1},
           "twin": dataclasses.asdict(twin), "checkpoint": checkpoint}
    if kind == "diagnose":
        from danlab.diagnostics.report import DIAGNOSTICS, check_options

        diagnostic = f.pop("diagnostic", None)
        check_choice("diagnostic", diagnostic, tuple(DIAGNOSTICS))
        options = check_options(diagnostic, f.pop("options", {}))
        out.update(diagnostic=diagnostic, options=options)
    check(not f, f"unknown fields {sorted(f)} for an {kind} run")
    return out


#: TrainConfig fields added after runs were stored, left out of a run's key at these values so
#: that the runs stored before them keep their names (and are found again, not recomputed)
LATER_TRAIN_FIELDS = {"val_every": 1, "decay": 1.0, "n_iter_from": 0.0,
                      "n_iter_until": 0.5, "init": "", "decay_from": 1.0,
                      "forecast_loss": 0.0, "optimizer": "adam"}


def _key_form(obj):
    if isinstance(obj, dict):
        out = {k: _key_form(v) for k, v in obj.items()}
        if "val_cycles" in out:  # a TrainConfig
            for name, value in LATER_TRAIN_FIELDS.items():
                if out.get(name) == value:
                    del out[name]
        return out
    return obj


def run_name(config: dict) -> str:
    return f"{config['kind']}-{spec.config_hash(_key_form(config))}"


# --- executing one run ---------------------------------------------------------------------

class RunBusy(Exception):
    """Another process holds the run's lock."""


def is_busy(outcome) -> bool:
    """Whether `execute(..., wait=False)` found its run held by another process (a plain dict,
    so that it crosses every executor: processes, Ray, Slurm)."""
    return isinstance(outcome, dict) and outcome.get("busy") is True


@contextmanager
def _locked(directory: Path, wait: bool = True):
    """An exclusive lock on a run directory (two workers never compute the same run); without
    `wait`, RunBusy if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RunBusy(directory.name) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def stored(root: Path, config: dict) -> dict | None:
    path = Path(root) / run_name(config) / RESULT
    if path.exists():
        import json

        return json.loads(path.read_text())
    return None


def execute(config: dict, root: str | Path, device: str = "cpu", wait: bool = True) -> dict:
    """Run `config` under root/<kind>-<hash>/ unless it has finished already; return its
    result. A failure records its traceback (error.txt) and re-raises. Without `wait`, a run
    that another process is computing returns {"busy": True, "run": name} at once
    (`is_busy`) instead of waiting for it."""
    root = Path(root)
    directory = root / run_name(config)
    try:
        with _locked(directory, wait):
            return _execute_locked(config, root, directory, device)
    except RunBusy:
        return {"busy": True, "run": directory.name}


def _execute_locked(config: dict, root: Path, directory: Path, device: str) -> dict:
    """`execute` with the run's lock held."""
    done = stored(root, config)
    if done is not None:
        return done
    io.write_json(directory / "run.json", config)
    (directory / "error.txt").unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        result = _compute(config, directory, root, device)
    except BaseException:
        io.write_text(directory / "error.txt", traceback.format_exc())
        raise
    result = {**result, "wall_seconds": time.perf_counter() - t0, "run": directory.name}
    io.write_json(directory / RESULT, result)
    return result


def _compute(config: dict, directory: Path, root: Path, device: str) -> dict:
    import torch

    from danlab.cycle import run_filter

    kind = config["kind"]
    if kind == "baseline":
        from danlab.filters import make_filter
        from danlab.twin import TwinSpec

        dtype = torch.float64 if config["dtype"] == "float64" else torch.float32
        twin = spec.from_dict(TwinSpec, config["twin"], where="twin")
        model, data = twin.build(device=device, dtype=dtype)
        filt = make_filter(config["method"], **config["parameters"])
        res = run_filter(filt, data, model)
        return {**_scores(res), "parameters": filt.parameters()}
    if kind == "train":
        from danlab.config import TrainConfig
        from danlab.train import train

        cfg = TrainConfig.from_dict(config["config"], where=str(directory))
        resume = (directory / "checkpoint.pt").exists()
        if config.get("workers", 1) > 1:
            from danlab.distributed import launch

            launch(train, config["workers"], cfg, directory, resume=resume, device=device,
                   progress=False, log=_quiet)
            import json

            summary = json.loads((directory / "results.json").read_text())
        else:
            summary = train(cfg, directory, resume=resume, device=device, progress=False,
                            log=_quiet)
        keep = ("rmse", "rmse_label", "rmse_per_trajectory", "diverged", "test_set",
                "val_rmse", "steps", "epochs", "seconds", "stop", "throughput", "rollbacks",
                "skipped")
        return {k: summary[k] for k in keep} | {"trajectories": cfg.twin.trajectories}
    # evaluate / diagnose: the training first (shared by every run of the same training)
    from danlab.twin import TwinSpec

    execute(config["train"], root, device)
    run_dir = root / run_name(config["train"])
    twin = spec.from_dict(TwinSpec, config["twin"], where="twin")
    if kind == "evaluate":
        return _scores(evaluate_run(run_dir, twin, device=device, which=config["checkpoint"]))
    from danlab.diagnostics.report import run_diagnostic

    op = load(run_dir, dtype=torch.float64, device=device, which=config["checkpoint"])
    ds, summary = run_diagnostic(config["diagnostic"], op, twin, config["options"])
    io.save_netcdf(directory / "diagnostic.nc", ds)
    return {"diagnostic": config["diagnostic"], "summary": summary}


def _scores(res) -> dict:
    return {"rmse": res.rmse if res.has_truth else None, "rmse_label": res.label(),
            "rmse_per_trajectory": [float(v) for v in res.rmse_per_trajectory],
            "diverged": res.n_diverged, "trajectories": res.n_trajectories,
            "diverged_at": [int(v) for v in res.diverged_at], "seconds": res.seconds,
            "test_set": res.test_set}


def _quiet(*a):
    pass


def run_failed(exc: BaseException) -> str:
    """One line for a failed run."""
    if isinstance(exc, DanlabError):
        return str(exc)
    last = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {last[-1] if last else ''}"[:300]


def threads_for_worker() -> None:
    """One torch thread per worker process (workers = cores)."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
