"""The units the training loop (danlab.train) is made of: the cycling training data, one
training session (network, optimiser, counters) with its step, validation and checkpoint, the
learning-rate schedule, snapshots, stop signals, and the data-parallel group.

Data parallelism (torchrun, or `--workers`): every process holds the same N_r trajectories and
draws the same observation noise for the whole batch, advances its own slice of the batch, and
the slices are gathered back, so K processes follow exactly the trajectory of one process on the
combined batch (to the rounding of the gradient all-reduce).
"""

from __future__ import annotations

import copy
import math
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from danlab import io, rng
from danlab.config import TrainConfig, n_validation, to_toml
from danlab.cycle import DEFAULT_DIVERGENCE, cycle
from danlab.errors import DanlabError
from danlab.filters.dan import DANFilter
from danlab.nets import build_net
from danlab.optim import make_optimizer
from danlab.runs import (
    BEST,
    CHECKPOINT,
    _migrate_weights,
    load_checkpoint,
    load_initial_weights,
    weights_of,
)

MAX_ROLLBACKS = 8  # non-finite losses tolerated (each halves the learning rate)
# A non-finite loss caused by at most this fraction of the batch's trajectories (lost ones whose
# analysis exploded) skips the step instead of rolling back: the operator is not at fault.
MAX_LOST_FRACTION = 0.25


@dataclass
class Faults:
    """Fault injection for tests: poison the loss at step `nan_at`, act as if SIGINT arrived
    at step `stop_at`, make the first trajectory of the batch at step `blowup_at` non-finite.
    Tests set them with monkeypatch, or for worker processes through the environment
    (DANLAB_FAULT_NAN_AT, DANLAB_FAULT_STOP_AT, DANLAB_FAULT_BLOWUP_AT); not part of the API."""

    nan_at: int | None = None
    stop_at: int | None = None
    blowup_at: int | None = None

    @classmethod
    def from_env(cls) -> Faults:
        def get(name):
            v = os.environ.get(name)
            return int(v) if v else None

        return cls(get("DANLAB_FAULT_NAN_AT"), get("DANLAB_FAULT_STOP_AT"),
                   get("DANLAB_FAULT_BLOWUP_AT"))


FAULTS = Faults.from_env()


class Stop(Exception):
    """A stop signal: the checkpoint is saved, then the run exits (resume continues it)."""


def dtype_of(cfg: TrainConfig) -> torch.dtype:
    return torch.float64 if cfg.dtype == "float64" else torch.float32


# --- the data-parallel group ---------------------------------------------------------------

@dataclass
class Group:
    """This process's place in a data-parallel group (world 1: a single process)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls, device: torch.device) -> Group:
        """The group torchrun (or `--workers`) set up in the environment: gloo on CPU, NCCL
        on GPUs (one per process, by LOCAL_RANK)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            # imported after the group exists, torch._dynamo (Adam imports it) keeps the group
            # and its threads alive past destroy_process_group (torch 2.13), into the
            # interpreter's shutdown, where a gloo thread releasing a tensor aborts the process
            import torch._dynamo  # noqa: F401
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: cuda:LOCAL_RANK for a multi-GPU run."""
        if device.type == "cuda" and self.world > 1:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device

    def check(self, cfg: TrainConfig) -> None:
        if self.world > 1 and cfg.s_b % self.world:
            raise DanlabError(f"s_b={cfg.s_b} is not allowed with {self.world} processes: it "
                              "must be a multiple of the number of processes")

    def bounds(self, n: int, rank: int) -> tuple[int, int]:
        """Rank `rank`'s share of n items: contiguous, sizes differing by one at most."""
        return rank * n // self.world, (rank + 1) * n // self.world

    def shard(self, n: int) -> slice:
        return slice(*self.bounds(n, self.rank))

    def gather(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """The n items of every rank's shard (dim 0), in rank order."""
        if self.world == 1:
            return local
        size = -(-n // self.world)
        padded = torch.zeros((size, *local.shape[1:]), dtype=local.dtype, device=local.device)
        padded[:local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:hi - lo] for p, (lo, hi) in
                          zip(parts, (self.bounds(n, r) for r in range(self.world)))])

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        return self.sum(value) / self.world

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Average tensors (the gradients) over the ranks in place: one all-reduce of their
        concatenation. Not DistributedDataParallel: its reducer holds the group, and freeing
        it under the GIL at the end joins gloo threads that wait for the GIL (a deadlock)."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))

    def close(self, wait: bool = True) -> None:
        """Tear down the process group, by default once every rank got here (rank 0 tests
        the run while the others wait), so that its threads end before the interpreter
        does: a gloo thread still releasing a collective's tensors at interpreter shutdown
        aborts the process."""
        if self.world > 1 and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()


