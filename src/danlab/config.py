"""Training configurations: a frozen dataclass, presets, TOML in and out, validated."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, fields

from danlab.errors import DanlabError, check, check_choice
from danlab.observations import OBSERVATION_KINDS


@dataclass(frozen=True)
class TrainConfig:
    # experiment (paper Sect. 3: L96, N_x=40, F=8, H=I, R=I)
    nx: int = 40
    forcing: float = 8.0
    dt: float = 0.05
    inner_dt: float = 0.01
    obs: str = "full"
    sigma: float = 1.0
    # analysis operator
    net: str = "cnn"               # cnn | linear-zeta | hyper (see danlab.nets)
    variant: str = "full"          # full | no-xf | linear (the paper's ablations)
    filters: int = 32              # N_f
    kernel: int = 5
    blocks: int = 4
    activation: str = "gelu"
    alpha: bool = True             # Eq. 22: x^a = x^f + alpha*zeta + a_theta(x^f, zeta)
    columns: int = 8               # linear-zeta: columns of X^a
    loc_radius: float = 4.0        # linear-zeta: Gaspari-Cohn half-width (sites); 0 = none
    # training (App. A: N_r, S_b, N_iter)
    n_r: int = 4096                # trajectories, 10% kept for validation
    s_b: int = 32                  # batch of trajectories per step
    n_iter: int = 8                # cycles of truncated backpropagation per step
    warmup_cycles: int = 0         # cycles run with the initial operator before training
    epochs: int = 1000
    max_steps: int = 0             # 0 = no limit
    time_budget: float = 0.0       # seconds of training, 0 = no limit
    lr: float = 3e-3
    lr_min: float = 5e-5
    clip: float = 1.0
    patience: int = 0              # early stop after this many epochs without improvement; 0 = off
    val_cycles: int = 32           # cycles per validation pass (the second half is scored)
    val_trajectories: int = 256    # validation trajectories cycled each epoch (<= 10% of n_r)
    seed: int = 0
    dtype: str = "float32"
    compile: bool = False
    autocast: bool = False         # bf16 autocast of the network while training (fp32 weights)
    # evaluation (test RMSE protocol)
    test_trajectories: int = 16
    test_cycles: int = 1500
    test_spinup: int = 500
    test_seed: int = 1_000_003

    def __post_init__(self):
        validate(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            check(key in known, f"{where}: unknown key {key!r}; allowed: {', '.join(known)}")
            want = type(getattr(cls(), key))
            ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                ok, data = True, {**data, key: float(value)}
            check(ok, f"{where}: {key}={value!r} has the wrong type: expected {want.__name__}")
        return cls(**data)


def validate(c: TrainConfig) -> None:
    def pos_int(name, low=1):
        v = getattr(c, name)
        check(isinstance(v, int) and not isinstance(v, bool) and v >= low,
              f"{name}={v!r} is not allowed: it must be an integer >= {low}")

    def pos(name, strict=True):
        v = getattr(c, name)
        check(isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 if strict else v >= 0),
              f"{name}={v!r} is not allowed: it must be a finite number "
              f"{'>' if strict else '>='} 0")

    pos_int("nx", 4)
    check(math.isfinite(c.forcing), f"forcing={c.forcing!r} is not allowed: it must be finite")
    for name in ("dt", "inner_dt", "sigma", "lr", "clip"):
        pos(name)
    for name in ("lr_min", "time_budget", "loc_radius"):
        pos(name, strict=False)
    check_choice("obs", c.obs, OBSERVATION_KINDS)
    check_choice("variant", c.variant, ("full", "no-xf", "linear"))
    check_choice("activation", c.activation, ("gelu", "relu", "tanh", "silu"))
    check_choice("dtype", c.dtype, ("float32", "float64"))
    for name in ("filters", "blocks", "columns", "n_iter", "epochs", "val_cycles",
                 "val_trajectories",
                 "test_trajectories"):
        pos_int(name)
    for name in ("max_steps", "patience", "warmup_cycles", "seed", "test_seed", "test_spinup"):
        pos_int(name, 0)
    check(not (c.autocast and c.dtype != "float32"),
          f"autocast=true is not allowed with dtype={c.dtype!r}: it needs dtype float32")
    pos_int("kernel")
    check(c.kernel % 2 == 1, f"kernel={c.kernel} is not allowed: it must be odd")
    pos_int("s_b")
    pos_int("n_r", 2)
    check(c.n_r - max(1, c.n_r // 10) >= c.s_b,
          f"s_b={c.s_b} is not allowed: it must be <= the {c.n_r - max(1, c.n_r // 10)} "
          f"training trajectories (90% of n_r={c.n_r})")
    check(c.test_cycles > c.test_spinup,
          f"test_cycles={c.test_cycles} is not allowed: it must exceed test_spinup={c.test_spinup}")


PRESETS: dict[str, dict] = {
    # under a minute on a 2-core CPU
    "smoke": dict(filters=16, blocks=2, n_r=512, s_b=32, n_iter=8, max_steps=4000,
                  time_budget=40.0,
                  test_trajectories=8, test_cycles=1000, test_spinup=300),
    # the quickstart's default: about 10 minutes on a 2-core CPU
    "cpu": dict(filters=32, blocks=4, n_r=4096, s_b=32, n_iter=8, max_steps=40000,
                time_budget=600.0),
    # the paper's reference configuration (App. A)
    "casual": dict(filters=40, blocks=4, n_r=2**18, s_b=2048, n_iter=16, epochs=200,
                   test_trajectories=64, test_cycles=5500, test_spinup=500),
    # the paper's boosted DAN (Sect. 4.1)
    "boosted": dict(filters=80, blocks=4, n_r=2**19, s_b=512, n_iter=32, epochs=200,
                    test_trajectories=64, test_cycles=5500, test_spinup=500),
}


def preset(name: str, **overrides) -> TrainConfig:
    check_choice("preset", name, tuple(PRESETS))
    return TrainConfig.from_dict({**PRESETS[name], **overrides}, where=f"preset {name}")


def load_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise DanlabError(f"config file {path!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DanlabError(f"config file {path!r} is not valid TOML: {exc}") from None
    return data


def to_toml(c: TrainConfig) -> str:
    lines = []
    for k, v in c.to_dict().items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        else:
            lines.append(f"{k} = {v!r}")
    return "\n".join(lines) + "\n"
