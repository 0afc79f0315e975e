"""Training a DAN through the DA cycle with truncated backpropagation (paper Sect. 2.2, App. A).

N_r trajectories (10% kept for validation) keep cycling for the whole training: each step takes
S_b of them, runs N_iter cycles of the one cycle engine with gradients on from where they last
stood (truth advanced by the model, fresh observations each cycle), backpropagates the loss of
Eq. 4 over those cycles, and stores the detached states back. Read it top to bottom.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from pathlib import Path

import torch

from danlab import io
from danlab.config import TrainConfig, to_toml
from danlab.cycle import cycle, final, run_filter
from danlab.dynamics import Lorenz96
from danlab.errors import DanlabError
from danlab.filters.dan import DANFilter
from danlab.nets import build_net
from danlab.observations import ObservationConfig
from danlab.twin import ObservationStream, attractor_states, make_generator, make_twin

CHECKPOINT = "checkpoint.pt"  # everything needed to resume
BEST = "best.pt"              # best weights by validation RMSE, with the config
MAX_ROLLBACKS = 8             # non-finite losses tolerated (each halves the learning rate)
RESET_RMSE = 10.0             # a stored trajectory state this far from the truth is reset


def _dtype(cfg: TrainConfig) -> torch.dtype:
    return torch.float64 if cfg.dtype == "float64" else torch.float32


def _lr_factor(cfg: TrainConfig, step: int, total: int, elapsed: float = 0.0) -> float:
    """Cosine decay from lr to lr_min over the run: over `total` steps or, when a time budget
    binds first, over the budget, so a run of fixed wall time ends annealed on any machine.
    (Only step-bound runs are bit-reproducible and resume exactly.)"""
    t = step / max(total, 1)
    if cfg.time_budget:
        t = max(t, elapsed / cfg.time_budget)
    t = min(t, 1.0)
    return (cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))) / cfg.lr


def total_steps(cfg: TrainConfig) -> int:
    steps_per_epoch = (cfg.n_r - n_validation(cfg)) // cfg.s_b
    total = cfg.epochs * steps_per_epoch
    return min(total, cfg.max_steps) if cfg.max_steps else total


def n_validation(cfg: TrainConfig) -> int:
    return max(1, cfg.n_r // 10)


class Stop(Exception):
    """Raised by the signal handler: save a checkpoint, then exit."""


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, device: str = "cpu",
          progress: bool = True, log=print, inject_nan_at: int | None = None,
          stop_at: int | None = None, snapshots: tuple[float, ...] = (),
          snapshot_steps: tuple[int, ...] = ()) -> dict:
    """Train, checkpointing every epoch into out_dir; returns the summary also written to
    out_dir/results.json. `inject_nan_at` poisons that step's loss and `stop_at` interrupts
    the run at that step as SIGINT would (both for fault tests). `snapshots` (seconds of
    training) saves the weights at those times as snapshots/t<seconds>.pt, `snapshot_steps` at
    those steps as snapshots/step<n>.pt, for learning curves."""
    out = Path(out_dir)
    dev = torch.device(device)
    dtype = _dtype(cfg)
    model = Lorenz96(cfg.forcing, cfg.inner_dt)
    obs = ObservationConfig(cfg.obs, cfg.sigma)
    torch.manual_seed(cfg.seed)
    net = build_net(cfg).to(dev, dtype)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    n_val = n_validation(cfg)
    n_train = cfg.n_r - n_val
    steps_per_epoch = n_train // cfg.s_b
    n_total = total_steps(cfg)
    gen = make_generator(cfg.seed * 2 + 1, dev)  # observations and resets during training
    perm_gen = make_generator(cfg.seed * 2 + 2)  # batch order (CPU)
    state = dict(step=0, epoch=0, pos=0, best_val=float("inf"), bad_epochs=0, rollbacks=0,
                 lr_scale=1.0, seconds=0.0)

    ckpt_path = out / CHECKPOINT
    if resume:
        if not ckpt_path.exists():
            raise DanlabError(f"--resume: no {CHECKPOINT} in {str(out)!r} to resume from")
        ck = load_checkpoint(ckpt_path, _RESUME_KEYS)
        # fields added to TrainConfig after the run was written take their defaults
        saved = {**cfg.__class__().to_dict(), **ck["config"]}
        if saved != cfg.to_dict():
            diff = [k for k, v in cfg.to_dict().items() if saved.get(k) != v]
            raise DanlabError(f"--resume: the config differs from the checkpoint's in {diff}")
        net.load_state_dict(ck["weights"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["gen"].to(gen.get_state().device))
        perm_gen.set_state(ck["perm_gen"])
        truth, xa, perm = (ck["truth"].to(dev), ck["xa"].to(dev), ck["perm"])
        state.update(ck["state"])
        log(f"resumed from step {state['step']} (epoch {state['epoch']})")
    else:
        # truth on the attractor; analyses start as obs-only (truth + noise), then warm up
        truth = attractor_states(model, cfg.n_r, cfg.nx, cfg.seed, dtype, dev, compute_device=dev)
        noise = torch.randn(truth.shape, generator=gen, device=dev, dtype=dtype)
        xa = truth + cfg.sigma * noise
        if cfg.warmup_cycles:
            stream = ObservationStream(model, obs, truth, cfg.dt, gen, cfg.warmup_cycles)
            with torch.no_grad():
                xa = final(cycle(DANFilter(net), xa, model, cfg.dt, stream, cfg.sigma), xa)
            truth = stream.truth
        perm = torch.randperm(n_train, generator=perm_gen)
        io.write_text(out / "config.toml", to_toml(cfg))
        (out / "metrics.jsonl").unlink(missing_ok=True)

    filt = DANFilter(torch.compile(net) if cfg.compile else net)

    def checkpoint():
        io.save_torch(ckpt_path, dict(
            config=cfg.to_dict(), weights=net.state_dict(), optimizer=opt.state_dict(),
            gen=gen.get_state().cpu(), perm_gen=perm_gen.get_state(), truth=truth.cpu(),
            xa=xa.cpu(), perm=perm, state=dict(state)))

    def validate() -> float:
        """Cycle (up to val_trajectories of) the validation trajectories val_cycles further;
        RMSE over the second half. Kept small: it is overhead on every epoch."""
        nonlocal truth, xa
        v = slice(n_train, n_train + min(n_val, cfg.val_trajectories))
        stream = ObservationStream(model, obs, truth[v], cfg.dt, gen, cfg.val_cycles)
        sq, count = 0.0, 0
        x = xa[v]
        with torch.no_grad(), _autocast(cfg, dev):
            for k, (x, est) in enumerate(cycle(filt, x, model, cfg.dt, stream, cfg.sigma)):  # noqa: B007,B020,E501
                if k >= cfg.val_cycles // 2:
                    sq += float(((est - stream.truth) ** 2).mean(-1).sqrt().mean())
                    count += 1
        x, t = _reset_lost(x, stream.truth, cfg.sigma, gen)
        xa[v], truth[v] = x, t
        return sq / count

    good = (copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict()))
    stop_reason = "max_steps" if cfg.max_steps and n_total == cfg.max_steps else "epochs"
    pending: list[str] = []  # SIGINT/SIGTERM received: stop at the next step boundary
    prev_handlers = _install_signal_handlers(pending)
    bar = _progress(n_total, state["step"], progress)
    start = time.perf_counter() - state["seconds"]
    try:
        while state["step"] < n_total:
            if stop_at is not None and state["step"] == stop_at:
                raise Stop("stop_at")
            if pending:
                raise Stop(pending[0])
            if cfg.time_budget and time.perf_counter() - start >= cfg.time_budget:
                stop_reason = "time_budget"
                break
            # ---- one training step: S_b trajectories, N_iter cycles, backprop ----
            idx = perm[state["pos"] * cfg.s_b:(state["pos"] + 1) * cfg.s_b].to(dev)
            stream = ObservationStream(model, obs, truth[idx], cfg.dt, gen, cfg.n_iter)
            loss = 0.0
            with _autocast(cfg, dev):
                for x, est in cycle(filt, xa[idx], model, cfg.dt, stream, cfg.sigma):  # noqa: B007
                    loss = loss + ((est.float() - stream.truth) ** 2).mean()
            loss = loss / cfg.n_iter
            if inject_nan_at is not None and state["step"] == inject_nan_at:
                loss = loss * float("nan")
            for group in opt.param_groups:
                group["lr"] = cfg.lr * state["lr_scale"] * _lr_factor(
                    cfg, state["step"], n_total, time.perf_counter() - start)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            if not (torch.isfinite(loss) and torch.isfinite(gnorm)):
                state["rollbacks"] += 1
                state["lr_scale"] *= 0.5
                net.load_state_dict(good[0])
                opt.load_state_dict(good[1])
                _log_metric(out, dict(event="rollback", step=state["step"],
                                      lr_scale=state["lr_scale"]))
                log(f"non-finite loss at step {state['step']}: rolled back to the last good "
                    f"weights, learning rate x{state['lr_scale']:g}")
                if state["rollbacks"] > MAX_ROLLBACKS:
                    raise DanlabError(f"training failed: {state['rollbacks']} non-finite losses; "
                                      "try a smaller --lr or --clip")
            else:
                opt.step()
                x, t = _reset_lost(x.detach(), stream.truth, cfg.sigma, gen)
                xa[idx], truth[idx] = x, t
            state["step"] += 1
            state["pos"] += 1
            elapsed = time.perf_counter() - start
            for t_snap in [t for t in snapshots if state["seconds"] < t <= elapsed]:
                io.save_torch(out / "snapshots" / f"t{int(t_snap)}.pt",
                              dict(config=cfg.to_dict(), weights=net.state_dict(),
                                   step=state["step"], seconds=elapsed))
            if state["step"] in snapshot_steps:
                io.save_torch(out / "snapshots" / f"step{state['step']}.pt",
                              dict(config=cfg.to_dict(), weights=net.state_dict(),
                                   step=state["step"], seconds=elapsed))
            state["seconds"] = elapsed
            train_rmse = float(loss.detach().sqrt())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{train_rmse:.3f}", val=f"{state['best_val']:.3f}")
            if state["step"] % 50 == 0:
                _log_metric(out, dict(step=state["step"], train_rmse=train_rmse,
                                      seconds=time.perf_counter() - start))
            # ---- end of epoch: validation, best weights, checkpoint ----
            if state["pos"] == steps_per_epoch or state["step"] == n_total:
                val = validate()
                state["epoch"] += 1
                state["pos"] = 0
                perm = torch.randperm(n_train, generator=perm_gen)
                state["seconds"] = time.perf_counter() - start
                improved = val < state["best_val"]
                if improved:
                    state["best_val"], state["bad_epochs"] = val, 0
                    io.save_torch(out / BEST, dict(config=cfg.to_dict(), weights=net.state_dict(),
                                                   step=state["step"], val_rmse=val))
                else:
                    state["bad_epochs"] += 1
                if math.isfinite(val):
                    good = (copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict()))
                _log_metric(out, dict(epoch=state["epoch"], step=state["step"], val_rmse=val,
                                      train_rmse=train_rmse, seconds=state["seconds"],
                                      lr=opt.param_groups[0]["lr"]))
                checkpoint()
                if cfg.patience and state["bad_epochs"] >= cfg.patience:
                    stop_reason = "early_stop"
                    break
        if pending:  # a signal during the last step
            raise Stop(pending[0])
    except Stop as sig:
        state["seconds"] = time.perf_counter() - start
        checkpoint()
        log(f"{sig}: checkpoint saved at step {state['step']}; continue with --resume")
        raise
    finally:
        _restore_signal_handlers(prev_handlers)
        if bar is not None:
            bar.close()
    state["seconds"] = time.perf_counter() - start
    if state["pos"]:  # stopped mid-epoch (time budget): validate and keep the best
        val = validate()
        if val < state["best_val"]:
            state["best_val"] = val
            io.save_torch(out / BEST, dict(config=cfg.to_dict(), weights=net.state_dict(),
                                           step=state["step"], val_rmse=val))
        checkpoint()
    test = evaluate_run(out, device=device, progress=progress)
    summary = dict(rmse=test.rmse, rmse_per_trajectory=test.summary()["rmse_per_trajectory"],
                   diverged=test.n_diverged, val_rmse=state["best_val"], steps=state["step"],
                   epochs=state["epoch"], seconds=state["seconds"], stop=stop_reason,
                   throughput=state["step"] * cfg.s_b * cfg.n_iter / max(state["seconds"], 1e-9),
                   rollbacks=state["rollbacks"], config=cfg.to_dict())
    io.write_json(out / "results.json", summary)
    return summary


def _autocast(cfg: TrainConfig, dev: torch.device):
    """bf16 autocast: the convolutions run in bfloat16 (AMX / tensor cores), everything else
    (the model, alpha*zeta, the loss, the weights) in float32."""
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.autocast)


def _reset_lost(x, truth, sigma, gen):
    """Trajectories whose analysis is non-finite or lost (RMSE > RESET_RMSE) restart near the
    truth, so one bad trajectory cannot poison later steps."""
    lost = ~(((x - truth) ** 2).mean(-1).sqrt() <= RESET_RMSE)
    if bool(lost.any()):
        fresh = truth + sigma * torch.randn(truth.shape, generator=gen, device=truth.device,
                                            dtype=truth.dtype)
        x = torch.where(lost.unsqueeze(-1), fresh, x)
    return x, truth


def _log_metric(out: Path, record: dict) -> None:
    io.append_jsonl(out / "metrics.jsonl", record)


def _progress(total, initial, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


def _install_signal_handlers(pending: list):
    """The first SIGINT/SIGTERM is recorded in `pending` and acted on at the next step boundary,
    so the checkpoint it triggers is consistent (weights, RNG states and counters of the same
    step: resume is exact); a second one aborts at once (the last checkpoint stays valid)."""
    def handler(signum, frame):
        if pending:
            raise KeyboardInterrupt
        pending.append(signal.Signals(signum).name)

    prev = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            prev[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread
            pass
    return prev


def _restore_signal_handlers(prev):
    for s, h in prev.items():
        signal.signal(s, h)


_RESUME_KEYS = ("config", "weights", "optimizer", "gen", "perm_gen", "truth", "xa", "perm",
                "state")


def load_checkpoint(path: str | Path, keys=("config", "weights")) -> dict:
    """torch.load with weights_only=True: a file that would run code when unpickled is refused;
    a file that loads but is not a dict holding `keys` (config a dict) is refused too."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DanlabError(f"checkpoint {str(path)!r} does not exist") from None
    except Exception as exc:  # UnpicklingError and friends: never execute, never trace back
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DanlabError(f"refusing to load {str(path)!r}: it is not a plain danlab checkpoint "
                          f"({first[:160]})") from None
    missing = [k for k in keys if k not in ck] if isinstance(ck, dict) else list(keys)
    if missing or not isinstance(ck.get("config"), dict):
        raise DanlabError(f"{str(path)!r} is not a danlab checkpoint: "
                          f"missing {missing or ['config (a dict)']}")
    return ck