# --- the cycling training data -------------------------------------------------------------

class TrainingData:
    """N_r trajectories that keep cycling for the whole training: truth and analysis of each
    (the first 90% for training, the rest for validation), the batch order, and the random
    streams of observations (`gen`) and batch order (`perm_gen`)."""

    def __init__(self, cfg: TrainConfig, model, device: torch.device, group: Group):
        self.cfg, self.model, self.device, self.group = cfg, model, device, group
        self.obs = cfg.twin.observation
        self.n_val = n_validation(cfg)
        self.n_train = cfg.n_r - self.n_val
        self.steps_per_epoch = self.n_train // cfg.s_b
        self.gen = rng.generator(cfg.seed, 1, device=device)
        self.perm_gen = rng.generator(cfg.seed, 2)
        self.std = model.climatology(cfg.twin.nx).std

    def start(self, dtype: torch.dtype) -> None:
        """Truth on the attractor; analyses start as observation-only (truth + noise)."""
        from danlab.twin import attractor_states

        cfg = self.cfg
        self.truth = attractor_states(self.model, cfg.n_r, cfg.twin.nx, rng.seed_of(cfg.seed, 3),
                                      dtype, self.device, compute_device=self.device)
        noise = torch.randn(self.truth.shape, generator=self.gen, device=self.device, dtype=dtype)
        self.xa = self.truth + cfg.twin.sigma * noise
        self.perm = torch.randperm(self.n_train, generator=self.perm_gen)

    def batch(self, pos: int) -> torch.Tensor:
        s_b = self.cfg.s_b
        return self.perm[pos * s_b:(pos + 1) * s_b].to(self.device)

    def validation(self) -> torch.Tensor:
        n = min(self.n_val, self.cfg.val_trajectories)
        return torch.arange(self.n_train, self.n_train + n, device=self.device)

    def run(self, filt, idx: torch.Tensor, n_cycles: int):
        """Cycle trajectories `idx` (global) n_cycles further; this rank runs its slice.
        Yields (x^a, truth) per cycle for the local slice."""
        local = idx[self.group.shard(len(idx))]
        truth = self.truth[local]
        sl = self.group.shard(len(idx))
        obs, gen, dt, b, nx = self.obs, self.gen, self.cfg.twin.dt, len(idx), self.truth.shape[-1]

        def observations():
            nonlocal truth
            for _ in range(n_cycles):
                with torch.no_grad():
                    truth = self.model.forecast(truth, dt)
                mask, noise = obs.draw((b, nx), gen, truth.device, truth.dtype)
                yield obs.apply(truth, mask[sl], noise[sl]), mask[sl]

        for x, xa in cycle(filt, self.xa[local], self.model, dt, observations(), obs.sigma):
            yield x, xa, truth

    def forecast_error(self, x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the forecast from the analyses x one cycle on (the window's
        next forecast, the one the following analysis must correct)."""
        dt = self.cfg.twin.dt
        with torch.no_grad():
            truth_next = self.model.forecast(truth, dt)
        return ((self.model.forecast(x.to(truth.dtype), dt) - truth_next) ** 2).mean()

    def blown_up(self, x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """(local B,) bool: the blow-up rule of the cycle engine on these local states."""
        return DEFAULT_DIVERGENCE.blown_up(((x.detach() - truth) ** 2).mean(-1).sqrt(),
                                           self.std)

    def n_blown_up(self, x: torch.Tensor, truth: torch.Tensor) -> int:
        """How many of the whole batch's trajectories (every rank's slice) blew up."""
        return int(self.group.sum(self.blown_up(x, truth).sum()))

    def store(self, idx: torch.Tensor, x: torch.Tensor, truth: torch.Tensor) -> None:
        """Keep the detached local states, reset blown-up ones near the truth (the divergence
        rule of the cycle engine), and gather every rank's slice."""
        b = len(idx)
        fresh = torch.randn((b, truth.shape[-1]), generator=self.gen, device=truth.device,
                            dtype=truth.dtype)[self.group.shard(b)]
        x = torch.where(self.blown_up(x, truth).unsqueeze(-1),
                        truth + self.cfg.twin.sigma * fresh, x)
        self.xa[idx] = self.group.gather(x.detach(), b)
        self.truth[idx] = self.group.gather(truth, b)

    def new_epoch(self) -> None:
        self.perm = torch.randperm(self.n_train, generator=self.perm_gen)

    def state_dict(self) -> dict:
        return dict(gen=self.gen.get_state().cpu(), perm_gen=self.perm_gen.get_state(),
                    truth=self.truth.cpu(), xa=self.xa.cpu(), perm=self.perm)

    def load_state_dict(self, ck: dict) -> None:
        self.gen.set_state(ck["gen"].to(self.gen.get_state().device))
        self.perm_gen.set_state(ck["perm_gen"])
        self.truth, self.xa = ck["truth"].to(self.device), ck["xa"].to(self.device)
        self.perm = ck["perm"]


