"""Dynamical models: batched, differentiable, device- and dtype-agnostic.

`MODELS` maps a name to a constructor; `make_model("l96", forcing=8.0, inner_dt=0.01)` builds
one, and `"module:Class"` imports a user's own `danlab.dynamics.Model` subclass.
"""

from __future__ import annotations

import importlib
import inspect

from danlab.dynamics.base import Climatology, Model, check_model
from danlab.dynamics.ks import KuramotoSivashinsky
from danlab.dynamics.lorenz96 import Lorenz96, lyapunov_exponents
from danlab.errors import DanlabError, check

MODELS: dict[str, type[Model]] = {"l96": Lorenz96, "ks": KuramotoSivashinsky}


def model_class(name: str) -> type[Model]:
    """The class named by `name`: a key of MODELS or "module:Class"."""
    if name in MODELS:
        return MODELS[name]
    check(":" in name, f"model={name!r} is not allowed: choose one of "
                       f"{', '.join(MODELS)} or give module:Class")
    module, _, attr = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise DanlabError(f"model={name!r} cannot be imported: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    check(isinstance(cls, type) and issubclass(cls, Model),
          f"model={name!r} is not a subclass of danlab.dynamics.Model")
    return cls


def make_model(name: str = "l96", **options) -> Model:
    """Build a model from its name and options; options it does not take are refused.

    Options a model's constructor does not accept are dropped only if they are None (so a twin
    spec can pass its forcing / inner step / N_x to every model)."""
    cls = model_class(name)
    params = inspect.signature(cls.__init__).parameters
    takes = {k for k in params if k != "self"}
    unknown = sorted(k for k, v in options.items() if k not in takes and v is not None)
    check(not unknown, f"options {unknown} are not allowed for model {name!r}: it takes "
                       f"{', '.join(sorted(takes)) or 'none'}")
    model = cls(**{k: v for k, v in options.items() if k in takes and v is not None})
    return check_model(model)


__all__ = ["MODELS", "Climatology", "KuramotoSivashinsky", "Lorenz96", "Model", "check_model",
           "lyapunov_exponents", "make_model", "model_class"]
