"""Options and output helpers shared by subcommands."""

from __future__ import annotations

import json
import math

import torch

from danlab.errors import DanlabError, check_choice


def resolve_device(name: str) -> torch.device:
    check_choice("device", name, ("auto", "cpu", "cuda"))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DanlabError("device='cuda' is not available on this machine: "
                          "use --device cpu or auto")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    check_choice("dtype", name, ("float32", "float64"))
    return {"float32": torch.float32, "float64": torch.float64}[name]


def add_device_options(p, default_dtype: str = "float64") -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--dtype", default=default_dtype,
                   help=f"float32 | float64 (default {default_dtype})")


def print_json(obj) -> None:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    print(json.dumps(clean(obj)))
