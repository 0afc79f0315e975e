"""A run directory: its config, checkpoint and best weights; loading a trained operator once,
and evaluating it on the test trajectories of its twin spec (or of another)."""

from __future__ import annotations

from pathlib import Path

import torch

from danlab.config import TrainConfig
from danlab.errors import DanlabError, check

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
    weights = _migrate_weights(ck["weights"])
    try:
        net.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as exc:
        want, have = set(net.state_dict()), set(weights) if isinstance(weights, dict) else set()
        why = (f"missing {sorted(want - have)}, unexpected {sorted(have - want)}"
               if want != have else str(exc).splitlines()[0])
        raise DanlabError(f"{path}: weights do not match the config ({why[:200]}); was it "
                          "written by an older danlab?") from None
    net.config = cfg
    return net.to(device=device, dtype=dtype).eval()


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