# --- one training session ------------------------------------------------------------------

@dataclass
class Counters:
    """Where the run stands (saved in the checkpoint)."""

    step: int = 0
    epoch: int = 0
    pos: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0
    rollbacks: int = 0
    skipped: int = 0
    lr_scale: float = 1.0
    seconds: float = 0.0


_RESUME_KEYS = ("config", "weights", "optimizer", "gen", "perm_gen", "truth", "xa", "perm",
                "state")


@dataclass
class Session:
    cfg: TrainConfig
    out: Path
    device: torch.device
    log: object
    group: Group = field(default_factory=Group)

    def __post_init__(self):
        cfg, dtype = self.cfg, dtype_of(self.cfg)
        self.group.check(cfg)
        self.device = self.group.device(self.device)
        self.model = cfg.twin.make_model()
        torch.manual_seed(cfg.seed)
        self.net = build_net(cfg).to(self.device, dtype)
        self.opt = make_optimizer(cfg.optimizer, self.net, cfg.lr)
        self.data = TrainingData(cfg, self.model, self.device, self.group)
        self.counters = Counters()
        epochs_total = cfg.epochs * self.data.steps_per_epoch
        self.n_total = min(epochs_total, cfg.max_steps) if cfg.max_steps else epochs_total
        self.end_reason = ("max_steps" if cfg.max_steps and self.n_total == cfg.max_steps
                           else "epochs")
        self.ema: torch.nn.Module | None = None
        self.writes = self.group.rank == 0

    def start(self, resume: bool) -> Session:
        ckpt = self.out / CHECKPOINT
        if resume:
            if not ckpt.exists():
                raise DanlabError(f"--resume: no {CHECKPOINT} in {str(self.out)!r} to resume "
                                  "from")
            ck = load_checkpoint(ckpt, _RESUME_KEYS)
            saved = TrainConfig.from_dict(ck["config"], where=str(ckpt))
            if saved != self.cfg:
                a, b = saved.to_dict(), self.cfg.to_dict()
                diff = [k for k in b if a.get(k) != b[k]]
                raise DanlabError(f"--resume: the config differs from the checkpoint's in {diff}")
            self.net.load_state_dict(_migrate_weights(ck["weights"]))
            self.opt.load_state_dict(ck["optimizer"])
            if self.cfg.ema:
                self.ema = copy.deepcopy(self.net).requires_grad_(False)
                self.ema.load_state_dict(ck["ema"])
            self.data.load_state_dict(ck)
            self.counters = Counters(**ck["state"])
            self.log(f"resumed from step {self.counters.step} (epoch {self.counters.epoch})")
        else:
            init = load_initial_weights(self.cfg, self.net) if self.cfg.init else None
            self.data.start(dtype_of(self.cfg))
            if self.cfg.warmup_cycles:
                idx = torch.arange(self.cfg.n_r, device=self.device)
                with torch.no_grad():
                    steps = self.data.run(DANFilter(self.net), idx, self.cfg.warmup_cycles)
                    x, _, truth = _last(steps)
                self.data.store(idx, x, truth)
            if self.writes:
                io.write_text(self.out / "config.toml", to_toml(self.cfg))
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
            if init is not None and self.writes:
                self.metric(dict(event="init", **init))
                self.log(f"weights from {init['path']} (step {init['step']})")
        if self.cfg.ema and self.ema is None:
            self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.good = self._snapshot()
        self.filt = DANFilter(torch.compile(self.net) if self.cfg.compile else self.net)
        self.eval_filt = DANFilter(self.ema) if self.ema is not None else self.filt
        return self

    def evaluated(self) -> torch.nn.Module:
        """The network that is validated, kept as best and tested: the EMA of the weights if
        cfg.ema, else the trained one."""
        return self.ema if self.ema is not None else self.net

    def _snapshot(self):
        ema = copy.deepcopy(self.ema.state_dict()) if self.ema is not None else None
        return (copy.deepcopy(self.net.state_dict()), copy.deepcopy(self.opt.state_dict()), ema)

    # -- the loop's vocabulary --

    def stop_reason(self, elapsed: float, pending: list) -> str | None:
        """Why the loop should stop now, or None; rank 0 decides for the whole group (their
        clocks and signals differ)."""
        reason = self._stop_reason(elapsed, pending)
        if self.group.world > 1:
            box = [reason]
            dist.broadcast_object_list(box, src=0)
            reason = box[0]
        return reason

    def _stop_reason(self, elapsed: float, pending: list) -> str | None:
        c = self.counters
        if FAULTS.stop_at is not None and c.step == FAULTS.stop_at:
            return "SIGINT"
        if pending:
            return pending[0]
        if c.step >= self.n_total:
            return self.end_reason
        if self.cfg.time_budget and elapsed >= self.cfg.time_budget:
            return "time_budget"
        return None

    def step(self, elapsed: float) -> float:
        """One training step: S_b trajectories, N_iter cycles, backpropagation of Eq. 4.
        A non-finite loss skips the step when a few trajectories blew up (a lost trajectory,
        far off the attractor, can make the analysis explode under any weights) and otherwise
        rolls back to the last good weights at half the learning rate. The batch's states are
        stored either way, so a trajectory that blew up is reset near the truth instead of
        poisoning every later batch that draws it."""
        cfg, c = self.cfg, self.counters
        idx = self.data.batch(c.pos)
        if FAULTS.blowup_at is not None and c.step == FAULTS.blowup_at:
            self.data.xa[idx[0]] = float("nan")
        progress = self.progress(elapsed)
        n_iter = n_iter_at(cfg, progress)
        loss = 0.0
        with autocast(cfg, self.device):
            for x, xa, truth in self.data.run(self.filt, idx, n_iter):  # noqa: B007
                loss = loss + ((xa.to(truth.dtype) - truth) ** 2).mean()
        loss = loss / n_iter
        if FAULTS.nan_at is not None and c.step == FAULTS.nan_at:
            loss = loss * float("nan")
        objective = loss
        if cfg.forecast_loss:
            objective = loss + cfg.forecast_loss * self.data.forecast_error(x, truth)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * c.lr_scale * lr_factor(cfg, progress)
        self.opt.zero_grad(set_to_none=True)
        objective.backward()
        self.group.average_([p.grad for p in self.net.parameters() if p.grad is not None])
        gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clip)
        loss = self.group.mean(loss.detach())
        if torch.isfinite(loss) and torch.isfinite(gnorm):
            self.opt.step()
            self._update_ema()
        elif 0 < (n := self.data.n_blown_up(x, truth)) <= MAX_LOST_FRACTION * len(idx):
            self._skip(n)
        else:
            self._rollback()
        self.data.store(idx, x, truth)
        c.step += 1
        c.pos += 1
        return float(loss.sqrt())

    def progress(self, elapsed: float) -> float:
        """How far the run is, in [0, 1]: by steps, or by the time budget when it binds first."""
        t = self.counters.step / max(self.n_total, 1)
        if self.cfg.time_budget:
            t = max(t, elapsed / self.cfg.time_budget)
        return min(t, 1.0)

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # the usual warm start: the average forgets its random start within ~1/(1-decay) steps
        decay = min(self.cfg.ema, (1 + self.counters.step) / (10 + self.counters.step))
        with torch.no_grad():
            e, p = list(self.ema.parameters()), list(self.net.parameters())
            torch._foreach_lerp_(e, p, 1 - decay)

    def _skip(self, n_blown_up: int) -> None:
        c = self.counters
        c.skipped += 1
        self.metric(dict(event="skipped", step=c.step, blown_up=n_blown_up))
        self.log(f"non-finite loss at step {c.step} from {n_blown_up} of {self.cfg.s_b} "
                 "trajectories that blew up: step skipped, those trajectories reset")

    def _rollback(self) -> None:
        c = self.counters
        c.rollbacks += 1
        c.lr_scale *= 0.5
        self.net.load_state_dict(self.good[0])
        self.opt.load_state_dict(self.good[1])
        if self.ema is not None:
            self.ema.load_state_dict(self.good[2])
        self.metric(dict(event="rollback", step=c.step, lr_scale=c.lr_scale))
        self.log(f"non-finite loss at step {c.step}: rolled back to the last good weights, "
                 f"learning rate x{c.lr_scale:g}")
        if c.rollbacks > MAX_ROLLBACKS:
            raise DanlabError(f"training failed: {c.rollbacks} non-finite losses; try a smaller "
                              "--lr or --clip")

    def end_of_epoch(self) -> bool:
        return self.counters.pos == self.data.steps_per_epoch or \
            self.counters.step == self.n_total

    def end_epoch(self, elapsed: float, train_rmse: float) -> None:
        """Validation, best weights, rollback target, checkpoint."""
        c = self.counters
        validated = self.validates(c.epoch + 1)
        val = self.validate() if validated else math.nan
        c.epoch += 1
        c.pos = 0
        self.data.new_epoch()
        c.seconds = elapsed
        if validated:
            self.keep_if_best(val)
        if math.isfinite(val) or not validated:
            self.good = self._snapshot()
        self.metric(dict(epoch=c.epoch, step=c.step, train_rmse=train_rmse, seconds=c.seconds,
                         lr=self.opt.param_groups[0]["lr"],
                         **({"val_rmse": val} if validated else {})))
        self.checkpoint(elapsed)

    def validates(self, epoch: int) -> bool:
        """Whether the end of `epoch` (counted from 1) is validated: every val_every-th epoch
        and the last step. A validation pass costs ~20 steps of the cpu preset, a fifth of an
        epoch at N_iter 2, which is why a run of short steps may validate less often."""
        return epoch % self.cfg.val_every == 0 or self.counters.step == self.n_total

    def patience_exhausted(self) -> bool:
        return bool(self.cfg.patience) and self.counters.bad_epochs >= self.cfg.patience

    def validate(self) -> float:
        """Cycle (up to val_trajectories of) the validation trajectories val_cycles further;
        RMSE over the second half. Kept small: it is overhead on every epoch."""
        cfg = self.cfg
        idx = self.data.validation()
        sq = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        with torch.no_grad(), autocast(cfg, self.device):
            steps = self.data.run(self.eval_filt, idx, cfg.val_cycles)
            for k, (x, xa, truth) in enumerate(steps):  # noqa: B007
                if k >= cfg.val_cycles // 2:
                    sq += ((xa - truth) ** 2).mean(-1).sqrt().sum().double()
                    count += 1
        self.data.store(idx, x, truth)
        return float(self.group.sum(sq) / (count * len(idx)))

    def keep_if_best(self, val: float) -> None:
        c = self.counters
        if val < c.best_val:
            c.best_val, c.bad_epochs = val, 0
            if self.writes:
                io.save_torch(self.out / BEST, dict(config=self.cfg.to_dict(),
                                                    weights=self.evaluated().state_dict(),
                                                    step=c.step, val_rmse=val))
        else:
            c.bad_epochs += 1

    def finish(self, elapsed: float) -> None:
        """Stopped mid-epoch (time budget) or after an epoch that was not validated: validate,
        keep the best, checkpoint."""
        c = self.counters
        c.seconds = elapsed
        if c.pos or not self.validates(c.epoch):
            self.keep_if_best(self.validate())
            self.checkpoint(elapsed)

    def checkpoint(self, elapsed: float) -> None:
        self.counters.seconds = elapsed
        if self.writes:
            io.save_torch(self.out / CHECKPOINT, dict(
                config=self.cfg.to_dict(), weights=self.net.state_dict(),
                optimizer=self.opt.state_dict(), state=asdict(self.counters),
                **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
                **self.data.state_dict()))

    def metric(self, record: dict) -> None:
        if self.writes:
            io.append_jsonl(self.out / "metrics.jsonl", record)


