"""Options and output shared by the subcommands: devices, the twin options (declared once, in
TwinSpec), lists of values, JSON on stdout and log lines on stderr."""

from __future__ import annotations

import sys

import torch

from danlab import spec
from danlab.errors import DanlabError, check, check_choice
from danlab.io import to_json


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


def add_output_options(p, dtype: str | None = "float64", out: str | None = None) -> None:
    """--device, --dtype (if dtype), --json, --no-progress and --out (if `out` is its help)."""
    g = p.add_argument_group("output and hardware")
    g.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                   help="where to compute (default: auto, a GPU if there is one)")
    if dtype is not None:
        g.add_argument("--dtype", default=dtype, metavar="float32|float64",
                       help=f"precision (default: {dtype})")
    g.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout (log lines stay on stderr)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    if out is not None:
        g.add_argument("--out", default=None, metavar="DIR", help=out)


def add_twin_options(p, base=None) -> None:
    """The TwinSpec options (--model --nx --forcing --dt --inner-dt --obs --sigma
    --trajectories --cycles --spinup --seed), their help showing `base`'s values."""
    from danlab.twin import TwinSpec

    spec.add_arguments(p, TwinSpec, base, dest_prefix="twin_")


def twin_from_args(args, base=None):
    """The TwinSpec of the command line: `base` (default TwinSpec()) with the options given."""
    from danlab.twin import TwinSpec

    base = base if base is not None else TwinSpec()
    changes = spec.overrides_from_args(args, TwinSpec, dest_prefix="twin_")
    if "model" in changes and "inner_dt" not in changes and changes["model"] != base.model:
        changes["inner_dt"] = None  # a new model brings its own step and forcing
        changes.setdefault("forcing", None)
    return base.replace(**changes) if changes else base


def twin_options_given(args) -> list[str]:
    from danlab.twin import TwinSpec

    given = spec.overrides_from_args(args, TwinSpec, dest_prefix="twin_")
    return ["--" + k.replace("_", "-") for k in given]


def parse_list(text: str, kind=float, name: str = "values") -> list:
    """'0.1,0.2,0.5' -> [0.1, 0.2, 0.5]; a one-line error otherwise."""
    try:
        vals = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise DanlabError(f"--{name}={text!r} is not allowed: give comma-separated "
                          f"{'integers' if kind is int else 'numbers'}") from None
    check(len(vals) > 0, f"--{name}={text!r} is not allowed: give at least one value")
    return vals


def progress_on(args) -> bool:
    return not (getattr(args, "no_progress", False) or getattr(args, "json", False))


def print_json(obj) -> None:
    print(to_json(obj), flush=True)


def warn_diverged(name: str, result) -> None:
    """One line on stderr when a mean leaves trajectories out."""
    if result.n_diverged:
        print(f"danlab: warning: {name}: {result.n_diverged} of {result.n_trajectories} "
              f"trajectories diverged (the first at cycle "
              f"{int(result.diverged_at[result.diverged].min())}"
              f"); the test RMSE is the mean of the others",
              file=sys.stderr)