def load(run_dir: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
         which: str = BEST) -> torch.nn.Module:
    """The trained analysis operator of a run, in eval mode: `increment = op(xf, zeta)` on
    (..., N_x) tensors (the whole x^a - x^f, alpha*zeta included)."""
    ck = load_checkpoint(Path(run_dir) / which)
    cfg = TrainConfig.from_dict(ck["config"], where=f"{run_dir}/{which}")
    net = build_net(cfg)
    try:
        net.load_state_dict(ck["weights"])
    except (RuntimeError, KeyError, TypeError) as exc:
        weights = ck["weights"]
        want, have = set(net.state_dict()), set(weights) if isinstance(weights, dict) else set()
        why = (f"missing {sorted(want - have)}, unexpected {sorted(have - want)}"
               if want != have else str(exc).splitlines()[0])
        raise DanlabError(f"{run_dir}/{which}: weights do not match the config "
                          f"({why[:200]}); was it written by an older danlab?") from None
    net.config = cfg
    return net.to(device=device, dtype=dtype).eval()


def evaluate_run(run_dir, nx=None, dt=None, forcing=None, obs=None, sigma=None,
                 trajectories=None, cycles=None, spinup=None, seed=None, inner_dt=None,
                 device="cpu", dtype=None, progress=False, which: str = BEST):
    """Test RMSE of a run's best operator on test trajectories identical (same seeds) to the
    baselines'; any option left None takes the run's trained configuration."""
    cfg = load(run_dir, which=which).config
    pick = lambda v, d: d if v is None else v  # noqa: E731
    dtype = dtype or _dtype(cfg)
    op = load(run_dir, dtype=dtype, device=device, which=which)
    model = Lorenz96(pick(forcing, cfg.forcing), pick(inner_dt, cfg.inner_dt))
    ocfg = ObservationConfig(pick(obs, cfg.obs), pick(sigma, cfg.sigma))
    twin = make_twin(model, ocfg, pick(nx, cfg.nx), pick(dt, cfg.dt),
                     pick(trajectories, cfg.test_trajectories), pick(cycles, cfg.test_cycles),
                     pick(seed, cfg.test_seed), dtype=dtype, device=device)
    return run_filter(DANFilter(op), twin, model, spinup=pick(spinup, cfg.test_spinup),
                      progress=progress)
