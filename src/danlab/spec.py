"""Frozen, documented, validated configuration dataclasses, and their TOML / dict / CLI forms.

A spec field is declared once with `param(default, help)`; its help text serves `--help`, its
type checks dicts and TOML files, and `add_arguments` / `from_args` give every command that
takes the spec the same options. Nested specs (a TrainConfig holds a TwinSpec) are TOML tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from dataclasses import MISSING, field, fields, is_dataclass

from danlab.errors import DanlabError, check


def param(default, help: str, *, flag: str | None = None, choices=None):
    """A spec field with its one-phrase documentation (and the CLI flag, if not --name)."""
    return field(default=default,
                 metadata={"help": help, "flag": flag, "choices": choices})


def field_type(cls, name: str):
    """The declared type of a field (resolving `from __future__ import annotations`)."""
    return typing.get_type_hints(cls)[name]


def _base_types(tp) -> tuple[type, ...]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return tuple(t for t in typing.get_args(tp))
    return (tp,)


def _coerce(cls, name: str, value, where: str):
    tp = field_type(cls, name)
    if is_dataclass(tp):
        check(isinstance(value, dict), f"{where}: {name} must be a table of {tp.__name__} "
                                       f"values, got {value!r}")
        return from_dict(tp, value, where=f"{where}.{name}")
    allowed = _base_types(tp)
    if value is None:
        check(type(None) in allowed, f"{where}: {name} must be given (got nothing)")
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    for t in allowed:
        if t is type(None) or t is typing.Any:
            continue
        origin = typing.get_origin(t) or t
        if origin is int and isinstance(value, bool):
            continue
        if isinstance(value, origin):
            return tuple(value) if origin is tuple else value
    if tuple in [typing.get_origin(t) or t for t in allowed] and isinstance(value, list):
        return tuple(value)
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed
                        if t is not type(None))
    raise DanlabError(f"{where}: {name}={value!r} has the wrong type: expected {names}")


def from_dict(cls, data: dict, where: str = "config"):
    """Build spec `cls` from a dict (e.g. TOML); unknown keys and wrong types are refused."""
    check(isinstance(data, dict), f"{where}: expected a table of values, got {data!r}")
    known = {f.name for f in fields(cls)}
    for key in data:
        check(key in known, f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(known))}")
    return cls(**{k: _coerce(cls, k, v, where) for k, v in data.items()})


def to_dict(spec) -> dict:
    return dataclasses.asdict(spec)


def canonical_json(obj) -> str:
    """Sorted, compact JSON: the form hashed to key a run."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(obj, length: int = 12) -> str:
    data = to_dict(obj) if is_dataclass(obj) else obj
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:length]


def load_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise DanlabError(f"config file {path!r} does not exist") from None
    except IsADirectoryError:
        raise DanlabError(f"config file {path!r} is a directory") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DanlabError(f"config file {path!r} is not valid TOML: {exc}") from None


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        check(math.isfinite(v), f"cannot write the non-finite value {v!r} to TOML")
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(data: dict, table: str = "") -> str:
    """TOML for a dict of scalars / lists and nested dicts (tables); None values are left out."""
    lines, nested = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            nested.append((k, v))
        elif v is not None:
            lines.append(f"{k} = {_toml_value(v)}")
    out = ("\n".join(lines) + "\n") if lines else ""
    for k, v in nested:
        name = f"{table}.{k}" if table else k
        out += f"\n[{name}]\n" + to_toml(v, name)
    return out


# --- command line ------------------------------------------------------------------------

def flag_of(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def parse_bool(s: str) -> bool:
    value = {"true": True, "false": False, "1": True, "0": False}.get(s.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{s!r} is not allowed: use true or false")
    return value


def _show(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return "none" if v == "" else str(v)


def add_arguments(parser, cls, base=None, skip: tuple[str, ...] = (), dest_prefix: str = ""):
    """One option per (scalar) field of spec `cls`; help from the field's doc, showing the value
    of `base` (the preset's, not the dataclass default). Options default to None = keep base."""
    base = base if base is not None else cls()
    group = parser.add_argument_group(f"{cls.__name__} options") if hasattr(
        parser, "add_argument_group") else parser
    for f in fields(cls):
        tp = field_type(cls, f.name)
        if f.name in skip or is_dataclass(tp) or "help" not in f.metadata:
            continue
        kinds = [t for t in _base_types(tp) if t is not type(None)]
        kind = kinds[0] if kinds else str
        kind = typing.get_origin(kind) or kind
        value = getattr(base, f.name)
        helptext = f"{f.metadata['help']} (default: {_show(value)})"
        kw = dict(dest=dest_prefix + f.name, default=None, help=helptext)
        if kind is bool:  # --flag alone means true
            parser_type, metavar = parse_bool, "true|false"
            kw.update(nargs="?", const=True)
        elif kind in (int, float):
            parser_type, metavar = kind, kind.__name__.upper()
        else:
            parser_type, metavar = str, (f.metadata.get("choices") and
                                         "|".join(f.metadata["choices"])) or "TEXT"
        group.add_argument(flag_of(f), type=parser_type, metavar=metavar, **kw)


def overrides_from_args(args, cls, dest_prefix: str = "") -> dict:
    """The fields of `cls` given on the command line (not None)."""
    out = {}
    for f in fields(cls):
        v = getattr(args, dest_prefix + f.name, None)
        if v is not None:
            out[f.name] = v
    return out


def replace(spec, **changes):
    """dataclasses.replace with the spec's own validation and one-line errors."""
    return dataclasses.replace(spec, **changes)


def required(cls) -> list[str]:
    return [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