def _last(steps):
    x = xa = truth = None
    for x, xa, truth in steps:  # noqa: B007
        pass
    return x, xa, truth


def autocast(cfg: TrainConfig, dev: torch.device):
    """bf16 autocast: the convolutions run in bfloat16 (AMX / tensor cores), everything else
    (the model, alpha*zeta, the loss, the weights) in float32."""
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.autocast)


def lr_factor(cfg: TrainConfig, t: float) -> float:
    """Linear warm-up over the first `warmup` of the run, then lr held until the last `decay`
    of the run (after the warm-up), then cosine decay from decay_from x lr to lr_min; t is the
    run's progress (steps, or the time budget when it binds first), so a run of fixed wall time
    ends annealed on any machine. (Only step-bound runs are bit-reproducible.)"""
    if cfg.warmup and t < cfg.warmup:
        return max(t / cfg.warmup, 1e-3)
    t = (t - cfg.warmup) / (1 - cfg.warmup) if cfg.warmup else t
    t = (t - (1 - cfg.decay)) / cfg.decay
    if t < 0 and cfg.decay_from != 1:  # held at lr before the drop; decay_from 1 keeps the
        return 1.0                      # former arithmetic, so stored runs repeat bit for bit
    top = cfg.lr * cfg.decay_from
    t = max(0.0, t)
    return (cfg.lr_min + 0.5 * (top - cfg.lr_min) * (1 + math.cos(math.pi * t))) / cfg.lr


