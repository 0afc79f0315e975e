"""Training configurations: a frozen dataclass (the twin experiment nested), presets, TOML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from danlab import spec
from danlab.errors import (
    check,
    check_choice,
    check_int_at_least,
    check_non_negative,
    check_positive,
)
from danlab.optim import OPTIMIZERS
from danlab.spec import param
from danlab.twin import TwinSpec

NETS = ("cnn", "linear-zeta", "hyper")
VARIANTS = ("full", "no-xf", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; `twin` is the experiment (model, observations,
    dt) and its test set, shared by every method the DAN is compared with."""

    twin: TwinSpec = field(default_factory=TwinSpec)
    # analysis operator
    net: str = param("cnn", "analysis operator", choices=NETS)
    variant: str = param("full", "cnn ablation: full, no-xf (no forecast input) or linear "
                                 "(identity activations)", choices=VARIANTS)
    filters: int = param(32, "channels N_f of the CNN")
    kernel: int = param(5, "convolution kernel width (odd)")
    blocks: int = param(4, "residual blocks")
    activation: str = param("gelu", "activation", choices=("gelu", "relu", "tanh", "silu"))
    alpha: bool = param(True, "Eq. 22: add a trainable alpha * zeta term")
    product: bool = param(False, "cnn: a bilinear (product) block after the lift, as L96's "
                                 "quadratic term")
    columns: int = param(8, "linear-zeta: columns of X^a; hyper: hidden channels")
    loc_radius: float = param(4.0, "linear-zeta: Gaspari-Cohn half-width in sites (0: none)")
    # training (App. A: N_r, S_b, N_iter)
    n_r: int = param(4096, "training trajectories N_r (10%% kept for validation)")
    s_b: int = param(32, "trajectories per step S_b")
    n_iter: int = param(8, "cycles of truncated backpropagation per step N_iter")
    warmup_cycles: int = param(0, "cycles run with the initial operator before training")
    epochs: int = param(1000, "epochs (an epoch is about 0.9 N_r / S_b steps)")
    max_steps: int = param(0, "stop after this many steps (0: no cap)")
    time_budget: float = param(0.0, "seconds of training (0: no limit); the learning rate "
                                    "anneals over it")
    lr: float = param(3e-3, "peak learning rate (Adam)")
    lr_min: float = param(5e-5, "final learning rate of the cosine decay")
    warmup: float = param(0.0, "fraction of the run over which the learning rate rises "
                               "linearly to lr")
    decay: float = param(1.0, "fraction of the run, at its end, over which the learning rate "
                              "decays (cosine) to lr_min; before it the rate stays at lr "
                              "(1: cosine over the whole run after the warm-up)")
    decay_from: float = param(1.0, "learning rate at the start of the decay, as a fraction of "
                                   "lr: below 1 the rate drops there from lr to decay_from x lr, "
                                   "then decays (cosine) to lr_min")
    ema: float = param(0.0, "decay of an exponential moving average of the weights, used for "
                            "validation, the best weights and the test (0: off; e.g. 0.999)")
    n_iter_start: int = param(0, "curriculum: N_iter grows from this to n_iter between the "
                                 "progress n_iter_from and n_iter_until of the run (0: off)")
    n_iter_from: float = param(0.0, "curriculum: fraction of the run at which N_iter starts to "
                                    "grow from n_iter_start")
    n_iter_until: float = param(0.5, "curriculum: fraction of the run at which N_iter reaches "
                                     "n_iter (= n_iter_from: a switch)")
    forecast_loss: float = param(0.0, "weight in the loss of the forecast error one cycle after "
                                      "the window (0: the analysis errors alone, Eq. 4)")
    optimizer: str = param("adam", "adam, or muon (orthogonalised momentum on the hidden "
                                   "convolution kernels, Adam on the rest; danlab.optim)",
                           choices=OPTIMIZERS)
    clip: float = param(1.0, "gradient-norm clipping")
    patience: int = param(0, "stop after this many validations without a better validation "
                             "RMSE (0: off)")
    val_every: int = param(1, "epochs between validations (the best weights are chosen among "
                              "the validated epochs and the run's end)")
    val_cycles: int = param(32, "cycles per validation pass (the second half is scored)")
    val_trajectories: int = param(256, "validation trajectories cycled each epoch")
    seed: int = param(0, "seed of the weights, training trajectories and batches",
                      flag="--train-seed")
    init: str = param("", "start from the weights of this run directory (its best.pt) or "
                          "weights file instead of random ones, e.g. to go on with another "
                          "recipe (same network; --resume continues a run as it was)")
    dtype: str = param("float32", "training precision", choices=("float32", "float64"))
    compile: bool = param(False, "torch.compile the network")
    autocast: bool = param(False, "bf16 autocast of the network (float32 weights and states)")

    def __post_init__(self):
        validate(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return spec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> TrainConfig:
        return spec.from_dict(cls, migrate(data), where)


#: keys of configs written before the twin experiment was one nested table
_FLAT_TWIN_KEYS = {"nx": "nx", "forcing": "forcing", "dt": "dt", "inner_dt": "inner_dt",
                   "obs": "obs", "sigma": "sigma", "test_trajectories": "trajectories",
                   "test_cycles": "cycles", "test_spinup": "spinup", "test_seed": "seed"}


def migrate(data: dict) -> dict:
    """A config dict of an older danlab (flat twin keys) in today's form."""
    if not any(k in data for k in _FLAT_TWIN_KEYS):
        return data
    data = dict(data)
    twin = dict(data.pop("twin", {}))
    for old, new in _FLAT_TWIN_KEYS.items():
        if old in data:
            twin[new] = data.pop(old)
    data["twin"] = twin
    return data


def validate(c: TrainConfig) -> None:
    check(isinstance(c.twin, TwinSpec), f"twin={c.twin!r} must be a TwinSpec")
    check_choice("net", c.net, NETS)
    check_choice("variant", c.variant, VARIANTS)
    check_choice("activation", c.activation, ("gelu", "relu", "tanh", "silu"))
    check_choice("dtype", c.dtype, ("float32", "float64"))
    check_choice("optimizer", c.optimizer, OPTIMIZERS)
    for name in ("filters", "blocks", "columns", "n_iter", "epochs", "val_cycles",
                 "val_trajectories", "kernel", "s_b", "val_every"):
        check_int_at_least(name, getattr(c, name), 1)
    for name in ("max_steps", "patience", "warmup_cycles", "seed"):
        check_int_at_least(name, getattr(c, name), 0)
    check_int_at_least("n_r", c.n_r, 2)
    for name in ("lr", "clip"):
        check_positive(name, getattr(c, name))
    for name in ("lr_min", "time_budget", "loc_radius", "warmup", "ema", "forecast_loss"):
        check_non_negative(name, getattr(c, name))
    check(c.warmup < 1, f"warmup={c.warmup!r} is not allowed: it must be a fraction < 1")
    check(0 < c.decay <= 1, f"decay={c.decay!r} is not allowed: it must be a fraction in (0, 1]")
    check(0 < c.decay_from <= 1,
          f"decay_from={c.decay_from!r} is not allowed: it must be a fraction in (0, 1]")
    check(c.ema < 1, f"ema={c.ema!r} is not allowed: it must be a decay < 1")
    check_int_at_least("n_iter_start", c.n_iter_start, 0)
    check(c.n_iter_start <= c.n_iter, f"n_iter_start={c.n_iter_start} is not allowed: it must "
                                      f"be <= n_iter={c.n_iter}")
    check(0 <= c.n_iter_from <= c.n_iter_until <= 1,
          f"n_iter_from={c.n_iter_from!r}, n_iter_until={c.n_iter_until!r} are not allowed: they "
          f"must be fractions with 0 <= n_iter_from <= n_iter_until <= 1")
    check(c.kernel % 2 == 1, f"kernel={c.kernel} is not allowed: it must be odd")
    check(not (c.autocast and c.dtype != "float32"),
          f"autocast=true is not allowed with dtype={c.dtype!r}: it needs dtype float32")
    n_train = c.n_r - n_validation(c)
    check(n_train >= c.s_b, f"s_b={c.s_b} is not allowed: it must be <= the {n_train} "
                            f"training trajectories (90% of n_r={c.n_r})")


def n_validation(c: TrainConfig) -> int:
    return max(1, c.n_r // 10)


PRESETS: dict[str, dict] = {
    # under a minute on a 2-core CPU
    "smoke": dict(filters=16, blocks=2, n_r=512, s_b=32, n_iter=8, max_steps=4000,
                  time_budget=40.0, twin=dict(trajectories=8)),
    # the quickstart's default: about 10 minutes on a 2-core CPU; N_iter 2 and Muon
    # (docs/dan.md), and epochs / step cap far beyond what hours allow, so --time-budget is
    # what stops a run
    "cpu": dict(filters=32, blocks=4, n_r=4096, s_b=32, n_iter=2, epochs=10000,
                max_steps=1000000, time_budget=600.0, optimizer="muon"),
    # the paper's reference configuration (App. A)
    "casual": dict(filters=40, blocks=4, n_r=2**18, s_b=2048, n_iter=16, epochs=200),
    # the paper's boosted DAN (Sect. 4.1)
    "boosted": dict(filters=80, blocks=4, n_r=2**19, s_b=512, n_iter=32, epochs=200),
}


def merge(base: dict, overrides: dict) -> dict:
    """Overrides on top of a config dict; the nested twin table is merged key by key."""
    out = dict(base)
    for k, v in overrides.items():
        if k == "twin" and isinstance(v, dict):
            out["twin"] = {**out.get("twin", {}), **v}
        else:
            out[k] = v
    return out


# The cpu preset for budgets of 40 minutes and more (docs/dan.md, "Accuracy against training
# time"): at 40 minutes a batch of 128 beats the preset's 32, whose steps pay at 10 minutes;
# validating every 4th epoch keeps the validations ~110 steps apart, as with S_b = 32; an EMA
# of the weights averages out the noise of the high learning rate's steps; with Muon, 48
# filters reach a lower error in 40 minutes than 32 do, at 60% of their steps.
LONG_BUDGET = 2400.0
CPU_LONG: dict = dict(s_b=128, val_every=4, ema=0.999, filters=48)


def budget_values(name: str, time_budget: float, given=()) -> dict:
    """The preset values that depend on the time budget, leaving out the keys `given` (a
    budget that is not a number is left to TrainConfig's check to report)."""
    number = isinstance(time_budget, (int, float)) and not isinstance(time_budget, bool)
    long = CPU_LONG if name == "cpu" and number and time_budget >= LONG_BUDGET else {}
    return {k: v for k, v in long.items() if k not in given}


def preset(name: str, **overrides) -> TrainConfig:
    """A preset's config with `overrides` (twin: a TwinSpec or a dict of its fields); the cpu
    preset with a time budget of LONG_BUDGET seconds or more takes CPU_LONG's values where
    `overrides` does not set them."""
    check_choice("preset", name, tuple(PRESETS))
    if isinstance(overrides.get("twin"), TwinSpec):
        overrides["twin"] = dataclasses.asdict(overrides["twin"])
    values = merge(PRESETS[name], migrate(overrides))
    values.update(budget_values(name, values.get("time_budget", 0.0), overrides))
    return TrainConfig.from_dict(values, where=f"preset {name}")


def to_toml(c: TrainConfig) -> str:
    return spec.to_toml(c.to_dict())


def load_toml(path: str) -> dict:
    return spec.load_toml(path)