def n_iter_at(cfg: TrainConfig, t: float) -> int:
    """N_iter at progress t: cfg.n_iter, or the curriculum: n_iter_start until progress
    n_iter_from, growing linearly to n_iter at n_iter_until (a switch where they are equal)."""
    if not cfg.n_iter_start:
        return cfg.n_iter
    a, b = cfg.n_iter_from, cfg.n_iter_until
    frac = 1.0 if t >= b else 0.0 if t <= a else (t - a) / (b - a)
    return round(cfg.n_iter_start + (cfg.n_iter - cfg.n_iter_start) * frac)


# --- around the loop -----------------------------------------------------------------------

class Clock:
    """Training seconds, continuing the count of a resumed run; `paused()` leaves out work
    that is not training (scoring a snapshot)."""

    def __init__(self, already: float):
        self.start = time.perf_counter() - already

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @contextmanager
    def paused(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - t


class Snapshots:
    """Weights kept at given training times (snapshots/t<s>.pt) and steps (step<n>.pt), each
    scored on the run's test set as the run goes (metrics.jsonl, event "snapshot", and a log
    line): the learning curve of a long run, visible while it runs. Scoring is left out of the
    training clock."""

    def __init__(self, out: Path, times=(), steps=(), since: float = 0.0, log=None):
        self.out, self.times, self.steps, self.last = out, tuple(times), tuple(steps), since
        self.log = log

    def after_step(self, s: Session, clock: Clock) -> None:
        elapsed = clock.elapsed()
        if not s.writes:
            self.last = elapsed
            return
        keep = [f"t{int(t)}" for t in self.times if self.last < t <= elapsed]
        if s.counters.step in self.steps:
            keep.append(f"step{s.counters.step}")
        for name in keep:
            with clock.paused():
                io.save_torch(self.out / "snapshots" / f"{name}.pt",
                              dict(config=s.cfg.to_dict(), weights=weights_of(s.evaluated()),
                                   step=s.counters.step, seconds=elapsed))
                res = self.score(s)
            s.metric(dict(event="snapshot", name=name, step=s.counters.step, seconds=elapsed,
                          test_rmse=res.rmse, diverged=res.n_diverged))
            if self.log:
                self.log(f"snapshot {name} (step {s.counters.step}, {elapsed:.0f} s): test RMSE "
                         f"{res.label()}")
        self.last = clock.elapsed()

    def score(self, s: Session):
        from danlab.runs import evaluate_run

        net = copy.deepcopy(s.evaluated()).eval()
        net.config = s.cfg
        return evaluate_run(s.out, device=str(s.device), operator=net)


class StopSignals:
    """The first SIGINT/SIGTERM is recorded in `pending` and acted on at the next step boundary,
    so the checkpoint it triggers is consistent (weights, RNG states and counters of the same
    step: resume is exact); a second one aborts at once (the last checkpoint stays valid)."""

    def __enter__(self) -> list:
        self.pending: list[str] = []
        self.prev = {}

        def handler(signum, frame):
            if self.pending:
                raise KeyboardInterrupt
            self.pending.append(signal.Signals(signum).name)

        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self.prev[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread
                pass
        return self.pending

    def __exit__(self, *exc) -> None:
        for s, h in self.prev.items():
            signal.signal(s, h)
